"""Gaussian-noise training (Lecuyer et al. 2019; Cohen et al. 2019, section 3.2): the base
model that randomized smoothing needs.

Smoothing classifies x by the base model's majority vote on x + N(0, sigma^2 I). An
ordinarily trained model has never seen such inputs and votes almost at random; trained
on them (cross-entropy on noisy copies, the noise drawn from the training run's seeded RNG
and not clipped, exactly as smoothing adds it), its votes are stable and the certified
radii large.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust.defenses.training import fit
from pytest_robust.errors import RobustConfigError


def gaussian_noise_training(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    sigma: float,
    epochs: int = 20,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train on x + sigma * N(0, I); use the same sigma for check="certify",
    method="smoothing" and pytest_robust.Smoothed. Returns the model in eval mode."""
    if not sigma > 0:
        raise RobustConfigError(f"sigma={sigma}: the noise level must be > 0")

    def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(x + sigma * torch.randn_like(x)), y)

    return fit(model, loader, loss, epochs=epochs, lr=lr, seed=seed, device=device)
