"""Strict statistical gating through the plugin: marker strict=True, --robust-strict and
ini robust_strict (marker first), and the small-sample warning.

In the tiny world fgsm eps=0.1 gives robust_acc 0.5 on 64 samples, 95% CI [0.381, 0.619]:
min_acc=0.45 passes on the point estimate, not on the lower bound; min_acc=0.35 passes both.
"""

from __future__ import annotations

import pytest

TESTS = """
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.45)
def test_close():
    pass

@robust(attack="fgsm", eps=0.1, min_acc=0.35)
def test_clear():
    pass

@robust(attack="fgsm", eps=0.1, min_acc=0.45, strict=False)
def test_lenient():
    pass
"""


def test_strict_fails_a_threshold_inside_the_interval(rtester: pytest.Pytester) -> None:
    """Catches a strict mode that is ignored, or that fails a threshold the interval clears,
    and a marker strict=False that the command line overrides."""
    rtester.makepyfile(test_s=TESTS)
    rtester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    result = rtester.runpytest("-p", "no:cacheprovider", "--robust-strict")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_close _*",
            "robust_acc 0.500 >= min_acc 0.450 but its 95% CI lower bound 0.381 is below it "
            "(strict; 95% CI [[]0.381, 0.619], n=64; about 381 samples would be needed to decide) "
            "under fgsm eps=0.1 linf*",
        ]
    )
    rtester.makeini("[pytest]\nrobust_strict = true\n")
    rtester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2, failed=1)
    rtester.makeini("[pytest]\nrobust_strict = maybe\n")
    result = rtester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*robust_strict*True or False*"])


@pytest.mark.parametrize(("word", "failed"), [("yes", 1), ("off", 0)])
def test_ini_strict_is_a_pytest_boolean(rtester: pytest.Pytester, word: str, failed: int) -> None:
    """Catches robust_strict parsed by hand (true/false/1/0 only) instead of as pytest's
    typed bool key, which takes what every other pytest boolean takes (yes/no, on/off)."""
    rtester.makepyfile(test_s=TESTS)
    rtester.makeini(f"[pytest]\nrobust_strict = {word}\n")
    result = rtester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3 - failed, failed=failed)


def test_marker_strict_alone(rtester: pytest.Pytester) -> None:
    rtester.makepyfile(
        test_m="""
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.45, strict=True)
def test_close():
    pass
"""
    )
    rtester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)


def test_small_sample_warning(rtester: pytest.Pytester) -> None:
    """Catches a threshold on too few samples passing silently, and the warning replacing
    the failure line of a failing check (it is added to the line instead)."""
    rtester.makepyfile(
        test_n="""
from pytest_robust import robust

@robust(attack="fgsm", eps=0.03, min_acc=0.95, max_samples=16)
def test_few():
    pass

@robust(attack="fgsm", eps=0.1, min_acc=0.95, max_samples=16)
def test_few_failing():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider", "-W", "default")
    result.assert_outcomes(passed=1, failed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*SmallSampleWarning: min_acc=0.95 on n=16 samples: even a perfect result could "
            "not establish it at 95% confidence (that needs n >= 73)*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["robust_acc 0.500 < min_acc 0.950*", "note: min_acc=0.95 on n=16*"]
    )
