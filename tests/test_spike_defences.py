"""Loss-spike defences: the z-loss, and skipping a step whose loss or gradient norm spikes above the recent
window (exact against an independent run without the spike, the same on every DDP rank, across a resume)."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch

from lit_llm.model.objective import chunked_next_token_loss_with_z, next_token_loss, next_token_loss_with_z
from lit_llm.train.datamodule import TokenDataModule
from lit_llm.train.module import LitLLM
from lit_llm.train.spikes import SpikeDetector
from tests.conftest import REPO

SMALL = dict(n_layer=1, n_head=2, n_embd=32, block_size=32)


# ---- z-loss -------------------------------------------------------------------------------------
def test_z_loss_adds_the_squared_log_normaliser_and_the_chunked_form_has_the_same_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(2, 10, 16, requires_grad=True)
    head = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (2, 10))
    plain = next_token_loss_with_z(hidden @ head.T, targets, z_loss=0.1)
    log_normaliser = torch.logsumexp(hidden @ head.T, dim=-1)
    torch.testing.assert_close(plain.cross_entropy, next_token_loss(hidden @ head.T, targets))
    torch.testing.assert_close(plain.z_loss, 0.1 * log_normaliser.square().mean())
    expected = torch.autograd.grad(plain.total, (hidden, head))

    chunked = chunked_next_token_loss_with_z(hidden, head, targets, z_loss=0.1)  # 3 chunks of 7 tokens
    for got, want in zip(chunked, plain):
        torch.testing.assert_close(got, want)
    for got, want in zip(torch.autograd.grad(chunked.total, (hidden, head)), expected):
        torch.testing.assert_close(got, want)


def short_fit(data_dir, tmp_path, max_steps: int, callbacks=(), data=None, **module_args) -> tuple[LitLLM, L.Trainer]:
    module = LitLLM(SMALL, sample_tokens=0, **{"warmup_steps": 2, **module_args})
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        callbacks=list(callbacks),
        default_root_dir=tmp_path,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    L.seed_everything(1337)  # the same initial weights in every run
    trainer.fit(module, datamodule=data or TokenDataModule(str(data_dir), batch_size=4, num_workers=0))
    return module, trainer


def test_z_loss_pulls_the_log_normaliser_towards_zero_and_is_logged(byte_dataset, tmp_path):
    """The same 15 steps with and without a (large) z-loss: with it, the logsumexp of the logits ends far
    closer to 0 (about half the square here); train/z_loss is logged and train/loss stays the cross-entropy."""
    squared = {}
    for z_loss in (0.0, 1.0):
        module, trainer = short_fit(byte_dataset, tmp_path / str(z_loss), 15, learning_rate=1e-2, z_loss=z_loss)
        batch = next(iter(trainer.datamodule.train_dataloader())).long()
        with torch.no_grad():
            logits = module.model(batch[:, :-1])
        squared[z_loss] = torch.logsumexp(logits, dim=-1).square().mean().item()
    assert squared[1.0] < 0.75 * squared[0.0], squared
    metrics = trainer.callback_metrics
    assert 0 < metrics["train/z_loss"] < squared[0.0]
    assert metrics["train/loss"] > 2.0  # a byte-level cross-entropy, not the z-loss


# ---- skipping spikes ----------------------------------------------------------------------------
class FixedBatches(TokenDataModule):
    """A TokenDataModule that trains on the given batches, in order (validation as usual)."""

    def __init__(self, data_dir, batches: list[torch.Tensor]) -> None:
        super().__init__(str(data_dir), batch_size=4, num_workers=0)
        self.batches = batches

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None)  # each element is a batch


class Record(L.Callback):
    """Each step's training loss, and whether the step changed any weight."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.moved: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].item())
        self.moved.append(any(not torch.equal(a, b) for a, b in zip(self.before, pl_module.parameters())))


STEPS, SPIKE_AT = 16, 10


def test_a_spike_batch_is_skipped_and_the_run_otherwise_equals_one_without_it(byte_dataset, tmp_path):
    """Run A trains on batches 0..9, then a spike batch (one token repeated), then batches 10..15; run B,
    independent and with no spike defence, on batches 0..15 alone. A skips the spike step (no weight moves)
    and nothing else, so its other steps have B's losses and both end with the same weights."""
    loader = TokenDataModule(str(byte_dataset), batch_size=4, num_workers=0)
    loader.connect(block_size=SMALL["block_size"])
    batches = [batch for batch, _ in zip(loader.train_dataloader(), range(STEPS))]
    spike = torch.full_like(batches[0], 200)  # 'È' bytes: never in the text
    settings = dict(learning_rate=3e-3, lr_schedule="constant")

    with_spike, without = Record(), Record()
    a, trainer = short_fit(
        byte_dataset,
        tmp_path / "a",
        STEPS + 1,
        [with_spike],
        FixedBatches(byte_dataset, batches[:SPIKE_AT] + [spike] + batches[SPIKE_AT:]),
        spike_skip_sigma=6.0,
        spike_skip_window=8,
        **settings,
    )
    b, _ = short_fit(byte_dataset, tmp_path / "b", STEPS, [without], FixedBatches(byte_dataset, batches), **settings)

    assert with_spike.moved == [step != SPIKE_AT for step in range(STEPS + 1)]
    assert a.nonfinite.total() == 1 and trainer.callback_metrics["train/skipped_steps"] == 1
    assert with_spike.losses[SPIKE_AT] > max(without.losses[SPIKE_AT - 4 : SPIKE_AT]) + 0.5
    assert with_spike.losses[:SPIKE_AT] + with_spike.losses[SPIKE_AT + 1 :] == without.losses
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_the_window_resumes_from_a_checkpoint():
    """A detector restored from another's state (as a checkpoint carries it) takes the same decisions."""
    values = [(3.0 - 0.01 * i, 1.0 + 0.02 * (i % 3)) for i in range(12)]
    running, restored = SpikeDetector(sigma=4.0, window=8), SpikeDetector(sigma=4.0, window=8)
    for loss, norm in values[:10]:
        running.check(torch.tensor(loss), torch.tensor(norm))
    restored.load_state_dict(running.state_dict())
    for loss, norm in [*values[10:], (5.0, 1.0), (2.9, 9.0), (2.9, 1.01)]:
        decisions = [d.check(torch.tensor(loss), torch.tensor(norm)).item() for d in (running, restored)]
        assert decisions[0] == decisions[1]
    assert [running.check(torch.tensor(x), torch.tensor(1.0)).item() for x in (2.85, 9.0)] == [False, True]


def test_a_window_of_another_size_is_refused_on_resume():
    saved = SpikeDetector(sigma=4.0, window=8)
    saved.check(torch.tensor(1.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match="spike window holds 8 steps but model.spike_skip_window is 16"):
        SpikeDetector(sigma=4.0, window=16).load_state_dict(saved.state_dict())


# ---- DDP and resume, as `lit-llm fit` runs --------------------------------------------------------
class SpikeLoss(L.Callback):
    """Multiplies ``rank``'s logits by 30 at the optimizer steps ``steps``: that rank's loss and gradients
    spike, as a bad batch on one rank makes them. Writes parameter digests as PoisonLoss does."""

    def __init__(self, steps: list[int], rank: int, digests: str) -> None:
        from tests.test_distributed_guards import PoisonLoss

        self.digests = PoisonLoss(steps, rank, digests)  # its digests, and its hook's life cycle
        self.steps, self.rank = set(steps), rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.digests.steps = set()  # digests only: the hook is this class's
        self.digests.on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if trainer.global_step in self.steps and trainer.global_rank == self.rank and self.digests.hook is None:
            self.digests.hook = pl_module.model.register_forward_hook(lambda module, args, out: out * 30)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.digests.steps = self.steps
        self.digests.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


# The first spike once the 8-step window is full; the second after the first has left the window (a spike in
# a window of 8 raises its deviation enough to hide a second one as large) and after the step-14 checkpoint.
SPIKED = (8, 17)


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["ddp", "fsdp2"])
def test_spikes_on_one_rank_are_skipped_on_both_and_the_window_survives_a_resume(
    small_dataset, tmp_path, monkeypatch, launch
):
    """2 processes: rank 1's loss spikes at steps 8 and 17. The run is killed after the step-14 checkpoint
    and resumed; the window (8 steps) is full at step 17 only if it came back with the checkpoint, so the
    second spike is skipped only then. Both ranks keep their weights (their shards under FSDP2) over exactly
    those steps; DDP's replicas stay identical."""
    from tests.test_distributed_guards import read_digests, scalar_values
    from tests.test_resume import LAUNCH, fit_command, kill_after_checkpoint, run

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))  # SpikeLoss
    run_dir, digests = tmp_path / "run", tmp_path / "digests"
    spike = [
        "--trainer.callbacks+=tests.test_spike_defences.SpikeLoss",
        f"--trainer.callbacks.steps={list(SPIKED)}",
        "--trainer.callbacks.rank=1",
        f"--trainer.callbacks.digests={digests}",
        "--model.spike_skip_sigma=6",
        "--model.spike_skip_window=8",
        "--checkpoint.every_n_train_steps=14",
    ]
    command = fit_command(small_dataset, run_dir, *LAUNCH[launch], "--trainer.max_steps", "20", *spike)
    kill_after_checkpoint(command, run_dir / "checkpoints" / "step-000014.ckpt")
    run(command)  # the same command resumes from step 14

    skipped = scalar_values(run_dir, "train/skipped_steps")
    assert skipped[7] == 0 and skipped[8] == 1 and skipped[16] == 1 and skipped[19] == 2
    for rank in (0, 1):
        by_step = read_digests(digests, rank)
        for step in range(19):
            assert (by_step[step + 1] == by_step[step]) == (step in SPIKED), (rank, step)
    if launch == "ddp":
        assert read_digests(digests, 0) == read_digests(digests, 1)
