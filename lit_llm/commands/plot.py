"""`lit-llm plot`: loss curves from a run's TensorBoard event files, plus small helpers for results tables.

matplotlib is an optional extra (``pip install "lit-llm[plot]"``); everything except :func:`plot`
works without it.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from lit_llm.data.format import read_metadata

EVENTS_GLOB = "events.out.tfevents.*"
DEFAULT_TAGS = ("train/loss", "val/loss")
# Per-step curves with at least this many points get an exponential moving average drawn over the raw,
# faint line (TensorBoard's "smoothing"); sparse curves such as val/loss are drawn as they are.
SMOOTH_MIN_POINTS = 20
EXACT_METRICS = ("lr",)  # schedules, not measurements: never smoothed


def event_dirs(run_dir: str | Path) -> list[Path]:
    """Folders holding TensorBoard event files: the run folder itself, else those below it (sorted)."""
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise FileNotFoundError(
            f"run folder {run} does not exist; pass the trainer.default_root_dir of a `lit-llm fit` run"
        )
    if any(run.glob(EVENTS_GLOB)):
        return [run]
    found = sorted({p.parent for p in run.rglob(EVENTS_GLOB)})
    if not found:
        raise FileNotFoundError(
            f"{run} holds no TensorBoard event files ({EVENTS_GLOB}); is it a `lit-llm fit` run folder?"
        )
    return found


def read_scalars(run_dir: str | Path, tag: str) -> list[tuple[int, float, float]]:
    """``(step, value, wall_time)`` of a scalar tag, sorted by step.

    A resumed run appends to the same folder and may log a step twice; the later write wins.
    Returns an empty list when the run never logged the tag.
    """
    return read_run(run_dir, [tag])[tag]


def read_run(run_dir: str | Path, tags: Sequence[str]) -> dict[str, list[tuple[int, float, float]]]:
    """:func:`read_scalars` for several tags, reading the event files once."""
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        EventAccumulator,
    )

    by_tag: dict[str, dict[int, tuple[float, float]]] = {tag: {} for tag in tags}
    for folder in event_dirs(run_dir):
        events = EventAccumulator(str(folder), size_guidance={SCALARS: 0})  # 0: keep every point
        events.Reload()
        logged = set(events.Tags().get("scalars", []))
        for tag in tags:
            if tag in logged:
                for event in sorted(events.Scalars(tag), key=lambda e: e.wall_time):
                    by_tag[tag][event.step] = (event.value, event.wall_time)
    return {
        tag: [(step, value, wall) for step, (value, wall) in sorted(points.items())] for tag, points in by_tag.items()
    }


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing (``weight`` 0 returns the values)."""
    out, last, norm = [], 0.0, 0.0
    for value in values:
        last = weight * last + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append(last / norm if norm else value)
    return out


def plot(
    run_dirs: list[str],
    output: str,
    tags: Sequence[str] = DEFAULT_TAGS,
    smoothing: float = 0.6,
    title: str | None = None,
) -> None:
    """Plot scalar curves of one or more `lit-llm fit` runs from their TensorBoard event files into a PNG.

    Tags that measure the same thing (same last path part, e.g. ``train/loss`` and ``val/loss``) share
    one panel; others (``train/lr``) get their own. With several runs each run has its own colour; train
    curves are lines, validation curves lines with markers, annotated with their last value.

    Args:
        run_dirs: run folders (trainer.default_root_dir of `lit-llm fit`) whose event files to read.
        output: image file to write (PNG; the suffix picks the format); parent folders are created.
        tags: scalar tags to draw, e.g. train/loss, val/loss, val/ppl, train/lr.
        smoothing: TensorBoard-style moving-average weight for dense per-step measurements such as
            train/loss (0 draws them raw); the raw curve stays visible, faint, underneath. Validation
            curves and the learning rate are never smoothed.
        title: figure title (default: the run folder names).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError('plotting needs matplotlib, an optional extra: pip install "lit-llm[plot]"') from err
    if not run_dirs:
        raise ValueError("no run folders given; pass at least one `lit-llm fit` run folder")
    if not tags:
        raise ValueError("no tags given; pass e.g. --tags '[train/loss, val/loss]'")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing {smoothing} must lie in [0, 1), e.g. 0.6")

    panels: OrderedDict[str, list[str]] = OrderedDict()
    for tag in tags:
        panels.setdefault(tag.rsplit("/", 1)[-1], []).append(tag)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.0), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [Path(r).expanduser().resolve().name for r in run_dirs]
    scalars = [read_run(run_dir, tags) for run_dir in run_dirs]
    drawn = 0
    for ax, (metric, panel_tags) in zip(axes[0], panels.items(), strict=True):
        for i, (run, name) in enumerate(zip(scalars, names, strict=True)):
            for j, tag in enumerate(panel_tags):
                # one run: a colour per tag; several: a colour per run (its tags differ by line style)
                colour = colours[(j if len(run_dirs) == 1 else i) % len(colours)]
                points = run[tag]
                if not points:
                    continue
                drawn += 1
                steps = [p[0] for p in points]
                values = [p[1] for p in points]
                label = tag if len(run_dirs) == 1 else f"{name}: {tag}"
                is_val = tag.startswith("val")
                noisy = not is_val and metric not in EXACT_METRICS and len(points) >= SMOOTH_MIN_POINTS
                if noisy and smoothing > 0:
                    ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
                    ax.plot(steps, smooth(values, smoothing), color=colour, linewidth=1.4, label=label)
                elif is_val:
                    ax.plot(
                        steps,
                        values,
                        color=colour,
                        marker="o",
                        markersize=3.5,
                        linewidth=1.6,
                        linestyle="--" if len(panel_tags) > 1 else "-",
                        label=label,
                    )
                else:
                    ax.plot(steps, values, color=colour, linewidth=1.4, label=label)
                if is_val:  # annotate the last validation value: the number a results table quotes
                    ax.annotate(
                        f"{values[-1]:.3f}",
                        (steps[-1], values[-1]),
                        textcoords="offset points",
                        xytext=(4, 6),
                        fontsize=8,
                        color=colour,
                    )
        ax.margins(x=0.08)  # room for the annotated last value
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if drawn == 0:
        plt.close(fig)
        raise ValueError(
            f"none of the tags {', '.join(tags)} was logged in {', '.join(map(str, run_dirs))}; pass --tags that a "
            f"run logs, e.g. {', '.join(DEFAULT_TAGS)}"
        )
    fig.suptitle(title if title is not None else ", ".join(names))
    fig.tight_layout()
    out = Path(output).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"wrote {out}")


# ---- results-table helpers ---------------------------------------------------------------------


def _source_text(source: str) -> str:
    """Text of a metadata source entry: ``path`` or ``path[start:end]`` (a character range)."""
    match = re.fullmatch(r"(.*)\[(\d+):(\d+|None)\]", source)
    if match is None:
        return Path(source).read_text(encoding="utf-8", errors="replace")
    path, start, end = match.groups()
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return text[int(start) : None if end == "None" else int(end)]


def split_bytes(data_dir: str | Path, split: str = "val") -> int:
    """UTF-8 bytes of a prepared split's documents: metadata.json's count, or for datasets prepared before
    prepare recorded it, the source text re-read from the files (or character ranges) metadata.json names."""
    counts = read_metadata(Path(data_dir).expanduser())["splits"][split]
    if counts.get("bytes") is not None:
        return int(counts["bytes"])
    return sum(len(_source_text(s).encode("utf-8")) for s in counts["sources"])


def bits_per_byte(loss: float, data_dir: str | Path, split: str = "val") -> float:
    """Convert a loss in nats per token into bits per UTF-8 byte of a prepared split.

    bits/byte = loss × tokens / (ln 2 × bytes), with the split's token count from metadata.json (each
    document's end-of-text token included) and its byte count from the source text. Unlike the loss,
    it compares models with different tokenizers.
    """
    tokens = read_metadata(Path(data_dir).expanduser())["splits"][split]["tokens"]
    return loss * tokens / (math.log(2) * split_bytes(data_dir, split))


def run_summary(run_dir: str | Path) -> dict:
    """Numbers for a results table: final and best val loss, steps done, tokens seen, training wall time.

    Tokens are optimizer steps × sequences per step × sequence length, from the run's config.yaml;
    the time runs from the first to the last logged training step (start-up excluded).
    """
    import yaml

    run = Path(run_dir).expanduser()
    config = yaml.safe_load((run / "config.yaml").read_text())
    scalars = read_run(run, ["val/loss", "train/loss"])
    val, train = scalars["val/loss"], scalars["train/loss"]
    if not val:
        raise ValueError(f"{run} logged no val/loss; did the run reach its first validation?")
    arch = config["model"]["architecture"]
    if isinstance(arch, str):
        from lit_llm.model.config import ModelConfig

        arch = ModelConfig.from_preset(arch).to_dict()
    seq_len = config["data"].get("seq_len") or arch["block_size"]
    per_step = config["model"].get("global_batch_size") or config["data"]["batch_size"] * (
        config["trainer"].get("devices") or 1
    )
    steps = val[-1][0] + 1  # Lightning logs an optimizer step's metrics at its 0-based index
    return {
        "run": str(run),
        "steps": steps,
        "val_loss": val[-1][1],
        "best_val_loss": min(v for _, v, _ in val),
        "tokens": steps * per_step * seq_len,
        "train_seconds": (train[-1][2] - train[0][2]) if len(train) > 1 else float("nan"),
        "data_dir": config["data"]["data_dir"],
    }


if __name__ == "__main__":  # `python -m lit_llm.commands.plot --run_dirs '[RUN]' --output out.png`
    from jsonargparse import CLI

    CLI(plot, as_positional=False)


CLI = {
    "name": "plot",
    "summary": 'loss curves (PNG) from run folders\' TensorBoard events (pip install "lit-llm[plot]")',
    "function": "plot",
}
