"""Data, plain Python: `prepare` turns text into tokenized shards (format.py names their files, identity.py
checks them); ``lit_llm.train.datamodule.TokenDataModule`` streams them to training."""
