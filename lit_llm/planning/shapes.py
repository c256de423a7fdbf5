"""The family of model shapes a scaling ladder sizes from: one architecture at every width, so that a
parameter count names one shape and a law fitted on small members predicts the large ones."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lit_llm.model.config import ModelConfig

FAMILIES = {
    "gpt2": dict(positions="learned", norm="layernorm", mlp="gelu", bias=True),
    "llama": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False),
}
DERIVED = ("n_layer", "n_head", "n_embd", "n_kv_head", "vocab_size")  # set per shape or by the data
PARAMS_COUNTS = ("total", "non_embedding")
SIZE_SLACK = 1.5  # a requested size may lie this factor beyond the family's smallest or largest shape


@dataclass(frozen=True)
class ModelFamily:
    """One architecture at every width: n_embd a multiple of head_size × kv_groups, n_layer = n_embd /
    aspect_ratio (depth and width grow together, as nanochat sizes its models), the rest of ModelConfig shared."""

    name: str = "llama"
    aspect_ratio: int = 32
    head_size: int = 32
    kv_groups: int = 1  # query heads per key/value head
    max_width: int = 4096
    shared: dict = field(default_factory=dict)  # other ModelConfig fields: block_size, tie_embeddings, ...

    @classmethod
    def from_dict(cls, values: dict, source: str) -> ModelFamily:
        values = dict(values)
        own = {k: values.pop(k) for k in list(values) if k in cls.__dataclass_fields__ and k != "shared"}
        if own.get("name", "llama") not in FAMILIES:
            raise ValueError(f"{source}: family.name {own['name']!r} is not one of: {', '.join(FAMILIES)}")
        bad = sorted(k for k in values if k in DERIVED or k not in ModelConfig.__dataclass_fields__)
        if bad:
            raise ValueError(
                f"{source}: family key(s) {bad} cannot be set: the ladder derives {', '.join(DERIVED[:4])} per size "
                "and vocab_size from the data; the others must be ModelConfig fields"
            )
        return cls(**own, shared=values)

    def shape(self, n_embd: int, vocab_size: int) -> ModelConfig:
        n_head = n_embd // self.head_size
        fields = {**FAMILIES[self.name], **self.shared}
        return ModelConfig(
            **fields,
            n_layer=max(1, int(n_embd / self.aspect_ratio + 0.5)),  # halves round up, not to even
            n_head=n_head,
            n_kv_head=n_head // self.kv_groups,
            n_embd=n_embd,
        ).with_vocab(vocab_size)

    def shapes(self, vocab_size: int) -> list[ModelConfig]:
        step = self.head_size * self.kv_groups
        return [self.shape(width, vocab_size) for width in range(step, self.max_width + 1, step)]

    def nearest(self, params: float, vocab_size: int, count: str = "total") -> ModelConfig:
        """The shape whose parameter count is nearest ``params`` (in log space); refuses one far outside."""
        shapes = self.shapes(vocab_size)
        sizes = np.array([count_params(c, count) for c in shapes], dtype=np.float64)
        if not sizes[0] / SIZE_SLACK <= params <= sizes[-1] * SIZE_SLACK:
            raise ValueError(
                f"size {params:.3g} does not fit the {self.name} family with this data's vocabulary ({vocab_size}): "
                f"its shapes have {sizes[0]:.3g} to {sizes[-1]:.3g} {count} parameters; pick sizes in that range"
            )
        return shapes[int(np.argmin(np.abs(np.log(sizes) - math.log(params))))]


def count_params(config: ModelConfig, count: str = "total") -> int:
    """The N of the laws: all parameters (Chinchilla's convention) or the non-embedding ones (Kaplan's)."""
    if count not in PARAMS_COUNTS:
        raise ValueError(f"fit.params {count!r} must be one of: {', '.join(PARAMS_COUNTS)}")
    return config.num_params(include_embeddings=count == "total")
