"""Adversarial training (Madry et al. 2018): minimise the loss at the PGD maximiser.

Each batch is replaced by its PGD adversarial examples (random start in the eps-ball,
`steps` signed-gradient steps of size `alpha`, projected with the engine's ThreatModel),
and the model is trained on those.

The inner loop is written here rather than borrowed from the `pgd` attack on purpose: an
evaluation attack stops on a sample at its first adversarial point and never attacks a
misclassified one (right for measuring, and cheaper), while Madry's min-max trains on the
point of maximal loss after all steps, for every sample. Training on "just across the
boundary" points gives a weaker defence.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.defenses.training import fit
from pytest_robust.defenses.training import input_grad
from pytest_robust.errors import RobustConfigError


def pgd_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    steps: int,
    alpha: float,
) -> torch.Tensor:
    """PGD maximisers of cross-entropy, computed in eval mode; the random start draws from
    the (forked, seeded) global RNG of the training run."""
    training = model.training
    model.eval()
    try:
        if threat.norm == "linf":
            start = (torch.rand_like(x) * 2 - 1) * threat.eps
        else:
            start = torch.randn_like(x) * (threat.eps / x[0].numel() ** 0.5)
        x_adv = threat.project(x + start, x)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y, reduction="sum")
            grad = input_grad(loss, x_adv)
            unit = threat.unit_step(grad)
            x_adv = threat.project(x_adv.detach() + alpha * unit, x)
        return x_adv.detach()
    finally:
        model.train(training)


def adversarial_training(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    eps: float,
    steps: int = 7,
    alpha: float | None = None,
    norm: str = "linf",
    bounds: tuple[float, float] = (0.0, 1.0),
    epochs: int = 20,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train `model` on PGD adversarial examples of each batch (Madry et al.'s min-max).

    `alpha` defaults to 2.5 * eps / steps. Returns the model in eval mode.
    """
    if eps <= 0 or steps < 1:
        raise RobustConfigError(f"eps={eps}, steps={steps}: both must be positive")
    if norm not in ("linf", "l2"):
        raise RobustConfigError(f"norm={norm!r}: use 'linf' or 'l2'")
    threat = ThreatModel(eps, norm, bounds)
    step = 2.5 * eps / steps if alpha is None else alpha

    def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(pgd_examples(net, x, y, threat, steps, step)), y)

    return fit(model, loader, loss, epochs=epochs, lr=lr, seed=seed, device=device)
