"""Which process this is: the controller that prints and writes, an xdist worker, a
torchrun rank; and, for xdist workers, which GPU each takes and how many CPU threads.

The one answer to "is this the process that prints the summary and writes files?" lives
here (`is_controller`), so the session, the baseline gate and the progress line agree.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def is_xdist_worker(config: pytest.Config) -> bool:
    """A pytest-xdist worker: it runs some of the tests; the controller sees all reports."""
    return hasattr(config, "workerinput")


def is_torchrun_follower() -> bool:
    """A rank other than 0 under torchrun (RANK is set by the launcher): every rank runs
    every test and holds the same, full results, so rank 0 speaks for all."""
    return os.environ.get("RANK", "0") != "0"


def is_controller(config: pytest.Config) -> bool:
    """The process that prints the robustness summary and the progress line and writes
    reports and the baseline: not an xdist worker, and rank 0 (or no torchrun)."""
    return not is_xdist_worker(config) and not is_torchrun_follower()


def launched_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def xdist_worker(config: pytest.Config) -> tuple[str, int]:
    """(worker id, worker count) of an xdist worker; ('', 1) elsewhere."""
    workerinput = getattr(config, "workerinput", {})
    return str(workerinput.get("workerid", "")), int(workerinput.get("workercount", 1))


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
