"""Input-gradient regularisation (Drucker & LeCun 1992; Ross & Doshi-Velez 2018):

    L(x) + lam * ||grad_x L(x)||^2

trained by double backpropagation: the input gradient is built with create_graph=True so
the penalty itself is differentiated with respect to the weights. The gradient is that of
each sample's own loss, and the penalty is the mean of the per-sample squared norms.
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


def input_gradient_regularized(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    lam: float = 1.0,
    epochs: int = 20,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train on cross-entropy plus `lam` times the squared input-gradient norm."""
    if lam < 0:
        raise RobustConfigError(f"lam={lam}: the penalty weight must be >= 0")

    def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        per_sample = F.cross_entropy(net(x), y, reduction="none")
        # Summing first gives each sample the gradient of its own loss.
        grad = input_grad(per_sample.sum(), x, create_graph=True)
        penalty = grad.flatten(1).pow(2).sum(dim=1).mean()
        return per_sample.mean() + lam * penalty

    return fit(model, loader, loss, epochs=epochs, lr=lr, seed=seed, device=device)
