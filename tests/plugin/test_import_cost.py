"""Import cost: the plugin is loaded by every pytest run of every project that has it
installed, so a run without robust tests must not import torch (about 1.3 s)."""

from __future__ import annotations

import sys

import pytest

RECORDER = """
import sys
from pathlib import Path

def pytest_sessionfinish(session):
    Path("modules.txt").write_text(
        f"torch={'torch' in sys.modules} "
        f"plugin={session.config.pluginmanager.hasplugin('robust')}"
    )
"""


def test_a_run_without_robust_tests_does_not_import_torch(pytester: pytest.Pytester) -> None:
    """Catches a module-level `import torch` creeping into plugin.py, options.py,
    session.py, fixtures.py or marker.py, also on the paths that the run's options touch
    (-v header, --robust-report, --robust-seed). A fresh interpreter is needed: the outer
    test process has torch imported already."""
    pytester.makeconftest(RECORDER)
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess(
        "-v", "--robust-report", "--robust-seed=1", "--robust-max-samples=8", timeout=60
    )
    result.assert_outcomes(passed=1)
    # plugin=True: the plugin was really loaded, so torch=False means something.
    assert (pytester.path / "modules.txt").read_text() == "torch=False plugin=True"


def test_importing_the_entry_point_does_not_import_torch(pytester: pytest.Pytester) -> None:
    """The entry point itself, in a fresh interpreter, outside any pytest run: the test
    above passes only while every hook on its path stays torch-free; this one pins the
    module-level imports of pytest_robust.plugin and everything it imports."""
    probe = "import sys, pytest_robust.plugin; print('torch' in sys.modules)"
    result = pytester.run(sys.executable, "-c", probe)
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines[-1] == "False"
