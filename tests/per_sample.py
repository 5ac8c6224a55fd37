"""A result's per-sample flags ('0'/'1' strings in data order, engine/result.py) as the
boolean tensors the tests compare with a model's predictions."""

from __future__ import annotations

import torch


def bits(flags: str) -> torch.Tensor:
    """The '0'/'1' string `flags` as a boolean tensor, one entry per sample."""
    return torch.tensor([c == "1" for c in flags], dtype=torch.bool)
