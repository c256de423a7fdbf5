"""One writer per run folder: an exclusive lock on RUN/.lock for as long as `lit-llm fit` runs, and the
refusal to train into a folder that holds something other than a run to resume.

The lock is an ``flock`` on a file that also records who holds it (host, pid, SLURM job, start time), so a
refusal can say which process has the folder. The kernel releases an ``flock`` however its process ends
(kill -9 included), so a lock left by a dead process is never in the way: the next run takes it over and
says so. A SLURM requeue starts a new process after the old one ended, so it takes the lock like any rerun.
On a file system without ``flock`` (some Lustre mounts), the record alone decides: a holder on this host that
is no longer running, or one of the same SLURM job (a requeue), is taken over; any other holder refuses.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path

LOCK = ".lock"


class RunFolderLock:
    """The exclusive right to write ``run_dir``, from ``acquire`` until ``release`` or the process's end."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            previous = read_record(fd)
            if not self.lock(fd, previous):
                raise FileExistsError(in_use_message(self.run_dir, previous))
            if previous and previous.get("pid") != os.getpid():
                print(f"{self.run_dir}: taking over the lock left by {describe(previous)}, which has ended", flush=True)
            write_record(fd, own_record())
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def lock(self, fd: int, previous: dict | None) -> bool:
        """True once this process holds the folder; False if a live process does."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as err:  # the file system has no flock: judge by the record
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            return previous is None or has_ended(previous)

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # a released lock records no holder
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def own_record() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job": slurm_job(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def slurm_job() -> str | None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array_job else os.environ.get("SLURM_JOB_ID")


def read_record(fd: int) -> dict | None:
    raw = os.pread(fd, 4096, 0)
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None  # a record cut short by a crash: no holder to name


def write_record(fd: int, record: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    os.fsync(fd)


def has_ended(record: dict) -> bool:
    """Whether the process a record names is gone, as far as this host can tell (flock-less file systems)."""
    if record.get("slurm_job") and record["slurm_job"] == slurm_job():
        return True  # the same SLURM job, requeued: its earlier run has ended
    if record.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError):
        return False
    return False


def describe(record: dict) -> str:
    job = f", SLURM job {record['slurm_job']}" if record.get("slurm_job") else ""
    return f"process {record.get('pid')} on {record.get('host')}{job} (since {record.get('since')})"


def in_use_message(run_dir: Path, holder: dict | None) -> str:
    who = describe(holder) if holder else "another process"
    return (
        f"run folder {run_dir} is in use by {who}; wait for that run to end or stop it, or use another "
        f"--trainer.default_root_dir (if no such process exists, delete {run_dir / LOCK})"
    )


def check_nothing_to_overwrite(run_dir: Path, given: list[Path]) -> None:
    """A run that starts from step 0 needs an empty (or new) folder: training over files that hold no
    checkpoint would interleave a second curve with the first one's events and replace its config. The
    files this command was given (its experiment YAMLs) and the files its output goes to (`> RUN/fit.log`,
    as `lit-llm ladder` does) may be there."""
    if not run_dir.is_dir():
        return
    own = {file_id(os.stat(path)) for path in given} | {file_id(os.fstat(fd)) for fd in (1, 2) if is_file(fd)}
    found = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK and file_id(p.lstat()) not in own)
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise FileExistsError(
            f"run folder {run_dir} is not empty ({shown}) but holds no checkpoint to resume from; remove it to start "
            "over, or use another --trainer.default_root_dir"
        )


def file_id(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def is_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:  # closed
        return False
