"""Targets of a targeted check, one per sample, from the `target=` argument.

A sample whose target equals its label is not attacked (it is already "at" its target):
it stays robust when clean-correct and never counts as a success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pytest_robust.attacks import sampling
from pytest_robust.errors import RobustConfigError

RANDOM_STREAM = 1_000_003  # keeps random targets independent of random starts


def describe(target: Any) -> str:
    """A JSON-safe description of a target argument, for results and reports."""
    if target is None or isinstance(target, (int, str)):
        return str(target)
    if hasattr(target, "dim"):
        return f"tensor{tuple(target.shape)}"
    if isinstance(target, (list, tuple)):
        return "[" + ", ".join(describe(t) for t in target) + "]"
    if isinstance(target, torch.nn.Module):
        return type(target).__name__
    return f"callable {getattr(target, '__qualname__', type(target).__name__)}"


def resolve_targets(
    target: Any, clean_logits: torch.Tensor, labels: torch.Tensor, seed: int
) -> torch.Tensor:
    """Per-sample targets (int64, on the CPU) for all samples, in data order."""
    n, classes = clean_logits.shape
    if isinstance(target, str) and target == "least_likely":
        return clean_logits.argmin(dim=1)
    if isinstance(target, str) and target == "random":
        # Uniform over the classes other than the label, keyed by (seed, sample index).
        u = sampling.uniform(
            seed, torch.arange(n), torch.Size([n, 1]), RANDOM_STREAM, torch.float64
        )
        offset = 1 + (u[:, 0] * (classes - 1)).long().clamp(max=classes - 2)
        return (labels + offset) % classes
    if isinstance(target, int):
        if target >= classes:
            raise RobustConfigError(
                f"target={target}: the model has {classes} classes (0..{classes - 1})"
            )
        return torch.full((n,), target, dtype=torch.int64)
    if hasattr(target, "dim"):
        targets = torch.as_tensor(target).detach().cpu()
        what = "target tensor"
    else:
        function: Callable[[torch.Tensor, torch.Tensor], Any] = target
        targets = torch.as_tensor(function(clean_logits.clone(), labels.clone())).detach().cpu()
        what = f"target callable {describe(target)}"
    if targets.shape != (n,) or targets.is_floating_point():
        raise RobustConfigError(
            f"{what} gave {tuple(targets.shape)} {targets.dtype}; it must give one integer "
            f"class per sample, shape ({n},)"
        )
    if n and (int(targets.min()) < 0 or int(targets.max()) >= classes):
        raise RobustConfigError(
            f"{what} gave classes outside 0..{classes - 1}: range "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    return targets.long()
