"""The FGSM regulariser (Goodfellow et al. 2015, eq. 6; the slides' objective):

    alpha * L(x) + (1 - alpha) * L(x + eps * sign(grad_x L(x)))

The FGSM point is treated as a constant (no gradient through the sign), as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust.defenses.training import fit
from pytest_robust.defenses.training import input_grad
from pytest_robust.errors import RobustConfigError


def fgsm_regularized(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    eps: float,
    alpha: float = 0.5,
    bounds: tuple[float, float] = (0.0, 1.0),
    epochs: int = 20,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train on the mix of clean and FGSM losses; returns the model in eval mode."""
    if not 0.0 <= alpha <= 1.0:
        raise RobustConfigError(f"alpha={alpha}: the weight of the clean loss is in [0, 1]")
    if eps <= 0:
        raise RobustConfigError(f"eps={eps}: must be positive")

    def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        clean = F.cross_entropy(net(x), y)
        x_adv = (x + eps * input_grad(clean, x, retain_graph=True).sign()).clamp(*bounds).detach()
        return alpha * clean + (1 - alpha) * F.cross_entropy(net(x_adv), y)

    return fit(model, loader, loss, epochs=epochs, lr=lr, seed=seed, device=device)
