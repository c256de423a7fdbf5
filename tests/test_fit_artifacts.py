"""What one short `lit-llm fit` leaves behind, checked against its own logs: best.ckpt holds the lowest
val loss, the HPARAMS tab holds the resolved configuration and the val loss, checkpoints stay
weights_only-loadable, and the checkpoint exports to a transformers folder with the same logits."""

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from lit_llm.checkpoint.load import load_checkpoint
from lit_llm.cli import main
from lit_llm.train.records import HPARAMS_METRIC
from tests.conftest import fit_args


@pytest.fixture(scope="module")
def run_dir(byte_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fit") / "run"
    main(
        fit_args(byte_dataset, run_dir, {
            "trainer.max_steps": 24, "trainer.val_check_interval": 6, "trainer.limit_val_batches": 2,
            "trainer.log_every_n_steps": 6, "model.architecture.n_layer": 1, "model.architecture.block_size": 32,
            # high and constant: val loss goes up and down, so the best is not simply the last
            "model.learning_rate": 0.02, "model.lr_schedule": "constant", "model.warmup_steps": 0,
        })
    )  # fmt: skip
    return run_dir


def events(run_dir):
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        yield from EventFileLoader(str(path)).Load()


def scalars(run_dir, tag: str) -> list[tuple[int, float]]:
    return [(e.step, v.tensor.float_val[0]) for e in events(run_dir) for v in e.summary.value if v.tag == tag]


def test_best_checkpoint_holds_the_lowest_val_loss(run_dir):
    val = scalars(run_dir, "val/loss")
    assert len(val) == 4  # steps 6, 12, 18, 24
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    state = next(s for k, s in best["callbacks"].items() if "'monitor': 'val/loss'" in k)
    assert float(state["best_model_score"]) == pytest.approx(min(v for _, v in val))
    model, _ = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    last, _ = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    if min(val, key=lambda sv: sv[1]) != val[-1]:  # then best.ckpt is not the final model
        assert not torch.equal(model.wte.weight, last.wte.weight)


def test_hparams_tab_holds_the_resolved_config_and_final_val_loss(run_dir):
    summaries = [
        plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
        for e in events(run_dir)
        for v in e.summary.value
        if v.metadata.plugin_data.plugin_name == "hparams"
    ]
    experiment = next(s.experiment for s in summaries if s.HasField("experiment"))
    assert [m.name.tag for m in experiment.metric_infos] == [HPARAMS_METRIC]
    session = next(s.session_start_info for s in summaries if s.HasField("session_start_info"))
    assert session.hparams["model/learning_rate"].number_value == pytest.approx(0.02)
    assert session.hparams["trainer/max_steps"].number_value == 24
    assert session.hparams["model/architecture/n_layer"].number_value == 1
    assert len(scalars(run_dir, HPARAMS_METRIC)) == 4  # the tab shows the metric's latest value: the final val loss
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # plain types only
    assert "hyper_parameters" not in checkpoint


def test_export_of_a_checkpoint_written_by_fit(run_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    main(["export", "--checkpoint", str(run_dir), "--output_dir", str(tmp_path / "hf")])
    model, tokenizer = load_checkpoint(run_dir)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    x = torch.tensor([tokenizer.encode("ROMEO: What say you, my lord?")])
    with torch.no_grad():
        assert (hf_model(x).logits - model(x)).abs().max().item() < 1e-4
