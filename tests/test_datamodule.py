"""The data module: where its sequences come from, and its hand-over with the module (`connect`)."""

from types import SimpleNamespace

import pytest

from lit_llm.train.datamodule import TokenDataModule
from lit_llm.train.module import LitLLM, derive_step_counts


def test_batches_come_from_the_whole_split_not_a_local_window(byte_dataset, shakespeare_slice):
    text = shakespeare_slice.read_bytes()
    data = TokenDataModule(str(byte_dataset), batch_size=4, seq_len=32, num_workers=0)
    data.setup("fit")
    sequences = [seq for _, batch in zip(range(8), data.train_dataloader()) for seq in batch]
    offsets = [text.find(bytes(seq.tolist())) for seq in sequences]  # byte tokens are the text's bytes
    assert min(offsets) >= 0
    # The train split is 90% of the text, one chunk. LitData's default in-chunk shuffle (windows of 256
    # neighbouring sequences) keeps these 32 sequences within ~16% of it; a full permutation spreads them.
    assert (max(offsets) - min(offsets)) / len(text) > 0.5


def test_module_and_data_meet_in_connect(byte_dataset):
    """Each side gets what the other publishes: the data its sequence length, the model its vocabulary."""
    data = TokenDataModule(str(byte_dataset), batch_size=2, num_workers=0)
    module = LitLLM(dict(n_layer=1, n_head=2, n_embd=32, block_size=24), sample_tokens=0)
    module.connect(data)
    assert data.sequence_length == 24
    assert next(iter(data.train_dataloader())).shape == (2, 25)  # inputs and the targets one token later
    assert module.tokenizer is data.tokenizer and data.vocab_size == 257
    assert module.config.vocab_size == 320  # 257 byte tokens, padded to a multiple of 64
    assert module.val_source_names == [byte_dataset.name] and len(module.source_val_losses) == 1


def test_seq_len_is_checked_against_the_connected_model(byte_dataset):
    data = TokenDataModule(str(byte_dataset), seq_len=64, num_workers=0)
    with pytest.raises(ValueError, match="data.seq_len=64 exceeds the model's block_size=32"):
        data.connect(block_size=32)
    data.connect(block_size=128)
    assert data.sequence_length == 64
    unconnected = TokenDataModule(str(byte_dataset), num_workers=0)
    with pytest.raises(ValueError, match="data.seq_len is needed"):
        unconnected.train_dataloader()


def stand_in_trainer(world_size: int, val_check_interval, accumulate_grad_batches: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        world_size=world_size, val_check_interval=val_check_interval, accumulate_grad_batches=accumulate_grad_batches
    )


def test_step_counts_follow_the_global_batch_and_count_optimizer_steps():
    trainer = stand_in_trainer(world_size=2, val_check_interval=100)
    derive_step_counts(trainer, global_batch_size=64, micro_batch=8)
    assert (trainer.accumulate_grad_batches, trainer.val_check_interval) == (4, 400)
    fraction = stand_in_trainer(world_size=1, val_check_interval=0.5, accumulate_grad_batches=3)
    derive_step_counts(fraction, global_batch_size=None, micro_batch=8)  # the YAML's own accumulation stays
    assert (fraction.accumulate_grad_batches, fraction.val_check_interval) == (3, 0.5)
    with pytest.raises(ValueError, match="global_batch_size=60 is not a multiple of .* = 8 × 2"):
        derive_step_counts(stand_in_trainer(world_size=2, val_check_interval=10), global_batch_size=60, micro_batch=8)
