"""Robustness gates for the digits CNN: what a team would put in CI.

Run with `pytest examples/digits --robust-report`. The model is an undefended CNN, so the
gates are set where it stands today: they catch a regression, not claim robustness.
"""

from __future__ import annotations

import pytest

from pytest_robust import robust


@robust(attack="fgsm", eps=0.05, min_acc=0.80)
def test_fgsm_small_budget() -> None:
    """One gradient step of 0.05 (under 1/16 of the pixel range) must not take us below 80%."""


@robust(attack="pgd", eps=[0.02, 0.05, 0.1], steps=20, min_acc=[0.95, 0.80, 0.35])
def test_pgd_curve(robustness) -> None:  # type: ignore[no-untyped-def]
    """Robust accuracy along an eps curve; each eps is its own test."""
    assert robustness.clean_acc > 0.95  # the gate is only meaningful on a good model
    assert robustness.robust_acc <= robustness.clean_acc


@robust(attack="illc", eps=0.1, steps=20, max_success=0.1)
def test_least_likely_class_is_out_of_reach() -> None:
    """Pushing a digit into the class the model finds least likely must rarely succeed."""


@robust(attack="pgd", eps=0.2, steps=20, restarts=2)
def test_pgd_at_large_eps_breaks_the_model(robustness) -> None:  # type: ignore[no-untyped-def]
    """An undefended model is not robust at eps=0.2: if this starts passing, look for
    gradient masking before celebrating."""
    assert robustness.success_rate > 0.9


@pytest.mark.xfail(reason="undefended CNN: PGD at eps=0.2 breaks almost every digit", strict=True)
@robust(attack="pgd", eps=0.2, steps=20, min_acc=0.5)
def test_gate_that_fails_on_an_undefended_model() -> None:
    """A gate the model does not meet, kept to show what a failure looks like."""


@robust(check="gradients", max_zero_frac=0.01)
def test_input_gradients_are_not_masked(robustness) -> None:  # type: ignore[no-untyped-def]
    """No vanished or zero input gradients: the gradient attacks above can see their way.
    (A defensively distilled model fails here: see examples/defenses.)"""
    assert robustness.details["gradients"]["saturated_frac"] == 0.0


@robust(attack="pgd", eps=0.1, steps=20, min_acc=0.35, check="masking")
def test_pgd_survives_the_masking_diagnosis(robustness) -> None:  # type: ignore[no-untyped-def]
    """The full diagnosis: eps=0.5 reaches chance, accuracy falls with eps, FGSM, more
    steps, random noise and Square do not beat PGD. Any contradiction fails this test."""
    assert robustness.details["diagnosis"]["large_eps"]["robust_acc"] < 0.1
