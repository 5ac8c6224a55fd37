"""Device use: batch-size back-off on out-of-memory, and mixed precision for attacks.

A batch that does not fit is retried in halves.
The smaller size is kept for the rest of the check (a batch that once ran out of memory
would again), and reported in the result's details. Results do not depend on the batch
size (per-sample seeds, summed losses), so backing off changes the time, never the numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import torch

from pytest_robust.errors import RobustWarning

# torch >= 2.5 has torch.OutOfMemoryError; torch.cuda.OutOfMemoryError is the same class.
OUT_OF_MEMORY: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

T = TypeVar("T")


class BackOff:
    """Run work over index batches, halving the batch size on out-of-memory."""

    def __init__(self, batch_size: int) -> None:
        self.requested = batch_size
        self.size = batch_size
        self.retries = 0

    def map(self, work: Callable[[torch.Tensor], T], ids: torch.Tensor) -> list[T]:
        """work(piece) for consecutive pieces of `ids`, each at most the current size."""
        out: list[T] = []
        start = 0
        while start < len(ids):
            piece = ids[start : start + self.size]
            try:
                out.append(work(piece))
            except OUT_OF_MEMORY:
                if len(piece) == 1:
                    raise  # one sample does not fit: nothing smaller to try
                self.size = max(1, len(piece) // 2)
                self.retries += 1
                _release_cached_memory()
                continue
            start += len(piece)
        return out

    def retry(self, work: Callable[[int], T]) -> T:
        """work(batch_size) for work that batches itself (the sanity checks), retried
        with half the size on out-of-memory."""
        while True:
            try:
                return work(self.size)
            except OUT_OF_MEMORY:
                if self.size == 1:
                    raise
                self.size = max(1, self.size // 2)
                self.retries += 1
                _release_cached_memory()

    def details(self) -> dict[str, Any]:
        if not self.retries:
            return {}
        return {
            "batch_size": {
                "requested": self.requested,
                "used": self.size,
                "out_of_memory_retries": self.retries,
            }
        }


def _release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# Devices where amp=True runs the attacks' forward and backward passes under autocast.
AMP_DTYPES: dict[str, torch.dtype] = {"cuda": torch.float16}


def mixed_precision(
    forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device, amp: bool
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The forward pass attacks use, and a note for the result's details.

    Only the attack runs in reduced precision: the clean pass and the re-verification of
    every final adversarial input use `forward` as given (float32), so no success counts
    that float32 does not confirm. Without CUDA, amp=True does nothing and says so.
    """
    dtype = AMP_DTYPES.get(device.type)
    if not amp or dtype is None:
        note = f"not used: autocast runs on CUDA only, this check ran on {device.type}"
        if amp:
            warnings.warn(f"amp=True {note} (in float32)", RobustWarning, stacklevel=4)
        return forward, note

    def autocast_forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return forward(x).float()

    return (
        autocast_forward,
        f"{str(dtype).removeprefix('torch.')} autocast for the attack; float32 re-verification",
    )
