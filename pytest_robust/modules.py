"""Normalize: put input normalisation inside the model, so attacks work in raw input units."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Normalize(torch.nn.Module):
    """(x - mean) / std over the channel dimension (dim 1).

    Use it as the first layer: ``nn.Sequential(Normalize(mean, std), model)``. Then inputs,
    ``bounds`` and ``eps`` are all in raw units (for images usually [0, 1]).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1)
        if bool((std_t <= 0).any()):
            raise ValueError(f"Normalize: std must be positive, got {std}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.reshape(shape)) / self.std.reshape(shape)
