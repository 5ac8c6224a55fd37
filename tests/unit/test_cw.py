"""Carlini & Wagner L2 against closed forms on linear models, and on the digits CNN."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from per_sample import bits
from toy_models import LogisticRegression
from toy_models import linear_problem

from pytest_robust import RobustConfigError
from pytest_robust import evaluate

BOUNDS = (-0.5, 1.5)  # wide enough that no coordinate below needs clipping


N = 40  # points per linear problem


def at_distance(w: torch.Tensor, dist: float, n: int = 20):
    """Points at L2 distance exactly `dist` from the boundary w.x = 0, on both sides."""
    g = torch.Generator().manual_seed(1)
    q = torch.rand(n, len(w), generator=g) * 0.6 + 0.2
    on_boundary = q - (q @ w)[:, None] * w / w.dot(w)
    side = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
    return on_boundary + dist * side[:, None] * w / w.norm(), (side > 0).long()


def cw(model, data, **params):
    params = {"eps": 100.0, "norm": "l2", "bounds": BOUNDS, **params}
    return evaluate(model, data, attack="cw", **params)


def test_minimum_norm_matches_the_closed_form_distance_to_the_boundary() -> None:
    """The smallest L2 perturbation that flips w.x + b is |w.x + b| / ||w||_2."""
    model, x, y, w, score = linear_problem(0, N)
    exact = score.abs() / w.norm()
    result = cw(model, (x, y), keep_adversarial=True)
    assert result.success_rate == 1.0
    ratio = (result.adversarial - x).norm(dim=1) / exact
    assert float(ratio.min()) >= 1 - 1e-4  # never closer than the boundary itself
    assert float(ratio.median()) < 1.01 and float(ratio.max()) < 1.06
    found = result.details["minimum_norm"]
    assert found["count"] == len(x)
    assert found["median"] == pytest.approx(float(exact.median()), rel=0.02)


def test_confidence_buys_a_logit_margin_at_its_closed_form_price() -> None:
    """With kappa the point must reach score margin kappa: distance (|s| + kappa) / ||w||."""
    model, x, y, w, score = linear_problem(1, N)
    result = cw(model, (x, y), confidence=1.0, keep_adversarial=True)
    with torch.no_grad():
        moved = model(result.adversarial)[:, 1]
    toward = torch.where(y == 1, -1.0, 1.0)
    assert float((toward * moved).min()) >= 1.0 - 1e-4
    exact = (score.abs() + 1.0) / w.norm()
    assert result.details["minimum_norm"]["median"] == pytest.approx(
        float(exact.median()), rel=0.03
    )


def test_eps_just_below_the_boundary_breaks_nothing_just_above_breaks_all() -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(20, generator=g)
    x, y = at_distance(w, 0.5)
    model = LogisticRegression(w)
    below = cw(model, (x, y), eps=0.49)
    above = cw(model, (x, y), eps=0.53)
    assert below.clean_acc == above.clean_acc == 1.0
    assert below.n_success == 0 and below.robust_acc == 1.0
    assert above.success_rate == 1.0
    # The search does not depend on eps: the same minimum is found either way.
    assert below.details["minimum_norm"] == above.details["minimum_norm"]
    assert below.details["minimum_norm"]["median"] == pytest.approx(0.5, rel=0.02)


def test_more_steps_find_smaller_perturbations() -> None:
    model, x, y, w, score = linear_problem(3, N)
    weak = cw(model, (x, y), steps=10).details["minimum_norm"]
    strong = cw(model, (x, y), steps=100).details["minimum_norm"]
    exact = float((score.abs() / w.norm()).median())
    assert strong["count"] >= weak["count"]
    assert exact * (1 - 1e-4) <= strong["median"] < weak["median"]


def test_deterministic_and_independent_of_the_batch_size() -> None:
    model, x, y, _, _ = linear_problem(4, n=12)
    runs = [cw(model, (x, y), batch_size=size, keep_adversarial=True) for size in (12, 12, 5)]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert runs[0].details == runs[1].details
    assert torch.allclose(runs[0].adversarial, runs[2].adversarial, atol=1e-6)


def test_l2_only() -> None:
    model, x, y, _, _ = linear_problem(0, n=2)
    with pytest.raises(RobustConfigError, match="supports l2"):
        evaluate(model, (x, y), attack="cw", eps=0.1, norm="linf")


QUICK: dict[str, Any] = {"max_samples": 40, "steps": 50, "search_steps": 4}


def test_breaks_the_undefended_cnn_and_nothing_at_eps_zero(digits_cnn, digits_data):
    broken = evaluate(digits_cnn, digits_data, attack="cw", eps=2.0, norm="l2", **QUICK)
    assert broken.clean_acc > 0.95 and broken.robust_acc < 0.05
    found = broken.details["minimum_norm"]
    assert found["count"] >= broken.n_success and 0.1 < found["median"] < 1.5

    quick: dict[str, Any] = {**QUICK, "max_samples": 10, "search_steps": 1, "initial_const": 10.0}
    zero = evaluate(digits_cnn, digits_data, attack="cw", eps=0.0, norm="l2", **quick)
    assert zero.n_success == 0 and zero.robust_acc == zero.clean_acc
    assert zero.details["perturbation"] is None and zero.details["minimum_norm"]["count"] > 0


def test_targeted_reaches_the_target(digits_cnn, digits_data):
    _, y = digits_data
    result = evaluate(
        digits_cnn,
        digits_data,
        attack="cw",
        eps=2.0,
        norm="l2",
        target=3,
        keep_adversarial=True,
        **QUICK,
    )
    assert result.targeted
    with torch.no_grad():
        pred = digits_cnn(result.adversarial[:40]).argmax(1)
    hit = bits(result.success)
    attacked = bits(result.attacked)
    assert torch.equal(hit, attacked & (pred == 3))
    assert not bool(attacked[y[:40] == 3].any())
    assert result.success_rate > 0.8
