"""Optimisation-based minimum-norm attacks: Carlini & Wagner L2.

C&W (Carlini, Wagner 2017) looks for the smallest L2 perturbation that changes the
prediction, by minimising ||x' - x||_2^2 + c * f(x') with Adam in tanh space (so x' is
always inside the bounds) and a binary search over the constant c per sample. It does not
use eps: it finds the smallest adversarial point it can, and `Attack.run` then projects
that point onto the eps-ball. A point found outside the ball is scaled back onto it and is
usually no longer adversarial, so success counts only where the minimum found is <= eps.
The norms found (before projection) are reported in details()["minimum_norm"].

Choices, for a budget of 5 x 100 steps instead of the paper's 9 x 10,000:

- lr 0.1, not 0.01: a pixel at a bound starts at w = atanh(1 - 1e-6) ~ 7.25 and barely
  moves until w nears 2, which takes ~500 Adam steps at 0.01. On the digits CNN (L2,
  eps 1) lr 0.01 left robust accuracy at 0.31 where lr 0.1 reaches 0.01.
- initial_const 1e-2 (as in cleverhans and ART; the paper's code starts at 1e-3 with 9
  search steps): the tenfold growth reaches 1 and 10 within 5 search steps.
- c is judged by the last point of its run, not by any point on the way (see below).
- The search never stops early for a sample whose best norm is already <= eps: that
  would not change pass/fail but would turn minimum_norm into an eps-dependent bound.
"""

from __future__ import annotations

import torch

from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.eot import EOT
from pytest_robust.attacks.minimum_norm import MinimumNormAttack
from pytest_robust.attacks.registry import register_attack
from pytest_robust.params import Param

# atanh(+-1) is infinite: inputs exactly at the bounds are pulled in by this factor
# (the constant of the reference implementation), which moves them by ~1e-6.
_TANH_SHRINK = 1 - 1e-6
# Upper bound of c meaning "no success seen yet": c grows tenfold until one is seen.
_NO_UPPER = 1e10


def margin(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
) -> torch.Tensor:
    """How far each sample is from success, in logits: z_y - max_{i!=y} z_i (untargeted)
    or max_{i!=t} z_i - z_t (targeted). Negative means the attack has succeeded."""
    cls = targets if targets is not None else labels
    own = logits.gather(1, cls[:, None]).squeeze(1)
    others = logits.scatter(1, cls[:, None], float("-inf")).amax(dim=1)
    return own - others if targets is None else others - own


@register_attack
class CarliniWagnerL2(MinimumNormAttack):
    name = "cw"
    params = {
        "steps": Param(int, 100, minimum=1, doc="Adam steps per value of the constant c"),
        "search_steps": Param(int, 5, minimum=1, doc="binary search steps over c"),
        "initial_const": Param(float, 1e-2, minimum=1e-10, doc="first c of the binary search"),
        "confidence": Param(float, 0.0, minimum=0.0, doc="kappa: required logit margin"),
        "lr": Param(float, 0.1, minimum=0.0, doc="Adam learning rate, in tanh space"),
        "eot": EOT,
    }
    norms = ("l2",)
    targetable = True
    reference = "Carlini, Wagner 2017, Towards Evaluating the Robustness of Neural Networks"

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        steps, search_steps = int(self.option("steps")), int(self.option("search_steps"))
        kappa, lr = float(self.option("confidence")), float(self.option("lr"))
        x, labels, targets = batch.x, batch.labels, batch.targets
        low, high = self.threat.bounds

        def to_input(w: torch.Tensor) -> torch.Tensor:
            return low + (high - low) * (torch.tanh(w) + 1) / 2

        w0 = torch.atanh(((x - low) / (high - low) * 2 - 1) * _TANH_SHRINK)
        const = torch.full((len(x),), float(self.option("initial_const")), dtype=x.dtype)
        const = const.to(x.device)
        lower, upper = torch.zeros_like(const), torch.full_like(const, _NO_UPPER)
        best, best_norm = x.clone(), torch.full_like(const, float("inf"))
        for _ in range(search_steps):
            # Each c starts afresh from the clean input, as in the reference code.
            w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
            for step in range(steps + 1):
                w = w.detach().requires_grad_(True)
                with torch.enable_grad():
                    x_adv = to_input(w)
                    sq_norm = (x_adv - x).flatten(1).pow(2).sum(dim=1)
                    logits = batch.model(x_adv)
                    gap = margin(logits, labels, targets)
                    # Summed over the batch: each sample's gradient is its own.
                    loss = (sq_norm + const * gap.clamp_min(-kappa)).sum()
                    grad = torch.autograd.grad(loss, w)[0] if step < steps else None
                with torch.no_grad():
                    hit = self.is_success(logits, labels, targets) & (gap <= -kappa)
                    norm = sq_norm.sqrt()
                    better = hit & (norm < best_norm)
                    best[better] = x_adv[better]
                    best_norm = torch.where(better, norm, best_norm)
                    if grad is None:
                        break
                    # Adam, elementwise and hence per sample.
                    m = 0.9 * m + 0.1 * grad
                    v = 0.999 * v + 0.001 * grad * grad
                    m_hat, v_hat = m / (1 - 0.9 ** (step + 1)), v / (1 - 0.999 ** (step + 1))
                    w = w.detach() - lr * m_hat / (v_hat.sqrt() + 1e-8)
            # c is large enough when the optimisation for it ends adversarial. Adam's first
            # step moves every coordinate by lr whatever c is, so an early transient
            # crossing would wrongly tell the search that a tiny c suffices.
            upper = torch.where(hit, torch.minimum(upper, const), upper)
            lower = torch.where(hit, lower, torch.maximum(lower, const))
            # Bisect once a successful c is known; until then grow c tenfold.
            const = torch.where(upper < _NO_UPPER, (lower + upper) / 2, const * 10)
        self._found.append(best_norm[torch.isfinite(best_norm)].cpu())
        return best.detach()
