"""The public Hypothesis strategies stay inside their threat model and shrink to the identity."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck
from hypothesis import find
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import pytest_robust.attacks.transform_ops as T
from pytest_robust.attacks import ThreatModel
from pytest_robust.strategies import Transformation
from pytest_robust.strategies import perturbations
from pytest_robust.strategies import perturbed
from pytest_robust.strategies import transforms

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=st.data(), shape=shapes, eps=st.floats(0.0, 3.0), norm=st.sampled_from(["linf", "l2"]))
def test_perturbations_lie_inside_the_ball(
    data: st.DataObject, shape: tuple[int, ...], eps: float, norm: str
) -> None:
    delta = data.draw(perturbations(shape, eps, norm))
    assert tuple(delta.shape) == shape and bool(torch.isfinite(delta).all())
    threat = ThreatModel(eps, norm, (0.0, 1.0))
    size = float(threat.distance(delta[None], torch.zeros_like(delta)[None]))
    assert size <= eps + threat.tolerance()


@FAST
@given(
    data=st.data(),
    shape=shapes,
    eps=st.floats(0.0, 1.0),
    norm=st.sampled_from(["linf", "l2"]),
    low=st.floats(-2.0, 0.5),
    width=st.floats(0.1, 3.0),
    seed=st.integers(0, 2**16),
)
def test_perturbed_inputs_lie_inside_the_ball_and_the_bounds(
    data: st.DataObject,
    shape: tuple[int, ...],
    eps: float,
    norm: str,
    low: float,
    width: float,
    seed: int,
) -> None:
    bounds = (low, low + width)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * width + low
    point = data.draw(perturbed(x, eps, norm, bounds))
    threat = ThreatModel(eps, norm, bounds)
    tol = threat.tolerance()
    assert float(threat.distance(point[None], x[None])) <= eps + tol
    assert float(point.min()) >= bounds[0] - tol and float(point.max()) <= bounds[1] + tol


def test_perturbations_reach_corners_sparse_points_and_shrink_to_zero() -> None:
    eps = 0.25
    strategy = perturbations((4, 5), eps)
    corner = find(strategy, lambda d: bool((d.abs() == eps).all()))
    assert bool((corner.abs() == eps).all())
    sparse = find(strategy, lambda d: 0 < int((d != 0).sum()) <= 2)
    assert 0 < int((sparse != 0).sum()) <= 2
    # The smallest failure Hypothesis reports for "any change at all": one coordinate.
    smallest = find(strategy, lambda d: bool((d != 0).any()))
    assert int((smallest != 0).sum()) == 1
    assert torch.equal(find(strategy, lambda d: True), torch.zeros(4, 5))
    on_sphere = find(perturbations((30,), 1.0, "l2"), lambda d: float(d.norm()) > 0.999)
    assert math.isclose(float(on_sphere.norm()), 1.0, rel_tol=1e-5)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="norm"):
        perturbations((3,), 0.1, "l1")
    with pytest.raises(ValueError, match="eps"):
        perturbations((3,), -0.1)
    with pytest.raises(ValueError, match="outside bounds"):
        perturbed(torch.full((3,), 2.0), 0.1)
    with pytest.raises(ValueError, match="rotate"):
        transforms(rotate=-1)


@FAST
@given(
    data=st.data(),
    rotate=st.floats(0, 180),
    translate=st.floats(0, 4),
    scale=st.floats(0, 0.5),
    blur=st.floats(0, 2),
    noise=st.floats(0, 0.2),
)
def test_transforms_lie_inside_their_ranges(
    data: st.DataObject, rotate: float, translate: float, scale: float, blur: float, noise: float
) -> None:
    t = data.draw(transforms(rotate, translate, scale, 0.2, 0.3, blur, noise))
    top = T.maxima(
        dict(rotate=rotate, translate=translate, scale=scale, brightness=0.2, contrast=0.3)
        | dict(blur=blur, noise=noise)
    )
    assert bool(T.inside(t.params, top, tol=0.0))
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    out = t.apply(x)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_transforms_shrink_to_the_identity_and_to_the_smallest_shift() -> None:
    assert find(transforms(), lambda t: True).is_identity
    shift = find(transforms(), lambda t: abs(t.translate_x) >= 1)
    assert shift == Transformation(translate_x=1.0) or shift == Transformation(translate_x=-1.0)
    assert str(Transformation(rotate=5.0)) == "Transformation(rotate=5)"
