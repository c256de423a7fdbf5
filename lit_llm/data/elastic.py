"""A training order that does not depend on the number of processes: what elastic resume needs.

The run's sequences form one global stream. Position ``p`` of the stream is a function of the seed, the
sources, their weights and ``p`` only: which source it comes from (a mixture's blocks), and which of that
source's sequences (a pseudo-random permutation of the source per pass over it). Optimizer step ``s`` trains
on positions ``[start + s·G, start + (s+1)·G)`` for a global batch of G sequences, however they are split
over ranks, loader workers and accumulation micro-batches, so a run resumed on another number of processes
(the same global batch) trains on the same sequences at every step, and the data position is one number:
the sequences consumed (OLMo-core's data loader state does the same).

Stages: when a resume changes the mixture (an annealing stage on other sources or weights), the new mixture
starts at the current position, and a source kept from the previous stage continues its permutation where it
stopped (``Stage.offsets``), so none of its sequences repeats before its pass over the data ends.

Plain numpy: no Lightning (the data module in train/ drives it), no state beyond the numbers in ``Stage``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

BLOCK = 1024  # positions per block of a mixture: each block holds each source's exact share, shuffled
ROUNDS = 4  # Feistel rounds: enough to decorrelate neighbouring positions for a shuffle (not for cryptography)


def stable_key(*parts) -> int:
    """A 64-bit key from the parts' text: the same in every process and Python session (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def permute(indices: np.ndarray, n: int, key: int) -> np.ndarray:
    """A pseudo-random permutation of ``range(n)`` applied to ``indices``: a Feistel network on the smallest
    power-of-four domain holding ``n``, walking cycles until the value falls below ``n``. O(1) memory at
    any dataset size, where a stored permutation of 10⁹ sequences would take gigabytes per process."""
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    round_keys = [np.uint64(stable_key(key, r)) for r in range(ROUNDS)]
    out = np.asarray(indices, dtype=np.uint64).copy()
    todo = np.ones(len(out), dtype=bool)
    with np.errstate(over="ignore"):
        while todo.any():
            x = out[todo]
            left, right = x >> np.uint64(half), x & mask
            for round_key in round_keys:
                left, right = right, left ^ (mix(right ^ round_key) & mask)
            out[todo] = (left << np.uint64(half)) | right
            todo = out >= n
    return out.astype(np.int64)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit changes about half the output bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass
class Stage:
    """The mixture in use from stream position ``start`` on: the sources (``names``: a stable identity of
    each, such as its fingerprint), their weights, their sizes (in sequences), and ``offsets``: sequences of
    each source consumed before this stage began."""

    names: list[str]
    weights: list[float]
    sizes: list[int]
    seed: int
    start: int = 0
    offsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = sum(self.weights)
        self.shares = [w / total for w in self.weights]
        # the largest share takes the rounding: it never runs short within a block
        self.largest = int(np.argmax(self.shares))
        if (len(self.shares) - 1) > self.shares[self.largest] * BLOCK:
            raise ValueError(f"a mixture of {len(self.shares)} sources needs fewer sources or a larger BLOCK")

    def quota(self, positions: int) -> np.ndarray:
        """Sequences of each source among this stage's first ``positions`` stream positions."""
        counts = np.array([int(positions * share) for share in self.shares], dtype=np.int64)
        counts[self.largest] = positions - (counts.sum() - counts[self.largest])
        return counts

    def consumed(self, position: int) -> dict[str, int]:
        """Sequences of each source consumed before stream ``position`` (offsets included)."""
        local = max(0, position - self.start)
        block, offset = divmod(local, BLOCK)
        counts = self.quota(block * BLOCK)
        if len(self.names) > 1 and offset:  # the part of the current block already trained on
            labels, _ = self.block_labels(block)
            counts = counts + np.bincount(labels[:offset], minlength=len(self.names))
        elif len(self.names) == 1:
            counts = self.quota(local)
        return {name: self.offsets.get(name, 0) + int(c) for name, c in zip(self.names, counts)}

    def next(self, names: list[str], weights: list[float], sizes: list[int], seed: int, position: int) -> Stage:
        """The stage a resume at ``position`` continues with: this one, or a new mixture starting there."""
        if (names, list(weights), sizes, seed) == (self.names, list(self.weights), self.sizes, self.seed):
            return self
        return Stage(names, list(weights), sizes, seed, position, self.consumed(position))

    def state(self) -> dict:
        return {"names": self.names, "weights": self.weights, "sizes": self.sizes, "seed": self.seed,
                "start": self.start, "offsets": self.offsets}  # fmt: skip

    def sample(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source index, sequence index in that source) of each stream position (all at or past ``start``)."""
        local = positions - self.start
        if len(self.names) == 1:
            sources, ranks = np.zeros(len(local), dtype=np.int64), local
        else:
            sources, ranks = np.empty(len(local), dtype=np.int64), np.empty(len(local), dtype=np.int64)
            for block in np.unique(local // BLOCK):
                labels, first = self.block_labels(int(block))
                at = local // BLOCK == block
                offset = local[at] - block * BLOCK
                # the rank of a position within its source: the source's count before the block, plus its
                # earlier positions in the block
                earlier = np.stack([np.cumsum(labels == s) - (labels == s) for s in range(len(self.names))])
                sources[at] = labels[offset]
                ranks[at] = first[labels[offset]] + earlier[labels[offset], offset]
        indices = np.empty(len(local), dtype=np.int64)
        for s, name in enumerate(self.names):
            at = sources == s
            consumed = self.offsets.get(name, 0) + ranks[at]
            passes, within = consumed // self.sizes[s], consumed % self.sizes[s]
            for epoch in np.unique(passes):
                this = passes == epoch
                within[this] = permute(within[this], self.sizes[s], stable_key(self.seed, name, int(epoch)))
            indices[at] = within
        return sources, indices

    def block_labels(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """A block's source labels (each source's exact share, shuffled) and each source's count before it."""
        first, last = self.quota(block * BLOCK), self.quota((block + 1) * BLOCK)
        labels = np.repeat(np.arange(len(self.names)), last - first)
        np.random.default_rng(stable_key(self.seed, "block", self.start, block)).shuffle(labels)
        return labels, first


class GlobalOrder(torch.utils.data.IterableDataset):
    """Sequences in the stream's order, this process's share: rank ``rank`` of ``world_size``, micro-batches
    of ``batch_size``, ``accumulation`` micro-batches per optimizer step, from stream position ``start``.
    Micro-batch ``m`` of a step, on rank ``r``, holds that step's positions ``(m·world_size + r)·batch_size``
    onwards, so a step's global batch is the same set whatever the split. Loader worker ``w`` of ``W`` yields
    micro-batches ``w, w + W, ...``, the order in which torch's DataLoader collects them.

    ``datasets`` are indexable (LitData's StreamingDataset); set ``start`` and the split before iterating.
    Endless: the stream cycles each source, so Lightning's epoch never ends and the step alone places it.
    """

    def __init__(self, datasets: list, stage: Stage) -> None:
        self.datasets = datasets
        self.stage = stage
        self.start = 0
        self.rank, self.world_size, self.batch_size, self.accumulation = 0, 1, 1, 1

    def positions(self, micro_batch: int) -> np.ndarray:
        """The stream positions of this process's ``micro_batch``-th micro-batch from ``start``."""
        step, micro = divmod(micro_batch, self.accumulation)
        global_batch = self.batch_size * self.world_size * self.accumulation
        first = self.start + step * global_batch + (micro * self.world_size + self.rank) * self.batch_size
        return np.arange(first, first + self.batch_size)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        micro_batch = worker
        while True:  # placed 64 micro-batches at a time: numpy's per-call cost, paid once for all of them
            batches = [micro_batch + i * workers for i in range(64)]
            sources, indices = self.stage.sample(np.concatenate([self.positions(m) for m in batches]))
            for source, index in zip(sources, indices):
                yield self.datasets[source][int(index)]
            micro_batch += 64 * workers
