"""Preemption: a real SIGTERM (or SLURM's SIGUSR1) to a running `lit-llm fit` saves a checkpoint at the
current step and exits; the same command line, unchanged, resumes it, and every later step's loss equals
an uninterrupted run's."""

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from lit_llm.checkpoint.files import checkpoint_step
from tests.test_resume import LAUNCH, MAX_STEPS, assert_same_losses, fit_command, losses_by_step, reference_losses

EVERY = ["--checkpoint.every_n_train_steps", "5"]  # periodic saves time the steps: the signal lands between two


def interrupt(command: list[str], run_dir: Path, signum: int, env=None, group: bool = False) -> tuple[int, str]:
    """Start a run, send ``signum`` about two steps after step 10's checkpoint (between two periodic
    ones) to its main process (as Kubernetes signals a container's first process) or to all its processes
    (``group``: as SLURM signals every process of a job step, data loader workers included), and wait for
    it to exit."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    deadline, seen = time.monotonic() + 300, {}
    while 10 not in seen:
        for step in (5, 10):
            if step not in seen and (run_dir / "checkpoints" / f"step-{step:06d}.ckpt").exists():
                seen[step] = time.monotonic()
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    time.sleep(2 * (seen[10] - seen.get(5, seen[10])) / 5)
    os.killpg(process.pid, signum) if group else process.send_signal(signum)
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process.returncode, output


def resume_and_compare(command: list[str], run_dir: Path, expected: dict[int, float], env=None) -> float:
    """Run the very same command again; it must resume from the newest checkpoint and match the reference."""
    stopped_at = checkpoint_step(run_dir / "checkpoints" / "last.ckpt")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"(step {stopped_at})" in result.stdout, result.stdout[-2000:]
    largest = assert_same_losses(expected, losses_by_step(run_dir), range(MAX_STEPS))
    print(f"resumed from step {stopped_at}: max |loss difference| {largest:.3g}")  # shown with -s
    return largest


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["single", "ddp"])
def test_sigterm_saves_the_current_step_and_the_same_command_resumes(small_dataset, tmp_path_factory, tmp_path, launch):
    expected = reference_losses(small_dataset, tmp_path_factory, launch)
    run_dir = tmp_path / "run"
    command = fit_command(small_dataset, run_dir, *LAUNCH[launch], *EVERY)
    returncode, output = interrupt(command, run_dir, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    stopped_at = checkpoint_step(run_dir / "checkpoints" / "last.ckpt")
    assert 10 < stopped_at < MAX_STEPS  # the step the signal came in, not the last periodic one
    assert f"SIGTERM: saved {run_dir / 'checkpoints' / 'last.ckpt'} at step {stopped_at}" in output
    assert not list(run_dir.glob("hpc_ckpt_*"))  # Lightning's own handler did not run
    resume_and_compare(command, run_dir, expected)


@pytest.mark.slow
def test_ctrl_c_saves_the_current_step_exits_130_and_the_same_command_resumes(
    small_dataset, tmp_path_factory, tmp_path
):
    """Ctrl-C in a terminal: SIGINT to every process of the foreground group, data loader workers included."""
    expected = reference_losses(small_dataset, tmp_path_factory, "single")
    run_dir = tmp_path / "run"
    command = fit_command(small_dataset, run_dir, *EVERY)
    returncode, output = interrupt(command, run_dir, signal.SIGINT, group=True)
    assert returncode == 128 + signal.SIGINT, output[-3000:]
    stopped_at = checkpoint_step(run_dir / "checkpoints" / "last.ckpt")
    assert 10 < stopped_at < MAX_STEPS
    assert f"SIGINT: saved {run_dir / 'checkpoints' / 'last.ckpt'} at step {stopped_at}" in output
    assert "graceful shutdown" not in output  # Lightning's KeyboardInterrupt path, which saved nothing
    resume_and_compare(command, run_dir, expected)


@pytest.mark.slow
def test_slurm_warning_signal_saves_requeues_and_the_same_command_resumes(small_dataset, tmp_path_factory, tmp_path):
    """SLURM simulated: its environment variables (Lightning picks its SLURMEnvironment), SIGUSR1 as
    `#SBATCH --signal=SIGUSR1@120` sends it, and an `scontrol` on PATH that records the requeue."""
    expected = reference_losses(small_dataset, tmp_path_factory, "single")
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol-calls"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "lit-llm",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
    }
    run_dir = tmp_path / "run"
    command = fit_command(small_dataset, run_dir, *EVERY)
    returncode, output = interrupt(command, run_dir, signal.SIGUSR1, env=env, group=True)
    assert returncode == 128 + signal.SIGUSR1, output[-3000:]
    assert 10 < checkpoint_step(run_dir / "checkpoints" / "last.ckpt") < MAX_STEPS
    assert calls.read_text().split() == ["requeue", "4242"]
    assert "SIGUSR1: saved" in output and "requeued SLURM job 4242" in output
    assert not list(run_dir.glob("hpc_ckpt_*"))
    resume_and_compare(command, run_dir, expected, env=env)
