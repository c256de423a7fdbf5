"""The LightningModule's own behaviour: schedules, the non-finite guard, global batch derivation."""

import traceback

import lightning as L
import pytest
import torch

from lit_llm.model.objective import LRSchedule
from lit_llm.train.datamodule import TokenDataModule
from lit_llm.train.module import LitLLM, NonFiniteLossError

SMALL = dict(n_layer=1, n_head=2, n_embd=32, block_size=32)


def test_schedules():
    cosine = LRSchedule(peak=1.0, minimum=0.1, warmup_steps=10, name="cosine")
    assert cosine.at(0, 100) == pytest.approx(0.1) and cosine.at(9, 100) == pytest.approx(1.0)
    assert cosine.at(55, 100) == pytest.approx(0.55, abs=0.01) and cosine.at(100, 100) == pytest.approx(0.1)
    wsd = LRSchedule(peak=1.0, minimum=0.0, warmup_steps=10, name="wsd", decay_fraction=0.2)
    assert wsd.at(50, 100) == 1.0 and wsd.at(79, 100) == 1.0
    assert wsd.at(90, 100) == pytest.approx(0.5) and wsd.at(100, 100) == pytest.approx(0.0)
    constant = LRSchedule(peak=1.0, minimum=0.1, warmup_steps=10, name="constant")
    assert constant.at(99, 100) == 1.0


class InjectNaNGradient(L.Callback):
    """Poisons one gradient at the given optimizer steps and records whether the weights moved."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps
        self.moved: dict[int, bool] = {}

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step in self.steps:
            self.before = [p.detach().clone() for p in pl_module.parameters()]
            next(pl_module.parameters()).grad[0, 0] = float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step - 1
        if step in self.steps:
            self.moved[step] = any(not torch.equal(a, b) for a, b in zip(self.before, pl_module.parameters()))


def train(byte_dataset, tmp_path, callback, max_steps=12, **module_args):
    module = LitLLM(SMALL, warmup_steps=2, sample_tokens=0, **module_args)
    data = TokenDataModule(str(byte_dataset), batch_size=4, num_workers=0)
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        callbacks=[callback],
        default_root_dir=tmp_path,
        val_check_interval=5,
        check_val_every_n_epoch=None,
        limit_val_batches=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    trainer.fit(module, datamodule=data)
    return module, trainer


def test_non_finite_step_is_skipped_and_counted(byte_dataset, tmp_path):
    callback = InjectNaNGradient({3, 7})
    module, trainer = train(byte_dataset, tmp_path, callback)
    assert callback.moved == {3: False, 7: False}  # the poisoned steps changed no weight
    assert module.nonfinite.total() == 2 and trainer.global_step == 12
    assert all(torch.isfinite(p).all() for p in module.parameters())
    optimizer = trainer.optimizers[0]  # nor AdamW's state: 12 steps, 2 of them skipped
    assert optimizer.defaults["fused"] and hasattr(optimizer, "found_inf")  # skipped on the device
    assert all(optimizer.state[p]["step"] == 10 for p in module.parameters())
    assert all(torch.isfinite(v).all() for state in optimizer.state.values() for v in state.values())


def test_consecutive_non_finite_steps_stop_the_run(byte_dataset, tmp_path):
    with pytest.raises(
        NonFiniteLossError, match=r"3 consecutive steps .* Resume from the last good checkpoint \(.*best\.ckpt\)"
    ):
        train(byte_dataset, tmp_path, InjectNaNGradient({6, 7, 8}), max_nonfinite_steps=3)


class CountDeviceReads(L.Callback):
    """Counts tensor-to-host reads (``item``, ``bool``, ``tolist``, ...) by lit-llm or Lightning code from
    the start of each step whose metrics the logger does not write to the start of the next step. On a
    GPU each such read makes the host wait for the GPU, so these steps should make none.

    Lightning's progress bar converts its metrics to numbers every step, which is free only if they are
    host copies: those reads are left out here, and every progress-bar value LitLLM logs is checked to
    come from ``Tensor.cpu`` instead (on this CPU-only machine, ``cpu`` is made to copy).
    """

    READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")

    def __init__(self, monkeypatch) -> None:
        self.counting = False
        self.reads: list[str] = []
        self.host_copies: set[int] = set()  # storages that Tensor.cpu returned
        self.progress_bar_values: list[bool] = []  # per progress-bar log call: was it a host copy?
        for name in self.READS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(getattr(torch.Tensor, name), name))
        to_host, log = torch.Tensor.cpu, LitLLM.log

        def copying_cpu(tensor, *args, **kwargs):
            copy = to_host(tensor, *args, **kwargs).clone()
            self.host_copies.add(copy.untyped_storage().data_ptr())
            return copy

        def checked_log(module, name, value, *args, **kwargs):
            if kwargs.get("prog_bar") and module.trainer.training:
                self.progress_bar_values.append(value.untyped_storage().data_ptr() in self.host_copies)
            return log(module, name, value, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "cpu", copying_cpu)
        monkeypatch.setattr(LitLLM, "log", checked_log)

    def _counted(self, read, name):
        def counted(tensor, *args, **kwargs):
            if self.counting:
                callers = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-1]]
                ours = [c for c in callers if "lit_llm" in c or "lightning/pytorch" in c]
                if ours and not any(c.endswith(" convert_tensors_to_scalars") for c in callers):  # progress bar
                    self.reads.append(f"{name} from {ours[-1]}")
            return read(tensor, *args, **kwargs)

        return counted

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step + 1  # Lightning writes this step's metrics if it is a multiple of the interval
        logging = step % trainer.log_every_n_steps == 0 or step == trainer.max_steps
        self.counting = step > 2 and not logging


def logging_every_5_steps(tmp_path, callbacks: list) -> L.Trainer:
    """12 steps logged at 5, 10 and 12, with a progress bar and the TensorBoard logger on, as `lit-llm fit` runs."""
    return L.Trainer(
        max_steps=12,
        accelerator="cpu",
        callbacks=callbacks,
        default_root_dir=tmp_path,
        log_every_n_steps=5,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


def test_steps_between_logging_steps_never_wait_for_the_device(byte_dataset, tmp_path, monkeypatch):
    counter = CountDeviceReads(monkeypatch)
    module = LitLLM(SMALL, warmup_steps=2, sample_tokens=0)
    trainer = logging_every_5_steps(tmp_path, [counter])  # Lightning's own progress bar
    trainer.fit(module, datamodule=TokenDataModule(str(byte_dataset), batch_size=4, num_workers=0))
    assert counter.reads == []
    assert counter.progress_bar_values == [True, True, True]  # train/loss at steps 5, 10 and 12


def test_global_batch_sets_gradient_accumulation(byte_dataset, tmp_path):
    module, trainer = train(byte_dataset, tmp_path, L.Callback(), max_steps=3, global_batch_size=12)
    assert trainer.accumulate_grad_batches == 3  # 12 = micro batch 4 x 1 device x 3
    with pytest.raises(ValueError, match="global_batch_size=10 is not a multiple"):
        train(byte_dataset, tmp_path, L.Callback(), max_steps=3, global_batch_size=10)


def test_init_from_continues_an_existing_model(byte_dataset, tmp_path):
    source, trainer = train(byte_dataset, tmp_path / "source", L.Callback(), max_steps=4)
    checkpoint = tmp_path / "source.ckpt"
    trainer.save_checkpoint(checkpoint)
    continued = LitLLM("micro", init_from=str(checkpoint), sample_tokens=0)  # the checkpoint's shape wins
    L.Trainer(accelerator="cpu", logger=False, limit_val_batches=1, enable_progress_bar=False).validate(
        continued, datamodule=TokenDataModule(str(byte_dataset), batch_size=4, num_workers=0)
    )
    assert continued.config == source.config
    for (name, a), b in zip(source.model.state_dict().items(), continued.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_init_from_refuses_data_with_another_tokenizer(byte_dataset, shakespeare_slice, tmp_path):
    from lit_llm.data.prepare import prepare

    _, trainer = train(byte_dataset, tmp_path / "source", L.Callback(), max_steps=1)
    trainer.save_checkpoint(tmp_path / "source.ckpt")
    bpe_data = tmp_path / "bpe"
    prepare([str(shakespeare_slice)], str(bpe_data), tokenizer="bpe", vocab_size=300, num_workers=1)
    module = LitLLM(SMALL, init_from=str(tmp_path / "source.ckpt"))
    with pytest.raises(ValueError, match="prepared with another tokenizer"):
        L.Trainer(accelerator="cpu", logger=False).validate(
            module, datamodule=TokenDataModule(str(bpe_data), num_workers=0)
        )
