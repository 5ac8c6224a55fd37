"""The full diagnosis (check="masking"): its rules on scripted outcomes, and on real models:
a model with a saturated softmax is caught, a healthy one is not."""

from __future__ import annotations

from typing import Any
from typing import cast

import pytest
from hand_made import result_from_bits
from toy_models import Scaled

from pytest_robust import RobustnessResult
from pytest_robust import evaluate
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import registered_attacks
from pytest_robust.checks.diagnosis import diagnose
from pytest_robust.engine.members import build_members
from pytest_robust.spec import Spec
from pytest_robust.spec import attack_params
from pytest_robust.spec import resolve
from pytest_robust.spec import validate

N = 100


def pgd_spec(eps: float = 0.1) -> Spec:
    kwargs = validate({"attack": "pgd", "eps": eps, "steps": 10}, registered_attacks())
    return resolve(kwargs, attack_params("pgd", registered_attacks(), kwargs))


def outcome(robust: int) -> RobustnessResult:
    return result_from_bits("1" * robust + "0" * (N - robust))


HEALTHY = {"base": 50, "large": 0, "half": 80, "double": 10, "fgsm": 60, "stronger": 49}
HEALTHY |= {"random_noise": 95, "square": 52}


def scripted(outcomes: dict[str, int]):
    """A `run` that answers each variation of the diagnosis from `outcomes`."""

    def run(spec: Spec) -> RobustnessResult:
        if spec.attack in ("fgsm", "random_noise", "square"):
            return outcome(outcomes[str(spec.attack)])
        if spec.eps == 0.5:
            return outcome(outcomes["large"])
        if spec.eps == 0.05:
            return outcome(outcomes["half"])
        if spec.eps == 0.2:
            return outcome(outcomes["double"])
        if spec.attack_params["steps"] == 20:
            assert spec.attack_params["restarts"] == 2
            return outcome(outcomes["stronger"])
        return outcome(outcomes["base"])

    return run


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({}, None),
        ({"large": 40}, "large_eps_not_chance"),
        ({"half": 30}, "not_monotone_in_eps"),
        ({"double": 70}, "not_monotone_in_eps"),
        ({"fgsm": 40}, "single_step_stronger"),
        ({"stronger": 40}, "not_converged"),
        ({"random_noise": 30}, "noise_beats_white_box"),
        ({"square": 45}, "black_box_beats_white_box"),
    ],
)
def test_each_rule_fires_on_exactly_its_contradiction(change, flag):
    spec = pgd_spec()
    members = build_members(spec, ThreatModel(cast(float, spec.eps), spec.norm, spec.bounds))
    flags, measured = diagnose(
        spec, outcome(50), members, classes=10, dims=64, run=scripted({**HEALTHY, **change})
    )
    assert [f.name for f in flags] == ([flag] if flag else [])
    assert measured["samples"] == N
    assert all(f.severity == "masking" for f in flags)


def test_differences_within_the_tolerance_are_not_flagged():
    spec = pgd_spec()
    members = build_members(spec, ThreatModel(cast(float, spec.eps), spec.norm, spec.bounds))
    noisy = {**HEALTHY, "stronger": 48, "fgsm": 48, "half": 48, "square": 48}  # 2 of 100
    flags, _ = diagnose(spec, outcome(50), members, classes=10, dims=64, run=scripted(noisy))
    assert flags == []


def test_a_saturated_softmax_fails_the_diagnosis(digits_cnn, digits_data):
    result = evaluate(
        Scaled(digits_cnn, 1000.0),
        digits_data,
        attack="pgd",
        eps=0.1,
        steps=10,
        min_acc=0.5,
        check="masking",
        max_samples=150,
    )
    found = {flag["name"] for flag in result.flags}
    # Cross-entropy PGD sees no gradient: it calls the model robust, even at eps = 0.5,
    # and Square (which reads logits, not gradients) breaks what PGD could not.
    assert {"softmax_saturation", "large_eps_not_chance", "black_box_beats_white_box"} <= found
    assert result.robust_acc > 0.5  # the claim the diagnosis refuses
    assert result.status == "fail"
    diagnosis = result.details["diagnosis"]
    assert diagnosis["large_eps"]["robust_acc"] > 0.3
    assert diagnosis["square_robust_acc"] < diagnosis["robust_acc"]


def test_a_healthy_model_passes_the_diagnosis(digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, min_acc=0.3, check="masking")
    assert result.flags == []
    assert result.status == "pass"
    diagnosis = result.details["diagnosis"]
    assert diagnosis["large_eps"]["robust_acc"] == 0.0
    curve = list(diagnosis["eps_curve"].values())
    assert curve == sorted(curve, reverse=True)


def test_the_scale_invariant_attack_passes_where_cross_entropy_was_refused(digits_cnn, digits_data):
    scaled = Scaled(digits_cnn, 1000.0)
    kwargs: dict[str, Any] = {"eps": 0.1, "max_samples": 150}
    dlr = evaluate(scaled, digits_data, attack="apgd-dlr", steps=20, **kwargs)
    plain = evaluate(digits_cnn, digits_data, attack="apgd-dlr", steps=20, **kwargs)
    assert dlr.flags == []
    assert dlr.robust == plain.robust  # scaling the logits changes nothing for DLR


def test_the_model_comes_back_unchanged_after_the_diagnosis(digits_cnn, digits_data):
    from model_snapshot import assert_unchanged
    from model_snapshot import snapshot

    model = Scaled(digits_cnn, 1000.0)
    before = snapshot(model)
    evaluate(model, digits_data, attack="fgsm", eps=0.1, check="masking", max_samples=50)
    assert_unchanged(before, model)
