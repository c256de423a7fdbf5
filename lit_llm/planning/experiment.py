"""What a planned run is and what it costs: ``RunSpec`` (the model, batch, devices, precision and set-up of the run
`lit-llm fit` would start, or of a preset) and ``plan_run`` (its compute, time, cost and memory per GPU).

An experiment comes in already parsed by fit's own parser (``lit_llm.train.cli.parse_experiment``, called by
``lit_llm.commands.plan``): planning never imports the training layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from lit_llm.model.config import ModelConfig
from lit_llm.planning.estimate import (
    CHINCHILLA_TOKENS_PER_PARAM,
    compute_estimate,
    measure_mfu,
    resolve_precision,
    time_and_cost,
)
from lit_llm.planning.hardware import Accelerator
from lit_llm.planning.memory import memory_plan, setup_name
from lit_llm.planning.scaling import LadderLaw

BYTE_VOCAB_SIZE = 257  # `lit-llm prepare --tokenizer byte`: 256 bytes + <|endoftext|>


@dataclass(frozen=True)
class RunSpec:
    """What is being planned: model shape and the run's shape, resolved from a YAML or a preset."""

    name: str
    config: ModelConfig
    seq_len: int
    precision: str
    micro_batch_size: int | None = None
    num_gpus: int = 1  # trainer.devices × num_nodes; "auto" counts as 1
    max_steps: int | None = None
    sequences_per_step: int | None = None  # global batch, when the YAML fixes it independently of the GPU count
    sequences_per_gpu_step: int | None = None  # micro-batch × accumulation, scaled by the GPU count
    strategy: str | None = None  # trainer.strategy's name, lower case (None: a preset, no strategy chosen)
    activation_checkpointing: bool = False
    note: str | None = None

    @classmethod
    def from_experiment(cls, parsed: dict, paths: list[str]) -> RunSpec:
        """The run of an experiment as fit's parser leaves it, read from the YAMLs ``paths``."""
        trainer, model, data = parsed["trainer"], parsed["model"], parsed["data"]
        data_dir = data["data_dir"] or next((entry["path"] for entry in data["sources"] or []), None)
        config, note = resolve_vocab(model_config_from(model["architecture"]), data_dir)
        devices = count_devices(trainer["devices"], experiment_source(paths))
        micro_batch_size = data["batch_size"]
        max_steps = trainer["max_steps"]
        return cls(
            name=" + ".join(Path(path).stem for path in paths) or "experiment",
            config=config,
            seq_len=data["seq_len"] or config.block_size,
            precision=resolve_precision(trainer["precision"] or "32-true"),  # Lightning's default when none is set
            micro_batch_size=micro_batch_size,
            num_gpus=devices * trainer["num_nodes"] if devices else 1,
            max_steps=max_steps if max_steps and max_steps > 0 else None,  # Lightning's -1 means "no step limit"
            sequences_per_step=model["global_batch_size"],
            sequences_per_gpu_step=micro_batch_size * trainer["accumulate_grad_batches"] if micro_batch_size else None,
            strategy=strategy_name(trainer["strategy"]),
            activation_checkpointing=model["activation_checkpointing"],
            note=note,
        )

    @classmethod
    def from_preset(cls, preset: str, precision: str) -> RunSpec:
        config, note = resolve_vocab(ModelConfig.from_preset(preset), None)
        return cls(
            name=preset, config=config, seq_len=config.block_size, precision=resolve_precision(precision), note=note
        )

    def overridden(self, **values) -> RunSpec:
        """This run with the command line's values (those not None), which win over the YAML's."""
        return replace(self, **{name: value for name, value in values.items() if value is not None})

    def planned_tokens(self) -> float | None:
        """max_steps × global batch × seq_len, the global batch following the GPU count unless the YAML fixes it."""
        if not self.max_steps or not (self.sequences_per_step or self.sequences_per_gpu_step):
            return None
        sequences = self.sequences_per_step or self.sequences_per_gpu_step * self.num_gpus
        return self.max_steps * sequences * self.seq_len

    def planned_setup(self) -> str | None:
        """The memory table's row trainer.strategy runs as (None: a preset, or a strategy it does not model)."""
        name = self.strategy
        if name is None:
            return None
        if "fsdp" in name or "modelparallel" in name.replace("_", ""):
            strategy = "fsdp"
        elif name.startswith("ddp"):
            strategy = "ddp"
        elif name in ("auto", "single_device", "singledevicestrategy"):
            strategy = "single" if self.num_gpus == 1 else "ddp"  # what Lightning's "auto" picks for these devices
        else:
            return None
        return setup_name(strategy, self.activation_checkpointing)


def experiment_source(paths: list[str]) -> str:
    """How errors name an experiment: its YAMLs, in command-line order."""
    return " + ".join(paths) or "the experiment"


def resolve_vocab(config: ModelConfig, data_dir: str | None) -> tuple[ModelConfig, str | None]:
    """Take the vocabulary from the prepared data's metadata.json; assume a byte vocabulary if there is none."""
    metadata = Path(data_dir).expanduser() / "metadata.json" if data_dir else None
    if metadata is not None and metadata.is_file():
        return config.with_vocab(json.loads(metadata.read_text())["vocab_size"]), None
    if config.vocab_size is not None:
        return config, None
    resolved = config.with_vocab(BYTE_VOCAB_SIZE)
    where = f"{data_dir} is not prepared yet" if data_dir else "no data given"
    return resolved, f"{where}: assumed a byte vocabulary ({BYTE_VOCAB_SIZE} tokens, padded to {resolved.vocab_size})"


def model_config_from(architecture: str | dict) -> ModelConfig:
    """model.architecture as fit's parser leaves it: a preset name or the fields of a ModelConfig."""
    if isinstance(architecture, str):
        return ModelConfig.from_preset(architecture)
    return ModelConfig(**architecture)


def count_devices(devices, source: str) -> int | None:
    """Lightning's ``trainer.devices``: an int, a digit string, a list of ids, or "auto" (None: unknown)."""
    if devices in (None, "auto"):
        return None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()):
        return int(devices)
    raise ValueError(f"{source}: cannot read trainer.devices={devices!r}; use a number of devices")


def strategy_name(strategy: str | dict | None) -> str:
    """trainer.strategy as fit's parser leaves it (a registered name or a class_path mapping), lower case."""
    name = strategy.get("class_path", "") if isinstance(strategy, dict) else str(strategy or "auto")
    return name.rsplit(".", 1)[-1].lower()


def plan_run(
    spec: RunSpec,
    accelerator: Accelerator,
    *,
    tokens: float | None,
    mfu: float | None,
    price_per_gpu_hour: float,
    law: LadderLaw | None = None,
    compute_optimal: dict | None = None,
) -> dict:
    """Compute, time, cost and memory per GPU of ``spec`` on ``accelerator``: the dict `plan --json` prints.

    ``tokens`` replaces the run's own (max_steps × global batch × seq_len; without those, compute-optimal);
    ``mfu`` None measures it on this machine's GPU. With a ladder's ``law``, adds the predicted final val loss
    and ``compute_optimal`` (the budget's optimum the run was sized from, if it was).
    """
    model, setup = spec.config, spec.planned_setup()
    planned = tokens or spec.planned_tokens()
    memory = memory_plan(model, accelerator, spec.num_gpus, spec.micro_batch_size, spec.seq_len, spec.precision, setup)
    mfu_value = mfu or measure_mfu(model, memory["micro_batch_size"], spec.seq_len, spec.precision)
    estimate = compute_estimate(model, planned or CHINCHILLA_TOKENS_PER_PARAM * model.num_params(), spec.seq_len)
    result = {
        "name": spec.name,
        "note": spec.note,
        "gpu": accelerator.name,
        "peak_tflops": accelerator.bf16_tflops,
        "gpu_memory_gb": accelerator.memory_gb,
        "num_gpus": spec.num_gpus,
        "precision": spec.precision,
        "seq_len": spec.seq_len,
        "mfu": mfu_value,
        "mfu_source": "given" if mfu else "measured",
        "price_per_gpu_hour": price_per_gpu_hour,
        "tokens_defaulted": planned is None,
        "planned_setup": setup,
        **estimate,
        **time_and_cost(
            estimate["flops_per_token"], estimate["tokens"], accelerator, spec.num_gpus, mfu_value, price_per_gpu_hour
        ),
        "memory": memory,
        "memory_per_gpu_gb": {name: s["memory_per_gpu_gb"] for name, s in memory["strategies"].items()},
    }
    if law is not None:  # the keys `plan --json` gains: predicted_val_loss (+ interval, bits per byte)
        result |= law.predict(model, estimate["tokens"])
        result |= {"scaling_law": law.source, "compute_optimal": compute_optimal}
    return result
