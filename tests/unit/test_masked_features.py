"""mask=: features that may not be perturbed (immutable or categorical columns). The threat
model keeps them, so every attack obeys it, and the engine's final check refuses a point
that changed one. Checked from outside: the adversarial points' frozen values equal the
clean ones for every registered attack (Hypothesis), and a linear classifier's robustness
equals its closed-form worst case over the free features only."""

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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attack=st.sampled_from(ATTACKS),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    n=st.integers(1, 8),
    eps=st.floats(0.05, 2.0),
    norm_choice=st.integers(0, 1),
    seed=st.integers(0, 2**16),
    per_row=st.booleans(),
)
def test_no_attack_changes_a_frozen_feature(
    attack: str,
    shape: tuple[int, ...],
    n: int,
    eps: float,
    norm_choice: int,
    seed: int,
    per_row: bool,
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    # A mask over the whole sample, or one that broadcasts (the last dimension only).
    mask_shape = shape[-1:] if per_row else shape
    mask = torch.rand(mask_shape, generator=g) < 0.5
    if bool(mask.all()):
        mask.view(-1)[0] = False  # at least one free feature
    model = TinyNet(x[0].numel(), 5, seed)
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = max(eps, 1.0) if attack == "fooling" else eps  # fooling starts anywhere in [0, 1]
    extra = quick_arguments(attack, model, eps, norm_choice)
    result = evaluate(model, (x, y), attack=attack, mask=mask, keep_adversarial=True, **extra)
    adv = result.adversarial
    assert adv is not None
    frozen = mask.expand_as(x[0]).expand_as(x)
    assert torch.equal(adv[frozen], x[frozen]), f"{attack} moved a frozen feature"
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def _linear_problem() -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(5)
    model = torch.nn.Linear(8, 2)
    with torch.no_grad():
        model.bias.copy_(-model.weight @ torch.full((8,), 0.5))
    x = torch.rand(300, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, torch.tensor([True, False, True, False, False, True, False, False])


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce"])
def test_a_linear_classifier_is_as_robust_as_its_worst_case_over_the_free_features(attack):
    """The worst point moves each free feature by eps against the margin's weight, clipped
    to the bounds, and leaves the frozen ones: robust iff its margin stays positive."""
    model, x, y, mask = _linear_problem()
    eps = 0.15
    with torch.no_grad():
        w = model.weight[y] - model.weight[1 - y]
        b = model.bias[y] - model.bias[1 - y]
        worst = (x - eps * w.sign() * ~mask).clamp(0, 1)
        margin = (w * worst).sum(1) + b
        unmasked = ((w * (x - eps * w.sign()).clamp(0, 1)).sum(1) + b) > 0
    keep = margin.abs() > 1e-3
    x, y, expected = x[keep], y[keep], margin[keep] > 0
    assert 0 < int(expected.sum()) < len(expected)
    # The mask matters here: without it, fewer samples are robust.
    assert int(unmasked[keep].sum()) < int(expected.sum())
    result = evaluate(model, (x, y), attack=attack, eps=eps, steps=20, mask=mask)
    assert result.robust == "".join("1" if e else "0" for e in expected.tolist())


def test_the_final_check_refuses_a_point_that_changed_a_frozen_feature():
    mask = torch.tensor([True, False])
    threat = ThreatModel(0.5, "linf", (0.0, 1.0), mask)
    attack = get_attack("pgd")(threat)
    x = torch.full((3, 2), 0.5)
    check_inside(attack, x + torch.tensor([0.0, 0.2]), x, threat)  # a free feature moved
    with pytest.raises(RuntimeError, match="changed 3 input values that mask= freezes"):
        check_inside(attack, x + torch.tensor([0.1, 0.0]), x, threat)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.tensor([0.0, 0.5, 1.0, 0.0]), "holds values other than 0 and 1"),
        (torch.tensor([True, False]), r"shape \(2,\), which does not broadcast to one sample's"),
        (torch.ones(4, dtype=torch.bool), "freezes every feature.*mask=~mask"),
        ([True, False, False, True], "mask=.*must be a boolean tensor"),
    ],
)
def test_a_bad_mask_is_explained(mask, message):
    x = torch.rand(10, 4)
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        y = model(x).argmax(1)
    with pytest.raises(RobustConfigError, match=message):
        evaluate(model, (x, y), attack="fgsm", eps=0.1, mask=mask)


def test_an_integer_mask_of_zeros_and_ones_is_read_as_booleans():
    model, x, y, mask = _linear_problem()
    as_bool = evaluate(model, (x, y), attack="fgsm", eps=0.15, mask=mask)
    as_int = evaluate(model, (x, y), attack="fgsm", eps=0.15, mask=mask.long())
    assert as_bool.robust == as_int.robust
