"""Per-feature bounds (tensors): tabular data whose columns have different ranges. The
threat model clips every feature to its own bounds, so every attack obeys them, and the
engine's final check refuses a point outside them. Checked from outside: every attack's
points lie inside the per-feature bounds (Hypothesis), and a linear classifier's robustness
equals its closed-form worst case with each feature clipped to its own range."""

from __future__ import annotations

import pytest
import torch
from every_attack import quick_arguments
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from toy_models import TinyNet

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import get_attack
from pytest_robust.attacks import registered_attacks
from pytest_robust.engine.attack_passes import check_inside

ATTACKS = sorted(registered_attacks())
# Three columns: a fraction, an amount, a signed score.
LOW = torch.tensor([0.0, 0.0, -1.0])
HIGH = torch.tensor([1.0, 100.0, 1.0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attack=st.sampled_from(ATTACKS),
    n=st.integers(1, 8),
    eps=st.floats(0.05, 3.0),
    norm_choice=st.integers(0, 1),
    seed=st.integers(0, 2**16),
    with_mask=st.booleans(),
)
def test_every_attack_keeps_each_feature_inside_its_bounds(
    attack: str, n: int, eps: float, norm_choice: int, seed: int, with_mask: bool
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = LOW + torch.rand(n, 3, generator=g) * (HIGH - LOW)
    # Some samples at a bound, where a step outwards must be stopped.
    x[0] = torch.where(torch.rand(3, generator=g) < 0.5, LOW, HIGH)
    model = TinyNet(3, 5, seed, scale=0.3)
    with torch.no_grad():
        y = model(x).argmax(1)
    # fooling starts from noise anywhere in the bounds: eps covers the amount column's 100.
    eps = 101.0 if attack == "fooling" else eps
    extra = quick_arguments(attack, model, eps, norm_choice)
    mask = torch.tensor([False, True, False]) if with_mask else None
    result = evaluate(
        model, (x, y), attack=attack, bounds=(LOW, HIGH), mask=mask, keep_adversarial=True, **extra
    )
    adv = result.adversarial
    assert adv is not None
    assert bool((adv >= LOW).all() and (adv <= HIGH).all()), f"{attack} left a feature's bounds"
    if mask is not None:
        assert torch.equal(adv[:, 1], x[:, 1])


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce"])
def test_a_linear_classifier_is_as_robust_as_its_worst_case_inside_each_features_bounds(attack):
    torch.manual_seed(7)
    model = torch.nn.Linear(3, 2)
    x = LOW + torch.rand(400, 3) * (HIGH - LOW)
    with torch.no_grad():
        model.weight.mul_(torch.tensor([1.0, 0.02, 1.0]))  # the amount column in its units
        model.bias.copy_(-model.weight @ ((LOW + HIGH) / 2))
        y = model(x).argmax(1)
        w = model.weight[y] - model.weight[1 - y]
        b = model.bias[y] - model.bias[1 - y]
    eps = 0.4
    with torch.no_grad():
        worst = torch.maximum(torch.minimum(x - eps * w.sign(), HIGH), LOW)
        margin = (w * worst).sum(1) + b
        # The same attack clipped only to the overall range (-1, 100) is stronger.
        loose = ((w * (x - eps * w.sign()).clamp(-1.0, 100.0)).sum(1) + b) > 0
    keep = margin.abs() > 1e-3
    x, y, expected = x[keep], y[keep], margin[keep] > 0
    assert 0 < int(expected.sum()) < len(expected)
    assert int(loose[keep].sum()) < int(expected.sum())  # the per-feature bounds matter
    result = evaluate(model, (x, y), attack=attack, eps=eps, steps=20, bounds=(LOW, HIGH))
    assert result.robust == "".join("1" if e else "0" for e in expected.tolist())
    assert result.bounds == (-1.0, 100.0)  # the range the features span


def test_per_channel_bounds_broadcast_over_an_image():
    x = torch.rand(6, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 4))
    with torch.no_grad():
        y = model(x).argmax(1)
    low, high = torch.zeros(3, 1, 1), torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    result = evaluate(
        model, (x, y), attack="pgd", eps=0.5, steps=5, bounds=(low, high), keep_adversarial=True
    )
    adv = result.adversarial
    assert adv is not None and bool((adv >= low).all() and (adv <= high).all())


def test_the_final_check_refuses_a_point_outside_a_features_bounds():
    threat = ThreatModel(0.5, "linf", (-1.0, 100.0), None, (LOW, HIGH))
    attack = get_attack("pgd")(threat)
    x = torch.tensor([[0.9, 50.0, 0.0]])
    check_inside(attack, torch.tensor([[1.0, 50.4, -0.5]]), x, threat)
    with pytest.raises(RuntimeError, match="outside the threat model"):
        check_inside(attack, torch.tensor([[1.3, 50.0, 0.0]]), x, threat)  # above 1


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ((torch.zeros(2), torch.ones(2)), r"low bound has shape \(2,\), which does not broadcast"),
        ((torch.zeros(3), torch.tensor([1.0, -1.0, 1.0])), r"low > high for 1 feature.*\[1\]"),
        ((torch.zeros(3), torch.tensor([1.0, float("inf"), 1.0])), "not finite"),
        ((LOW, torch.tensor([1.0, 10.0, 1.0])), r"outside their feature's bounds.*feature \[1\]"),
    ],
)
def test_bad_per_feature_bounds_are_explained(bounds, message):
    x = LOW + torch.rand(10, 3) * (HIGH - LOW)
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        y = model(x).argmax(1)
    with pytest.raises(RobustConfigError, match=message):
        evaluate(model, (x, y), attack="fgsm", eps=0.1, bounds=bounds)
