"""Each sanity flag is raised by a model built to show exactly that fault, and not by a
healthy model; a masking flag turns a passing gate into a failing one."""

from __future__ import annotations

from typing import Any

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


GATE: dict[str, Any] = {
    "attack": "pgd",
    "eps": 0.05,
    "steps": 5,
    "min_acc": 0.1,
    "max_samples": 120,
}


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
    gate: dict[str, Any] = {k: v for k, v in GATE.items() if k != "min_acc"}
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
    gate: dict[str, Any] = {**GATE, "eps": 0.0, "steps": 1}
    with counting_linear(weight) as without:
        result = evaluate(model, digits_data, cache=cache, sanity="off", **gate)
    with counting_linear(weight) as first:
        evaluate(model, digits_data, cache=cache, **gate)
    with counting_linear(weight) as second:
        evaluate(model, digits_data, cache=cache, **gate)
    assert second[0] == without[0] - result.n  # the clean pass is cached already; the flags too
    assert first[0] > second[0]


# --- issue 11: every flag on evidence only; stochastic gradient check; black-box members ---


class Shifted(Wrapped):
    """Predicts the CNN's class plus one: wrong on every sample the CNN gets right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).roll(1, dims=1)


class Noisy(Wrapped):
    """Gaussian noise added in forward(), also in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.05 * torch.randn_like(x))


def _wrong_everywhere(digits_cnn, digits_data):
    """The shifted CNN and the samples the CNN classifies correctly: no sample is
    clean-correct for the shifted model."""
    x, y = digits_data
    keep = digits_cnn(x).argmax(dim=1) == y
    return Shifted(digits_cnn), (x[keep][:100], y[keep][:100])


@pytest.mark.parametrize(
    "check",
    [
        {"attack": "pgd", "eps": 0.05, "steps": 3, "min_acc": 0.0},
        {"attack": "strong", "eps": 0.05, "min_acc": 0.0, "max_samples": 20},
        {"attack": "cw", "eps": 0.5, "steps": 3, "search_steps": 1, "max_drop": 0.0},
        {"attack": "square", "eps": 0.05, "queries": 5, "max_success": 0.0},
        {"check": "gradients"},
        {"attack": "pgd", "eps": 0.05, "steps": 2, "min_acc": 0.0, "check": "masking"},
    ],
    ids=["pgd", "strong", "cw", "square", "gradients", "masking"],
)
def test_no_flag_is_raised_when_no_sample_is_clean_correct(digits_cnn, digits_data, check):
    model, data = _wrong_everywhere(digits_cnn, digits_data)
    result = evaluate(model, data, **check)
    assert result.clean_acc == 0.0
    assert result.flags == []  # there is nothing to find anything on
    assert result.status == "pass"


def test_a_randomly_initialised_cnn_raises_no_flag_and_fails_honestly(digits_data):
    from digits import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN().eval()
    result = evaluate(model, digits_data, **GATE)
    assert result.flags == []
    # Chance-level clean accuracy: the threshold fails it, on what was measured.
    x, y = digits_data
    clean = float((model(x[:120]).argmax(dim=1) == y[:120]).float().mean())
    assert result.clean_acc == pytest.approx(clean)
    # On the samples it gets wrong alone: nothing is attacked, no flag, no crash.
    wrong = model(x).argmax(dim=1) != y
    alone = evaluate(model, (x[wrong][:50], y[wrong][:50]), **GATE)
    assert alone.flags == [] and alone.clean_acc == 0.0


def _one_sample_logits(kind: str) -> torch.Tensor:
    return {
        "empty": torch.zeros(0, 10),
        "probabilities": torch.full((1, 10), 0.1),
        "logits": torch.linspace(-1, 1, 10)[None],
    }[kind]


@pytest.mark.parametrize("kind", ["empty", "probabilities", "logits"])
def test_output_flags_need_evidence(kind):
    from pytest_robust.checks.sanity import determinism_flag
    from pytest_robust.checks.sanity import probability_flag

    logits = _one_sample_logits(kind)
    assert [f.name for f in probability_flag(logits)] == (
        ["probability_outputs"] if kind == "probabilities" else []
    )
    x = torch.zeros(len(logits), 3)
    assert determinism_flag(lambda _: torch.randn(len(logits), 10), x, logits) == (
        [] if kind == "empty" else determinism_flag(lambda _: torch.randn(1, 10), x, logits)
    )
    if kind != "empty":
        assert [f.name for f in determinism_flag(lambda _: torch.randn(1, 10), x, logits)] == [
            "nondeterministic"
        ]


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("loss", ["ce", "logits"])
def test_gradient_flags_need_evidence(n, loss):
    from pytest_robust.checks import gradients

    linear = torch.nn.Linear(4, 3)
    x, y = torch.rand(n, 4), torch.zeros(n, dtype=torch.long)
    amps = gradients.amplitudes(linear, x, y, 8)
    assert amps is not None
    assert gradients.flags_for(amps, loss) == []
    summary = gradients.summary(amps)
    assert summary["n"] == n
    # An exactly zero gradient on one sample is evidence; on none it is not.
    zero = gradients.amplitudes(lambda t: (t * 0).sum(dim=1, keepdim=True).expand(-1, 3), x, y, 8)
    assert zero is not None
    found = [f.name for f in gradients.flags_for(zero, loss)]
    assert found == (["zero_gradients"] if n else [])


def test_the_gradient_check_flags_a_stochastic_model(digits_cnn, digits_data):
    for model in (Noisy(digits_cnn), Stochastic(digits_cnn)):
        result = evaluate(model, digits_data, check="gradients", max_samples=60)
        assert "nondeterministic" in names(result)
        assert result.status == "fail"
    healthy = evaluate(digits_cnn, digits_data, check="gradients", max_samples=60)
    assert healthy.flags == [] and healthy.status == "pass"


STRONG: dict[str, Any] = {
    "attack": "strong",
    "eps": 0.1,
    "min_acc": 0.5,
    "max_samples": 20,
    "queries": 100,
    "steps": 10,
}


def test_strong_on_a_quantised_model_rests_on_its_black_box_member(digits_cnn, digits_data):
    result = evaluate(Quantised(digits_cnn), digits_data, **STRONG)
    square = evaluate(
        Quantised(digits_cnn), digits_data, attack="square", eps=0.1, queries=100, max_samples=20
    )
    # The worst case over the members is at least as strong as Square alone...
    assert result.robust_acc <= square.robust_acc
    # ...so it is gated on the same evidence: the gradient members' flag is reported, with
    # their names, but it is Square's evidence the verdict rests on.
    (flag,) = result.flags
    assert flag["name"] == "zero_gradients"
    assert flag["severity"] == "warning"
    assert "apgd-ce" in flag["message"] and "apgd-dlr" in flag["message"]
    assert "square" in flag["message"]
    assert result.status == ("pass" if result.robust_acc >= 0.5 else "fail")
    # Without a black-box member, the same flag still fails the gate.
    alone = evaluate(
        Quantised(digits_cnn),
        digits_data,
        attack="apgd-ce",
        eps=0.1,
        steps=10,
        min_acc=0.0,
        max_samples=20,
    )
    assert [(f["name"], f["severity"]) for f in alone.flags] == [("zero_gradients", "masking")]
    assert alone.status == "fail"


@pytest.mark.parametrize("sanity", ["cheap", "off"])
def test_strong_skips_gradient_members_without_a_gradient_path(digits_cnn, digits_data, sanity):
    result = evaluate(Detached(digits_cnn), digits_data, sanity=sanity, **STRONG)
    square = evaluate(
        digits_cnn, digits_data, attack="square", eps=0.1, queries=100, max_samples=20
    )
    # Square on a detached model sees the same outputs as on the model itself.
    assert result.robust == square.robust
    flags = [f for f in result.flags if f["name"] == "no_gradient_path"]
    assert len(flags) == 1 and flags[0]["severity"] == "warning"
    assert "apgd-ce" in flags[0]["message"] and "square" in flags[0]["message"]
    assert result.details["skipped"] == ["apgd-ce", "apgd-dlr"]


def test_check_masking_runs_on_a_model_without_a_gradient_path(digits_cnn, digits_data):
    result = evaluate(
        Detached(digits_cnn),
        digits_data,
        check="masking",
        **{**STRONG, "max_samples": 8, "steps": 3, "queries": 20},
    )
    assert "no_gradient_path" in names(result)
    assert result.details["diagnosis"]["fgsm_robust_acc"] is None
