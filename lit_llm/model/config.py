"""Model shapes: one dataclass and named presets (shapes only, never weights)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

from lit_llm.model.presets import PRESETS


@dataclass
class ModelConfig:
    """Everything needed to build a decoder-only transformer.

    ``vocab_size: null`` means "take it from the prepared data" (padded up to a multiple of
    ``pad_vocab_multiple`` so the embedding and head matmuls stay aligned on GPUs).

    Args:
        parametrization: ``standard`` (GPT-2's init and one learning rate) or ``mup``: the maximal update
            parametrization (Tensor Programs V), under which the learning rate and init tuned at
            ``mup_base_width`` hold at every ``n_embd`` (docs/scaling.md).
        mup_base_width: the ``n_embd`` the hyperparameters were tuned at (``mup`` only; null: this model's own
            ``n_embd``). ``n_embd / mup_base_width`` is the width multiplier.
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256
    vocab_size: int | None = None
    pad_vocab_multiple: int = 64
    n_kv_head: int | None = None  # grouped-query attention; None means n_head (plain multi-head)
    positions: Literal["learned", "rope"] = "learned"
    rope_base: float = 10000.0
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-5
    mlp: Literal["gelu", "swiglu"] = "gelu"
    # The GELU MLP's activation: exact erf GELU (as nanoGPT; cheaper on a CPU) or GPT-2's tanh approximation.
    gelu: Literal["exact", "tanh"] = "exact"
    intermediate_size: int | None = None  # None: 4·d for GELU, ~8/3·d rounded to 256 for SwiGLU
    bias: bool = False
    tie_embeddings: bool = True
    dropout: float = 0.0
    # Switches from the speedrun literature (docs/speedrun.md), all off by default:
    # RMS-normalise each head's queries and keys (no learned scale, before RoPE), as in modded-nanogpt.
    qk_norm: bool = False
    # Start the attention and MLP output projections at zero, so every block starts as the identity.
    zero_init_proj: bool = False
    # Squash the logits smoothly into (-c, c): logits = c * tanh(logits / c), as Gemma 2 and modded-nanogpt.
    logit_softcap: float | None = None
    parametrization: Literal["standard", "mup"] = "standard"
    mup_base_width: int | None = None

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.parametrization == "mup" and self.mup_base_width is None:
            self.mup_base_width = self.n_embd
        if self.mup_base_width is not None and (self.parametrization != "mup" or self.mup_base_width <= 0):
            raise ValueError(
                f"mup_base_width={self.mup_base_width} needs parametrization=mup and a positive width; "
                "set parametrization: mup (or mup_base_width: null)"
            )
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; pick sizes that divide")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}; pick sizes that divide"
            )
        if self.positions == "rope" and self.head_size % 2:
            raise ValueError(f"rotary positions need an even head size, got {self.head_size}; change n_embd or n_head")
        if self.logit_softcap is not None and self.logit_softcap <= 0:
            raise ValueError(f"logit_softcap={self.logit_softcap} must be positive (or null for no soft-capping)")
        if self.intermediate_size is None:
            if self.mlp == "gelu":
                self.intermediate_size = 4 * self.n_embd
            else:
                self.intermediate_size = -(-int(8 * self.n_embd / 3) // 256) * 256

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def width_multiplier(self) -> float:
        """μP's n_embd / mup_base_width (1.0 under the standard parametrization)."""
        return self.n_embd / self.mup_base_width if self.parametrization == "mup" else 1.0

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ModelConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
        # Built from the preset's own arguments, so fields derived from an overridden one (the MLP width
        # from n_embd, n_kv_head from n_head) are derived again rather than kept from the preset.
        return cls(**{**PRESETS[name], **overrides})

    def with_vocab(self, data_vocab_size: int) -> ModelConfig:
        """Resolve ``vocab_size`` against the data's tokenizer, refusing a vocabulary that does not fit."""
        if self.vocab_size is None:
            padded = -(-data_vocab_size // self.pad_vocab_multiple) * self.pad_vocab_multiple
            return replace(self, vocab_size=padded)
        if data_vocab_size > self.vocab_size:
            raise ValueError(
                f"the data's tokenizer has {data_vocab_size} tokens but the model's vocab_size is {self.vocab_size}; "
                f"set model vocab_size to at least {data_vocab_size} (or null to take it from the data)"
            )
        return self

    # ---- counts used by throughput/MFU logging and `lit-llm plan` ----
    def num_params(self, include_embeddings: bool = True) -> int:
        """Exact parameter count of the model this config builds (no weights needed).

        ``include_embeddings=False`` counts the transformer blocks and final norm only.
        """
        assert self.vocab_size is not None, "resolve vocab_size first (ModelConfig.with_vocab)"
        d, kv = self.n_embd, self.n_kv_head * self.head_size
        bias = int(self.bias)
        attn = d * (d + 2 * kv) + bias * (d + 2 * kv) + d * d + bias * d
        n_mlp_in = 2 if self.mlp == "swiglu" else 1
        mlp = (
            n_mlp_in * (d * self.intermediate_size + bias * self.intermediate_size)
            + self.intermediate_size * d
            + bias * d
        )
        norm = d * (2 if self.norm == "layernorm" and self.bias else 1)
        blocks = self.n_layer * (attn + mlp + 2 * norm) + norm
        embeddings = self.vocab_size * d + (self.block_size * d if self.positions == "learned" else 0)
        head = 0 if self.tie_embeddings else self.vocab_size * d
        return blocks + embeddings + head if include_embeddings else blocks

    def matmul_params(self) -> int:
        """Parameters that take part in a matmul per token: all but the embeddings, plus the output head."""
        return self.num_params(include_embeddings=False) + self.vocab_size * self.n_embd

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: 6·N (forward + backward matmuls) + 12·L·d·T (attention scores)."""
        seq_len = seq_len or self.block_size
        return 6 * self.matmul_params() + 12 * self.n_layer * self.n_embd * seq_len

    def to_dict(self) -> dict:
        return asdict(self)
