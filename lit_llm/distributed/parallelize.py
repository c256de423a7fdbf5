"""Parallelism, activation checkpointing and compilation, applied to an unmodified model from outside.

A function of a model and plain settings (torchtitan's ``parallelize_llama`` is the pattern), so the
Lightning module, the benchmarks and the memory model in ``lit_llm.planning.estimate`` follow one recipe.
"""

from __future__ import annotations

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    checkpoint_wrapper,
)

from lit_llm.checkpoint.load import tie_head
from lit_llm.model.model import GPT


def parallelize(
    model: GPT,
    *,
    mesh=None,
    param_dtype: torch.dtype | None = None,
    activation_checkpointing: bool = False,
    compile: bool = False,
    device: torch.device | str | None = None,
) -> GPT:
    """Checkpoint activations, shard with FSDP2 over ``mesh`` (a 1-D data-parallel DeviceMesh; the model
    then arrives on the meta device and each rank's shards are allocated on ``device`` and initialised
    here), then compile.

    The order matters: checkpoint wrappers go inside the shards, and compiling comes last so it sees the
    sharded modules (Lightning's guide for ModelParallelStrategy). ``param_dtype`` (bf16 under
    bf16-mixed) is the dtype FSDP gathers parameters in: half the traffic, and no fp32 copy of a whole
    block per GPU, while gradients are still reduced in fp32.
    """
    if activation_checkpointing:
        # checkpoint_wrapper strips its own prefix from state dicts, so checkpoints stay interchangeable.
        for i, block in enumerate(model.blocks):
            model.blocks[i] = checkpoint_wrapper(block)
    if mesh is not None:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None)
        for block in model.blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        model.to_empty(device=device)
        if mesh.device_type == "cpu":
            # DTensor's random ops draw the same values for every CPU rank's shard (torch warns they lack CPU
            # support): initialise the whole model on each rank from the common seed, as one process would,
            # and keep each rank's shards of it. CPU meshes are for tests and laptops: the model is small.
            load_full_state_dict(model, GPT(model.config).state_dict())
        else:
            model.init_weights()
    if compile:
        model.compile()
    return model


def load_full_state_dict(model: GPT, state: dict[str, torch.Tensor]) -> None:
    """Load unsharded weights into a model however it was wrapped (FSDP2 shards, checkpoint wrappers)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
    )

    set_model_state_dict(model, tie_head(model.config, state), options=StateDictOptions(full_state_dict=True))
