"""A decoder-only transformer in plain PyTorch (GPT-2 and Llama families from one ModelConfig).

Knows nothing of Lightning, data or tokenizers: tokens in, logits out, plus an optional KV cache for
generation. Parallelism, compilation and activation checkpointing are applied from outside
(``lit_llm.distributed.parallelize``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_llm.model.config import ModelConfig


def build_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rope_cache(config: ModelConfig, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (block_size, head_size) in the "rotate half" layout used by Llama/HF."""
    half = config.head_size // 2
    inv_freq = 1.0 / (config.rope_base ** (torch.arange(0, half, device=device, dtype=torch.float32) / half))
    angles = torch.outer(torch.arange(config.block_size, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, hs) queries or keys by position; cos/sin are (T, hs), or (B, 1, T, hs) when each
    sequence has its own positions (document masking)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


@dataclass(frozen=True)
class DocumentMask:
    """Where the documents packed into a batch of sequences start and end, for block-causal attention.

    ``positions`` (B, T): each token's position within its own document, so rotary or learned positions
    restart at 0 with every document. ``mask``: which keys each query may attend to (earlier tokens of its
    own document), either a boolean (B, 1, T, T) tensor for scaled_dot_product_attention or a FlexAttention
    ``BlockMask``, which skips the blocks of keys that no query of a block may see.
    """

    positions: torch.Tensor
    mask: torch.Tensor | object


def document_ids(idx: torch.Tensor, eot_id: int) -> torch.Tensor:
    """(B, T) index of the document each token belongs to, counted from 0 in each sequence. Documents end with
    the end-of-text token, which belongs to the document it ends: the next token starts a new one."""
    ends = (idx == eot_id).int()
    return ends.cumsum(dim=1) - ends


def document_mask(idx: torch.Tensor, eot_id: int, flex: bool | None = None) -> DocumentMask:
    """The block-causal layout of token ids ``idx`` (B, T) whose documents end with ``eot_id``.

    ``flex`` builds a FlexAttention ``BlockMask`` (default: on CUDA, where compiled FlexAttention runs the
    sparse kernel; on a CPU, torch 2.14's FlexAttention runs forward only, without gradients, so an explicit
    boolean mask is the fallback that trains everywhere).
    """
    docs = document_ids(idx, eot_id)
    B, T = idx.shape
    index = torch.arange(T, device=idx.device)
    starts = torch.ones_like(idx, dtype=torch.bool)
    starts[:, 1:] = docs[:, 1:] != docs[:, :-1]
    first_index = torch.where(starts, index, 0).cummax(dim=1).values  # of each token's document
    positions = index - first_index
    if flex is None:
        flex = idx.is_cuda
    if flex:

        def same_document_causal(b, h, q, k):
            return (q >= k) & (docs[b, q] == docs[b, k])

        block_mask = compiled_create_block_mask()(same_document_causal, B, None, T, T, device=idx.device)
        return DocumentMask(positions, block_mask)
    causal = index[:, None] >= index[None, :]
    mask = causal & (docs[:, :, None] == docs[:, None, :])
    return DocumentMask(positions, mask[:, None])


# Compiled once per process; each batch's new mask_mod (its document ids) is an input, not a recompile.
# Static shapes: a new batch size compiles anew (torch 2.14's dynamic-shape CPU flex kernel fails to build).
@cache
def compiled_create_block_mask():
    """create_block_mask compiled: eager, it holds the mask of every (query, key) pair of the batch at once."""
    from torch.nn.attention.flex_attention import create_block_mask

    return torch.compile(create_block_mask, dynamic=False)


@cache
def compiled_flex_attention():
    """flex_attention compiled: eager, it materialises every score."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_attention_kernel():
    """flex_attention itself inside a compiled model (it joins the model's graph), the compiled one outside."""
    if torch.compiler.is_compiling():
        from torch.nn.attention.flex_attention import flex_attention

        return flex_attention
    return compiled_flex_attention()


class KVCache(nn.Module):
    """Keys and values of the tokens seen so far, preallocated for ``max_len`` positions."""

    def __init__(self, batch_size: int, n_kv_head: int, max_len: int, head_size: int, device, dtype) -> None:
        super().__init__()
        shape = (batch_size, n_kv_head, max_len, head_size)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + k.size(2)
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        kv_dim = config.n_kv_head * config.head_size
        self.qkv = nn.Linear(config.n_embd, config.n_embd + 2 * kv_dim, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.kv_cache: KVCache | None = None

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        start: int,
        documents: DocumentMask | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        c = self.config
        q, k, v = self.qkv(x).split([c.n_embd, c.n_kv_head * c.head_size, c.n_kv_head * c.head_size], dim=-1)
        q = q.view(B, T, c.n_head, c.head_size).transpose(1, 2)
        k = k.view(B, T, c.n_kv_head, c.head_size).transpose(1, 2)
        v = v.view(B, T, c.n_kv_head, c.head_size).transpose(1, 2)
        if c.qk_norm:
            q, k = F.rms_norm(q, (c.head_size,), eps=c.norm_eps), F.rms_norm(k, (c.head_size,), eps=c.norm_eps)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)

        # μP scores attention by 1/d_head, not 1/sqrt(d_head) (Tensor Programs V's attention rule): after
        # training, queries and keys correlate, so their dot product grows like d_head, not sqrt(d_head).
        scale = 1 / c.head_size if c.parametrization == "mup" else None
        mask = None
        if documents is not None:
            mask = documents.mask
            if not isinstance(mask, torch.Tensor):  # a FlexAttention BlockMask
                if self.dropout and self.training:
                    raise ValueError("document masking with FlexAttention has no attention dropout; set dropout: 0")
                # Contiguous: compiled into a model's graph, torch 2.14's CPU flex kernel misreads the transposed
                # (B, T, H, hs) layout of queries and keys computed there (RoPE), giving wrong attention.
                q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
                y = flex_attention_kernel()(q, k, v, block_mask=mask, scale=scale, enable_gqa=c.n_kv_head != c.n_head)
                return self.proj(y.transpose(1, 2).reshape(B, T, c.n_embd))
        elif self.kv_cache is not None:
            k, v = self.kv_cache.update(start, k, v)
            if start > 0 and T > 1:  # a chunk after a prefix: each query sees the prefix and its own past
                mask = (
                    torch.arange(k.size(2), device=x.device) <= torch.arange(start, start + T, device=x.device)[:, None]
                )
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None and T > 1,
            enable_gqa=c.n_kv_head != c.n_head,
            scale=scale,
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, c.n_embd))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        self.gelu_approximate = "tanh" if config.gelu == "tanh" else "none"
        # SwiGLU's gate and up projections are one matmul: [gate | up].
        n_in = 2 * config.intermediate_size if self.swiglu else config.intermediate_size
        self.fc = nn.Linear(config.n_embd, n_in, bias=config.bias)
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate=self.gelu_approximate)
        return self.proj(h)


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm_1 = build_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm_2 = build_norm(config)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        start: int,
        documents: DocumentMask | None = None,
    ) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm_1(x), rope, start, documents))
        return x + self.dropout(self.mlp(self.norm_2(x)))


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("ModelConfig.vocab_size is unset; resolve it with config.with_vocab(tokenizer_vocab_size)")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.positions == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = build_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.register_buffer("rope_cos", torch.empty(0), persistent=False)
        self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02), zero biases, residual projections scaled by 1/sqrt(2·n_layer) (zero with
        ``zero_init_proj``). Under μP the blocks' matrices' std is divided by sqrt(width multiplier).

        Public so a model built on the meta device (FSDP) can be materialised with ``to_empty`` and
        then initialised exactly as an eager one.
        """
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        # μP (Tensor Programs V, Table 3): hidden weights have variance ∝ 1/fan_in, i.e. the base width's std
        # over sqrt(width multiplier); embeddings and the readout (vector-like: one dimension grows with the
        # width) keep the base std, the readout being scaled in the forward pass instead (see hidden_states).
        hidden_scale = 1 / math.sqrt(self.config.width_multiplier)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = residual_std if name.endswith(".proj") else 0.02
                if name.startswith("blocks."):
                    std *= hidden_scale
                if self.config.zero_init_proj and name.endswith(".proj"):
                    nn.init.zeros_(module.weight)
                else:
                    nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.reset_parameters()
        if self.config.positions == "rope":
            self.rope_cos, self.rope_sin = rope_cache(self.config, device=self.wte.weight.device)

    def forward(self, idx: torch.Tensor, start: int = 0, documents: DocumentMask | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids (B, T) placed at positions start .. start+T-1, or, given the
        ``documents`` packed into them (``document_mask``), each attending only within its own document
        from position 0."""
        logits = self.lm_head(self.hidden_states(idx, start, documents))
        cap = self.config.logit_softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

    def hidden_states(self, idx: torch.Tensor, start: int = 0, documents: DocumentMask | None = None) -> torch.Tensor:
        """The activations (B, T, n_embd) that the output head turns into logits: the final norm's, times
        1/width multiplier under μP."""
        T = idx.size(1)
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds the model's block_size {self.config.block_size}")
        if documents is not None and start:
            raise ValueError("document masking is for whole training sequences, not a KV-cache continuation")
        positions = documents.positions if documents is not None else torch.arange(start, start + T, device=idx.device)
        x = self.wte(idx)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(positions)
        elif documents is not None:  # per-sequence positions: (B, 1, T, hs) tables, broadcast over the heads
            rope = (self.rope_cos[positions][:, None], self.rope_sin[positions][:, None])
        else:
            rope = (self.rope_cos[start : start + T], self.rope_sin[start : start + T])
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope, start, documents)
        x = self.norm_f(x)
        if self.config.parametrization == "mup":
            # μP's readout multiplier (Tensor Programs V, Table 3 in the mup package's form, MuReadout): logits
            # times 1/width multiplier with the readout's base init and learning rate, here on the head's input
            # so that the chunked loss, which reads these and the head's weight, sees it too.
            x = x / self.config.width_multiplier
        return x

    def setup_kv_cache(self, batch_size: int, max_len: int | None = None) -> None:
        c = self.config
        weight = self.wte.weight
        for block in self.blocks:
            block.attn.kv_cache = KVCache(
                batch_size, c.n_kv_head, max_len or c.block_size, c.head_size, weight.device, weight.dtype
            )

    def clear_kv_cache(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = None
