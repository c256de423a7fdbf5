"""`lit-llm average`: the uniform average of several checkpoints' weights (or of their EMA weights), as one
checkpoint that generate, evaluate, export and `fit --model.init_from` load like any other."""

from __future__ import annotations

from pathlib import Path

import torch

from lit_llm.checkpoint.files import CHECKPOINT_KEY, EMA_KEY, read_checkpoint, save_atomically
from lit_llm.checkpoint.load import resolve_checkpoint


def average(checkpoints: list[str], output: str, ema: bool = False, overwrite: bool = False) -> Path:
    """Average the model weights of checkpoints of one run (e.g. its last k periodic saves).

    Often a lower loss than the last checkpoint alone, at no training cost. The output holds the averaged
    weights, the model config and tokenizer, and no optimizer state: it is for inference, export, or a new
    run's ``--model.init_from``, not for resuming.

    Args:
        checkpoints: checkpoint files, sharded checkpoint folders or run folders (their newest checkpoint),
            all of the same model and tokenizer, e.g. ``RUN/checkpoints/step-0008*.ckpt``.
        output: the checkpoint file to write (written to a temporary name, then renamed).
        ema: average the checkpoints' EMA weights (saved when training with the WeightEMA callback) instead of
            their weights; with one checkpoint this extracts its EMA weights.
        overwrite: replace ``output`` if it exists.
    """
    target = Path(output).expanduser()
    paths = [resolve_checkpoint(path) for path in checkpoints]
    if not paths:
        raise ValueError("--checkpoints is empty; pass the checkpoints to average, e.g. RUN/checkpoints/step-*.ckpt")
    if any(path.resolve() == target.resolve() for path in paths):
        raise FileExistsError(f"--output {output} is one of the --checkpoints; write the average to another file")
    if target.exists() and not overwrite:
        raise FileExistsError(f"--output {output} already exists; choose another file or pass --overwrite")
    first = read_checkpoint(paths[0])
    meta = lit_llm_entry(first, paths[0])
    weights = model_weights(first, paths[0], ema)
    dtypes = {name: tensor.dtype for name, tensor in weights.items()}
    total = {name: tensor.double() for name, tensor in weights.items()}  # float64: k bf16 sums lose no bits
    del first, weights
    for path in paths[1:]:
        checkpoint = read_checkpoint(path)
        check_same_model(lit_llm_entry(checkpoint, path), meta, path, paths[0])
        weights = model_weights(checkpoint, path, ema)
        check_same_shapes(weights, total, path, paths[0])
        for name, tensor in weights.items():
            total[name] += tensor.double()
    averaged = {name: (tensor / len(paths)).to(dtypes[name]) for name, tensor in total.items()}
    meta = {**meta, "averaged_from": [str(path) for path in paths], "averaged_ema": ema}
    save_atomically({CHECKPOINT_KEY: meta, "state_dict": averaged}, target)
    kind = "EMA weights" if ema else "weights"
    print(f"wrote {target}: the {kind} of {len(paths)} checkpoint(s) averaged ({', '.join(map(str, paths))})")
    return target


def lit_llm_entry(checkpoint: dict, path: Path) -> dict:
    if CHECKPOINT_KEY not in checkpoint:
        raise ValueError(
            f"{path} was not written by lit-llm (no '{CHECKPOINT_KEY}' entry); pass checkpoints from `lit-llm fit`"
        )
    return checkpoint[CHECKPOINT_KEY]


def model_weights(checkpoint: dict, path: Path, ema: bool) -> dict[str, torch.Tensor]:
    """The ``model.*`` entries of a checkpoint's state_dict, or of its EMA weights."""
    if ema and EMA_KEY not in checkpoint:
        raise ValueError(
            f"{path} holds no EMA weights (train with the WeightEMA callback to save them); average without --ema"
        )
    state = checkpoint[EMA_KEY] if ema else checkpoint["state_dict"]
    return {name: tensor for name, tensor in state.items() if name.startswith("model.")}


def check_same_model(meta: dict, first: dict, path: Path, first_path: Path) -> None:
    if meta.get("model_config") != first.get("model_config"):
        differences = [
            f"{key} {meta['model_config'].get(key)} vs {value}"
            for key, value in first.get("model_config", {}).items()
            if meta.get("model_config", {}).get(key) != value
        ]
        raise ValueError(
            f"{path} is another model than {first_path} ({'; '.join(differences[:3])}); average checkpoints of one run"
        )
    if meta.get("tokenizer") != first.get("tokenizer"):
        raise ValueError(f"{path} uses another tokenizer than {first_path}; average checkpoints of one run")


def check_same_shapes(weights: dict, first: dict, path: Path, first_path: Path) -> None:
    if weights.keys() != first.keys():
        name = sorted(weights.keys() ^ first.keys())[0]
        raise ValueError(f"{path} and {first_path} differ in weight {name}; average checkpoints of one run")
    for name, tensor in weights.items():
        if tensor.shape != first[name].shape:
            raise ValueError(
                f"{path}'s {name} has shape {list(tensor.shape)}, {first_path}'s {list(first[name].shape)}; "
                "average checkpoints of one run"
            )


CLI = {
    "name": "average",
    "summary": "average the weights of several checkpoints (or their EMA weights) into one checkpoint",
    "function": "average",
}
