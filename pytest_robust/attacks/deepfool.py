"""DeepFool (Moosavi-Dezfooli, Fawzi, Frossard 2016): a minimum-norm attack.

Each iteration linearises the model around the current point and steps to the nearest
linearised decision boundary among the `candidates` most likely other classes: for class
k, with f_k = z_k - z_y and w_k = grad f_k, the distance is |f_k| / ||w_k||_2 (L2) or
|f_k| / ||w_k||_1 (L-inf, the dual norm). The steps add up to r, and the iterate is
x + (1 + overshoot) * r, clipped to the bounds; a sample leaves the batch once it is
misclassified. It does not use eps: `Attack.run` projects the point onto the eps-ball, so
success counts only where the perturbation found is <= eps. The norms found (before
projection, overshoot included) are reported in details()["minimum_norm"].
"""

from __future__ import annotations

import torch

from pytest_robust.attacks.base import NO_GRADIENT_PATH
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.base import NoGradientPath
from pytest_robust.attacks.eot import EOT
from pytest_robust.attacks.minimum_norm import MinimumNormAttack
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import per_sample
from pytest_robust.params import Param

# Added to |f_k| (as in the reference code) so a step lands past the boundary, not on it.
_PAST = 1e-4


@register_attack
class DeepFool(MinimumNormAttack):
    name = "deepfool"
    params = {
        "steps": Param(int, 50, minimum=1, doc="maximum number of iterations"),
        "overshoot": Param(float, 0.02, minimum=0.0, doc="x + (1 + overshoot) * r"),
        "candidates": Param(
            int, 10, minimum=2, doc="most likely classes considered (capped by the classes)"
        ),
        "eot": EOT,
    }
    reference = (
        "Moosavi-Dezfooli, Fawzi, Frossard 2016, DeepFool: a simple and accurate method "
        "to fool deep neural networks"
    )

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        steps, overshoot = int(self.option("steps")), float(self.option("overshoot"))
        x0, labels = batch.x, batch.labels
        best = x0.clone()
        found = torch.full((len(x0),), float("nan"), dtype=x0.dtype)
        active = torch.arange(len(x0), device=x0.device)
        r_total = torch.zeros_like(x0)
        x = x0
        classes: torch.Tensor | None = None  # chosen from the clean logits
        for step in range(steps + 1):
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = batch.model(x)
            if classes is None:
                classes = self._classes(logits.detach(), labels)
            broken = self.is_success(logits.detach(), labels, None)
            # A sample leaves at its first misclassified point; the rest keep their latest.
            keep = broken if step < steps else torch.ones_like(broken)
            best[active[keep]] = x.detach()[keep]
            found[active[broken].cpu()] = self.threat.distance(x.detach()[broken], x0[broken]).cpu()
            alive = ~broken
            if step == steps or not bool(alive.any()):
                break
            with torch.enable_grad():
                grads, gaps = _class_gradients(logits, x, classes)
            r_total = r_total + self._step(grads, gaps)
            x = (x0 + (1 + overshoot) * r_total).clamp(*self.threat.bounds)
            x, x0, r_total = x[alive], x0[alive], r_total[alive]
            labels, active, classes = labels[alive], active[alive], classes[alive]
        self._found.append(found[~found.isnan()])
        return best

    def _classes(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per sample: its label, then the other candidates by decreasing clean logit."""
        k = min(int(self.option("candidates")), logits.shape[1])
        others = logits.scatter(1, labels[:, None], float("-inf"))
        return torch.cat([labels[:, None], others.topk(k - 1, dim=1).indices], dim=1)

    def _step(self, grads: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """The step to the nearest linearised boundary, for each sample.

        grads: (n, k, *input) gradients of f_k = z_k - z_y; gaps: (n, k) values of f_k.
        """
        flat = grads.flatten(2)
        dual = flat.abs().sum(dim=2) if self.threat.norm == "linf" else flat.norm(dim=2)
        dual = dual.clamp_min(1e-12)  # a flat direction is never the nearest
        nearest = (gaps.abs() / dual).argmin(dim=1)
        rows = torch.arange(len(gaps), device=gaps.device)
        w = grads[rows, nearest]
        size = (gaps[rows, nearest].abs() + _PAST) / dual[rows, nearest]
        if self.threat.norm == "linf":
            step = per_sample(size, w) * w.sign()
        else:
            step = per_sample(size / dual[rows, nearest], w) * w
        # A non-finite gradient gives no step rather than a NaN input.
        return torch.where(torch.isfinite(step), step, torch.zeros_like(step))


def _class_gradients(
    logits: torch.Tensor, x: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients and values of f_k = z_k - z_y for the candidate classes k (column 0 of
    `classes` is y). Summed over the batch, so each sample's gradient is its own."""
    picked = logits.gather(1, classes)
    gaps = picked[:, 1:] - picked[:, :1]
    if not gaps.requires_grad:
        raise NoGradientPath(NO_GRADIENT_PATH.format(who="DeepFool"))
    grads = []
    for k in range(gaps.shape[1]):
        (grad,) = torch.autograd.grad(
            gaps[:, k].sum(), x, retain_graph=k < gaps.shape[1] - 1, allow_unused=True
        )
        grads.append(grad if grad is not None else torch.zeros_like(x))
    return torch.stack(grads, dim=1), gaps.detach()
