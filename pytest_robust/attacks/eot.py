"""Expectation over Transformation (EOT) for a randomised model (Athalye, Engstrom, Ilyas,
Kwok 2018, "Synthesizing robust adversarial examples").

`eot=N` makes a gradient attack look at N forward passes ("draws") of the model at each
point: the loss is the mean of the N per-draw losses, so its input gradient is the mean of
the N per-draw gradients. The engine stacks the N copies into one batch (rows = N * B)
unless the model draws its randomness once per call, and seeds every call from the check's
seed (engine/stochastic.py), so a seeded run is reproducible.

The step loop (attacks/gradient.py) and APGD use the per-draw losses themselves and judge a
point by the fraction of draws it fools; every other attack sees the mean of the N draws'
logits through `batch.model` (exact EOT for a loss linear in the logits, as DeepFool's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pytest_robust.params import Param

if TYPE_CHECKING:
    from pytest_robust.attacks.base import AttackBatch

EOT = Param(
    int,
    1,
    minimum=1,
    doc="EOT draws: average the input gradient over this many forward passes of a "
    "randomised model (1: one pass)",
)


def model_draws(batch: AttackBatch, x: torch.Tensor, n: int) -> torch.Tensor:
    """Logits of n forward passes at x, shape (n, len(x), classes), differentiable in x."""
    if n == 1:
        return batch.model(x)[None]
    if batch.draws is not None:
        return batch.draws(x, n)
    # An AttackBatch built outside the engine: n plain calls (unseeded).
    return torch.stack([batch.model(x) for _ in range(n)])


def repeat_rows(t: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Per-sample labels or targets for n stacked draws (rows = n * B, draw-major); the
    same tensor for one draw (no copy)."""
    return t if t is None or n == 1 else t.repeat(n)


class MeanOfDraws:
    """`batch.model` for an attack without its own EOT loop: the mean logits of n draws."""

    def __init__(self, batch: AttackBatch, n: int) -> None:
        self.batch, self.n = batch, n

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return model_draws(self.batch, x, self.n).mean(dim=0)
