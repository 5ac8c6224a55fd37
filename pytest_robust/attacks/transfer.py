"""Transfer (black-box) attacks: craft on surrogate models, score on the model under test.

A white-box attack (`via`, default pgd) runs against the surrogate, or against the mean
logits of an ensemble of surrogates (Liu et al. 2017); the engine then judges the crafted
inputs on the target model alone. The surrogates' own success rate is reported beside the
transfer success rate, which is the result's success_rate.

Nothing stops on the surrogate: a white-box attack left to stop at the first point that
fools the surrogate returns points just across the surrogate's boundary, which rarely
transfer (and more steps made it weaker). The inner attack runs with the target as its
judge: every step is spent on the surrogate, the final iterate is kept (APGD: its
highest-loss point), and the target is asked only between restarts which samples are
already broken (one target forward per restart but the last; with one run, none beyond
the engine's own check of the result).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.registry import get_attack
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.registry import registered_attacks
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param


@register_attack
class Transfer(Attack):
    name = "transfer"
    delegate = "via"
    params = {
        "surrogate": Param(
            "models",
            None,
            optional=True,
            doc="fixture name(s) of the surrogate model(s); models in evaluate()",
        ),
        "via": Param(str, "pgd", doc="the white-box attack run on the surrogate(s)"),
    }
    targetable = True  # as far as `via` is; validation checks the delegate
    reference = (
        "Papernot, McDaniel, Goodfellow 2016, Transferability in Machine Learning; "
        "Liu et al. 2017, Delving into Transferable Adversarial Examples"
    )

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        surrogates = config.get("surrogate")
        if not surrogates:
            raise RobustConfigError(
                "attack='transfer' needs surrogate=: the fixture name of a surrogate model "
                "(or a list of names for an ensemble); in evaluate(), the model(s)"
            )
        for surrogate in surrogates:
            if not isinstance(surrogate, torch.nn.Module):
                raise RobustConfigError(
                    f"surrogate: {surrogate!r} is not a torch.nn.Module returning logits"
                )
        inner = get_attack(config["via"])
        if not inner.supports_judge:
            usable = sorted(n for n, a in registered_attacks().items() if a.supports_judge)
            raise RobustConfigError(
                f"via={config['via']!r} cannot craft transfer examples: it stops at the first "
                "point that fools the surrogate (or seeks the smallest perturbation), and such "
                f"points rarely transfer; use one of {', '.join(usable)}"
            )
        inner_config = {k: v for k, v in config.items() if k in inner.params}
        return {
            "surrogate": tuple(surrogates),
            "via": config["via"],
            **inner.finalize(inner_config, threat),
        }

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        super().__init__(threat, **config)
        inner = get_attack(config["via"])
        self.inner = inner(threat, **{k: v for k, v in config.items() if k in inner.params})
        self.surrogates: Sequence[torch.nn.Module] = config["surrogate"]
        self.crafted = 0
        self.fooled = 0

    def _ensemble(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [surrogate(x) for surrogate in self.surrogates]
        for out in outputs:
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(x):
                raise RobustConfigError(
                    "surrogate models must return logits of shape (batch, classes); got "
                    f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}"
                )
        return torch.stack(outputs).mean(dim=0)

    def choose_targets(
        self, clean_logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | None:
        return self.inner.choose_targets(clean_logits, labels)

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        target = batch.model

        def on_target(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            """Broken on the target, by the engine's rule (non-finite logits count)."""
            with torch.no_grad():
                logits = target(x)
            targets = batch.targets[rows] if batch.targets is not None else None
            finite = torch.isfinite(logits).all(dim=1)
            hit = self.is_success(logits.nan_to_num(), batch.labels[rows], targets) | ~finite
            confidence = logits.float().softmax(dim=1).amax(dim=1).nan_to_num(1.0)
            return hit & (confidence >= self.min_confidence)

        self.inner.judge = on_target
        crafted = self.inner.run(
            AttackBatch(
                self._ensemble, batch.x, batch.labels, batch.targets, batch.sample_ids, batch.seed
            )
        )
        with torch.no_grad():
            fooled = self.is_success(self._ensemble(crafted), batch.labels, batch.targets)
        self.crafted += len(crafted)
        self.fooled += int(fooled.sum())
        return crafted

    def details(self) -> dict[str, Any]:
        rate = self.fooled / self.crafted if self.crafted else 0.0
        return {
            "surrogate_success_rate": rate,
            "surrogates": len(self.surrogates),
            "via": self.config["via"],
        }
