"""Per-sample bookkeeping of one check's attack passes, and the final threat-model guard.

Each pass attacks a set of samples in batches; a fresh forward pass on the model under test
decides each sample's outcome. Several passes (attack=[...]) give the worst case per
sample: a later pass only gets the samples earlier ones left unbroken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pytest_robust.attacks import Attack
from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import ThreatModel
from pytest_robust.engine import progress
from pytest_robust.engine.data import Samples
from pytest_robust.spec import Spec


class Passes:
    """Per-sample bookkeeping over one or more attack passes, in data order."""

    def __init__(self, samples: Samples, keep_adversarial: bool) -> None:
        n = len(samples)
        self.samples = samples
        self.success = torch.zeros(n, dtype=torch.bool)
        self.misclassified = torch.zeros(n, dtype=torch.bool)
        self.broken_by: dict[str, int] = {}
        self.sizes: list[torch.Tensor] = []
        self.confidences: list[torch.Tensor] = []
        self.adversarial = samples.x.detach().cpu().clone() if keep_adversarial else None

    def run(
        self,
        name: str,
        attack: Attack,
        forward: Callable[[torch.Tensor], torch.Tensor],
        todo: torch.Tensor,
        targets: torch.Tensor | None,
        device: torch.device,
        dtype: torch.dtype,
        spec: Spec,
    ) -> None:
        """Attack the `todo` samples in batches and record what the re-verification sees."""
        labels = self.samples.y.cpu()
        threat = attack.threat
        order = todo.nonzero().squeeze(1)
        broken = 0
        for start in range(0, len(order), spec.batch_size):
            ids = order[start : start + spec.batch_size]
            x = self.samples.x[ids.to(self.samples.x.device)].to(device=device, dtype=dtype)
            y = labels[ids].to(device)
            t = targets[ids].to(device) if targets is not None else None
            x_adv = attack.run(AttackBatch(forward, x, y, t, ids.to(device), spec.seed))
            _check_inside(attack, x_adv, x, threat)
            with torch.no_grad():
                logits = forward(x_adv)
            # A non-finite output on an input inside the threat model counts as broken.
            pred = torch.where(torch.isfinite(logits).all(dim=1), logits.argmax(dim=1), -1).cpu()
            hit = pred == t.cpu() if t is not None else pred != labels[ids]
            # Non-finite outputs count as broken, with full confidence.
            confidence = logits.float().softmax(dim=1).amax(dim=1).nan_to_num(1.0).cpu()
            hit &= confidence >= attack.min_confidence
            self.confidences.append(confidence[hit])
            self.success[ids] |= hit
            self.misclassified[ids] |= pred != labels[ids]
            self.sizes.append(threat.distance(x_adv, x).cpu()[hit])
            broken += int(hit.sum())
            if self.adversarial is not None:
                # Keep the breaking point; a sample nobody broke keeps its last point.
                keep = hit | ~self.success[ids]
                self.adversarial[ids[keep]] = x_adv.cpu().to(self.adversarial.dtype)[keep]
            progress.report(name, start + len(ids), len(order))
        self.broken_by[name] = broken

    def details(self, members: list[tuple[str, Attack]]) -> dict[str, Any]:
        sizes = torch.cat(self.sizes) if self.sizes else torch.zeros(0)
        details = _perturbation_sizes(sizes)
        confidences = torch.cat(self.confidences) if self.confidences else torch.zeros(0)
        details["confidence"] = (
            {"max": float(confidences.max()), "mean": float(confidences.mean())}
            if confidences.numel()
            else None
        )
        if len(members) == 1:
            details.update(members[0][1].details())
        else:
            details["broken_by"] = dict(self.broken_by)
            details["attacks"] = {name: attack.details() for name, attack in members}
        return details


def _check_inside(
    attack: Attack, x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel
) -> None:
    """The final guard: a point outside the eps-ball or the bounds is a bug in the attack."""
    tol = threat.tolerance()
    if x_adv.shape != x.shape:
        raise RuntimeError(
            f"attack {attack.name!r} returned shape {tuple(x_adv.shape)} for inputs of shape "
            f"{tuple(x.shape)}"
        )
    distance = float(threat.distance(x_adv, x).max()) if len(x) else 0.0
    low, high = threat.bounds
    outside = float(x_adv.min()) < low - tol or float(x_adv.max()) > high + tol
    if distance > threat.eps + tol or outside or not bool(torch.isfinite(x_adv).all()):
        raise RuntimeError(
            f"attack {attack.name!r} returned inputs outside the threat model "
            f"({threat.norm} distance {distance:.6g} vs eps {threat.eps:g}, "
            f"bounds {threat.bounds}); "
            "this is a bug in the attack, not in your model"
        )


def _perturbation_sizes(norms: torch.Tensor) -> dict[str, Any]:
    """Median and mean size of the successful perturbations, in the threat model's norm."""
    if norms.numel() == 0:
        return {"perturbation": None}
    return {
        "perturbation": {
            "median": float(norms.median()),
            "mean": float(norms.mean()),
            "count": int(norms.numel()),
        }
    }
