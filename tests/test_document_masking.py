"""Document masking: in a packed sequence each token attends only to its own document, from position 0."""

import lightning as L
import pytest
import torch

from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT, document_ids, document_mask

EOT = 0
SMALL = dict(n_layer=1, n_head=2, n_embd=32, block_size=32)
LLAMA = dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=32, block_size=32, vocab_size=64)
SHAPES = {
    "llama": ModelConfig(**LLAMA, positions="rope", norm="rmsnorm", mlp="swiglu"),
    "gpt2": ModelConfig(**LLAMA, positions="learned"),
}


def packed_batch() -> torch.Tensor:
    """Two sequences of 24 tokens, each three documents long (every document ends with EOT)."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(1, 64, (2, 24), generator=generator)
    batch[0, [6, 15]] = EOT
    batch[1, [2, 11]] = EOT
    return batch


def model_for(shape: str) -> GPT:
    torch.manual_seed(0)
    return GPT(SHAPES[shape]).eval()


def test_documents_end_with_the_end_of_text_token_and_positions_restart():
    idx = torch.tensor([[5, 7, EOT, 3, EOT, 4, 4]])
    assert document_ids(idx, EOT).tolist() == [[0, 0, 0, 1, 1, 2, 2]]
    layout = document_mask(idx, EOT)
    assert layout.positions.tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    allowed = layout.mask[0, 0]
    assert allowed[3].tolist() == [False, False, False, True, False, False, False]  # itself only
    assert allowed[6].tolist() == [False, False, False, False, False, True, True]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [True, False])
def test_a_token_is_blind_to_earlier_documents_only_with_masking(shape, masked):
    """Changing every token of the first document leaves the later documents' logits alone under masking;
    without it, they change (so this test can fail)."""
    model, batch = model_for(shape), packed_batch()
    changed = batch.clone()
    changed[0, :6] = (changed[0, :6] + 7) % 63 + 1  # the first document's tokens, never EOT
    with torch.no_grad():
        run = (lambda idx: model(idx, documents=document_mask(idx, EOT))) if masked else model
        before, after = run(batch), run(changed)
    later = slice(7, None)  # sequence 0's second and third documents
    if masked:
        torch.testing.assert_close(after[0, later], before[0, later], rtol=0, atol=1e-6)
    else:
        assert (after[0, later] - before[0, later]).abs().max() > 1e-3
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=1e-6)  # the other sequence: untouched


@pytest.mark.parametrize("shape", SHAPES)
def test_each_packed_document_reads_as_if_it_were_alone(shape):
    """A document in the middle of a packed sequence gets the logits it gets as a sequence of its own:
    the mask and the restarted positions together."""
    model, batch = model_for(shape), packed_batch()
    with torch.no_grad():
        packed = model(batch, documents=document_mask(batch, EOT))
        alone = model(batch[:, 7:16])  # sequence 0's second document (positions 7..15, ending with EOT)
    torch.testing.assert_close(packed[0, 7:16], alone[0], rtol=1e-5, atol=1e-5)


def another_packed_batch() -> torch.Tensor:
    """``packed_batch``'s shape with other document boundaries: four documents, then two."""
    batch = packed_batch().roll(5, dims=1)
    batch[batch == EOT] = 9
    batch[0, [3, 9, 20]] = EOT
    batch[1, [13]] = EOT
    return batch


def flex_and_boolean_logits(model: GPT, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits through the BlockMask path (CUDA's: compiled create_block_mask and flex_attention,
    GQA by enable_gqa) and through the boolean-mask path, without gradients: on a CPU, torch 2.14's
    FlexAttention runs forward only."""
    with torch.no_grad():
        documents = document_mask(batch, EOT, flex=True)
        assert not isinstance(documents.mask, torch.Tensor)  # a BlockMask: the flex path, not the fallback
        return model(batch, documents=documents), model(batch, documents=document_mask(batch, EOT, flex=False))


def test_flex_attention_block_mask_matches_the_boolean_mask():
    """The compiled FlexAttention path computes what the boolean-mask path computes: several documents per
    sequence, grouped-query attention (4 heads, 2 KV heads), RoPE positions restarting per document."""
    model = model_for("llama")
    for batch in (packed_batch(), another_packed_batch()):
        flex, boolean = flex_and_boolean_logits(model, batch)
        torch.testing.assert_close(flex, boolean, rtol=1e-5, atol=1e-5)


def test_compiled_flex_attention_is_not_recompiled_for_new_document_boundaries():
    """Each batch brings a new mask_mod (its document ids): an input to the compiled create_block_mask and
    flex_attention, not a reason to compile them again."""
    from torch._dynamo.utils import counters

    model = model_for("llama")
    flex_and_boolean_logits(model, packed_batch())  # compiles, unless an earlier test did
    counters.clear()
    flex_and_boolean_logits(model, another_packed_batch())
    assert counters["frames"]["total"] == 0, dict(counters["frames"])


def test_flex_attention_trains_on_cuda_only():
    """Why a CPU masks with a boolean tensor by default: torch 2.14's FlexAttention has no backward pass on a
    CPU. If this fails, torch has gained one: reconsider the default in ``document_mask``."""
    model, batch = model_for("llama"), packed_batch()
    assert isinstance(document_mask(batch, EOT).mask, torch.Tensor)
    with pytest.raises(NotImplementedError, match="does not support backward on CPU"):
        model(batch, documents=document_mask(batch, EOT, flex=True))


def test_kv_cache_generation_is_unchanged_by_the_helpers():
    """Generation never passes documents: the cached forward still equals the whole-sequence forward."""
    model, batch = model_for("llama"), packed_batch()[:1, :10]
    with torch.no_grad():
        whole = model(batch)
        model.setup_kv_cache(batch_size=1)
        stepped = torch.cat([model(batch[:, :6], start=0), model(batch[:, 6:], start=6)], dim=1)
        model.clear_kv_cache()
    torch.testing.assert_close(stepped, whole, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def line_documents(tmp_path_factory, shakespeare_slice):
    """Bytes of Shakespeare, one document per line (~40 bytes): several documents in every 32-byte sequence."""
    from lit_llm.data.prepare import prepare

    corpus = tmp_path_factory.mktemp("lines") / "lines.txt"
    corpus.write_text("\n---\n".join(shakespeare_slice.read_text().splitlines()))
    prepare([str(corpus)], str(corpus.parent / "data"), tokenizer="byte", separator="---", num_workers=1)
    return corpus.parent / "data"


def test_training_with_document_masking_learns(line_documents, tmp_path):
    """A short fit with ``document_masking`` on short documents lowers the loss, and the masking is in force
    (the module's loss of a batch differs from the unmasked one)."""
    from lit_llm.train.datamodule import TokenDataModule
    from lit_llm.train.module import LitLLM

    module = LitLLM(SMALL, learning_rate=5e-3, warmup_steps=2, sample_tokens=0, document_masking=True)
    data = TokenDataModule(str(line_documents), batch_size=8, num_workers=0)
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        max_steps=30,
        accelerator="cpu",
        callbacks=[Record()],
        default_root_dir=tmp_path,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    trainer.fit(module, datamodule=data)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    batch = next(iter(data.train_dataloader()))
    assert (batch[:, :-1] == module.tokenizer.eot_id).any()
    with torch.no_grad():
        masked = module.loss(batch).total
        module.document_masking = False
        assert not torch.allclose(module.loss(batch).total, masked)


@pytest.mark.parametrize("z_loss", [0.0, 0.1])
def test_the_chunked_loss_sees_the_same_documents_as_the_plain_one(z_loss):
    """`model.loss: chunked` (the trunk, then the head chunk by chunk) gets the documents too: its loss and
    z-loss equal the plain path's under masking."""
    from types import SimpleNamespace

    from lit_llm.train.module import LitLLM

    module = LitLLM(SHAPES["llama"], document_masking=True, loss="chunked")
    module.model = model_for("llama")
    module.trunk, module.tokenizer = module.model.hidden_states, SimpleNamespace(eot_id=EOT)
    batch = torch.cat([packed_batch(), packed_batch()[:, :1]], dim=1)  # (B, T+1)
    with torch.no_grad():
        chunked = module.loss(batch, z_loss)
        module.loss_name = "plain"
        plain = module.loss(batch, z_loss)
        module.document_masking = False
        unmasked = module.loss(batch, z_loss)
    for got, want in zip(chunked, plain):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(unmasked.cross_entropy, plain.cross_entropy)


@pytest.mark.filterwarnings("error:Dynamo detected a call to a `functools.lru_cache`")
def test_flex_attention_in_a_compiled_model():
    """`model.compile: true` (the 1B recipe's CUDA path): flex_attention traced into the model's graph gives the
    boolean mask's logits, and a batch with new document boundaries runs the same graph."""
    from torch._dynamo.utils import counters

    compiled, eager = model_for("llama"), model_for("llama")
    compiled.compile()
    for batch in (packed_batch(), another_packed_batch()):
        counters.clear()
        with torch.no_grad():
            flex = compiled(batch, documents=document_mask(batch, EOT, flex=True))
            boolean = eager(batch, documents=document_mask(batch, EOT, flex=False))
        torch.testing.assert_close(flex, boolean, rtol=1e-5, atol=1e-5)
    assert counters["frames"]["total"] == 0, dict(counters["frames"])  # the second batch: no recompile
