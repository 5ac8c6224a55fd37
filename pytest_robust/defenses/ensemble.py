"""Ensemble adversarial training (Tramer et al., *Ensemble Adversarial Training: Attacks
and Defenses*, ICLR 2018).

Adversarial training on the model's own one-step adversarial examples teaches it to mask
its gradient (the examples it sees get weak) rather than to be robust; black-box attacks
transferred from other models then still work. Tramer et al. decouple the examples from
the model being trained: each batch's adversarial half is crafted either on the model
itself or on one of several static, pre-trained surrogates (in turn), with FGSM. The result
resists transferred attacks far better than white-box ones: that is its claim, and its
limit (it is not a white-box defence).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust.defenses.training import fit
from pytest_robust.defenses.training import input_grad
from pytest_robust.engine.borrow import borrowed
from pytest_robust.engine.device import resolve_device
from pytest_robust.errors import RobustConfigError


def fgsm_example(
    source: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, bounds: tuple[float, float]
) -> torch.Tensor:
    """x + eps * sign(grad CE) on `source` (in eval mode), clipped to bounds."""
    x = x.detach().requires_grad_(True)
    grad = input_grad(F.cross_entropy(source(x), y), x)
    return (x + eps * grad.sign()).clamp(*bounds).detach()


def ensemble_adversarial_training(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    surrogates: Sequence[nn.Module],
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    epochs: int = 20,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train on half clean, half FGSM examples at L-inf `eps`; batch t's examples come
    from the model itself (t mod (k + 1) == 0) or from surrogate t mod (k + 1) - 1. The
    surrogates, pre-trained and static, are borrowed (eval mode, frozen) and given back as
    they were. Returns the model in eval mode."""
    if eps <= 0:
        raise RobustConfigError(f"eps={eps}: must be positive")
    if not surrogates or any(s is model for s in surrogates):
        raise RobustConfigError(
            "surrogates: give at least one pre-trained model other than the one trained "
            "(Tramer et al. use two to four), e.g. surrogates=[standard_a, standard_b]"
        )
    step = [0]

    def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        source = step[0] % (len(surrogates) + 1)
        step[0] += 1
        if source == 0:
            net.eval()
            x_adv = fgsm_example(net, x, y, eps, bounds)
            net.train()
        else:
            x_adv = fgsm_example(surrogates[source - 1], x, y, eps, bounds)
        return 0.5 * F.cross_entropy(net(x), y) + 0.5 * F.cross_entropy(net(x_adv), y)

    target = resolve_device(device)
    with contextlib.ExitStack() as stack:
        for surrogate in surrogates:
            stack.enter_context(borrowed(surrogate, target))
        return fit(model, loader, loss, epochs=epochs, lr=lr, seed=seed, device=device)
