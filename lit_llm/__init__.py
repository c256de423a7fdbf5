"""lit-llm: pre-train base language models from scratch.

The public names are imported on first use, so ``import lit_llm.model.model`` (or `lit-llm generate`) never
pays for importing Lightning, which only ``LitLLM`` and ``TokenDataModule`` need.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "GPT": "lit_llm.model.model",
    "ModelConfig": "lit_llm.model.config",
    "Tokenizer": "lit_llm.model.tokenizer",
    "LitLLM": "lit_llm.train.module",
    "TokenDataModule": "lit_llm.train.datamodule",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lit_llm' has no attribute {name!r}")
