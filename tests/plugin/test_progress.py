"""The live progress line: on a terminal only, not with -q, not in CI logs (no TTY)."""

from __future__ import annotations

import pytest

from pytest_robust.plugin.progress_display import progress_text

TESTS = """
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, batch_size=8)
def test_batches():
    pass

def test_after():
    pass
"""
# Appended to the world's conftest: pretend stdout is a terminal, and show progress at once.
TTY = """

import pytest_robust.plugin.progress_display as _progress_line
from _pytest.compat import CallableBool

_progress_line.AFTER_S = 0.0
_progress_line.EVERY_S = 0.0


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    config.pluginmanager.getplugin("terminalreporter").isatty = CallableBool(True)
"""


def test_progress_text() -> None:
    assert progress_text("pgd", 100, 400, 2.0) == "robust: pgd 100/400 samples, 50.0/s, ETA 6s"
    assert progress_text("pgd", 400, 400, 8.0) == "robust: pgd 400/400 samples in 8.0s (50.0/s)"
    assert progress_text("pgd", 0, 400, 0.0) == "robust: pgd 0/400 samples, 0.0/s"


def test_progress_on_a_terminal_and_nowhere_else(rtester: pytest.Pytester) -> None:
    """Catches progress written into CI logs (no TTY) or under -q, a line that clobbers
    pytest's own, and a final line that does not end (the next result glued to it)."""
    rtester.makepyfile(test_p=TESTS)
    plain = rtester.runpytest("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=2)
    assert "\r" not in plain.stdout.str() and "robust: fgsm" not in plain.stdout.str()

    conftest = rtester.path / "conftest.py"
    conftest.write_text(conftest.read_text() + TTY)
    live = rtester.runpytest("-p", "no:cacheprovider")
    live.assert_outcomes(passed=2)
    # Eight batches of 8 rewrite one line ("\r"; the matcher splits lines there), which
    # ends saying how long it took; pytest's own line is kept before it and starts afresh
    # after it, so the test's result is not glued to our text.
    lines = live.outlines
    ours = [i for i, line in enumerate(lines) if line.startswith("robust: fgsm")]
    assert len(ours) == 8 and ours == list(range(ours[0], ours[0] + 8))
    assert lines[ours[0]].startswith("robust: fgsm 8/64 samples, ")
    assert lines[ours[-1]].startswith("robust: fgsm 64/64 samples in ")
    assert lines[ours[0] - 2].rstrip() == "test_p.py"
    assert lines[ours[-1] + 1].startswith("test_p.py ..")

    verbose = rtester.runpytest("-p", "no:cacheprovider", "-v")
    verbose.stdout.fnmatch_lines(
        ["robust: fgsm 64/64 samples in *", "test_p.py::test_batches PASSED*"]
    )

    quiet = rtester.runpytest("-p", "no:cacheprovider", "-q")
    quiet.assert_outcomes(passed=2)
    assert "robust: fgsm" not in quiet.stdout.str()
