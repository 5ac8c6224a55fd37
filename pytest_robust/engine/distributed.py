"""Sharding one evaluation over the ranks of a torch.distributed process group.

Each rank attacks a contiguous shard of the samples; per-sample outcomes are then
all-gathered, so every rank holds the full result and computes the same numbers and the
same verdict as a single process would. Random starts and targets are keyed by the
sample's index in the data (attacks/sampling.py), so the split cannot change them.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(n: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous [start, stop) of n samples that `rank` evaluates."""
    return n * rank // size, n * (rank + 1) // size


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, each rank of a multi-GPU host uses its own GPU (LOCAL_RANK) when the
    device is the bare 'cuda'."""
    local = os.environ.get("LOCAL_RANK")
    if str(device) == "cuda" and local is not None and world()[1] > 1:
        return torch.device("cuda", int(local) % torch.cuda.device_count())
    return device


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(full: torch.Tensor) -> torch.Tensor:
    """Every rank's shard of `full` (rows in data order), assembled on every rank.

    Each rank has computed only the rows of its own shard; the other rows are replaced by
    what their ranks computed.
    """
    rank, size = world()
    n = len(full)
    bounds = [shard(n, r, size) for r in range(size)]
    width = max(stop - start for start, stop in bounds)
    start, stop = bounds[rank]
    dtype = full.dtype
    mine = full[start:stop].to(torch.uint8 if dtype == torch.bool else dtype)
    padded = torch.zeros((width, *full.shape[1:]), dtype=mine.dtype, device=_comm_device())
    padded[: stop - start] = mine.to(padded.device)
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    rows = [part[: b - a] for part, (a, b) in zip(parts, bounds, strict=True)]
    return torch.cat(rows).to(device=full.device, dtype=dtype)


def sum_counts(counts: list[int]) -> list[int]:
    """Element-wise sum of integer counts over the ranks."""
    if not counts:
        return []
    total = torch.tensor(counts, dtype=torch.int64, device=_comm_device())
    dist.all_reduce(total)
    return [int(c) for c in total.tolist()]


def gather_range(low: float, high: float) -> tuple[float, float]:
    """(min of `low`, max of `high`) over the ranks."""
    both = torch.tensor([-low, high], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return -float(both[0]), float(both[1])


_OWNED = False  # whether join_launched_group() created the process group


def join_launched_group() -> None:
    """Under torchrun (WORLD_SIZE > 1 in the environment) join the launched process group,
    unless the user's code already did: gloo on CPU hosts, NCCL with one GPU per rank."""
    global _OWNED
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return
    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    _OWNED = True


def leave_group() -> None:
    """Destroy the process group if join_launched_group() created it."""
    global _OWNED
    if _OWNED and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False
