"""The chunked loss is the plain loss, computed without whole logits: same value, same gradients, same fit."""

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_llm.cli import main
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.objective import chunked_next_token_loss, next_token_loss
from tests.conftest import REPO


def loss_and_gradients(model: GPT, batch: torch.Tensor, chunked: bool, chunk_tokens: int | None = None):
    model.zero_grad(set_to_none=True)
    inputs, targets = batch[:, :-1], batch[:, 1:]
    if chunked:
        loss = chunked_next_token_loss(model.hidden_states(inputs), model.lm_head.weight, targets, chunk_tokens)
    else:
        loss = next_token_loss(model(inputs), targets)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("chunk_tokens", [7, 64, None])  # uneven chunks, several, and the default (one chunk)
def test_chunked_loss_equals_plain_loss_and_gradients(chunk_tokens):
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=300, dropout=0.0))
    batch = torch.randint(0, 300, (3, 17))
    plain, plain_grads = loss_and_gradients(model, batch, chunked=False)
    chunked, chunked_grads = loss_and_gradients(model, batch, chunked=True, chunk_tokens=chunk_tokens)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    assert plain_grads.keys() == chunked_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_chunked_loss_without_gradients_is_the_plain_loss():
    torch.manual_seed(0)
    hidden, weight = torch.randn(2, 9, 16), torch.randn(50, 16)
    targets = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        chunked = chunked_next_token_loss(hidden, weight, targets, chunk_tokens=4)
    torch.testing.assert_close(chunked, next_token_loss(hidden @ weight.T, targets))


def val_losses(run_dir) -> list[float]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [e.value for e in events.Scalars("val/loss")]


def test_fit_with_the_chunked_loss_trains_as_the_plain_one(byte_dataset, tmp_path):
    def fit(loss: str) -> list[float]:
        run_dir = tmp_path / loss
        main(
            [
                "fit",
                "--config",
                str(REPO / "experiments" / "shakespeare-char-cpu.yaml"),
                "--model.architecture.n_layer=1",
                "--model.architecture.block_size=32",
                "--model.warmup_steps=2",
                "--model.sample_tokens=0",
                f"--model.loss={loss}",
                "--data.batch_size=4",
                "--data.num_workers=0",
                f"--data.data_dir={byte_dataset}",
                "--trainer.max_steps=6",
                "--trainer.val_check_interval=3",
                "--trainer.limit_val_batches=2",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
                f"--trainer.default_root_dir={run_dir}",
            ]
        )
        return val_losses(run_dir)

    plain, chunked = fit("plain"), fit("chunked")
    assert len(plain) == len(chunked) >= 2
    assert chunked == pytest.approx(plain, rel=1e-4)
    assert chunked[-1] < chunked[0]  # it learns


def test_fit_rejects_an_unknown_loss(byte_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit, match="plain"):
        main(["fit", "--config", str(REPO / "experiments" / "shakespeare-char-cpu.yaml"), "--model.loss=fused"])
