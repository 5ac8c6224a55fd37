"""Defensive distillation (Papernot et al. 2016), deployed the way it was published.

A teacher (a copy of `model` at its initial weights) is trained with its logits divided by
T; it relabels the training data with its soft labels softmax(z / T); the student (`model`
itself) is trained on those soft labels, also at temperature T; the student is then
deployed at T = 1, i.e. it returns its raw logits, about T times larger than the ones it
was trained with. The softmax saturates and the cross-entropy input gradient underflows:
CE-based attacks see no gradient, the model is no more robust (Carlini & Wagner 2016).
This recipe exists to produce exactly that model for the masking checks; it is not a
defence to deploy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust.defenses.training import fit
from pytest_robust.errors import RobustConfigError


def defensive_distillation(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    temperature: float = 100.0,
    epochs: int = 20,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train a teacher and then `model` as the student at `temperature`; returns the
    student in eval mode, deployed at temperature 1 (raw logits)."""
    if temperature <= 0:
        raise RobustConfigError(f"temperature={temperature}: must be positive")
    teacher = copy.deepcopy(model)

    def hard(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(x) / temperature, y)

    fit(teacher, loader, hard, epochs=epochs, lr=lr, seed=seed, device=device)

    def soft(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            labels = F.softmax(teacher(x) / temperature, dim=1)
        log_probs = F.log_softmax(net(x) / temperature, dim=1)
        return -(labels * log_probs).sum(dim=1).mean()

    return fit(model, loader, soft, epochs=epochs, lr=lr, seed=seed + 1, device=device)
