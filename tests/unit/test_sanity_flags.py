"""Each sanity flag is raised by a model built to show exactly that fault, and not by a
healthy model; a masking flag turns a passing gate into a failing one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_snapshot import assert_unchanged
from model_snapshot import snapshot

from pytest_robust import ProbabilityOutputWarning
from pytest_robust import RobustConfigError
from pytest_robust import evaluate


class Wrapped(torch.nn.Module):
    """The digits CNN with one fault added in `fault(x, logits)`; in eval mode."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class Stochastic(Wrapped):
    """Dropout that stays on in eval mode: randomised outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(F.dropout(x, 0.3, training=True))


class Softmaxed(Wrapped):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).softmax(dim=1)


class Detached(Wrapped):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.detach())


class Quantised(Wrapped):
    """Rounds its inputs to 4 levels: zero input gradient almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


class NaNGradient(Wrapped):
    """Finite outputs, but d sqrt(x) / dx = inf at the many zero pixels, times 0: NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + 0.0 * x.sqrt().flatten(1).sum(dim=1, keepdim=True)


class WithDropout(torch.nn.Module):
    """A model with a dropout layer, as a user hands it over right after training."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.dropout(x))


def names(result) -> list[str]:
    return [flag["name"] for flag in result.flags]


GATE = {"attack": "pgd", "eps": 0.05, "steps": 5, "min_acc": 0.1, "max_samples": 120}


def test_a_healthy_model_raises_no_flag(digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, **GATE)
    assert result.flags == []
    assert result.status == "pass"


def test_a_stochastic_model_is_flagged(digits_cnn, digits_data):
    result = evaluate(Stochastic(digits_cnn), digits_data, **GATE)
    assert "nondeterministic" in names(result)
    assert result.status == "fail"
    assert "EOT" in result.failure_message()


def test_probability_outputs_are_flagged(digits_cnn, digits_data):
    with pytest.warns(ProbabilityOutputWarning):
        result = evaluate(Softmaxed(digits_cnn), digits_data, **GATE)
    assert "probability_outputs" in names(result)
    assert result.status == "fail"


def test_a_detached_forward_is_flagged_by_the_gradient_check(digits_cnn, digits_data):
    result = evaluate(Detached(digits_cnn), digits_data, check="gradients")
    assert names(result) == ["no_gradient_path"]
    assert result.status == "fail"
    # An attack on it cannot even start; it says why instead of reporting robustness.
    with pytest.raises(RobustConfigError, match="does not depend on its input"):
        evaluate(Detached(digits_cnn), digits_data, **GATE)


def test_quantised_inputs_give_zero_gradients(digits_cnn, digits_data):
    result = evaluate(Quantised(digits_cnn), digits_data, **GATE)
    assert "zero_gradients" in names(result)
    assert result.status == "fail"


def test_nan_gradients_are_flagged(digits_cnn, digits_data):
    result = evaluate(NaNGradient(digits_cnn), digits_data, **GATE)
    assert "nonfinite_gradients" in names(result)


def test_train_mode_is_reported_and_given_back(digits_cnn, digits_data):
    model = WithDropout(digits_cnn).train()
    before = snapshot(model)
    result = evaluate(model, digits_data, **GATE)
    assert names(result) == ["train_mode"]
    # A warning, not masking: the evaluation itself ran in eval mode, so the gate holds.
    assert result.flags[0]["severity"] == "warning"
    assert result.status == "pass"
    assert_unchanged(before, model)
    assert model.training
    healthy = evaluate(WithDropout(digits_cnn).eval(), digits_data, **GATE)
    assert healthy.flags == []
    assert healthy.robust == result.robust  # eval mode both times: the same numbers


def test_allow_masking_keeps_the_flag_but_not_the_failure(digits_cnn, digits_data):
    result = evaluate(Stochastic(digits_cnn), digits_data, allow_masking=True, **GATE)
    assert "nondeterministic" in names(result)
    assert result.status == "pass"


def test_sanity_off_runs_no_check(digits_cnn, digits_data):
    result = evaluate(Stochastic(digits_cnn), digits_data, sanity="off", **GATE)
    assert result.flags == []


def test_a_measured_check_keeps_its_status_and_shows_the_flag(digits_cnn, digits_data):
    gate = {k: v for k, v in GATE.items() if k != "min_acc"}
    result = evaluate(Stochastic(digits_cnn), digits_data, **gate)
    assert result.status == "measured"
    assert "nondeterministic" in names(result)


def test_black_box_members_need_no_gradient_flags(digits_cnn, digits_data):
    # Square never looks at gradients: a quantised model is no masking problem for it.
    result = evaluate(
        Quantised(digits_cnn), digits_data, attack="square", eps=0.05, queries=20, max_samples=60
    )
    assert result.flags == []


def test_flags_are_computed_once_per_model_and_data(digits_cnn, digits_data):
    from model_wrappers import counting_linear

    from pytest_robust import EvaluationCache

    # Counted from outside the model (a counter attribute would change its identity).
    cache, model = EvaluationCache(), Wrapped(digits_cnn)
    weight = digits_cnn.classifier[-1].weight
    gate = {**GATE, "eps": 0.0, "steps": 1}
    with counting_linear(weight) as without:
        result = evaluate(model, digits_data, cache=cache, sanity="off", **gate)
    with counting_linear(weight) as first:
        evaluate(model, digits_data, cache=cache, **gate)
    with counting_linear(weight) as second:
        evaluate(model, digits_data, cache=cache, **gate)
    assert second[0] == without[0] - result.n  # the clean pass is cached already; the flags too
    assert first[0] > second[0]
