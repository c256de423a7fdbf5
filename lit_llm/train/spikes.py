"""Skip-step defences against loss spikes: the guard that skips (and counts) optimizer steps with a
non-finite gradient norm or a flagged spike, and the detector that flags spikes against a window of recent
steps. Both decide on the device, without a host sync; `LitLLM` feeds them once per optimizer step."""

from __future__ import annotations

import torch


class NonFiniteGuard:
    """Skips optimizer steps whose gradient norm is not finite, or that a ``SpikeDetector`` flags, and counts
    them, without a host sync.

    Reading a GPU value makes the host wait for the GPU, so nothing here is read per step: a fused AdamW
    skips the step on the device (its ``found_inf`` input, as AMP's GradScaler drives it: no update, no
    step count), and the counts stay on the device until ``read`` (on logging steps). Other optimizers
    have no such input; for them the step's gradients are dropped, which reads the decision every step.
    """

    def __init__(self) -> None:
        self.skipped_steps = 0  # skipped steps of the run up to the last read
        # on the device: current run of non-finite steps, longest such run, skipped steps (since the read)
        self.counts: torch.Tensor | None = None

    def record(
        self, optimizer: torch.optim.Optimizer, grad_norm: torch.Tensor, spike: torch.Tensor | None = None
    ) -> None:
        nonfinite = ~torch.isfinite(grad_norm)
        skip = nonfinite if spike is None else nonfinite | spike
        if optimizer.defaults.get("fused"):
            optimizer.found_inf = skip.float()
        elif skip:
            optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without a gradient untouched
        if self.counts is None:
            self.counts = torch.zeros(3, dtype=torch.long, device=grad_norm.device)
        run = (self.counts[0] + 1) * nonfinite.long()  # only non-finite steps stop the run (max_nonfinite_steps)
        self.counts = torch.stack([run, torch.maximum(self.counts[1], run), self.counts[2] + skip.long()])

    def read(self) -> tuple[int, int]:
        """(longest run of consecutive non-finite steps, steps skipped) since the last read."""
        if self.counts is None:
            return 0, 0
        run, longest, skipped = self.counts.tolist()
        self.counts = self.counts.new_tensor([run, 0, 0])
        self.skipped_steps += skipped
        return longest, skipped

    def total(self) -> int:
        """Skipped steps of the run, those not read yet included."""
        return self.skipped_steps + (int(self.counts[2]) if self.counts is not None else 0)


class SpikeDetector:
    """Flags a step whose loss or gradient norm is more than ``sigma`` standard deviations above the mean of
    the last ``window`` steps (OLMo-core's skip-step optimizer), on the device, without a host sync.

    Fed values that every rank shares (the loss averaged over ranks, the global gradient norm), every rank
    flags the same steps. Every finite step enters the window, flagged ones too, as in OLMo-core: a lasting
    shift in the loss (a new data mixture) is then absorbed within a window instead of skipping every step
    from then on. Nothing is flagged until the window is full. The window is part of the checkpoint
    (``state_dict``), so a resumed run flags exactly the steps the uninterrupted run would have.
    """

    def __init__(self, sigma: float, window: int) -> None:
        if sigma <= 0 or window < 2:
            raise ValueError(
                f"spike_skip_sigma={sigma} and spike_skip_window={window}: the threshold must be positive and "
                "the window at least 2 steps (or spike_skip_sigma null to turn skipping off)"
            )
        self.sigma, self.window = sigma, window
        self.values: torch.Tensor | None = None  # (window, 2): loss and grad norm of the last steps, oldest first
        self.filled: torch.Tensor | None = None  # how many of them are real (up to ``window``)

    def check(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
        """Whether this step is a spike (a device bool), then add it to the window."""
        current = torch.stack([loss.float(), grad_norm.float()])
        if self.values is None:
            self.values = current.new_zeros(self.window, 2)
            self.filled = torch.zeros((), dtype=torch.long, device=current.device)
        self.values, self.filled = self.values.to(current.device), self.filled.to(current.device)
        std, mean = torch.std_mean(self.values, dim=0)
        spike = (self.filled >= self.window) & (current > mean + self.sigma * std).any()
        finite = torch.isfinite(current).all()
        self.values = torch.where(finite, torch.cat([self.values[1:], current[None]]), self.values)
        self.filled = self.filled + finite.long()
        return spike

    def state_dict(self) -> dict:
        """Plain types only, so checkpoints load with torch.load(weights_only=True)."""
        if self.values is None:
            return {}
        return {"values": self.values.tolist(), "filled": int(self.filled)}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if len(state["values"]) != self.window:
            raise ValueError(
                f"the checkpoint's spike window holds {len(state['values'])} steps but model.spike_skip_window is "
                f"{self.window}; resume with spike_skip_window {len(state['values'])}"
            )
        self.values = torch.tensor(state["values"], dtype=torch.float32)
        self.filled = torch.tensor(state["filled"])
