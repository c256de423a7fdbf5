"""The training loader draws its sequences from all over the data, as nanoGPT's random offsets do."""

from lit_llm.data.datamodule import TokenDataModule


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
