"""One run per folder, and nothing of it lost or mixed up: the lock, a failed save, a resume with changed
settings (refused, or applied with --resume_with_changes), every resolved config kept, secrets redacted,
and TensorBoard's HPARAMS tab written once, whole, at the start."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from lit_llm.checkpoint.files import save_atomically
from lit_llm.cli import main
from lit_llm.errors import CheckpointSaveError
from lit_llm.model.objective import LRSchedule
from lit_llm.train.records import REDACTED, flatten, is_secret
from lit_llm.train.run_folder import LOCK, RunFolderLock
from tests.conftest import fit_args
from tests.forked_cli import Command, run_commands

TINY = {
    "model.architecture.n_layer": 1, "model.architecture.n_embd": 32, "model.architecture.block_size": 32,
    "data.batch_size": 4, "trainer.limit_val_batches": 1, "trainer.enable_model_summary": False,
    "trainer.log_every_n_steps": 1, "model.warmup_steps": 0, "trainer.val_check_interval": 4,
}  # fmt: skip
SECRET = "wJalrXUtnFEMI-not-a-real-key"


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped): no process of this host has it now."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ---- the lock -------------------------------------------------------------------------------------------


def test_a_second_fit_on_a_locked_run_folder_is_refused_and_writes_nothing(tmp_path, small_dataset):
    run_dir = tmp_path / "run"
    with RunFolderLock(run_dir):  # this test's process is the live writer
        (result,) = run_commands(
            [Command(fit_args(small_dataset, run_dir, {**TINY, "trainer.max_steps": 2}), tmp_path)]
        )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"run folder {run_dir} is in use by process {os.getpid()} on {socket.gethostname()}" in line
    assert "another --trainer.default_root_dir" in line
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK]  # no config, no events, no checkpoints


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pid = dead_pid()
    (run_dir / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "since": "earlier"}))
    with RunFolderLock(run_dir):
        assert json.loads((run_dir / LOCK).read_text())["pid"] == os.getpid()
    assert f"taking over the lock left by process {pid} on {socket.gethostname()}" in capsys.readouterr().out
    with RunFolderLock(run_dir):  # released: taken again, silently
        pass
    assert "taking over" not in capsys.readouterr().out


def test_without_flock_the_record_decides(tmp_path, monkeypatch):
    """File systems without flock (some Lustre mounts): a live holder on this host refuses, a dead one or
    the same SLURM job (a requeue, perhaps on another node) is taken over, another host's refuses."""
    import fcntl

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    here = socket.gethostname()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        cases = [
            ({"host": here, "pid": sleeper.pid}, None, False),
            ({"host": here, "pid": dead_pid()}, None, True),
            ({"host": "node-7", "pid": 1, "slurm_job": "4242"}, "4242", True),
            ({"host": "node-7", "pid": 1, "slurm_job": "4242"}, "999", False),
        ]
        for record, job, taken in cases:
            (run_dir / LOCK).write_text(json.dumps(record))
            monkeypatch.setenv("SLURM_JOB_ID", job) if job else monkeypatch.delenv("SLURM_JOB_ID", raising=False)
            if taken:
                RunFolderLock(run_dir).__enter__().release()
            else:
                with pytest.raises(FileExistsError, match=f"in use by process {record['pid']} on {record['host']}"):
                    RunFolderLock(run_dir).acquire()
    finally:
        sleeper.kill()


# ---- a failed save --------------------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB file system of its own (tmpfs; needs root, as CI runs): room for one small checkpoint."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_save_on_a_full_disk_removes_its_temp_file_and_keeps_the_previous_checkpoint(full_disk):
    folder = full_disk / "run" / "checkpoints"
    save_atomically({"global_step": 10, "w": torch.zeros(1000)}, folder / "step-000010.ckpt")
    with pytest.raises(CheckpointSaveError) as error:
        save_atomically({"global_step": 20, "w": torch.zeros(100_000)}, folder / "last.ckpt")  # 400 kB
    assert str(error.value) == (
        f"no space left on device: cannot save {folder / 'last.ckpt'} "
        f"(previous checkpoint kept: {folder / 'step-000010.ckpt'})"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["step-000010.ckpt"]  # no temporary file left
    assert torch.load(folder / "step-000010.ckpt", weights_only=True)["global_step"] == 10


def test_fit_on_a_full_disk_says_so_in_one_line(full_disk, small_dataset, capsys):
    args = fit_args(small_dataset, full_disk / "run", {**TINY, "trainer.max_steps": 2, "model.architecture.n_embd": 64})
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert str(exit_info.value).startswith("lit-llm fit: error: no space left on device: cannot save ")
    assert str(exit_info.value).endswith("(no earlier checkpoint exists)")
    assert not list(full_disk.rglob("*.tmp-*"))


# ---- resume: changed settings, configs, hparams, secrets -------------------------------------------------


@pytest.fixture(scope="module")
def resumed_run(small_dataset, tmp_path_factory) -> dict:
    """A run of 6 steps with credentials in data.storage_options, resumed to 12 with another learning rate and
    --resume_with_changes, after a refused resume without it."""
    run_dir = tmp_path_factory.mktemp("resumed") / "run"
    options = json.dumps({"aws_secret_access_key": SECRET, "endpoint_url": "http://127.0.0.1:9"})
    first = {**TINY, "trainer.max_steps": 6, "model.learning_rate": 0.001}  # cosine, no warmup
    main(fit_args(small_dataset, run_dir, first, "--data.storage_options", options))
    config = (run_dir / "config.yaml").read_bytes()
    changed = {**first, "trainer.max_steps": 12, "model.learning_rate": 0.004}
    with pytest.raises(SystemExit) as refused:
        main(fit_args(small_dataset, run_dir, changed, "--data.storage_options", options))
    main(fit_args(small_dataset, run_dir, changed, "--data.storage_options", options, "--resume_with_changes"))
    return {"run_dir": run_dir, "refused": refused.value, "first_config": config}


def test_a_resume_with_changed_settings_is_refused_naming_each(resumed_run):
    refused = resumed_run["refused"]
    assert refused.code == 2
    assert "trainer.max_steps 6 in the checkpoint, 12 now; model.learning_rate 0.001 in the checkpoint, 0.004 now" in (
        str(refused)
    )
    assert "--resume_with_changes" in str(refused)


def test_resume_with_changes_applies_the_new_learning_rate_and_schedule(resumed_run):
    lr = dict(scalars(resumed_run["run_dir"], "train/lr"))
    before, after = LRSchedule(0.001, 1e-4, 0, "cosine"), LRSchedule(0.004, 1e-4, 0, "cosine")
    assert [lr[s] for s in range(6)] == pytest.approx([before.at(s, 6) for s in range(6)])
    # the new peak rate over the new length, from the resumed step on (not the checkpoint's rate and length)
    assert [lr[s] for s in range(6, 12)] == pytest.approx([after.at(s, 12) for s in range(6, 12)])


def test_every_resolved_config_is_kept_and_secrets_are_redacted_everywhere(resumed_run):
    run_dir = resumed_run["run_dir"]
    assert (run_dir / "config.yaml").read_bytes() == resumed_run["first_config"]  # the start's, never rewritten
    resumed = yaml.safe_load((run_dir / "config-resume-1.yaml").read_text())
    assert resumed["model"]["learning_rate"] == 0.004 and resumed["trainer"]["max_steps"] == 12
    assert resumed["data"]["storage_options"] == {
        "aws_secret_access_key": REDACTED,
        "endpoint_url": "http://127.0.0.1:9",
    }
    assert not (run_dir / "config-resume-2.yaml").exists()  # the refused resume wrote nothing
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) >= 6  # configs, events, checkpoints
    assert [p.name for p in files if SECRET.encode() in p.read_bytes()] == []


def test_hparams_are_written_once_whole_at_the_start(resumed_run):
    run_dir = resumed_run["run_dir"]
    summaries = [
        (path.name, plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content))
        for path in sorted(run_dir.glob("events.out.tfevents.*"))
        for e in EventFileLoader(str(path)).Load()
        for v in e.summary.value
        if v.metadata.plugin_data.plugin_name == "hparams"
    ]
    first_events = min(p.name for p in run_dir.glob("events.out.tfevents.*"))
    assert [(name, s.WhichOneof("data")) for name, s in summaries] == [
        (first_events, "experiment"), (first_events, "session_start_info"), (first_events, "session_end_info")
    ]  # fmt: skip
    assert [m.name.tag for m in summaries[0][1].experiment.metric_infos] == ["val/loss"]
    hparams = summaries[1][1].session_start_info.hparams
    config = flatten(yaml.safe_load(resumed_run["first_config"]))
    expected = {key for key in config if key.split("/")[0] in ("seed_everything", "trainer", "model", "data")}
    assert expected <= set(hparams)  # every key of the resolved config, not a part of it
    assert hparams["model/learning_rate"].number_value == pytest.approx(0.001)
    assert hparams["data/storage_options/aws_secret_access_key"].string_value == REDACTED


def test_secret_looking_keys():
    assert all(map(is_secret, ["aws_secret_access_key", "accessKeyId", "session_token", "password", "api_key"]))
    assert not any(map(is_secret, ["sample_tokens", "tokenizer", "monitor", "max_new_tokens", "endpoint_url"]))


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """A tag's (step, value) pairs over all event files, a later file's value winning for a step."""
    values = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*"), key=lambda p: int(p.name.split(".")[3])):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.tensor.float_val[0]
    return sorted(values.items())
