"""The `robustness` fixture: the test body gets the RobustnessResult of its own check."""

from __future__ import annotations

import pytest


def test_body_gets_the_result_of_its_own_check(rtester: pytest.Pytester) -> None:
    """Catches a fixture that returns nothing, a result of another test, or a result with
    wrong fields (the world's numbers are known: 64 samples, clean 1.0, robust 0.5)."""
    rtester.makepyfile(
        """
        from pytest_robust import RobustnessResult
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.1, min_acc=0.4)
        def test_fgsm(robustness):
            assert isinstance(robustness, RobustnessResult)
            assert robustness.attack == "fgsm"
            assert robustness.eps == 0.1
            assert robustness.n == 64
            assert robustness.clean_acc == 1.0
            assert robustness.robust_acc == 0.5
            assert robustness.success_rate == 0.5
            lo, hi = robustness.ci95
            assert 0.38 < lo < 0.5 < hi < 0.62
            assert robustness.params == {}
            assert robustness.thresholds == {"min_acc": 0.4}
            assert isinstance(robustness.seed, int)
            assert robustness.device == "cpu"
            assert robustness.status == "pass"

        @robust(attack="pgd", eps=0.3, steps=2)
        def test_pgd(robustness):
            assert robustness.attack == "pgd"
            assert robustness.robust_acc == 0.0
            assert robustness.params["steps"] == 2
            assert robustness.params["alpha"] == 2.5 * 0.3 / 2
            assert robustness.status == "measured"
        """
    )
    rtester.runpytest().assert_outcomes(passed=2)


def test_robustness_without_a_marker_is_a_clear_error(rtester: pytest.Pytester) -> None:
    """Catches the fixture returning None (so `robustness.robust_acc` raises an
    AttributeError far from the cause) on a test that has no @robust marker."""
    rtester.makepyfile(
        """
        def test_unmarked(robustness):
            assert robustness.robust_acc >= 0
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*test_unmarked*", "*robustness fixture needs a @robust(...) marker*"]
    )
    result.stdout.no_fnmatch_line("*AttributeError*")


def test_unmarked_tests_are_left_alone(rtester: pytest.Pytester) -> None:
    """Catches the autouse check doing work for (or failing) tests without the marker:
    here the model fixture would fail if anything requested it."""
    rtester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def robust_model():
            pytest.fail("robust_model must not be requested by an unmarked test")

        def test_plain():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*robustness*")
