"""`lit-llm consolidate`: merge a sharded FSDP2 checkpoint folder into one checkpoint file."""

from __future__ import annotations

from pathlib import Path

from lit_llm.checkpoint.files import SHARDED_METADATA, is_sharded_checkpoint, read_checkpoint, save_atomically


def consolidate(checkpoint: str, output: str) -> None:
    """Merge a sharded FSDP2 checkpoint folder into one ordinary checkpoint file (model weights, config,
    tokenizer) that `generate` and `validate` load on a single device.

    Args:
        checkpoint: a sharded checkpoint folder, e.g. RUN/checkpoints/last.ckpt written under fsdp2.
        output: the single-file checkpoint to write (written to a temporary name, then renamed).
    """
    source, target = Path(checkpoint).expanduser(), Path(output).expanduser()
    if not is_sharded_checkpoint(source):
        raise ValueError(
            f"{source} is not a sharded checkpoint folder (no {SHARDED_METADATA}); it can be used as it is"
        )
    state = read_checkpoint(source)
    save_atomically({k: v for k, v in state.items() if not k.startswith("optimizer")}, target)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) from {source}")


CLI = {
    "name": "consolidate",
    "summary": "merge a sharded FSDP2 checkpoint folder into one checkpoint file",
    "function": "consolidate",
}
