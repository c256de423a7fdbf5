"""`lit-llm serve`: an OpenAI-compatible completion server for editors and tools (docs/serve.md)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal


def serve(
    checkpoint: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    dtype: Literal["auto", "float32", "bfloat16"] = "auto",
    model_name: str | None = None,
    threads: int | None = None,
) -> None:
    """Serve a checkpoint over OpenAI's completions API: POST /v1/completions (prompt, suffix for infilling,
    max_tokens, temperature, top_p, stop, stream, seed) and GET /v1/models, until Ctrl-C.

    Args:
        checkpoint: a .ckpt file, a run folder (uses its checkpoints/last.ckpt) or a Hugging Face model folder.
        host: address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface, unauthenticated).
        port: TCP port to listen on.
        device: cpu, cuda or auto.
        dtype: float32, bfloat16, or auto (bfloat16 on a GPU that supports it, else float32).
        model_name: the id /v1/models reports (default: the checkpoint's run folder or file name).
        threads: CPU threads for torch (default: torch's choice). A small model decodes one token at a time
            faster on 1 thread, and far faster on a busy machine, where threads wait on each other.
    """
    try:
        import uvicorn

        from lit_llm.serve.app import build_app
    except ImportError as err:
        raise ImportError(f"lit-llm serve needs {err.name}: pip install 'lit-llm[serve]'") from None
    import torch

    from lit_llm.checkpoint.load import load_checkpoint, resolve_checkpoint
    from lit_llm.planning.hardware import resolve_device, resolve_dtype

    resolve_checkpoint(checkpoint)  # both before loading the model: a mistake shows in a second, not after the load
    if threads is not None and threads < 1:
        raise ValueError(f"--threads {threads} must be at least 1 (1 suits a small model on a CPU)")
    check_port_free(host, port)
    if threads is not None:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    model, tokenizer = load_checkpoint(checkpoint, device)
    model.to(resolve_dtype(dtype, device))
    name = model_name or default_model_name(checkpoint)
    print(f"serving {name} on http://{host}:{port}/v1 (OpenAI completions API; Ctrl-C stops)", flush=True)
    uvicorn.run(build_app(model, tokenizer, name), host=host, port=port, log_level="warning")


def check_port_free(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"--port {port} is not a TCP port; pass one in 1-65535, e.g. 8000")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT does not block
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ValueError(
                f"--host {host} --port {port} cannot be used ({err.strerror}); pass another --port"
            ) from None


def default_model_name(checkpoint: str) -> str:
    """The run folder's name for a checkpoint file inside one (RUN/checkpoints/last.ckpt -> RUN), else the path's
    name (a run folder's own name, even when it lies in a folder called checkpoints)."""
    path = Path(checkpoint).expanduser().resolve()
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent.name
    return path.stem if path.is_file() else path.name


CLI = {
    "name": "serve",
    "summary": "serve a checkpoint over OpenAI's completions API (editor autocomplete, infilling)",
    "function": "serve",
    "arguments": "positional:checkpoint",
}
