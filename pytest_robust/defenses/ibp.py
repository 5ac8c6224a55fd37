"""IBP training (Gowal et al., *On the Effectiveness of Interval Bound Propagation for
Training Verifiably Robust Models*, 2018): train on the worst case that interval bounds
allow, so that check="certify", method="ibp" can prove what the model learned.

The loss mixes the clean cross-entropy with the cross-entropy of the worst-case logits,
`kappa * CE(f(x), y) + (1 - kappa) * CE(-m, y)`, where m holds the elided lower bounds of
the margins z_y - z_j over the eps-box (0 for the label itself; checks/certify.py). The
usual schedule: `warmup` epochs of clean training, then over `ramp` epochs eps grows
linearly from 0 to its target and kappa falls from 1 to `kappa_end`, per batch step.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sized
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust.checks import certify
from pytest_robust.defenses.training import fit
from pytest_robust.errors import RobustConfigError

# Layers whose train-mode behaviour IBP cannot bound: batch statistics, random masks.
TRAIN_MODE_RANDOM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Dropout1d, nn.Dropout2d)


def ibp_training(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    epochs: int = 60,
    warmup: int = 5,
    ramp: int = 25,
    kappa_end: float = 0.5,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train `model` (a chain of layers that method="ibp" accepts, without batch norm or
    dropout) for L-inf robustness at `eps`, certifiable by IBP. Gowal et al. train at a
    somewhat larger eps than they certify. Returns the model in eval mode."""
    if eps <= 0:
        raise RobustConfigError(f"eps={eps}: must be positive")
    if warmup < 0 or ramp < 0 or not 0.0 <= kappa_end <= 1.0:
        raise RobustConfigError(
            f"warmup={warmup}, ramp={ramp}, kappa_end={kappa_end}: the epochs must be >= 0 "
            "and kappa_end, the clean loss's final weight, in [0, 1]"
        )
    if not isinstance(loader, Sized):
        raise RobustConfigError(
            "ibp_training ramps eps per batch step, so it needs the number of batches per "
            "epoch: pass a loader with len() (a DataLoader or a list of batches)"
        )
    layers = [layer.module for layer in certify.chain_of(model)]
    for layer in layers:
        if isinstance(layer, TRAIN_MODE_RANDOM):
            raise RobustConfigError(
                f"ibp_training cannot train through {type(layer).__name__}: in train mode it "
                "uses batch statistics or random masks, which the bounds do not cover; drop it"
            )
    per_epoch = max(1, len(loader))
    steps = [0]

    def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        done = steps[0] / per_epoch - warmup
        frac = min(1.0, max(0.0, done / ramp)) if ramp else float(done >= 0)
        steps[0] += 1
        clean = F.cross_entropy(net(x), y)
        if frac == 0:
            return clean
        kappa, radius = 1 - (1 - kappa_end) * frac, eps * frac
        box = ((x - radius).clamp(min=bounds[0]), (x + radius).clamp(max=bounds[1]))
        margins = certify.margin_lower_bounds(layers, box, y)
        worst = -torch.where(torch.isinf(margins), torch.zeros_like(margins), margins)
        return kappa * clean + (1 - kappa) * F.cross_entropy(worst, y)

    return fit(model, loader, loss, epochs=epochs, lr=lr, seed=seed, device=device)
