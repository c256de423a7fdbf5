"""The speedrun's features: Muon (+AdamW), the architecture switches, their export, and stopping at a target."""

import copy
import subprocess
import sys

import pytest
import torch

from lit_llm.checkpoint.files import CHECKPOINT_KEY
from lit_llm.model.config import ModelConfig
from lit_llm.model.model import GPT
from lit_llm.model.objective import LRSchedule, next_token_loss
from lit_llm.model.tokenizer import byte_tokenizer
from lit_llm.train.module import LitLLM
from lit_llm.train.optim import MuonWithAdamW, build_optimizer, muon_parameters
from tests.conftest import REPO, SHAKESPEARE, fit_args

TINY = dict(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=320)


def shakespeare_batch(batch_size: int = 8, seq_len: int = 32, offset: int = 0) -> torch.Tensor:
    ids = byte_tokenizer().encode(SHAKESPEARE.read_text()[offset : offset + batch_size * (seq_len + 1)])
    return torch.tensor(ids).view(batch_size, seq_len + 1)


def muon(model: GPT, **kwargs) -> MuonWithAdamW:
    return build_optimizer(model, "muon", learning_rate=3e-3, weight_decay=0.1, betas=(0.9, 0.99), **kwargs)


def step(model: GPT, optimizer: torch.optim.Optimizer, batch: torch.Tensor) -> float:
    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = next_token_loss(model(batch[:, :-1]), batch[:, 1:])
        loss.backward()
        return loss

    return optimizer.step(closure).item()


# ---- Muon ---------------------------------------------------------------------------------------------
def test_muon_optimises_block_matrices_and_adamw_the_rest():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY))
    optimizer = muon(model)
    batch = shakespeare_batch()
    losses = [step(model, optimizer, batch) for _ in range(20)]
    assert losses[-1] < 0.6 * losses[0], losses
    matrices = {id(p) for p in muon_parameters(model)}
    assert len(matrices) == 4 * TINY["n_layer"]  # qkv, attention proj, MLP fc, MLP proj
    for name, p in model.named_parameters():
        state = optimizer.state[p]
        if id(p) in matrices:
            assert set(state) == {"momentum_buffer"}, name
        else:  # embeddings (tied with the head) and norms
            assert {"exp_avg", "exp_avg_sq"} <= set(state), name


def test_muon_updates_a_matrix_by_an_orthogonalised_step():
    """A Muon step moves a block matrix by lr·sqrt(max(1, rows/cols)) times a matrix whose singular values are
    about 1 (Newton-Schulz is approximate and leaves the gradient's near-null directions small), however
    uneven the gradient's own are."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY))
    optimizer = build_optimizer(model, "muon", learning_rate=1e-3, weight_decay=0.0, betas=(0.9, 0.99), muon_lr=0.02)
    fc = model.blocks[0].mlp.fc.weight  # 256 × 64
    before = fc.detach().clone()
    step(model, optimizer, shakespeare_batch())
    gradient = torch.linalg.svdvals(fc.grad)
    update = torch.linalg.svdvals(fc.detach() - before) / (0.02 * 2)
    assert gradient.max() / gradient.median() > 10  # a few directions dominate the gradient ...
    assert (update > 0.5).float().mean() > 0.9 and update.max() < 1.3, update  # ... not the update


def test_muon_ns_steps_sets_how_far_each_update_is_orthogonalised():
    """``model.muon_ns_steps`` reaches torch's Muon: one Newton-Schulz iteration leaves most of the update's
    singular values far below 1, torch's default 5 brings nearly all of them close; below 1 is refused."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY))
    near_one = {}
    for ns_steps in (1, 5):
        trained = copy.deepcopy(model)
        settings = dict(learning_rate=1e-3, weight_decay=0.0, betas=(0.9, 0.99), muon_lr=0.02)
        optimizer = build_optimizer(trained, "muon", **settings, muon_ns_steps=ns_steps)
        assert [group["ns_steps"] for group in optimizer.muon.param_groups] == [ns_steps]
        fc = trained.blocks[0].mlp.fc.weight  # 256 × 64: Muon scales its update by sqrt(256 / 64) = 2
        before = fc.detach().clone()
        step(trained, optimizer, shakespeare_batch())
        near_one[ns_steps] = (torch.linalg.svdvals(fc.detach() - before) / (0.02 * 2) > 0.5).float().mean()
    assert near_one[1] < 0.3 and near_one[5] > 0.9, near_one
    with pytest.raises(ValueError, match=r"model.muon_ns_steps=0 must be at least 1"):
        LitLLM(optimizer="muon", muon_ns_steps=0)


def test_schedule_scales_both_learning_rates_and_state_round_trips():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY))
    optimizer = muon(model, muon_lr=0.05)
    schedule = LRSchedule(3e-3, 0.0, 2, "wsd", 0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule.at(s, 8) / 3e-3)
    batch, later = shakespeare_batch(), shakespeare_batch(offset=5000)
    for _ in range(6):
        step(model, optimizer, batch)
        scheduler.step()
    factor = schedule.at(6, 8) / 3e-3
    assert [g["lr"] for g in optimizer.muon.param_groups] == [pytest.approx(0.05 * factor)]
    assert all(g["lr"] == pytest.approx(3e-3 * factor) for g in optimizer.adamw.param_groups)

    # A resumed optimizer (as from a checkpoint) continues exactly as the one that never stopped.
    resumed_model = copy.deepcopy(model)
    resumed = muon(resumed_model, muon_lr=0.05)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert resumed.muon.state is resumed.state and resumed.muon.param_groups[0] is resumed.param_groups[0]
    step(model, optimizer, later)
    step(resumed_model, resumed, later)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_muon_is_refused_where_matrices_are_sharded():
    with pytest.raises(ValueError, match="model.optimizer=muon .* fsdp2 shards .* use trainer.strategy ddp"):
        muon(GPT(ModelConfig(**TINY)), sharded=True)
    with pytest.raises(ValueError, match="model.optimizer='sgd' is unknown; choose adamw or muon"):
        build_optimizer(GPT(ModelConfig(**TINY)), "sgd", learning_rate=1e-3, weight_decay=0.0, betas=(0.9, 0.9))


def fit(byte_dataset, run_dir, *args: str) -> subprocess.CompletedProcess:
    settings = {"trainer.limit_val_batches": 2, "model.architecture.n_layer": 1, "data.batch_size": 4}
    command = [sys.executable, "-m", "lit_llm.cli", *fit_args(byte_dataset, run_dir, settings, *args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)


def test_muon_trains_under_two_process_ddp(byte_dataset, tmp_path):
    run = fit(
        byte_dataset,
        tmp_path / "run",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.max_steps=8",
        "--trainer.val_check_interval=4",
        "--model.optimizer=muon",
        "--model.muon_ns_steps=3",
        "--model.warmup_steps=2",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 8
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["ns_steps"] == 3  # the YAML's, not torch's 5
    state = checkpoint["optimizer_states"][0]["state"]
    # 4 Muon matrices of the one block (momentum only), then AdamW's parameters (moments).
    kinds = [frozenset(s) - {"step"} for _, s in sorted(state.items())]
    assert kinds.count(frozenset({"momentum_buffer"})) == 4
    assert kinds.count(frozenset({"exp_avg", "exp_avg_sq"})) == len(kinds) - 4


def test_muon_under_fsdp2_stops_with_one_line(byte_dataset, tmp_path):
    run = fit(
        byte_dataset, tmp_path / "run", "--trainer.strategy=fsdp2", "--trainer.max_steps=2", "--model.optimizer=muon"
    )
    assert run.returncode != 0
    assert run.stderr.splitlines()[-1].startswith(
        "lit-llm fit: error: model.optimizer=muon orthogonalises whole matrices, but fsdp2 shards each one"
    )


# ---- architecture switches ----------------------------------------------------------------------------
def twin(config: ModelConfig, **switches) -> tuple[GPT, GPT]:
    """A model and the same weights under other switches."""
    torch.manual_seed(0)
    plain = GPT(config).eval()
    switched = GPT(ModelConfig(**{**config.to_dict(), **switches})).eval()
    switched.load_state_dict(plain.state_dict())
    return plain, switched


def test_logit_softcap_squashes_the_logits_with_tanh():
    plain, capped = twin(ModelConfig(**TINY), logit_softcap=0.5)
    x = shakespeare_batch(2)[:, :-1]
    with torch.no_grad():
        raw, squashed = plain(x), capped(x)
    torch.testing.assert_close(squashed, 0.5 * torch.tanh(raw / 0.5))
    assert squashed.abs().max() < 0.5 < raw.abs().max()
    with pytest.raises(ValueError, match="logit_softcap=0 must be positive"):
        ModelConfig(**TINY, logit_softcap=0)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys(positions):
    config = ModelConfig(**TINY, positions=positions)
    x = shakespeare_batch(2)[:, :-1]
    for qk_norm in (False, True):
        torch.manual_seed(0)
        model = GPT(ModelConfig(**{**config.to_dict(), "qk_norm": qk_norm})).eval()
        with torch.no_grad():
            before = model(x)
            for block in model.blocks:  # scale the query and key rows of the fused qkv matrix
                block.attn.qkv.weight[: 2 * config.n_embd] *= 5.0
            same = torch.allclose(before, model(x), atol=1e-4)
        assert same == qk_norm


def test_zero_init_projections_start_every_block_as_the_identity():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY, zero_init_proj=True))
    for block in model.blocks:
        assert not block.attn.proj.weight.any() and not block.mlp.proj.weight.any()
        assert block.attn.qkv.weight.std() > 0.01
    x = shakespeare_batch(2)[:, :-1]
    embedded = model.wte(x) + model.wpe(torch.arange(x.size(1)))
    torch.testing.assert_close(model.hidden_states(x), model.norm_f(embedded))


def test_default_switches_leave_the_model_as_it_was():
    """Same init, same forward as before the switches existed (the v0.1 fixture in test_compat checks old
    checkpoints' logits; this checks a fresh model: the default init draws the same random numbers)."""
    config = ModelConfig(**TINY)
    assert (config.qk_norm, config.zero_init_proj, config.logit_softcap) == (False, False, None)
    torch.manual_seed(0)
    model = GPT(config)
    torch.manual_seed(0)
    explicit = GPT(ModelConfig(**TINY, qk_norm=False, zero_init_proj=False, logit_softcap=None))
    for a, b in zip(model.state_dict().values(), explicit.state_dict().values()):
        assert torch.equal(a, b)


# ---- export -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("switch", [{"qk_norm": True}, {"logit_softcap": 30.0}])
def test_export_refuses_switches_transformers_cannot_express(switch, tmp_path):
    pytest.importorskip("safetensors")
    from lit_llm.commands.export import export
    from tests.test_export import FAMILIES, save_checkpoint, tiny_config

    name = next(iter(switch))
    for family in FAMILIES.values():
        model = GPT(tiny_config({**family, **switch}, vocab_size=320))
        checkpoint = save_checkpoint(model, byte_tokenizer(), tmp_path / "model.ckpt")
        with pytest.raises(ValueError, match=f"cannot be exported: {name}=.* train with {name} off to export"):
            export(str(checkpoint), str(tmp_path / "hf"))
        assert not (tmp_path / "hf").exists()


def test_zero_init_projections_export_exactly(tmp_path):
    transformers = pytest.importorskip("transformers")
    from lit_llm.commands.export import export
    from tests.test_export import FAMILIES, save_checkpoint, tiny_config

    for name, family in FAMILIES.items():
        torch.manual_seed(0)
        model = GPT(tiny_config({**family, "zero_init_proj": True}, vocab_size=320))
        batch = shakespeare_batch(4, 64)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(3):  # trained a little: the projections are no longer zero
            step(model, optimizer, batch)
        assert model.blocks[0].attn.proj.weight.abs().max() > 0
        out = export(
            str(save_checkpoint(model.eval(), byte_tokenizer(), tmp_path / name / "m.ckpt")),
            str(tmp_path / name / "hf"),
        )
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
        x = batch[:, :-1]
        with torch.no_grad():
            assert (hf_model(x).logits - model(x)).abs().max() < 1e-4, name


# ---- stop at a target ---------------------------------------------------------------------------------
STOP_AT = "--trainer.callbacks+=lit_llm.train.early_stop.StopAtTarget"


def test_run_stops_at_the_first_validation_that_reaches_the_target(byte_dataset, tmp_path):
    # The untrained loss is ln(320) ≈ 5.8; 40 steps of AdamW at 1e-3 bring it well under 4 (see test_regression).
    run = fit(
        byte_dataset,
        tmp_path / "run",
        "--trainer.max_steps=200",
        "--trainer.val_check_interval=20",
        STOP_AT,
        "--trainer.callbacks.target=4.0",
        "--model.warmup_steps=5",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    step = checkpoint["global_step"]
    assert step in (20, 40, 60) and f"reached the target 4.0 at step {step}: stopping" in run.stderr
    assert checkpoint[CHECKPOINT_KEY]["model_config"]["n_layer"] == 1


def test_a_target_never_reached_runs_to_max_steps_and_a_wrong_metric_is_named(byte_dataset, tmp_path):
    run = fit(
        byte_dataset,
        tmp_path / "a",
        "--trainer.max_steps=10",
        "--trainer.val_check_interval=5",
        STOP_AT,
        "--trainer.callbacks.target=0.1",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    assert "reached the target" not in run.stderr
    run = fit(
        byte_dataset,
        tmp_path / "b",
        "--trainer.max_steps=10",
        "--trainer.val_check_interval=5",
        STOP_AT,
        "--trainer.callbacks.target=0.1",
        "--trainer.callbacks.monitor=val/los",
    )
    assert run.returncode != 0
    assert run.stderr.splitlines()[-1].startswith(
        "lit-llm fit: error: StopAtTarget monitors 'val/los', which validation did not log; logged: "
    )


# ---- the benchmark ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_speedrun_benchmark_times_both_processes_and_scores_the_whole_val_split(byte_dataset, tmp_path):
    import json

    command = [sys.executable, "-m", "benchmarks.speedrun", "--seeds", "1", "--reference_iters", "2"]
    command += ["--data_dir", str(byte_dataset), "--out_dir", str(tmp_path), "--json", str(tmp_path / "r.json")]
    command += ["--", "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--model.architecture.n_layer=1"]
    run = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    (reference,), (candidate,) = result["reference"], result["candidate"]
    assert reference["steps"] == 3 and candidate["steps"] == 2 and candidate["tokens"] == 2 * 32 * 64
    assert candidate["cpu_seconds"] > 0 and reference["cpu_seconds"] > 0
    assert result["summary"]["ratio"] == pytest.approx(candidate["seconds"] / reference["seconds"])
    assert result["summary"]["every_seed_reached_target"] is False  # two steps reach nothing near 1.88
    # near ln(vocab) after so few steps: 257 bytes for lit-llm, nanoGPT's own 65 characters for the reference
    assert 4.0 < candidate["val_loss"] < 6.5 and 3.8 < reference["val_loss"] < 4.6
