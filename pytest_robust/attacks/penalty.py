"""The penalty (optimisation) attack of Szegedy et al. 2014, with plain gradient descent.

Starting from the clean input x*, it minimises CE(f(x), t) + lam * D(x, x*) towards a
target class t (targeted), or -CE(f(x), y) + lam * D(x, x*) away from the true class y
(untargeted), clipping x to the bounds after every step. D is the squared L2 distance
sum((x - x*)^2) or the L1 distance sum(|x - x*|). Szegedy et al. minimise the same
objective with box-constrained L-BFGS and a line search over lam; here lam is fixed.

eps is not part of the objective: `Attack.run` projects the point found onto the
eps-ball, so with eps covering the whole box (eps=1.0 L-inf for inputs in [0, 1]) the
attack is the slides' box-constrained one. Each sample keeps its first successful point
and then leaves the batch. details() reports D of the successful points (before
projection) and the mean probability of the target (or true class) at the returned points.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from pytest_robust.attacks.base import NO_GRADIENT_PATH
from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.base import NoGradientPath
from pytest_robust.attacks.eot import EOT
from pytest_robust.attacks.gradient import steps_param
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param

DISTANCES = ("l1", "l2")


@register_attack
class PenaltyAttack(Attack):
    name = "penalty"
    params = {
        "lam": Param(float, 0.1, minimum=0.0, doc="weight of the distance penalty D(x, x*)"),
        "distance": Param(
            str,
            "l2",
            choices=("l1", "l2"),
            doc="D: 'l2' (squared L2, sum (x - x*)^2) or 'l1' (sum |x - x*|)",
        ),
        "steps": steps_param(100),
        "lr": Param(float, 0.01, minimum=0.0, doc="step size of the gradient descent"),
        "eot": EOT,
    }
    norms = ("linf", "l2")
    targetable = True
    reference = "Szegedy et al. 2014, Intriguing properties of neural networks"

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        distance = config.get("distance", "l2")
        if distance not in DISTANCES:
            raise RobustConfigError(
                f"distance={distance!r}: the penalty attack's distance must be 'l2' "
                "(squared L2) or 'l1'"
            )
        lam, lr = float(config.get("lam", 0.1)), float(config.get("lr", 0.01))
        if distance == "l2" and lr * lam >= 1.0:
            # On lam * ||x - x*||^2 a gradient step multiplies x - x* by (1 - 2 * lr * lam):
            # from lr * lam >= 1 on, it overshoots x* by as much or more than it started.
            raise RobustConfigError(
                f"lam={lam:g}, lr={lr:g}: with distance='l2', lr * lam must be < 1, or "
                "gradient descent on the penalty diverges; lower lr or lam"
            )
        return config

    def gradient_loss(self) -> str | None:
        return "ce"

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        super().__init__(threat, **config)
        self._distances: list[torch.Tensor] = []
        self._probabilities: list[torch.Tensor] = []
        self._targeted: bool | None = None

    def details(self) -> dict[str, Any]:
        found = torch.cat(self._distances) if self._distances else torch.zeros(0)
        probs = torch.cat(self._probabilities) if self._probabilities else torch.zeros(0)
        found, probs = found.double(), probs.double()
        distance = str(self.config.get("distance", "l2"))
        return {
            "penalty_distance": (
                {
                    "d": "squared_l2" if distance == "l2" else "l1",
                    "mean": float(found.mean()),
                    "median": float(found.median()),
                    "count": int(found.numel()),
                }
                if found.numel()
                else None
            ),
            "final_probability": (
                {
                    "of": "target" if self._targeted else "true_class",
                    "mean": float(probs.mean()),
                    "count": int(probs.numel()),
                }
                if probs.numel()
                else None
            ),
        }

    def distance(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Per-sample D(x, x*)."""
        delta = (x - x0).flatten(1)
        if self.config.get("distance", "l2") == "l1":
            return delta.abs().sum(dim=1)
        return delta.pow(2).sum(dim=1)

    def run(self, batch: AttackBatch) -> torch.Tensor:
        x_adv = super().run(batch)
        # The probability is measured at the points the engine will judge, after projection.
        with torch.no_grad():
            probs = batch.model(x_adv).float().softmax(dim=1)
        cls = batch.targets if batch.targets is not None else batch.labels
        prob = probs.gather(1, cls[:, None]).squeeze(1).cpu()
        # Non-finite logits count as broken in the engine; here they would make the mean NaN.
        self._probabilities.append(prob[torch.isfinite(prob)])
        self._targeted = batch.targets is not None
        return x_adv

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        steps = int(self.config.get("steps", 100))
        lr = float(self.config.get("lr", 0.01))
        lam = float(self.config.get("lam", 0.1))
        l1 = self.config.get("distance", "l2") == "l1"
        low, high = self.threat.bounds

        x0, labels, targets = batch.x, batch.labels, batch.targets
        best = x0.clone()
        active = torch.arange(len(x0), device=x0.device)
        x = x0
        for step in range(steps + 1):
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = batch.model(x)
                broken = self.is_success(logits.detach(), labels, targets)
                last = step == steps
                if not last:
                    # Summed, so a sample's gradient is independent of its batch. The L1
                    # penalty is not in here: it is applied by the proximal step below.
                    objective = self._ce(logits, labels, targets)
                    _check_differentiable(objective)
                    if not l1:
                        objective = objective + lam * self.distance(x, x0).sum()
                    grad = _gradient_of(objective, x)
            x = x.detach()
            # A sample keeps its first successful point; the others their latest.
            keep = broken if not last else torch.ones_like(broken)
            best[active[keep]] = x[keep]
            self._distances.append(self.distance(x[broken], x0[broken]).cpu())
            alive = ~broken
            if last or not bool(alive.any()):
                break
            # Plain gradient descent, not Adam: it is the slides' method, the step is
            # lr * grad of the objective itself (so lam trades CE against D exactly as
            # written and a step has a closed form), and Adam's per-pixel normalisation
            # would rescale the penalty's pull differently in every pixel.
            x = x - lr * grad
            if l1:
                # Proximal (ISTA) step for lam * |x - x*|: soft-thresholding keeps a pixel
                # exactly at x* while |grad CE| <= lam there; a subgradient step would
                # jitter around x* and never give a sparse perturbation.
                delta = x - x0
                x = x0 + delta.sign() * (delta.abs() - lr * lam).clamp_min(0.0)
            x = x.clamp(low, high)
            x, x0, labels, active = x[alive], x0[alive], labels[alive], active[alive]
            targets = targets[alive] if targets is not None else None
        return best

    @staticmethod
    def _ce(
        logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        """The classification part of the objective to descend, summed over the batch."""
        if targets is not None:
            return F.cross_entropy(logits, targets, reduction="sum")
        return -F.cross_entropy(logits, labels, reduction="sum")


def _check_differentiable(ce: torch.Tensor) -> None:
    # Checked on the CE term alone: the L2 penalty is always differentiable in x.
    if not ce.requires_grad:
        raise NoGradientPath(NO_GRADIENT_PATH.format(who="the penalty attack"))


def _gradient_of(objective: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(objective, x, allow_unused=True)
    # An unused input gets no gradient (None at runtime, whatever the stubs say), and a
    # non-finite gradient gives no step rather than a NaN input.
    grad = grad if grad is not None else torch.zeros_like(x)
    return torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))
