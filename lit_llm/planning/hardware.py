"""Accelerators lit-llm knows: dense bf16 peak and memory. One table shared by MFU logging and `lit-llm plan`."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Accelerator:
    name: str  # the `--gpu` name
    bf16_tflops: float  # dense (not sparse) bf16 tensor-core peak, TFLOP/s
    memory_gb: float  # device memory, GB (10^9 bytes) as vendors quote it
    match: tuple[str, ...]  # substrings of torch.cuda.get_device_name() that identify it (all must appear;
    # first match wins, so more specific entries come first)


ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        Accelerator("a100-40gb", 312.0, 40, ("A100", "40GB")),
        Accelerator("a100-80gb", 312.0, 80, ("A100", "80GB")),
        Accelerator("h100-sxm", 989.0, 80, ("H100", "HBM3")),
        Accelerator("h100-pcie", 756.0, 80, ("H100", "PCIe")),
        Accelerator("h200", 989.0, 141, ("H200",)),
        Accelerator("b200", 2250.0, 180, ("B200",)),
        Accelerator("l40s", 362.0, 48, ("L40S",)),
        Accelerator("l4", 121.0, 24, ("L4",)),
        Accelerator("a10g", 125.0, 24, ("A10G",)),
        Accelerator("rtx3090", 71.0, 24, ("3090",)),
        Accelerator("rtx4090", 165.0, 24, ("4090",)),
        Accelerator("v100", 125.0, 32, ("V100",)),  # fp16 tensor cores; V100 has no bf16
    )
}


def get_accelerator(name: str) -> Accelerator:
    if name not in ACCELERATORS:
        raise ValueError(f"unknown GPU {name!r}; choose one of: {', '.join(ACCELERATORS)}")
    return ACCELERATORS[name]


def detect_accelerator(device: torch.device | None = None) -> Accelerator | None:
    """The table entry for the current CUDA device, or None (CPU, or a chip not in the table)."""
    if not torch.cuda.is_available() or (device is not None and device.type != "cuda"):
        return None
    device_name = torch.cuda.get_device_name(device)
    for acc in ACCELERATORS.values():
        if all(part in device_name for part in acc.match):
            return acc
    return None


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that supports it (half the memory, tensor cores), float32 elsewhere."""
    if dtype == "auto":
        cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)
