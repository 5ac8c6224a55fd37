"""A world-size-1 torch.distributed run of pytest-robust's collective paths.

    python -m torch.distributed.run --standalone --nproc_per_node 1 \
        benchmarks/nccl_check.py --backend nccl --device cuda     # benchmarks/gpu.sh
    python benchmarks/nccl_check.py --backend gloo --device cpu   # the same checks on a CPU

In a process group of one rank it checks that the collectives engine/distributed.py uses
(gather_rows: all_gather of float and bool rows; sum_counts: all_reduce) give back exactly
their input, and that evaluate() inside the group gives exactly the record of a run
without one. Exits 1, naming what differs, otherwise prints one line per check.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "digits")]

from digits import digits_split  # noqa: E402
from digits import trained_cnn  # noqa: E402

from pytest_robust import evaluate  # noqa: E402
from pytest_robust.engine.distributed import gather_rows  # noqa: E402
from pytest_robust.engine.distributed import sum_counts  # noqa: E402
from pytest_robust.engine.distributed import world  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor], device: str) -> dict:
    result = evaluate(model, data, attack="pgd", eps=0.1, steps=5, seed=0, device=device)
    out = result.to_dict()
    out.pop("duration_s")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="nccl", choices=("nccl", "gloo"))
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    # Under torchrun these are set already; alone, this process is the whole world.
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    if int(os.environ["WORLD_SIZE"]) != 1:
        print("run with one process (--nproc_per_node 1)")
        return 2
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)
    model = trained_cnn(seed=0)
    _, _, x, y = digits_split()
    alone = record(model, (x, y), args.device)

    dist.init_process_group(args.backend)
    problems = []
    try:
        print(f"process group: backend {dist.get_backend()}, world {world()}, device {device}")
        rows = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
        if not torch.equal(gather_rows(rows), rows):
            problems.append("gather_rows changed float rows")
        flags = rows[:, 0] > 0
        if not torch.equal(gather_rows(flags), flags):
            problems.append("gather_rows changed bool rows")
        if sum_counts([3, 0, 11]) != [3, 0, 11]:
            problems.append("sum_counts changed the counts")
        print("collectives: gather_rows (float, bool) and sum_counts returned their input")
        grouped = record(model, (x, y), args.device)
        if grouped != alone:
            keys = sorted(k for k in alone if alone[k] != grouped.get(k))
            problems.append(f"evaluate() inside the group differs from a run without it: {keys}")
        print(f"evaluate() in the group: robust_acc {grouped['robust_acc']:.4f}, n {grouped['n']}")
    finally:
        dist.destroy_process_group()
    for problem in problems:
        print("FAILED:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
