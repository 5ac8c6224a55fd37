"""FGSM: one step of size eps along the sign of the input gradient (Goodfellow et al. 2014).

x_adv = clip(x + eps * sign(grad_x L(x, y))) for L-inf; for L2 the step is
eps * grad / ||grad|| (the fast gradient method).
"""

from __future__ import annotations

from typing import Any

from pytest_robust.attacks.eot import EOT
from pytest_robust.attacks.gradient import GradientAttack
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import ThreatModel


@register_attack
class FGSM(GradientAttack):
    name = "fgsm"
    params = {"eot": EOT}
    reference = "Goodfellow, Shlens, Szegedy 2014, Explaining and Harnessing Adversarial Examples"

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        # A single step of the full budget: nothing to choose but the EOT draws.
        return {"eot": config["eot"]} if "eot" in config else {}

    def schedule(self) -> tuple[int, float, int, bool]:
        return (1, self.threat.eps, 1, False)
