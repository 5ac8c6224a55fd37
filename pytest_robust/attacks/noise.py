"""Random noise: the baseline every real attack must beat (Carlini et al. 2019).

`random_noise`: up to `samples` random points of the eps-ball are tried per input; the
first one that breaks the input (or reaches its target) is kept, and a broken input gets
no more draws. A gradient attack that does no better than this is not working (masked
gradients, a wrong loss, a step size too small).

`noise`: accuracy under additive noise of standard deviation `sigma` (Gaussian, or uniform
of the same standard deviation), not an eps-ball attack: a non-adversarial curve to set
beside the adversarial one. A sample counts as robust when it is classified correctly
under each of `draws` seeded noisy copies (one by default: plain accuracy under noise).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from pytest_robust.attacks import sampling
from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param

DISTRIBUTIONS = ("uniform", "gaussian")


@register_attack
class RandomNoise(Attack):
    name = "random_noise"
    params = {
        "samples": Param(int, 100, minimum=1, doc="random draws per input"),
        "distribution": Param(
            str,
            "uniform",
            choices=("uniform", "gaussian"),
            doc="'uniform' in the eps-ball, or 'gaussian' projected onto it",
        ),
    }
    targetable = True
    reference = "Carlini et al. 2019, On Evaluating Adversarial Robustness"

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        super().__init__(threat, **config)
        self._draws: list[int] = []

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        if config.get("distribution", "uniform") not in DISTRIBUTIONS:
            raise RobustConfigError(
                f"distribution={config['distribution']!r}: must be 'uniform' or 'gaussian'"
            )
        return config

    def details(self) -> dict[str, Any]:
        if not self._draws:
            return {"draws": None}
        return {
            "draws": {
                "mean": statistics.fmean(self._draws),
                "median": float(statistics.median(self._draws)),
            }
        }

    def draw(self, x: torch.Tensor, batch: AttackBatch, ids: torch.Tensor, k: int) -> torch.Tensor:
        """Draw number k for the samples `ids`, keyed by (seed, sample id, k)."""
        threat = self.threat
        if self.config.get("distribution", "uniform") == "uniform":
            return threat.random_point(x, batch.seed, ids, k)
        # sigma = eps / sqrt(d) (L2) gives E||noise||^2 = eps^2: the draws sit around the
        # sphere, about half of them pulled onto it by the projection. sigma = eps / 2
        # (L-inf) puts ~95% of coordinates inside [-eps, eps] and clips the rest to the
        # faces; a larger sigma would collapse the draws onto the corners (random signs).
        d = x[0].numel()
        sigma = threat.eps / math.sqrt(d) if threat.norm == "l2" else threat.eps / 2
        noise = sampling.normal(batch.seed, ids, x.shape, k, x.dtype)
        return threat.project(x + sigma * noise, x)

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        best = batch.x.clone()
        draws = torch.zeros(len(best), dtype=torch.long)
        active = torch.arange(len(best), device=best.device)
        with torch.no_grad():
            for k in range(int(self.config.get("samples", 100))):
                if active.numel() == 0:
                    break
                x0 = batch.x[active]
                targets = batch.targets[active] if batch.targets is not None else None
                point = self.draw(x0, batch, batch.sample_ids[active], k)
                hit = self.is_success(batch.model(point), batch.labels[active], targets)
                draws[active.cpu()] += 1
                best[active[hit]] = point[hit]
                active = active[~hit]
        self._draws.extend(draws.tolist())
        # Unbroken inputs come back clean: no draw was adversarial, none is better.
        return best


@register_attack
class Noise(Attack):
    name = "noise"
    eps_ball = False
    params = {
        "sigma": Param(
            float, None, minimum=0.0, optional=True, doc="standard deviation of the noise"
        ),
        "distribution": Param(
            str,
            "gaussian",
            choices=("gaussian", "uniform"),
            doc="'gaussian', or 'uniform' with the same standard deviation",
        ),
        "draws": Param(
            int, 1, minimum=1, doc="noisy copies per sample; robust = correct on every one"
        ),
    }
    reference = (
        "Carlini et al. 2019, On Evaluating Adversarial Robustness; Hendrycks & Dietterich "
        "2019, Benchmarking Neural Network Robustness to Common Corruptions"
    )

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        if config.get("sigma") is None:
            raise RobustConfigError(
                "attack='noise' needs sigma=: the noise's standard deviation in input units, "
                "e.g. sigma=0.1, or a list sigma=[0.05, 0.1, 0.2] for a curve"
            )
        return config

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        sigma = float(self.option("sigma"))
        uniform = self.option("distribution") == "uniform"
        best = batch.x.clone()
        active = torch.arange(len(best), device=best.device)
        with torch.no_grad():
            for k in range(int(self.option("draws"))):
                if active.numel() == 0:
                    break
                ids, shape = batch.sample_ids[active], batch.x[active].shape
                if uniform:  # U[-a, a] has standard deviation a / sqrt(3)
                    u = sampling.uniform(batch.seed, ids, shape, k, batch.x.dtype)
                    noise = (2 * u - 1) * (math.sqrt(3) * sigma)
                else:
                    noise = sampling.normal(batch.seed, ids, shape, k, batch.x.dtype) * sigma
                point = (batch.x[active] + noise.to(best.device)).clamp(*self.threat.bounds)
                hit = self.is_success(batch.model(point), batch.labels[active], None)
                # A broken sample keeps its breaking copy; the others their latest copy.
                best[active] = point
                active = active[~hit]
        return best
