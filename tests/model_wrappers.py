"""Model wrappers that observe or provoke the engine's behaviour (for speed features)."""

from __future__ import annotations

import torch


class CountingModel(torch.nn.Module):
    """Counts forward calls and the samples that go through them, to prove work is skipped."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.samples = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += len(x)
        self.calls += 1
        return self.inner(x)


class OutOfMemoryAbove(CountingModel):
    """Raises torch's CUDA out-of-memory error for batches larger than `limit`, as a GPU
    with too little memory would."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__(inner)
        self.limit = limit
        self.refused = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            self.refused += 1
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate a batch of {len(x)}"
            )
        return super().forward(x)
