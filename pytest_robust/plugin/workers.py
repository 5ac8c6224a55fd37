"""pytest-xdist workers: which GPU each one takes and how many CPU threads. Pure functions."""

from __future__ import annotations

import re


def worker_index(workerid: str) -> int | None:
    """'gw3' -> 3; None for anything else (not an xdist worker)."""
    match = re.fullmatch(r"gw(\d+)", workerid)
    return int(match[1]) if match else None


def worker_device(workerid: str, cuda_count: int) -> str | None:
    """device=auto on a worker: 'cuda:{i % cuda_count}', so workers spread over the visible
    GPUs (a torch index counts only visible devices, so CUDA_VISIBLE_DEVICES is respected,
    never rewritten); None when there is no CUDA (auto then picks as usual)."""
    index = worker_index(workerid)
    if index is None or cuda_count < 1:
        return None
    return f"cuda:{index % cuda_count}"


def cpu_threads(cpu_count: int, worker_count: int) -> int:
    """Torch threads per CPU worker, so the workers together use the cores once."""
    return max(1, cpu_count // max(1, worker_count))
