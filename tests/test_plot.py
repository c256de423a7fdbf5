"""lit-llm plot: curves from TensorBoard event files, the matplotlib extra, bits-per-byte, run summaries."""

import json
import math
import sys

import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from lit_llm.commands.plot import (
    bits_per_byte,
    plot,
    read_scalars,
    run_summary,
    smooth,
    split_bytes,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir, train_steps=range(0, 300, 10), val_steps=(100, 200, 300), start=0.0):
    writer = SummaryWriter(str(run_dir))
    for step in train_steps:
        writer.add_scalar("train/loss", 4.0 - step / 100, step, walltime=start + step)
        writer.add_scalar("train/lr", 1e-3, step, walltime=start + step)
    for step in val_steps:
        writer.add_scalar("val/loss", 4.2 - step / 100, step, walltime=start + step)
    writer.close()
    return run_dir


@pytest.fixture
def run(tmp_path):
    return write_run(tmp_path / "run")


def test_plot_writes_a_png_with_train_and_val_curves(run, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "images" / "loss.png"
    plot([str(run)], str(out))
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert out.stat().st_size < 100_000  # small enough to commit


def test_plot_compares_runs_and_gives_other_metrics_their_own_panel(run, tmp_path):
    pytest.importorskip("matplotlib")
    other = write_run(tmp_path / "other", val_steps=(150, 300))
    out = tmp_path / "both.png"
    plot([str(run), str(other)], str(out), tags=["train/loss", "val/loss", "train/lr"], smoothing=0.0, title="two runs")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_refuses_tags_the_run_never_logged(run, tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="none of the tags"):
        plot([str(run)], str(tmp_path / "x.png"), tags=["val/ppl"])
    assert not (tmp_path / "x.png").exists()


def test_missing_run_folder_is_a_clear_error(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot([str(tmp_path / "nope")], str(tmp_path / "x.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        plot([str(tmp_path / "empty")], str(tmp_path / "x.png"))


def test_without_matplotlib_the_error_names_the_extra(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "lit-llm\[plot\]"'):
        plot([str(run)], str(tmp_path / "x.png"))


def test_read_scalars_keeps_the_latest_value_of_a_resumed_step(tmp_path):
    run = tmp_path / "run"
    write_run(run, train_steps=[0, 10, 20], val_steps=[20])
    writer = SummaryWriter(str(run))  # a resumed run writes a second event file into the same folder
    writer.add_scalar("val/loss", 1.5, 20, walltime=1000.0)
    writer.add_scalar("val/loss", 1.2, 30, walltime=1010.0)
    writer.close()
    assert [(s, round(v, 4)) for s, v, _ in read_scalars(run, "val/loss")] == [(20, 1.5), (30, 1.2)]
    assert read_scalars(run, "val/ppl") == []


def test_read_scalars_finds_event_files_in_subfolders(tmp_path):
    write_run(tmp_path / "run" / "lightning_logs" / "version_0")
    assert len(read_scalars(tmp_path / "run", "val/loss")) == 3


def test_smooth_is_a_debiased_moving_average():
    assert smooth([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    assert smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([0.0, 10.0], 0.5) == pytest.approx([0.0, 10 * 0.5 / 0.75])


def write_metadata(folder, val):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps({"splits": {"train": {"tokens": 1, "sources": []}, "val": val}}))
    return folder


def test_bits_per_byte_uses_the_byte_count_prepare_recorded(tmp_path):
    data = write_metadata(tmp_path / "data", {"tokens": 250, "bytes": 1000, "sources": ["/nowhere.txt"]})
    assert split_bytes(data) == 1000
    assert bits_per_byte(math.log(2) * 2.0, data) == pytest.approx(0.5)  # 2 bits/token × 250 tokens / 1000 bytes


def test_bits_per_byte_of_an_older_dataset_rereads_its_source_text(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("abcdefghij" * 9 + "é" * 10)  # 90 ASCII characters, then 10 two-byte ones
    data = write_metadata(tmp_path / "data", {"tokens": 21, "sources": [f"{text}[80:None]"]})
    assert split_bytes(data) == 10 + 20
    assert bits_per_byte(math.log(2), data) == pytest.approx(21 / 30)
    with pytest.raises(FileNotFoundError, match="is not a prepared dataset; run `lit-llm prepare"):
        bits_per_byte(1.0, tmp_path)


def test_run_summary_reads_the_numbers_a_results_table_needs(run):
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "trainer": {"devices": 1},
                "model": {"architecture": {"block_size": 64}},
                "data": {"data_dir": "somewhere", "batch_size": 12},
            }
        )
    )
    summary = run_summary(run)  # the fake run logged its last validation at step index 300: 301 steps done
    assert summary["steps"] == 301 and summary["tokens"] == 301 * 12 * 64
    assert summary["val_loss"] == pytest.approx(1.2) and summary["best_val_loss"] == pytest.approx(1.2)
    assert summary["train_seconds"] == pytest.approx(290.0)
