"""The shared part of the minimum-norm attacks (C&W, DeepFool): they look for the
smallest adversarial perturbation, not for any point of the eps-ball, and report the norms
they found (before `Attack.run` projects onto the ball) as details()["minimum_norm"]."""

from __future__ import annotations

from typing import Any

import torch

from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.threat import ThreatModel


def summarize_norms(norms: list[torch.Tensor]) -> dict[str, Any]:
    """details()["minimum_norm"]: median, mean and count of the norms found, or None."""
    found = torch.cat(norms) if norms else torch.zeros(0)
    if found.numel() == 0:
        return {"minimum_norm": None}
    found = found.double()
    return {
        "minimum_norm": {
            "median": float(found.median()),
            "mean": float(found.mean()),
            "count": int(found.numel()),
        }
    }


class MinimumNormAttack(Attack):
    """An attack on logit differences that records, per batch, the norms it found."""

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        super().__init__(threat, **config)
        self._found: list[torch.Tensor] = []

    def gradient_loss(self) -> str | None:
        return "logits"

    def details(self) -> dict[str, Any]:
        return summarize_norms(self._found)
