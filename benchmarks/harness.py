"""What every benchmark script shares: clocks, paired ratios with intervals, markdown tables, the machine.

A shared machine's load changes from second to second, so the scripts interleave what they compare
(step by step, or run by run) and compare neighbours: ``paired_ratio`` is the median of the ratios of
paired measurements, with a bootstrap interval.
"""

from __future__ import annotations

import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import time
from itertools import pairwise
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO / "data" / "tinyshakespeare.txt"  # the shipped corpus every benchmark trains on


class StepClock:
    """Step-start timestamps: CUDA events on a GPU (resolved at the end, so no sync in the loop).

    On a CPU it also keeps the process's CPU time: on a machine shared with other jobs the wall clock
    counts their load too, while CPU time counts only this process's work (all its threads; DataLoader
    worker processes are not included).
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list = []
        self.cpu_marks: list[float] = []

    def tick(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())
            self.cpu_marks.append(time.process_time())

    def intervals(self) -> tuple[list[float], list[float]]:
        """Seconds between consecutive ticks: wall clock, and CPU time (empty on a GPU)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1e3 for a, b in pairwise(self.marks)], []
        return [b - a for a, b in pairwise(self.marks)], [b - a for a, b in pairwise(self.cpu_marks)]


def time_call(function, *args) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of ``function(*args)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def run_timed(command: list[str], cwd: Path, stdout, stderr, env: dict | None = None) -> tuple[float, float, int]:
    """Run a whole process: (wall seconds from start to exit, its CPU seconds, its exit code). CPU time from
    ``wait4``: the process's own (and its children's), even with other processes started beside it."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=stdout, stderr=stderr, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def cpu_seconds_with_children() -> float:
    """User + system time of this process and of its finished children (worker or benchmarked processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class TimeLimit(BaseException):
    """Raised on SIGTERM (`timeout`), so that what was measured so far is still reported."""


def stop_on_sigterm() -> None:
    def handler(signum, frame):
        raise TimeLimit()

    signal.signal(signal.SIGTERM, handler)


def _proc_status(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def rss_bytes() -> int:
    """This process's resident set now (Linux)."""
    return _proc_status("VmRSS")


def reset_peak_rss() -> None:
    """Start the peak resident set (VmHWM) afresh at the current one (Linux: /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_since_reset() -> int:
    return _proc_status("VmHWM")


def paired_ratio(
    numerators: list[float], denominators: list[float], minimum: int = 10, resamples: int = 2000
) -> tuple[float, float, float] | None:
    """Median of the pairwise ratios (measurement i of one over measurement i of the other, taken next to
    each other) and its 95% bootstrap interval; pairing cancels most of a shared machine's load. None when
    the lists differ in length or hold fewer than ``minimum`` pairs."""
    if len(numerators) != len(denominators) or len(numerators) < minimum:
        return None
    per_pair = [a / b for a, b in zip(numerators, denominators)]
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(per_pair, k=len(per_pair))) for _ in range(resamples))
    return statistics.median(per_pair), medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; with no rows, its header alone (print rows with ``markdown_row`` as they come)."""
    return "\n".join([markdown_row(header), "|" + "---|" * len(header), *map(markdown_row, rows)])


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_description(device: torch.device | None = None) -> str:
    """The chip, or on a CPU its model, cores, torch threads and the load other jobs put on it now."""
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"{cpu_model()} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads, "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("lightning", "litdata"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
