"""MI-FGSM: iterative FGSM with a momentum term (Dong et al. 2018).

Each step accumulates the L1-normalised gradient into a per-sample velocity,
g_{t+1} = decay * g_t + grad / ||grad||_1, and steps by alpha along sign(g) (L-inf) or
g / ||g||_2 (L2). The momentum stabilises the direction across steps, which escapes
poor local maxima of the loss and transfers better to other models. With decay=0 it is
exactly BIM.
"""

from __future__ import annotations

from typing import Any

import torch

from pytest_robust.attacks.eot import EOT
from pytest_robust.attacks.gradient import GradientAttack
from pytest_robust.attacks.gradient import steps_param
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.attacks.threat import per_sample
from pytest_robust.params import Param


@register_attack
class MIFGSM(GradientAttack):
    name = "mifgsm"
    params = {
        "steps": steps_param(10),
        "alpha": Param(
            float, None, minimum=0.0, optional=True, doc="step size; default eps / steps"
        ),
        "decay": Param(float, 1.0, minimum=0.0, doc="momentum decay factor mu"),
        "eot": EOT,
    }
    default_steps = 10
    reference = "Dong et al. 2018, Boosting Adversarial Attacks with Momentum"

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        if config.get("alpha") is None:
            # The paper's choice: steps * alpha = eps, so the walk can just reach the edge.
            config["alpha"] = threat.eps / config.get("steps", cls.default_steps)
        return super().finalize(config, threat)

    def initial_state(self, x0: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x0)

    def step_direction(
        self, grad: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert state is not None  # initial_state always gives one
        # Per-sample L1 normalisation: the velocity adds up directions, not magnitudes, so
        # one step's large gradient cannot dominate the history.
        l1 = grad.flatten(1).abs().sum(dim=1).clamp_min(1e-12)
        velocity = float(self.config.get("decay", 1.0)) * state + grad / per_sample(l1, grad)
        return self.direction(velocity), velocity
