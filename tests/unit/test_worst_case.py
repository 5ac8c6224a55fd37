"""attack=[...]: per-sample worst case over several attacks, never an average."""

from __future__ import annotations

import pytest

from pytest_robust import RobustConfigError
from pytest_robust import evaluate


def test_worst_case_is_never_above_any_member_per_sample(digits_cnn, digits_data):
    eps = 0.08
    fgsm = evaluate(digits_cnn, digits_data, attack="fgsm", eps=eps)
    bim = evaluate(digits_cnn, digits_data, attack="bim", eps=eps, steps=10)
    both = evaluate(digits_cnn, digits_data, attack=["fgsm", "bim"], eps=eps, steps=10)
    for single in (fgsm, bim):
        for combined, alone in zip(both.robust, single.robust, strict=True):
            assert not (combined == "1" and alone == "0")
    assert both.robust_acc <= min(fgsm.robust_acc, bim.robust_acc)
    # Exactly the union of what each broke (attacks are per-sample and seeded per sample).
    union = sum(a == "1" or b == "1" for a, b in zip(fgsm.success, bim.success, strict=True))
    assert both.n_success == union
    broken_by = both.details["broken_by"]
    assert broken_by["fgsm"] == fgsm.n_success and sum(broken_by.values()) == both.n_success
    assert both.attack == "fgsm+bim"


def test_parameters_go_to_the_attacks_that_declare_them(digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack=["fgsm", "pgd"], eps=0.05, steps=7)
    assert result.params["attacks"] == {
        "fgsm": {},
        "pgd": {
            "steps": 7,
            "alpha": pytest.approx(2.5 * 0.05 / 7),
            "random_start": True,
            "restarts": 1,
        },
    }
    defaults = evaluate(digits_cnn, digits_data, attack=["bim", "pgd"], eps=0.05)
    assert defaults.params["attacks"]["pgd"]["steps"] == 20


def test_bad_combinations_are_explained(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="always picks its own targets"):
        evaluate(digits_cnn, digits_data, attack=["pgd", "illc"], eps=0.1)
    with pytest.raises(RobustConfigError, match="each attack may appear once"):
        evaluate(digits_cnn, digits_data, attack=["pgd", "pgd"], eps=0.1)
    with pytest.raises(RobustConfigError, match="did you mean 'bim'"):
        evaluate(digits_cnn, digits_data, attack=["pgd", "bmi"], eps=0.1)


def test_the_strong_preset_runs_its_three_attacks(digits_cnn, digits_data):
    x, y = digits_data
    result = evaluate(digits_cnn, (x[:60], y[:60]), attack="strong", eps=0.2, steps=10, queries=50)
    assert result.attack == "apgd-ce+apgd-dlr+square"
    assert set(result.details["broken_by"]) == {"apgd-ce", "apgd-dlr", "square"}
    assert result.robust_acc < 0.1
