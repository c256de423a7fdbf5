"""Two "nodes" on localhost through torchrun, as a multi-node job starts on a cluster."""

import socket
import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import fit_args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_with_torchrun(byte_dataset, tmp_path):
    port = free_port()
    run_dir = tmp_path / "run"
    run = fit_args(byte_dataset, run_dir, {
        "trainer.strategy": "ddp", "trainer.num_nodes": 2, "trainer.devices": 1, "trainer.max_steps": 6,
        "trainer.val_check_interval": 100, "trainer.limit_val_batches": 2, "trainer.log_every_n_steps": 1,
        "model.architecture.n_layer": 1, "model.global_batch_size": 8, "data.batch_size": 2,
    })  # fmt: skip
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                "-m",
                "lit_llm.cli",
                *run,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    # the global batch of 8 is kept on 2 nodes: micro batch 2 x 2 processes x 2 accumulation steps
    assert "global batch 8 sequences = micro batch 2 × 2 device(s) × 2 accumulation step(s)" in outputs[0]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")][-1] == 5
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
