"""The checkpoint format: atomic writes and safe reads of files and sharded folders (files.py), and
rebuilding a model and tokenizer from a checkpoint, run folder or Hugging Face folder (load.py). Plain PyTorch."""
