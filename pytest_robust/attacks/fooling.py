"""Fooling images: can the model be made to see a class in noise, with high confidence?

Each slot starts from uniform noise anywhere in the bounds (keyed by seed and sample index)
and follows the gradient of log p(target) until the target's probability reaches
`confidence` (Nguyen, Yosinski, Clune 2015 find such images for real networks; the slides
ask the same of a digits model). The clean inputs only provide the shape and the number of
images, so the threat model must cover the whole input range: L-inf with eps >= high - low.
A success is an image classified as its target with at least `confidence`, checked by the
engine's own forward pass; the result reports the confidence reached.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.gradient import ALPHA
from pytest_robust.attacks.gradient import input_gradient
from pytest_robust.attacks.gradient import steps_param
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.sampling import uniform
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param


@register_attack
class Fooling(Attack):
    name = "fooling"
    params = {
        "steps": steps_param(100),
        "alpha": ALPHA,
        "confidence": Param(
            float, 0.99, 0.0, 1.0, doc="probability of the target that counts as fooled"
        ),
    }
    norms = ("linf",)
    targeted = True  # cycles through the classes unless target= says otherwise
    targetable = True
    reference = (
        "Nguyen, Yosinski, Clune 2015, Deep Neural Networks are Easily Fooled: High "
        "Confidence Predictions for Unrecognizable Images"
    )

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        low, high = threat.bounds
        if threat.eps < high - low:
            raise RobustConfigError(
                f"attack='fooling' starts from noise anywhere in bounds={threat.bounds}, so "
                f"eps must cover the whole range: eps={high - low:g} (got eps={threat.eps:g})"
            )
        steps = config.get("steps", 100)
        if config.get("alpha") is None:
            config["alpha"] = 2.0 * (high - low) / steps  # can cross the range twice
        return {
            "steps": steps,
            "alpha": config["alpha"],
            "confidence": config.get("confidence", 0.99),
        }

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        super().__init__(threat, **config)
        self.min_confidence = float(config.get("confidence", 0.99))

    def choose_targets(
        self, clean_logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | None:
        # Every class in turn, so the images cover all classes (target= overrides this).
        return torch.arange(len(labels)) % clean_logits.shape[1]

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        low, high = self.threat.bounds
        x = low + (high - low) * uniform(
            batch.seed, batch.sample_ids, batch.x.shape, 0, batch.x.dtype
        )
        targets = batch.targets if batch.targets is not None else batch.labels
        best = x.clone()
        active = torch.arange(len(x), device=x.device)
        steps, alpha = int(self.config["steps"]), float(self.config["alpha"])
        for step in range(steps + 1):
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = batch.model(x)
                log_p = F.log_softmax(logits, dim=1).gather(1, targets[active, None]).squeeze(1)
                done = (log_p.detach().exp() >= self.min_confidence) & (
                    logits.detach().argmax(dim=1) == targets[active]
                )
                if step < steps:
                    grad = input_gradient(log_p.sum(), x)
            x = x.detach()
            best[active] = x  # the latest point of each image still being optimised
            if step == steps or bool(done.all()):
                break
            x = (x + alpha * grad.sign()).clamp(low, high)
            keep = ~done
            x, active = x[keep], active[keep]
        return best
