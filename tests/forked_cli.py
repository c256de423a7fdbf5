"""Many `lit-llm` commands, each a real process, forked from one interpreter that has imported the stack once.

Every command gets its own process: its own working directory, exit status, stdout and stderr (tracebacks
included), exactly as the console script would run it (`sys.argv` set, `lit_llm.cli.main()` called, the exit
status Python would give). What is shared is the ~8 CPU-seconds of importing torch, Lightning, LitData and
jsonargparse, which a table of fifty commands would otherwise pay fifty times. `tests/test_console.py` runs
the installed script itself.

    results = run_commands([Command(["generate", "--checkpoint", "x.ckpt"], cwd=folder), ...])
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Command:
    args: list[str]
    cwd: str | Path


def run_commands(commands: list[Command], parallel: int = 3, timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """Run every command through one forking server; a command past ``timeout`` seconds is killed and fails."""
    with tempfile.TemporaryDirectory(prefix="forked-cli-") as folder:
        requests = [
            {**asdict(c), "cwd": str(c.cwd), "stdout": f"{folder}/{i}.out", "stderr": f"{folder}/{i}.err"}
            for i, c in enumerate(commands)
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
        server = subprocess.run(
            [sys.executable, __file__, str(parallel), str(timeout)],
            input=json.dumps(requests), capture_output=True, text=True, env=env, timeout=timeout * len(commands),
        )  # fmt: skip
        if server.returncode != 0:
            raise RuntimeError(f"the forking server failed:\n{server.stderr}")
        codes = json.loads(server.stdout.splitlines()[-1])
        return [
            subprocess.CompletedProcess(
                ["lit-llm", *r["args"]], code, Path(r["stdout"]).read_text(), Path(r["stderr"]).read_text()
            )
            for r, code in zip(requests, codes, strict=True)
        ]


def run_in_child(request: dict) -> None:
    """In the forked process: become `lit-llm ARGS` in the request's folder, then exit as Python would."""
    from lit_llm.cli import main

    os.chdir(request["cwd"])
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    sys.argv = [shutil.which("lit-llm") or "lit-llm", *request["args"]]
    code = 0
    try:
        main()
    except SystemExit as exit:  # sys.exit("message") prints the message and exits 1, as the interpreter does
        if exit.code is None or isinstance(exit.code, int):
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(requests: list[dict], parallel: int, timeout: float) -> list[int]:
    """Fork a child per request, at most ``parallel`` at a time; a child's code is its exit status
    (or -signal, as subprocess reports it)."""
    import lit_llm.cli  # noqa: F401  (the commands' imports, paid once here, inherited by every child)
    import lit_llm.commands.generate  # noqa: F401
    import lit_llm.data.prepare  # noqa: F401
    import lit_llm.train.cli  # noqa: F401

    codes: list[int | None] = [None] * len(requests)
    running: dict[int, tuple[int, float]] = {}  # pid -> (request index, start time)
    pending = list(range(len(requests)))
    killed: set[int] = set()
    while pending or running:
        while pending and len(running) < parallel:
            index = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                run_in_child(requests[index])
            running[pid] = (index, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            codes[running.pop(pid)[0]] = os.waitstatus_to_exitcode(status)
            continue
        for pid, (index, started) in running.items():
            if time.monotonic() - started > timeout and index not in killed:
                killed.add(index)
                os.kill(pid, signal.SIGKILL)
                with open(requests[index]["stderr"], "a") as err:
                    err.write(f"\ntimed out after {timeout:.0f}s\n")
        time.sleep(0.02)
    return codes


if __name__ == "__main__":
    print(json.dumps(serve(json.load(sys.stdin), int(sys.argv[1]), float(sys.argv[2]))))
