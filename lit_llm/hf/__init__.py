"""Hugging Face transformers folders, both ways (convert.py), and each family's transformers class and
parameter names (architectures.py). Never imports transformers."""
