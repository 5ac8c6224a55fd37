"""Devices: a name ('auto', 'cpu', 'cuda', 'cuda:1', 'mps') as a torch.device, and how many
GPUs and CPU threads a process takes."""

from __future__ import annotations

import os

import torch

from pytest_robust.errors import RobustConfigError


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' picks cuda, then mps, then cpu. An unavailable device is an error, not a fallback."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise RobustConfigError(
            f"device={name!r} is not a device name: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RobustConfigError(
                f"device={name!r} but CUDA is not available on this machine: "
                "use --robust-device=auto (cuda when present, else cpu) or --robust-device=cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RobustConfigError(
                f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RobustConfigError(f"device={name!r} but MPS is not available on this machine")
    return device


def visible_cuda_count() -> int:
    """The CUDA devices this process can see (CUDA_VISIBLE_DEVICES applies); 0 without CUDA."""
    return torch.cuda.device_count()


def share_cpu_threads(threads: int) -> None:
    """Use `threads` torch threads, unless the user chose a count with OMP_NUM_THREADS or
    MKL_NUM_THREADS (theirs wins): several processes on one host then use the cores once."""
    if not any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        torch.set_num_threads(threads)
