"""LightningDataModule streaming pre-tokenized LitData shards made by `lit-llm prepare`.

One dataset (``data_dir``) or a weighted mixture of several (``sources``), each a local folder or an
object-storage prefix (``s3://...``). A mixture draws each training sequence from a source chosen with
probability proportional to its weight (LitData's ``CombinedStreamingDataset``), and validates on every
source separately so the module can log ``val/<name>/loss`` next to the overall ``val/loss``.

``elastic: true`` replaces LitData's training order by one that does not depend on the number of processes
(`lit_llm.data.elastic`): a run resumes on another device count with the same sequences at every step, and
a resume that changes the mixture starts a new stage of it where the run is. LitData's own order (the
default) changes with the device count, and after an epoch boundary a run resumed on another count no longer
sees what the uninterrupted run would have (docs/checkpoints.md).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from litdata import CombinedStreamingDataset, StreamingDataLoader, StreamingDataset

from lit_llm.data.elastic import GlobalOrder, Stage
from lit_llm.data.fim import FimTransform, check_fim_settings
from lit_llm.data.format import read_index, read_tokenizer
from lit_llm.data.identity import CorruptShardError, check_dataset
from lit_llm.data.shards import open_split
from lit_llm.data.storage import local_view
from lit_llm.model.tokenizer import Tokenizer


@dataclass
class DataSource:
    """One prepared dataset in a mixture.

    Args:
        path: a folder written by `lit-llm prepare`, or its ``s3://``/``gs://``/``r2://`` URL.
        weight: relative share of the training sequences drawn from it (weights need not sum to 1).
        name: the name in ``val/<name>/loss`` (default: the folder's name).
    """

    path: str
    weight: float = 1.0
    name: str | None = None


def ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave SIGTERM, SIGUSR1 and SIGINT to the training process, which saves a checkpoint and
    then stops them: a scheduler that signals every process of a job (SLURM), or a terminal's Ctrl-C (sent to
    every process of the foreground group), would otherwise kill them first."""
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


class TokenDataModule(L.LightningDataModule):
    """The hand-over with the model (`LitLLM.connect` is the other side): the data module publishes
    `tokenizer`, `vocab_size`, `val_source_names` and `batch_size`, and is told the model's context
    with `connect(block_size)`. Lightning sets up the data module before the model, so the datasets are
    built on first use (by the loaders), after the hand-over.

    Each source is checked when it is read (`identity.check_dataset`: its tokenizer and shard sizes against
    its metadata.json), and `identities` lists what that check returns, one dict per source in source order:
    ``path``, ``tokenizer_sha256`` and ``fingerprint`` (both None for a dataset prepared before fingerprints),
    for checkpoints to record and a resumed run to compare.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 8,
        seq_len: int | None = None,
        num_workers: int = 1,
        seed: int = 42,
        sources: list[DataSource] | None = None,
        storage_options: dict | None = None,
        cache_dir: str | None = None,
        elastic: bool = False,
        fim_rate: float = 0.0,
        fim_spm_rate: float = 0.5,
    ) -> None:
        """
        Args:
            data_dir: a folder written by `lit-llm prepare` (holds train/, val/, tokenizer.json, metadata.json),
                or its ``s3://`` URL. Give this or ``sources``.
            batch_size: sequences per device per micro-step.
            seq_len: tokens per training sequence (default: the model's block_size).
            num_workers: data loader worker processes per device.
            seed: shuffling and mixing seed (the same seed resumes the same order).
            sources: several prepared datasets to mix, each with a weight (see `DataSource`).
            storage_options: options for the object storage client (for S3: boto3's, e.g. ``endpoint_url``).
            cache_dir: where remote datasets are cached locally (default: ``$LIT_LLM_CACHE`` or ~/.cache/lit-llm).
            elastic: train in an order that does not depend on the device count, so a run can resume on another
                number of processes (same global batch) and see the same sequences at every step, and a resume
                may change the mixture (a new stage). Sequences are read in a global random order: best with
                local data (or a cache that holds the whole dataset). Off: LitData's order.
            fim_rate: share of training documents rewritten for fill-in-the-middle (`lit_llm.data.fim`; e.g. 0.5;
                0 is off); needs data prepared with `lit-llm prepare --fim`. Validation stays left to right.
            fim_spm_rate: share of the rewritten documents in suffix-prefix-middle order, the rest prefix-suffix-middle.
        """
        super().__init__()
        self.sources = resolve_sources(data_dir, sources)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.num_workers = num_workers
        self.seed = seed
        self.storage_options = storage_options
        self.views = [local_view(source.path, storage_options, cache_dir) for source in self.sources]
        self.identities = [
            {"path": source.path, **check_dataset(view, source=source.path)}
            for source, view in zip(self.sources, self.views)
        ]
        self.tokenizer = shared_tokenizer(self.sources, self.views)
        check_fim_settings(fim_rate, fim_spm_rate, self.tokenizer, self.sources[0].path)
        self.fim_rate, self.fim_spm_rate = fim_rate, fim_spm_rate
        self.val_source_names = [source.name for source in self.sources]
        self.block_size: int | None = None  # the model's context, from `connect`
        self.elastic = elastic
        self.resumed: dict | None = None  # elastic: the order's state in the checkpoint resumed from

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def connect(self, block_size: int) -> None:
        """Told the model's context before any loader is built: data.seq_len defaults to it and may not exceed it."""
        if self.seq_len is not None and self.seq_len > block_size:
            raise ValueError(
                f"data.seq_len={self.seq_len} exceeds the model's block_size={block_size}; "
                "lower seq_len or raise block_size"
            )
        self.block_size = block_size

    @property
    def sequence_length(self) -> int:
        """Tokens per training sequence: data.seq_len, else the connected model's block_size."""
        if self.seq_len is None and self.block_size is None:
            raise ValueError("data.seq_len is needed when the data module is used without a model (or connect it)")
        return self.seq_len or self.block_size

    @cached_property
    def train_dataset(self) -> StreamingDataset | CombinedStreamingDataset | GlobalOrder:
        # the elastic order reads by index and shuffles itself
        datasets = [self._dataset(i, "train", shuffle=not self.elastic) for i in range(len(self.sources))]
        if self.fim_rate > 0:
            for dataset in datasets:  # LitData applies an item transform after reading each sequence
                dataset.transform = FimTransform(self.tokenizer, self.fim_rate, self.fim_spm_rate, self.seed)
        if self.elastic:
            return GlobalOrder(datasets, self.stage)
        if len(datasets) == 1:
            return datasets[0]
        weights = [source.weight for source in self.sources]
        return WeightedMixture(datasets, seed=self.seed, weights=weights, iterate_over_all=False)

    @cached_property
    def val_datasets(self) -> list[StreamingDataset]:
        return [self._dataset(i, "val", shuffle=False) for i in range(len(self.sources))]

    def _dataset(self, index: int, split: str, shuffle: bool) -> StreamingDataset:
        path, seq_len = self.sources[index].path, self.sequence_length
        self.check_one_batch(self.views[index] / split, f"{path.rstrip('/')}/{split}", seq_len + 1)
        return open_split(path, self.views[index], split, seq_len + 1, shuffle, self.seed, self.storage_options)

    def check_one_batch(self, split_dir: Path, where: str, sequence_tokens: int) -> None:
        """The loaders drop incomplete batches: a split without one whole batch per device would skip validation
        (no best checkpoint) or train nothing, and still exit 0."""
        devices = self.trainer.world_size if self.trainer is not None else 1
        sequences = count_sequences(split_dir, sequence_tokens)
        if sequences < self.batch_size * devices:
            larger = " (or a larger --val_fraction)" if where.endswith("/val") else ""
            raise ValueError(
                f"{where} holds {sequences} sequences of {sequence_tokens} tokens, fewer than one batch per device "
                f"needs: data.batch_size {self.batch_size} × {devices} device(s) = {self.batch_size * devices}; "
                f"prepare more data{larger}, or lower data.batch_size or data.seq_len"
            )

    def _loader(self, dataset: StreamingDataset | CombinedStreamingDataset) -> StreamingDataLoader:
        return StepNamingLoader(
            self,
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            drop_last=True,
            worker_init_fn=ignore_stop_signals,
        )

    def train_dataloader(self) -> StreamingDataLoader | ElasticLoader:
        if self.elastic:
            return ElasticLoader(
                self,
                self.train_dataset,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
                worker_init_fn=ignore_stop_signals,
            )
        return self._loader(self.train_dataset)

    # ---- the elastic order's position: sequences consumed, saved in every checkpoint ---------------------
    @cached_property
    def stage(self) -> Stage:
        """The mixture this session trains on, from the resumed position: the checkpoint's stage, or a new
        one when the sources, their weights, sizes or the seed changed (an annealing stage, say). Sources are
        known by their fingerprint (their path for a dataset prepared before fingerprints), so a source kept
        into a new stage continues its pass whatever its name or path there."""
        keys = [identity["fingerprint"] or identity["path"] for identity in self.identities]
        weights = [source.weight for source in self.sources]
        sizes = [count_sequences(view / "train", self.sequence_length + 1) for view in self.views]
        if self.resumed is None:
            return Stage(keys, weights, sizes, self.seed)
        previous = Stage(**self.resumed["stage"])
        position = self.position(self.trainer.global_step)
        stage = previous.next(keys, weights, sizes, self.seed, position)
        if stage is not previous and self.trainer.is_global_zero:  # stdout, with the run line: what runs
            names = dict(zip(keys, self.val_source_names))
            kept = ", ".join(
                f"{names[key]} from its sequence {n:,}" for key, n in stage.offsets.items() if key in names
            )
            mixture = ", ".join(f"{name} {weight:g}" for name, weight in zip(self.val_source_names, weights))
            print(
                f"data: a new stage from sequence {position:,} on: {mixture}" + (f"; continuing {kept}" if kept else "")
            )
        return stage

    def global_batch(self) -> int:
        trainer = self.trainer
        return self.batch_size * trainer.world_size * trainer.accumulate_grad_batches

    def position(self, step: int) -> int:
        """Sequences of the stream consumed when optimizer step ``step`` starts: from the resumed checkpoint's
        count, at this session's global batch (the same as before unless --resume_with_changes changed it)."""
        if self.resumed is None:  # a new run, or one resumed from a checkpoint of LitData's order
            return step * self.global_batch()
        return self.resumed["position"] + (step - self.resumed["step"]) * self.global_batch()

    def state_dict(self) -> dict:
        if not self.elastic or self.trainer is None:
            return {}
        step = self.trainer.global_step
        return {"elastic": {"position": self.position(step), "step": step, "stage": self.stage.state()}}

    def load_state_dict(self, state: dict) -> None:
        self.resumed = state.get("elastic")

    def val_dataloader(self) -> StreamingDataLoader | list[StreamingDataLoader]:
        loaders = [self._loader(dataset) for dataset in self.val_datasets]
        return loaders[0] if len(loaders) == 1 else loaders


class StepNamingLoader(StreamingDataLoader):
    """A damaged shard found mid-run stops it with the shard's name and the step, in one line. The error
    propagates before any checkpoint hook runs, so the last good checkpoint stays the newest one."""

    def __init__(self, datamodule: L.LightningDataModule, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.datamodule = datamodule

    def __iter__(self):
        return name_corrupt_shards(super().__iter__(), self.datamodule.trainer)


class ElasticLoader(torch.utils.data.DataLoader):
    """The elastic order's loader: each time Lightning starts iterating (once per fit: the stream is endless),
    the order learns this process's share of the global batch and where the run is, from the step."""

    def __init__(self, datamodule: TokenDataModule, dataset: GlobalOrder, **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        self.datamodule = datamodule

    def __iter__(self):
        trainer, order = self.datamodule.trainer, self.dataset
        order.start = self.datamodule.position(trainer.global_step)
        order.rank, order.world_size = trainer.global_rank, trainer.world_size
        order.batch_size, order.accumulation = self.batch_size, trainer.accumulate_grad_batches
        return name_corrupt_shards(super().__iter__(), trainer)


def name_corrupt_shards(batches, trainer):
    """The batches, with a CorruptShardError said in one line with the step (see StepNamingLoader)."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except CorruptShardError as err:
            # from a worker process, the message holds the worker's traceback; its last line is ours
            reason = str(err).strip().splitlines()[-1].removeprefix(f"{CorruptShardError.__module__}.")
            reason = reason.removeprefix(f"{CorruptShardError.__name__}: ")
            step = trainer.global_step if trainer is not None else "?"
            resume = "; nothing was saved after the last checkpoint: mend the data, resume with --ckpt_path last"
            raise CorruptShardError(f"at step {step}: {reason}{resume if step else ''}") from None
        yield batch


def count_sequences(split_dir: Path, sequence_tokens: int) -> int:
    """Sequences of a split, counted from its index as LitData's TokensLoader cuts them: whole sequences within
    each chunk (asking the dataset its len() would fix its per-worker layout before the loader sets it)."""
    return sum(chunk["dim"] // sequence_tokens for chunk in read_index(split_dir)["chunks"])


class WeightedMixture(CombinedStreamingDataset):
    """LitData's weighted mixture, with a length: about the sequences drawn before the first source runs out.

    Without a length, Lightning fetches one batch ahead to spot the epoch's end, LitData counts that batch
    as consumed, and a run resumed from a checkpoint would skip it. With one, Lightning does not prefetch;
    an epoch still ends early if a source runs out first.
    """

    def get_len(self, num_workers: int, batch_size: int) -> int:
        super().get_len(num_workers, batch_size)
        return int(
            min(
                dataset.get_len(num_workers, batch_size) / weight
                for dataset, weight in zip(self._datasets, self._weights)
            )
        )


def resolve_sources(data_dir: str | None, sources: list[DataSource] | None) -> list[DataSource]:
    """The datasets to read, each with a weight and a unique name; one clear error for a bad list."""
    if (data_dir is None) == (not sources):
        raise ValueError("give data.data_dir (one dataset) or data.sources (a weighted list), not both and not neither")
    sources = (
        [DataSource(data_dir)]
        if data_dir is not None
        else [DataSource(**s) if isinstance(s, dict) else s for s in sources]
    )
    named = [DataSource(s.path, s.weight, s.name or Path(s.path.rstrip("/")).name) for s in sources]
    for source in named:
        if not source.weight > 0:
            raise ValueError(f"data.sources: {source.path} has weight {source.weight}; weights must be positive")
    names = [s.name for s in named]
    if len(set(names)) != len(names):
        raise ValueError(f"data.sources names {names} repeat; give each source a distinct `name`")
    return named


def shared_tokenizer(sources: list[DataSource], views: list[Path]) -> Tokenizer:
    """The mixture's one tokenizer: token ids from different tokenizers would mean different things."""
    tokenizers = [read_tokenizer(view) for view in views]
    for source, tokenizer in zip(sources[1:], tokenizers[1:]):
        if tokenizer.to_json() != tokenizers[0].to_json():
            raise ValueError(
                f"data.sources: {source.path} uses a different tokenizer than {sources[0].path}; "
                f"prepare it with --tokenizer {sources[0].path}/tokenizer.json"
            )
    return tokenizers[0]
