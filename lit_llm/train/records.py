"""What a run records of its configuration, and the check that a resume continues the same run.

- Every resolved configuration is kept: ``config.yaml`` for the start, ``config-resume-N.yaml`` for each
  resume, with the values of secret-looking keys (credentials in ``data.storage_options``) redacted.
- TensorBoard's HPARAMS tab is written once, whole, when a run starts; its metric is ``val/loss``, which
  every validation logs, so the tab shows the latest value however the run ends.
- Each checkpoint stores the settings that exact resume depends on; resuming with any of them changed is
  refused, naming each key and both values, unless ``--resume_with_changes`` says to apply them.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from lightning.pytorch.cli import SaveConfigCallback

REDACTED = "<redacted>"
SECRET_WORDS = {"key", "secret", "token", "password", "passwd", "credential", "credentials"}
HPARAMS_METRIC = "val/loss"  # the metric beside the hyperparameters in TensorBoard's HPARAMS tab
SECTIONS = ("seed_everything", "trainer", "model", "data", "checkpoint")

# Settings a resumed run must share with its checkpoint to continue exactly: the optimizer and its schedule,
# the batches (their size, order and count per step), the numerics. Everything else (logging, validation
# cadence, compilation, sampling) may change between sessions.
EXACT_RESUME = (
    "seed_everything",
    "trainer/max_steps",
    "trainer/accumulate_grad_batches",
    "trainer/precision",
    *(
        f"model/{key}"
        for key in (
            "learning_rate", "min_lr", "lr_schedule", "warmup_steps", "decay_fraction", "weight_decay", "betas",
            "optimizer", "muon_lr", "muon_momentum", "muon_ns_steps", "grad_clip", "global_batch_size",
            "document_masking", "z_loss", "spike_skip_sigma", "spike_skip_window",
        )
    ),
    "data/batch_size",
    "data/seq_len",
    "data/seed",
    "data/num_workers",
    "data/elastic",
    "data/fim_rate",
    "data/fim_spm_rate",
)  # fmt: skip
# What data.elastic frees: its order depends only on the global batch, so the device count, the micro batch
# and the loader workers may change between sessions (the global batch is compared instead).
ELASTIC_FREE = ("trainer/world_size", "data/batch_size", "data/num_workers", "trainer/accumulate_grad_batches")


def is_secret(key: str) -> bool:
    """``aws_secret_access_key``, ``accessKeyId``, ``session_token``, ``password``: yes; ``sample_tokens``,
    ``tokenizer``, ``monitor``: no (whole words only)."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower())
    return not SECRET_WORDS.isdisjoint(words)


def redact(value):
    """A copy of a configuration (nested dicts and lists) with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret(str(k)) and v not in (None, "") else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"model": {"architecture": {"n_layer": 4}}}`` -> ``{"model/architecture/n_layer": 4}``; tuples as lists."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


class RecordingSaveConfig(SaveConfigCallback):
    """Lightning's SaveConfigCallback writing the redacted configuration, atomically, to ``config_filename``
    (chosen by the CLI: see ``config_filename``)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = Path(trainer.log_dir)  # collective: every rank asks
        if trainer.is_global_zero:
            config = redact(yaml.safe_load(self.parser.dump(self.config, skip_none=False)))
            log_dir.mkdir(parents=True, exist_ok=True)
            tmp = log_dir / f".{self.config_filename}.tmp"
            tmp.write_text(yaml.safe_dump(config, sort_keys=False))
            tmp.replace(log_dir / self.config_filename)
        self.already_saved = True


def config_filename(run_dir: Path, resuming: bool) -> str:
    """``config.yaml`` for a run's start, then ``config-resume-N.yaml`` (the next free N) for each resume."""
    if not resuming:
        return "config.yaml"
    n = 1
    while (run_dir / f"config-resume-{n}.yaml").exists():
        n += 1
    return f"config-resume-{n}.yaml"


def write_hparams(logger, config: dict) -> None:
    """The HPARAMS tab's three summaries (experiment, session start, session end), written in one go to the
    run's event file: the flattened, redacted configuration with ``val/loss`` as its metric."""
    from torch.utils.tensorboard.summary import hparams

    params = {key: hparam_value(value) for key, value in flatten(redact(config)).items()}
    experiment, session_start, session_end = hparams(params, {HPARAMS_METRIC: 0.0})
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, session_start, session_end):
        writer.add_summary(summary)
    writer.flush()


def hparam_value(value):
    """TensorBoard takes numbers, strings and booleans; anything else (None, lists) as its text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def resume_settings(config: dict, world_size: int, identities: list[dict]) -> dict:
    """The settings of ``EXACT_RESUME`` from a resolved configuration, with the device count, the global
    batch, the datasets' identities (`TokenDataModule.identities`: a dataset changed under a run resumes
    into other batches) and the mixture's weights. Under ``data.elastic`` the device count, micro batch and
    workers are left out (``ELASTIC_FREE``): only the global batch matters."""
    flat = flatten(config)
    sources = flat.get("data/sources") or [{}]
    settings = {
        **{key: flat.get(key) for key in EXACT_RESUME},
        "trainer/world_size": world_size,
        "data/global_batch": flat.get("model/global_batch_size")
        or (flat.get("data/batch_size") or 0) * world_size * (flat.get("trainer/accumulate_grad_batches") or 1),
        "data/fingerprints": [identity["fingerprint"] for identity in identities],
        "data/weights": [source.get("weight", 1.0) if isinstance(source, dict) else 1.0 for source in sources],
        "data/tokenizer_sha256": identities[0]["tokenizer_sha256"],  # a mixture's sources share one tokenizer
    }
    if flat.get("data/elastic"):
        settings = {key: value for key, value in settings.items() if key not in ELASTIC_FREE}
    return settings


def changed_settings(saved: dict, current: dict) -> list[str]:
    """``KEY SAVED in the checkpoint, CURRENT now`` for each setting that differs (keys the checkpoint does not
    record are skipped: one from an older lit-llm records fewer)."""
    return [
        f"{key.replace('/', '.')} {saved[key]} in the checkpoint, {current[key]} now"
        for key in current
        if key in saved and saved[key] != current[key]
    ]
