"""The penalty attack (Szegedy et al. 2014): min CE(f(x), t) + lam * D(x, x*), clipped."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from per_sample import bits
from toy_models import LogisticRegression

from pytest_robust import RobustConfigError
from pytest_robust import evaluate


def predictions(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def test_targeted_reaches_the_target_in_the_whole_box(digits_cnn, digits_data):
    x, y = digits_data
    result = evaluate(
        digits_cnn, digits_data, attack="penalty", eps=1.0, target=3, keep_adversarial=True
    )
    pred = predictions(digits_cnn, result.adversarial)
    attacked, hit = bits(result.attacked), bits(result.success)
    # Success is exactly "attacked and now classified 3"; samples labelled 3 are not attacked.
    assert torch.equal(hit, attacked & (pred == 3))
    assert not bool(attacked[y == 3].any())
    assert result.success_rate > 0.9
    details = result.details
    json.dumps(details)
    assert details["penalty_distance"]["count"] == result.n_success
    assert details["penalty_distance"]["d"] == "squared_l2"
    assert details["final_probability"]["of"] == "target"
    assert details["final_probability"]["count"] == result.n_attacked
    # With eps=1.0 L-inf in [0, 1] nothing is projected: D is that of the returned points.
    delta = (result.adversarial - x)[hit].flatten(1)
    assert details["penalty_distance"]["mean"] == pytest.approx(
        float(delta.pow(2).sum(1).double().mean()), rel=1e-5
    )


def test_a_larger_lam_keeps_successes_closer(digits_cnn, digits_data):
    def run(lam: float):
        return evaluate(
            digits_cnn,
            digits_data,
            attack="penalty",
            eps=1.0,
            target=3,
            lam=lam,
            steps=30,
            max_samples=80,
        )

    weak, strong = run(0.01), run(10.0)
    assert strong.n_success < weak.n_success
    weak_d, strong_d = weak.details["penalty_distance"], strong.details["penalty_distance"]
    assert strong_d["mean"] < 0.8 * weak_d["mean"]
    assert strong.details["final_probability"]["mean"] < weak.details["final_probability"]["mean"]


def test_l1_penalty_gives_sparser_perturbations_than_l2(digits_cnn, digits_data):
    x = digits_data[0][:150]

    def run(distance: str) -> tuple[torch.Tensor, float]:
        result = evaluate(
            digits_cnn,
            digits_data,
            attack="penalty",
            eps=1.0,
            target=3,
            lam=1.0,
            distance=distance,
            max_samples=150,
            keep_adversarial=True,
        )
        return (result.adversarial - x)[bits(result.success)].flatten(1), result.success_rate

    l1, l1_rate = run("l1")
    l2, l2_rate = run("l2")
    assert l1_rate > 0.9 and l2_rate > 0.9
    # The soft-threshold step leaves pixels exactly unchanged; clipping alone does for L2.
    assert float((l1 == 0).float().mean()) > float((l2 == 0).float().mean()) + 0.1
    assert float(l1.abs().sum(1).mean()) < float(l2.abs().sum(1).mean())


# Logistic regression, logits [0, s] with s = w.x + b: p1 = sigmoid(s) and the gradient of
# CE(f(x), c) in x is (p1 - [c == 1]) * w. Small weights give pixels the L1 step leaves alone.
W = torch.tensor([0.8, -1.2, 0.5, 2.0, -0.3, 1.1, 0.05, -0.1])
B = -1.4


def ce_gradient(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    p1 = torch.sigmoid(x @ W + B)
    return (p1 - (c == 1).float())[:, None] * W[None, :]


@pytest.mark.parametrize("targeted", [True, False])
def test_gradient_steps_match_the_closed_form_on_logistic_regression(targeted):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, len(W), generator=g) * 0.6 + 0.2
    score = x @ W + B
    # 1 < |score| < 2: two small steps cannot cross the boundary, and CE has gradient.
    x = x[(score.abs() > 1) & (score.abs() < 2)]
    assert len(x) >= 5
    model = LogisticRegression(W, B)
    y = (x @ W + B > 0).long()
    other = 1 - y
    extra: dict[str, Any] = {"target": other} if targeted else {}
    sign = 1.0 if targeted else -1.0  # descend CE to the target, or ascend CE of the label
    cls = other if targeted else y
    lr = 0.02

    def attack(steps: int, distance: str, lam: float) -> torch.Tensor:
        result = evaluate(
            model,
            (x, y),
            attack="penalty",
            eps=1.0,
            steps=steps,
            lr=lr,
            lam=lam,
            distance=distance,
            keep_adversarial=True,
            **extra,
        )
        assert result.n_attacked == len(x) and result.n_success == 0
        return result.adversarial

    # Step 1 from x*: the squared-L2 penalty has zero gradient there.
    x1 = x - lr * sign * ce_gradient(x, cls)
    assert bool((x1 > 0).all() and (x1 < 1).all())  # no clipping
    torch.testing.assert_close(attack(1, "l2", 2.0), x1, rtol=0, atol=1e-6)
    # Step 2 adds the penalty's pull 2 * lam * (x1 - x*).
    x2 = x1 - lr * (sign * ce_gradient(x1, cls) + 2 * 2.0 * (x1 - x))
    assert not torch.allclose(x2, x1 - lr * sign * ce_gradient(x1, cls), rtol=0, atol=1e-4)
    torch.testing.assert_close(attack(2, "l2", 2.0), x2, rtol=0, atol=1e-6)
    # L1: the CE step, then soft-thresholding by lr * lam around x*.
    lam = 0.15
    step = -lr * sign * ce_gradient(x, cls)
    x1_l1 = x + step.sign() * (step.abs() - lr * lam).clamp_min(0)
    assert bool((x1_l1 == x).any()) and bool((x1_l1 != x).any())  # both cases are covered
    torch.testing.assert_close(attack(1, "l1", lam), x1_l1, rtol=0, atol=1e-6)


def test_batches_do_not_change_the_result(digits_cnn, digits_data):
    def run(batch_size: int) -> torch.Tensor:
        result = evaluate(
            digits_cnn,
            digits_data,
            attack="penalty",
            eps=0.2,
            target=3,
            steps=20,
            max_samples=24,
            batch_size=batch_size,
            keep_adversarial=True,
        )
        return result.adversarial

    torch.testing.assert_close(run(5), run(24), rtol=0, atol=1e-6)


@pytest.mark.parametrize("target", [None, 3])
def test_eps_zero_changes_nothing(digits_cnn, digits_data, target):
    x = digits_data[0][:40]
    result = evaluate(
        digits_cnn,
        digits_data,
        attack="penalty",
        eps=0.0,
        steps=5,
        max_samples=40,
        target=target,
        keep_adversarial=True,
    )
    assert torch.equal(result.adversarial, x)
    assert result.n_success == 0 and result.robust_acc == result.clean_acc
    json.dumps(result.details)
    assert result.details["final_probability"]["of"] == ("target" if target else "true_class")


def test_bad_settings_are_config_errors(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="distance='l3'"):
        evaluate(digits_cnn, digits_data, attack="penalty", eps=1.0, distance="l3")
    with pytest.raises(RobustConfigError, match="lr \\* lam must be < 1"):
        evaluate(digits_cnn, digits_data, attack="penalty", eps=1.0, lam=20.0, lr=0.1)
