"""Model wrappers that observe or provoke the engine's behaviour (for speed features)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class CountingModel(torch.nn.Module):
    """Counts forward calls and the samples that go through them, to prove work is skipped.

    The counters are attributes, so the model's identity changes with every call and the
    session cache never serves it: to show a cache hit, count with counting_linear."""

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


class AutocastRecorder(torch.nn.Module):
    """Records, per forward call, whether autocast was on for `device_type` ("cpu",
    "cuda") and the logits' dtype."""

    def __init__(self, inner: torch.nn.Module, device_type: str) -> None:
        super().__init__()
        self.inner = inner
        self.device_type = device_type
        self.calls: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        self.calls.append((torch.is_autocast_enabled(self.device_type), out.dtype))
        return out


@contextlib.contextmanager
def counting_linear(weight: torch.Tensor) -> Iterator[list[int]]:
    """Counts the samples that go through the linear layer with `weight`, from outside the
    model (a counter inside the model would change the model, and rightly miss the cache)."""
    seen = [0]
    original = torch.nn.functional.linear
    counted = weight

    # torch's own parameter names, so that a call by keyword reaches the same arguments.
    def linear(
        input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        if weight is counted:
            seen[0] += int(input.shape[0]) if input.dim() > 1 else 1
        return original(input, weight, bias)

    torch.nn.functional.linear = linear
    try:
        yield seen
    finally:
        torch.nn.functional.linear = original
