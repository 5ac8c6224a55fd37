"""The gradient step loop (attacks/gradient.py) against a plain loop written here from its
documented semantics (docs/semantics.md, "Iterative attacks"): start at the clean input or
at the threat model's random point, step along sign(grad) of the summed cross-entropy,
project onto the eps-ball and the bounds, keep each sample's first adversarial point and
drop it from the batch, keep the survivors' last point. The adversarial points and the
outcomes must be the same bit for bit: the loop's bookkeeping shortcuts (no copy when no
sample broke, no repeat or division for a single draw) change no number."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pytest_robust import evaluate
from pytest_robust.attacks.threat import ThreatModel

SEED = 3


def reference(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    random_start: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial points, attacked) for the samples x: PGD/BIM/FGSM's loop by hand. With
    a random start only the clean-correct samples are attacked (the engine's clean pass);
    without one the first forward is the clean pass, and a clean-wrong sample stops there."""
    alpha = 2.5 * eps / steps
    with torch.no_grad():
        attacked = model(x).argmax(1) == y if random_start else torch.ones_like(y, dtype=torch.bool)
    alive = attacked.nonzero().squeeze(1)
    best = x.clone()
    x0 = x[alive]
    start = ThreatModel(eps, "linf", (0.0, 1.0)).random_point(x0, SEED, alive, 0)
    xs = start if random_start else x0
    for _ in range(steps):
        xi = xs.detach().requires_grad_(True)
        logits = model(xi)
        broken = logits.argmax(1) != y[alive]
        best[alive[broken]] = xs[broken]
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y[alive], reduction="sum"), xi)
        delta = torch.add(xs, grad.sign(), alpha=alpha).sub_(x0).clamp_(-eps, eps)
        xs = delta.add_(x0).clamp_(0.0, 1.0)
        keep = ~broken
        xs, x0, alive = xs[keep], x0[keep], alive[keep]
        if len(alive) == 0:
            break
    best[alive] = xs
    return best, attacked


@pytest.mark.parametrize(
    ("attack", "steps", "random_start"),
    [("fgsm", 1, False), ("bim", 5, False), ("pgd", 5, True)],
)
@pytest.mark.parametrize("eps", [1e-6, 0.1, 0.3])  # nothing, about half, everything breaks
def test_the_step_loop_matches_a_plain_loop_bit_for_bit(
    digits_cnn, digits_data, attack, steps, random_start, eps
):
    x, y = digits_data[0][:120], digits_data[1][:120]
    flags = [(p, p.requires_grad) for p in digits_cnn.parameters()]
    model = digits_cnn.eval().requires_grad_(False)  # as the engine borrows it
    try:
        expected, attacked = reference(model, x, y, eps, steps, random_start)
        with torch.no_grad():
            fooled = model(expected).argmax(1) != y
            clean = model(x).argmax(1) == y
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
    params = {"steps": steps} if attack != "fgsm" else {}
    result = evaluate(
        digits_cnn, (x, y), attack, eps, seed=SEED, sanity="off", keep_adversarial=True, **params
    )
    assert result.adversarial is not None
    assert torch.equal(result.adversarial, expected)
    robust = clean & attacked & ~fooled
    assert result.robust == "".join("1" if r else "0" for r in robust.tolist())
