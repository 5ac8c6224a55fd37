"""Staying out of the way: `-m robust` selection, the registered marker, strict mode."""

from __future__ import annotations

import pytest

SUITE = """
import pytest
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_helper():
    pass

@pytest.mark.robust(attack="fgsm", eps=[0.03, 0.1])
def test_raw_list():
    pass

def test_plain():
    pass
"""


def test_m_robust_selects_only_marked_tests(rtester: pytest.Pytester) -> None:
    """Catches the helper not applying a real `robust` mark (so -m cannot see it), or
    expanded cases losing the mark."""
    rtester.makepyfile(SUITE)
    result = rtester.runpytest("-m", "robust")
    result.assert_outcomes(passed=3, deselected=1)
    result.stdout.fnmatch_lines(["*= robustness =*", "*3 robustness checks*"])


def test_m_not_robust_deselects_them_and_prints_no_section(
    rtester: pytest.Pytester,
) -> None:
    """Catches attacks running (or a robustness section printed) for deselected tests."""
    rtester.makepyfile(SUITE)
    result = rtester.runpytest("-m", "not robust")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.no_fnmatch_line("*robustness*")


def test_marker_is_registered_and_documented(rtester: pytest.Pytester) -> None:
    """Catches a marker that is not registered (pytest --markers would not list it, and
    --strict-markers would reject every robust test)."""
    result = rtester.runpytest("--markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["@pytest.mark.robust(attack, eps, *"])


def test_strict_markers_accept_the_marker_without_warnings(rtester: pytest.Pytester) -> None:
    """Catches PytestUnknownMarkWarning or a strict-markers error for `robust`."""
    rtester.makepyfile(SUITE)
    result = rtester.runpytest("--strict-markers", "-W", "error::pytest.PytestUnknownMarkWarning")
    result.assert_outcomes(passed=4, warnings=0)


def test_collect_only_runs_no_attack(rtester: pytest.Pytester) -> None:
    """Catches attacks (or model loading) during collection: --collect-only must not touch
    the model fixture, and prints no robustness section."""
    rtester.makepyfile(
        test_s=SUITE.replace(
            "import pytest\n",
            "import pytest\n\n"
            "@pytest.fixture(scope='session')\n"
            "def robust_model():\n"
            "    raise RuntimeError('model loaded during collection')\n",
            1,
        ),
    )
    result = rtester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["4 tests collected*"])
    result.stdout.no_fnmatch_line("*robustness*")
    result.stdout.no_fnmatch_line("*model loaded*")


def test_works_without_xdist_and_cacheprovider(rtester: pytest.Pytester) -> None:
    """Catches a hard dependency on another plugin being loaded."""
    rtester.makepyfile(SUITE)
    result = rtester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_fixtures_are_documented(rtester: pytest.Pytester) -> None:
    """Catches undocumented override points: `pytest --fixtures` must list robust_model,
    robust_data, robust_device and robustness with their help."""
    result = rtester.runpytest("--fixtures")
    result.stdout.fnmatch_lines_random(
        [
            "*robust_device*",
            "*The device attacks run on*",
            "robustness*",
            "*The RobustnessResult of this test's @robust check*",
        ]
    )
    # The plugin's defaults are shadowed by the world's conftest; their help is shown
    # when no conftest overrides them.
    (rtester.path / "conftest.py").unlink()
    result = rtester.runpytest("--fixtures")
    result.stdout.fnmatch_lines_random(
        ["*robust_model*", "*Override in conftest.py*", "*robust_data*"]
    )
