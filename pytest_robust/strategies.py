"""Hypothesis strategies for robustness properties you write yourself with `@given`.

    from hypothesis import given
    from pytest_robust.strategies import perturbed, transforms

    @given(t=transforms(rotate=15, translate=2, scale=0, brightness=0, contrast=0,
                        blur=0, noise=0))
    def test_a_seven_stays_a_seven(model, seven, t):
        assert model(t.apply(seven)).argmax(dim=1).item() == 7

Everything drawn lies inside its threat model, and shrinks towards the identity (no
perturbation, zero angle, zero shift), so Hypothesis reports the smallest failure it finds
and replays it from its example database on the next run.

- `perturbations(shape, eps, norm)`: deltas inside the eps-ball (no bounds: a delta does
  not know the clean input). Apply one with `perturb(x, delta, bounds)`, which clips to
  the bounds and so stays inside the ball, or draw the perturbed inputs directly with
  `perturbed(x, eps, norm, bounds)`.
- `transforms(...)`: `Transformation`s, whose `apply(x)` runs pytest_robust.attacks.transform_ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple
from dataclasses import dataclass
from dataclasses import fields

import torch

try:
    from hypothesis import strategies as st
except ModuleNotFoundError as error:  # an extra, not a dependency: say how to get it
    if error.name != "hypothesis":
        raise
    raise ModuleNotFoundError(
        "pytest_robust.strategies needs Hypothesis, which is an optional extra: "
        'pip install "pytest-robust[hypothesis]"',
        name="hypothesis",
    ) from error

import pytest_robust.attacks.transform_ops as T
from pytest_robust.params import NORM_ALIASES

# Hypothesis shrinks sampled_from towards the first kind: the identity.
KINDS = ("zero", "sparse", "dense", "corner")
MAX_SPARSE = 8  # coordinates a sparse perturbation changes, at most


def perturbations(
    shape: Sequence[int], eps: float, norm: str = "linf", dtype: torch.dtype = torch.float32
) -> st.SearchStrategy[torch.Tensor]:
    """Tensors `delta` of `shape` with ||delta|| <= eps in `norm` ('linf' or 'l2').

    A mix of the zero perturbation, sparse ones (1 to 8 coordinates), dense ones (every
    coordinate) and corners (every coordinate at +-eps for L-inf; a point on the sphere
    for L2). Sparse and dense ones have a seeded random direction and a size, a drawn
    fraction of eps; Hypothesis shrinks the kind towards zero, the count of coordinates
    towards one and the size towards zero. For a
    batch, give the batch's shape: the norm is then that of the whole tensor.
    """
    if norm not in NORM_ALIASES:
        raise ValueError(f"norm={norm!r}: must be 'linf' or 'l2'")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps={eps!r}: must be a finite number >= 0")
    size = math.prod(shape)
    if size < 1:
        raise ValueError(f"shape={tuple(shape)!r}: needs at least one element")
    return _perturbation(tuple(shape), float(eps), NORM_ALIASES[norm], dtype)


@st.composite
def _perturbation(
    draw: st.DrawFn, shape: tuple[int, ...], eps: float, norm: str, dtype: torch.dtype
) -> torch.Tensor:
    # The same draws in the same order for every kind, so that when Hypothesis shrinks the
    # kind towards "zero" the other draws keep their meaning.
    kind = draw(st.sampled_from(KINDS))
    fraction = draw(st.floats(0.0, 1.0))  # of eps; corners are always at eps
    count = draw(st.integers(1, MAX_SPARSE))  # coordinates a sparse draw changes
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    size = math.prod(shape)
    if kind == "zero":
        return torch.zeros(shape, dtype=dtype)
    if kind == "corner":
        flat = torch.randint(0, 2, (size,), generator=generator).double() * 2 - 1
        fraction = 1.0
    elif norm == "l2":
        flat = torch.randn(size, generator=generator, dtype=torch.float64)
    else:
        flat = torch.rand(size, generator=generator, dtype=torch.float64) * 2 - 1
    if kind == "sparse":
        keep = torch.randperm(size, generator=generator)[: min(count, size)]
        flat = torch.zeros_like(flat).index_copy(0, keep, flat[keep])
    # Scale so the largest coordinate (L-inf) or the norm (L2) is fraction * eps.
    top = flat.abs().max() if norm == "linf" else flat.norm()
    flat = flat / top.clamp_min(1e-300) * fraction
    return (flat * eps).to(dtype).reshape(shape)


def perturb(
    x: torch.Tensor, delta: torch.Tensor, bounds: tuple[float, float] = (0.0, 1.0)
) -> torch.Tensor:
    """x + delta clipped to `bounds`: still inside the ball, since x is inside the bounds
    and clipping only moves a coordinate towards x."""
    return (x + delta.to(x)).clamp(*bounds)


def perturbed(
    x: torch.Tensor, eps: float, norm: str = "linf", bounds: tuple[float, float] = (0.0, 1.0)
) -> st.SearchStrategy[torch.Tensor]:
    """Inputs within eps of `x` in `norm` and inside `bounds` (x itself must be inside)."""
    low, high = bounds
    if bool((x < low).any()) or bool((x > high).any()):
        raise ValueError(f"x has values outside bounds={bounds!r}")
    return perturbations(tuple(x.shape), eps, norm, x.dtype).map(lambda d: perturb(x, d, bounds))


@dataclass(frozen=True)
class Transformation:
    """One natural transformation (pytest_robust.attacks.transform_ops says what each field
    does); all zeros is the identity."""

    rotate: float = 0.0
    translate_x: float = 0.0
    translate_y: float = 0.0
    scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    blur: float = 0.0
    noise: float = 0.0

    @property
    def params(self) -> torch.Tensor:
        """The parameter row, in pytest_robust.attacks.transform_ops.PARAMS order."""
        return torch.tensor(astuple(self), dtype=torch.float64)

    @property
    def is_identity(self) -> bool:
        return not any(astuple(self))

    def apply(
        self, x: torch.Tensor, bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0
    ) -> torch.Tensor:
        """Transform every image of the (N, C, H, W) batch x; clipped to bounds. The noise
        pattern of image i is keyed by (seed, i)."""
        return T.apply(x, self.params.to(x).expand(len(x), -1), bounds, seed)

    def __str__(self) -> str:
        shown = [
            f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if getattr(self, f.name)
        ]
        return f"Transformation({', '.join(shown)})"


def transforms(
    rotate: float = 15,
    translate: float = 2,
    scale: float = 0.1,
    brightness: float = 0.2,
    contrast: float = 0.2,
    blur: float = 1.0,
    noise: float = 0.05,
) -> st.SearchStrategy[Transformation]:
    """Transformations within the given ranges: rotate in [-rotate, rotate] degrees, shifts
    in [-translate, translate] pixels in x and in y, zoom factor in [1 - scale, 1 + scale],
    brightness in [-brightness, brightness], contrast factor in [1 - contrast,
    1 + contrast], blur sigma in [0, blur] pixels, noise sigma in [0, noise]. 0 turns a
    kind off. Every parameter shrinks towards 0, the identity."""
    ranges = {
        "rotate": rotate,
        "translate": translate,
        "scale": scale,
        "brightness": brightness,
        "contrast": contrast,
        "blur": blur,
        "noise": noise,
    }
    for name, value in ranges.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value!r}: must be a finite number >= 0")
    if scale >= 1 or contrast > 1:
        raise ValueError("scale must be < 1 and contrast <= 1 (factors stay positive)")
    top = T.maxima(ranges).tolist()

    def axis(index: int) -> st.SearchStrategy[float]:
        value = top[index]
        if value == 0:
            return st.just(0.0)
        low = 0.0 if index in T.ONE_SIDED else -value
        return st.floats(low, value, allow_nan=False)

    return st.builds(Transformation, **{name: axis(i) for i, name in enumerate(T.PARAMS)})
