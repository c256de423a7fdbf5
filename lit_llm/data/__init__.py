"""Data: `prepare` writes tokenized shards (format.py names their files), ``TokenDataModule`` streams them.

``TokenDataModule`` is imported on first use: it is the one part of ``lit_llm.data`` that needs Lightning.
"""


def __getattr__(name: str):
    if name == "TokenDataModule":
        from lit_llm.data.datamodule import TokenDataModule

        return TokenDataModule
    raise AttributeError(f"module 'lit_llm.data' has no attribute {name!r}")
