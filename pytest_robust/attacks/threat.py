"""The threat model: where adversarial inputs may lie, and the one per-sample broadcast.

A `ThreatModel` is the eps-ball of one norm around each clean input, intersected with the
input bounds (Foolbox keeps the same concept in its own small `distances.py`). It projects,
measures, draws random points of the ball and gives the unit step of its norm; the attacks
and the engine ask it rather than spelling the norm out themselves.

`per_sample` is the package's one way to spread a per-sample value (a norm, a step size, a
success mask) over the remaining dimensions of a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field

import torch

from pytest_robust.attacks import sampling


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`values` (one per sample, shape (n,)) shaped (n, 1, ..., 1) to broadcast over
    `like` (shape (n, ...))."""
    return values.view(-1, *([1] * (like.dim() - 1)))


@dataclass(frozen=True)
class ThreatModel:
    """Where adversarial inputs may lie: within `eps` of the clean input in `norm`, inside
    `bounds`, and equal to the clean input on the `frozen` features (the marker's mask=)."""

    eps: float
    norm: str  # "linf" or "l2"
    bounds: tuple[float, float]
    # True where a feature may not be perturbed; shaped to broadcast over one sample's
    # shape (engine/input_domain.py frozen_features). None: every feature may move.
    frozen: torch.Tensor | None = field(default=None, compare=False)
    # Per-feature bounds (low, high), shaped to broadcast over one sample's shape, inside
    # `bounds` (then the range they span). None: `bounds` for every feature.
    per_feature: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, compare=False)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """`x` clipped to the bounds, per feature where they are given so."""
        x = x.clamp(*self.bounds)
        if self.per_feature is None:
            return x
        low, high = (bound.to(x) for bound in self.per_feature)
        return torch.maximum(torch.minimum(x, high), low)

    def outside(self, x: torch.Tensor) -> bool:
        """True when some value of `x` lies outside the bounds (beyond the tolerance)."""
        tol = self.tolerance()
        low, high = self.bounds
        if float(x.min()) < low - tol or float(x.max()) > high + tol:
            return True
        if self.per_feature is None:
            return False
        low_t, high_t = (bound.to(x) for bound in self.per_feature)
        return bool(((x < low_t - tol) | (x > high_t + tol)).any())

    def hold(self, delta: torch.Tensor) -> torch.Tensor:
        """`delta` with the frozen features set to zero (a no-op without a mask)."""
        if self.frozen is None:
            return delta
        return delta.masked_fill(self.frozen.to(delta.device), 0.0)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The nearest-in-norm point of the ball, then clipped to the bounds.

        Clipping moves each coordinate towards x (x is inside the bounds), so it never
        leaves the ball. Frozen features are set back to x first: the ball intersected with
        the free features' subspace, whose nearest point is found the same way.
        """
        delta = self.hold(x_adv - x)
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            scale = (self.eps / norms).clamp(max=1.0)
            delta = delta * per_sample(scale, delta)
        return self.clip(x + delta)

    def unit_step(self, grad: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent step of unit size in this norm: sign(grad) (L-inf) or
        grad / ||grad||_2 per sample (L2)."""
        grad = self.hold(grad)  # no step along a frozen feature
        if self.norm == "linf":
            return grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        return torch.div(grad, per_sample(norms, grad))

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-sample distance in this threat model's norm."""
        delta = (x_adv - x).flatten(1)
        return delta.abs().amax(dim=1) if self.norm == "linf" else delta.norm(dim=1)

    def tolerance(self) -> float:
        """Float slack allowed when checking membership (rounding of x + delta)."""
        eps = self.eps if math.isfinite(self.eps) else 0.0  # bounds-only: slack from bounds
        return 1e-5 * max(1.0, abs(self.bounds[0]), abs(self.bounds[1]), eps)

    @classmethod
    def bounds_only(
        cls,
        bounds: tuple[float, float],
        frozen: torch.Tensor | None = None,
        per_feature: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> ThreatModel:
        """The threat model of an attack that is not an eps-ball attack (eps_ball=False):
        any input inside the bounds (the frozen features kept). eps is infinite, so
        projecting only clips to the bounds and the engine's guard checks only the bounds,
        the frozen features, the shape and finiteness."""
        return cls(math.inf, "linf", bounds, frozen, per_feature)

    def random_point(
        self, x: torch.Tensor, seed: int, sample_ids: torch.Tensor, stream: int
    ) -> torch.Tensor:
        """A uniform point of the ball around each sample (then clipped to the bounds)."""
        if self.norm == "linf":
            u = sampling.uniform(seed, sample_ids, x.shape, stream, x.dtype)
            delta = (2 * u - 1) * self.eps
        else:
            direction = sampling.normal(seed, sample_ids, x.shape, stream, x.dtype)
            direction = direction / per_sample(direction.flatten(1).norm(dim=1).clamp_min(1e-12), x)
            # Radius u**(1/d) makes the point uniform in the d-dimensional ball.
            d = x[0].numel()
            u = sampling.uniform(seed, sample_ids, torch.Size([len(x), 1]), stream + 7919, x.dtype)
            radius = self.eps * per_sample(u.pow(1.0 / d), x)
            delta = direction * radius
        return self.clip(x + self.hold(delta))
