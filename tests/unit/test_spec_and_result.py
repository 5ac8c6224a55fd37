"""Pure pieces: precedence with provenance, list expansion, the Wilson interval, verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_robust import RobustConfigError
from pytest_robust import RobustnessResult
from pytest_robust.attacks import registered_attacks
from pytest_robust.engine.stats import wilson
from pytest_robust.plugin.options import SETTING_LABELS
from pytest_robust.spec.cases import expand
from pytest_robust.spec.resolve import derive_seed
from pytest_robust.spec.resolve import resolve
from pytest_robust.spec.validate import validate

PGD = registered_attacks()["pgd"].params


def test_precedence_marker_over_cli_over_ini_over_default():
    case = {"attack": "pgd", "eps": 0.1, "batch_size": 8}
    cli = {"batch_size": 16, "seed": 5, "device": None, "max_samples": None}
    ini = {"batch_size": "32", "seed": "7", "device": "cpu"}
    spec = resolve(case, PGD, cli, ini, labels=SETTING_LABELS)
    assert (spec.batch_size, spec.provenance["batch_size"]) == (8, "marker")
    assert (spec.seed, spec.provenance["seed"]) == (5, "--robust-seed")
    assert (spec.device, spec.provenance["device"]) == ("cpu", "ini robust_device")
    assert (spec.max_samples, spec.provenance["max_samples"]) == (None, "default")
    assert spec.attack_params == {
        "steps": 20,
        "alpha": None,
        "random_start": True,
        "restarts": 1,
        "eot": 1,  # left out of the attack's configuration (engine/members.py)
    }


def test_max_samples_from_the_command_line_is_a_cap():
    case = {"attack": "pgd", "eps": 0.1, "max_samples": 100}
    assert resolve(case, PGD, {"max_samples": 10}, labels=SETTING_LABELS).max_samples == 10
    assert resolve(case, PGD, {"max_samples": 1000}, labels=SETTING_LABELS).max_samples == 100
    capped = resolve(case, PGD, {}, {"max_samples": "20"}, labels=SETTING_LABELS)
    assert (capped.max_samples, capped.provenance["max_samples"]) == (20, "ini robust_max_samples")


def test_a_bad_ini_value_says_where_it_came_from():
    with pytest.raises(RobustConfigError, match=r"batch_size='abc' \(ini robust_batch_size\)"):
        resolve(
            {"attack": "pgd", "eps": 0.1}, PGD, {}, {"batch_size": "abc"}, labels=SETTING_LABELS
        )


def test_lists_are_zipped_into_cases_with_readable_ids():
    kwargs = validate(
        {"attack": "pgd", "eps": [0.05, 0.1], "min_acc": [0.9, 0.8], "steps": 10},
        registered_attacks(),
    )
    cases = expand(kwargs)
    assert [c.id for c in cases] == ["pgd-eps=0.05", "pgd-eps=0.1"]
    assert [(c.kwargs["eps"], c.kwargs["min_acc"], c.kwargs["steps"]) for c in cases] == [
        (0.05, 0.9, 10),
        (0.1, 0.8, 10),
    ]
    (single,) = expand(validate({"attack": "fgsm", "eps": 0.1}, registered_attacks()))
    assert single.id == ""


def test_list_lengths_must_match():
    with pytest.raises(RobustConfigError, match="eps has 3, min_acc has 2"):
        validate({"attack": "pgd", "eps": [1, 2, 3], "min_acc": [0.1, 0.2]}, registered_attacks())


def test_device_is_not_a_marker_argument():
    with pytest.raises(RobustConfigError, match="--robust-device"):
        validate({"attack": "pgd", "eps": 0.1, "device": "cpu"}, registered_attacks(), "marker")


def test_derived_seeds_differ_per_test_and_are_stable():
    a, b = derive_seed(0, "t.py::test_a"), derive_seed(0, "t.py::test_b")
    assert a != b and a == derive_seed(0, "t.py::test_a")
    assert derive_seed(1, "t.py::test_a") != a


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Reference values: Wilson score interval, z = 1.96 (e.g. Newcombe 1998, table I).
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_reference_values(k, n, low, high):
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def make_result(**overrides):
    base: dict[str, Any] = dict(
        attack="pgd",
        eps=0.1,
        norm="linf",
        bounds=(0.0, 1.0),
        params={"steps": 20, "alpha": 0.0125},
        targeted=False,
        clean_correct="1111111110",
        robust="1111100000",
        success="0000011110",
        thresholds={"min_acc": 0.8},
        seed=1,
        device="cpu",
        duration_s=0.5,
        data_fingerprint="d",
        model_fingerprint="m",
    )
    base.update(overrides)
    return RobustnessResult(**base)


def test_result_statistics_and_failure_line():
    r = make_result()
    assert (r.n, r.clean_acc, r.robust_acc) == (10, 0.9, 0.5)
    assert r.success_rate == pytest.approx(4 / 9)
    assert r.status == "fail" and not r.passed
    line = r.failure_message()
    assert line.startswith("robust_acc 0.500 < min_acc 0.800 (95% CI [0.237, 0.763], n=10)")
    assert "under pgd eps=0.1 linf steps=20 alpha=0.0125; clean_acc 0.900" in line


@pytest.mark.parametrize(
    ("thresholds", "status"),
    [
        ({}, "measured"),
        ({"min_acc": 0.5}, "pass"),  # equal to the floor passes
        ({"max_success": 0.4}, "fail"),
        ({"max_success": 0.5}, "pass"),
        ({"max_drop": 0.4}, "pass"),  # 0.9 - 0.5 = 0.4 exactly
        ({"max_drop": 0.39}, "fail"),
    ],
)
def test_thresholds(thresholds, status):
    assert make_result(thresholds=thresholds).status == status


def test_to_dict_round_trip():
    r = make_result()
    data = r.to_dict()
    assert data["schema"] == 1 and data["robust_acc"] == 0.5 and data["ci95"] == list(r.ci95)
    assert RobustnessResult.from_dict(data) == r


# --- issue 11 item 7: an attack that supports one norm only needs no norm= ---


def _resolved_norm(**kwargs):
    from pytest_robust.attacks import registered_attacks
    from pytest_robust.spec import attack_params
    from pytest_robust.spec import resolve
    from pytest_robust.spec import validate

    attacks = registered_attacks()
    checked = validate(kwargs, attacks)
    return resolve(checked, attack_params(checked["attack"], attacks, checked)).norm


def test_every_eps_ball_attack_runs_without_norm():
    from pytest_robust.attacks import registered_attacks

    for name, cls in registered_attacks().items():
        if not cls.eps_ball:
            continue
        norm = _resolved_norm(attack=name, eps=0.1)
        # The default (linf) where the attack supports it, else its only norm.
        assert norm == ("linf" if "linf" in cls.norms else cls.norms[0]), name


@pytest.mark.parametrize(
    ("kwargs", "norm"),
    [
        ({"attack": "cw"}, "l2"),
        ({"attack": "cw", "norm": "l2"}, "l2"),
        ({"attack": "fooling"}, "linf"),
        ({"attack": "transfer", "via": "cw", "surrogate": "model"}, "l2"),
        ({"attack": ["cw", "pgd"]}, "l2"),
        ({"attack": "deepfool"}, "linf"),
        ({"attack": "penalty"}, "linf"),
        ({"attack": "square"}, "linf"),
    ],
)
def test_a_single_norm_attack_uses_its_norm_when_none_is_given(kwargs, norm):
    assert _resolved_norm(eps=0.5, **kwargs) == norm


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attack": "cw", "norm": "linf"},
        {"attack": "fooling", "norm": "l2"},
        {"attack": ["cw", "fooling"]},
        {"attack": ["cw", "pgd"], "norm": "linf"},
    ],
)
def test_an_impossible_norm_stays_an_error(kwargs):
    with pytest.raises(RobustConfigError, match="norm"):
        _resolved_norm(eps=0.5, **kwargs)


def test_a_profile_step_size_never_becomes_a_certificates_confidence():
    """A profile's alpha= is PGD's step size; smoothing's alpha= is the probability that a
    certificate is wrong. A profile must never set the second through the first."""
    from pytest_robust.spec.attack_arg import attack_params
    from pytest_robust.spec.profiles import Profile

    attacks = registered_attacks()
    profile = Profile("mine", {"alpha": "0.2", "n": "50", "steps": "5"})
    certify = validate(
        {"check": "certify", "method": "smoothing", "sigma": 0.25, "eps": 0.1}, attacks
    )
    spec = resolve(certify, attack_params(certify["attack"], attacks, certify), profile=profile)
    assert spec.attack_params["alpha"] == 0.001 and spec.attack_params["n"] == 10000
    assert spec.provenance["alpha"] == "default"
    # The same profile still reaches an attack that declares alpha.
    pgd = validate({"attack": "pgd", "eps": 0.1}, attacks)
    spec = resolve(pgd, attack_params(pgd["attack"], attacks, pgd), profile=profile)
    assert spec.attack_params["alpha"] == 0.2 and spec.attack_params["steps"] == 5
