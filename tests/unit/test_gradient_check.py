"""check="gradients": amplitudes against closed forms on logistic regression, Papernot's
bins, the saturation verdict on a model whose logits are scaled as a distilled model's are
at T = 1, the thresholds, and the arguments it refuses."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from toy_models import LogisticRegression
from toy_models import Scaled

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.checks import gradients


def test_amplitudes_match_the_closed_form_of_logistic_regression() -> None:
    # Logits [0, s], s = w.x + b: d CE / dx = (p - y) w with p = sigmoid(s), and the
    # margin (wrong logit minus true logit) has gradient -w (y = 1) or +w (y = 0).
    w = torch.tensor([0.5, -1.0, 2.0, 0.25])
    model = LogisticRegression(w, b=0.1)
    x = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.9, 0.1, 0.5, 0.2], [0.3, 0.3, 0.3, 0.3]])
    y = torch.tensor([1, 0, 1])
    amps = gradients.amplitudes(model, x, y, batch_size=2)
    assert amps is not None
    p = torch.sigmoid(x @ w + 0.1)
    expected_ce = (p - y).abs() * w.abs().mean()
    torch.testing.assert_close(amps["ce"], expected_ce.double(), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(amps["margin"], w.abs().mean().double().expand(3))


def test_histogram_uses_papernots_logarithmic_bins() -> None:
    values = torch.tensor([0.0, 1e-41, 1e-33, 5e-7, 2e-4, 0.5, 7.0, math.nan, math.inf])
    bins = gradients.histogram(values.double())
    counts = {(b["low"], b["high"]): b["count"] for b in bins}
    assert counts[(0.0, 1e-40)] == 2  # 0 and 1e-41
    assert counts[(1e-35, 1e-30)] == 1
    assert counts[(1e-10, 1e-5)] == 1
    assert counts[(1e-5, 1e-3)] == 1
    assert counts[(1e-3, 1.0)] == 1
    assert counts[(1.0, math.inf)] == 1
    assert sum(counts.values()) == 7  # NaN and inf are counted apart, not binned


def test_a_healthy_model_passes_with_no_flag(digits_cnn, digits_data) -> None:
    result = evaluate(digits_cnn, digits_data, check="gradients")
    assert result.status == "pass"
    assert result.flags == []
    stats = result.details["gradients"]
    assert stats["n"] == result.n_clean_correct
    assert stats["zero_frac"] == 0.0
    assert 1e-7 < stats["median"] < 1e-2
    assert sum(b["count"] for b in stats["bins"]) == stats["n"]
    assert result.robust_acc == result.clean_acc  # nothing is attacked


def test_saturated_softmax_is_masking_not_robustness(digits_cnn, digits_data) -> None:
    result = evaluate(Scaled(digits_cnn, 1000.0), digits_data, check="gradients")
    stats = result.details["gradients"]
    assert stats["zero_frac"] > 0.5  # the cross-entropy gradient underflowed...
    assert stats["medians"]["margin"] > 1.0  # ...the logits' gradient did not
    assert stats["medians"]["dlr"] == pytest.approx(
        evaluate(digits_cnn, digits_data, check="gradients").details["gradients"]["medians"]["dlr"],
        rel=1e-3,
    )  # DLR is invariant to the scale
    assert [flag["name"] for flag in result.flags] == ["softmax_saturation"]
    assert result.status == "fail"
    assert "softmax is saturated" in result.failure_message()
    assert "apgd-dlr" in result.failure_message()


def test_allow_masking_reports_the_flag_without_failing(digits_cnn, digits_data) -> None:
    result = evaluate(
        Scaled(digits_cnn, 1000.0), digits_data, check="gradients", allow_masking=True
    )
    assert result.status == "pass"
    assert [flag["name"] for flag in result.flags] == ["softmax_saturation"]


def test_gradient_thresholds(digits_cnn, digits_data) -> None:
    scaled = Scaled(digits_cnn, 1000.0)
    kwargs: dict[str, Any] = {"check": "gradients", "allow_masking": True}
    assert evaluate(digits_cnn, digits_data, max_zero_frac=0.1, **kwargs).status == "pass"
    failed = evaluate(scaled, digits_data, max_zero_frac=0.1, **kwargs)
    assert failed.status == "fail"
    assert "zero-gradient fraction" in failed.failure_message()
    assert evaluate(digits_cnn, digits_data, min_median=1e-8, **kwargs).status == "pass"
    low = evaluate(scaled, digits_data, min_median=1e-8, **kwargs)
    assert low.status == "fail"
    assert "< min_median" in low.failure_message()


def test_min_median_with_no_sample_to_measure_says_why(digits_data) -> None:
    """With no clean-correct sample there is no median: the failure says so instead of
    printing "median nan < min_median" (it did before)."""
    x, y = digits_data
    keep = y != 1
    head = torch.nn.Linear(64, 10)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.eye(10)[1] * 5)
    always_one = torch.nn.Sequential(torch.nn.Flatten(), head)
    result = evaluate(always_one, (x[keep], y[keep]), check="gradients", min_median=1e-8)
    assert result.status == "fail"
    message = result.failure_message()
    assert "nan" not in message
    assert "min_median 1e-08 cannot hold: no finite input gradient" in message
    assert "0 clean-correct samples" in message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"check": "gradients", "eps": 0.1}, "eps= does not apply to check='gradients'"),
        ({"check": "gradients", "attack": "pgd"}, "attack= does not apply"),
        ({"check": "gradients", "min_acc": 0.5}, "min_acc= does not apply"),
        ({"attack": "pgd", "eps": 0.1, "max_zero_frac": 0.1}, "threshold of check='gradients'"),
        ({"check": "gradient"}, "did you mean 'gradients'"),
        ({"attack": "pgd", "eps": 0.1, "sanity": "some"}, "must be one of 'off', 'cheap'"),
    ],
)
def test_bad_arguments_are_refused(digits_cnn, digits_data, kwargs, match) -> None:
    with pytest.raises(RobustConfigError, match=match):
        evaluate(digits_cnn, digits_data, **kwargs)
