"""`pytest --help` and `--version` with the plugin installed: a plugin is loaded by every
pytest run of every project in the environment, so a crash here breaks all of them."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_robust.plugin.options import add_options

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


class _Recorder:
    """Stands in for pytest's Parser and OptionGroup: records every option and ini key."""

    def __init__(self) -> None:
        self.options: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.ini: list[tuple[str, str]] = []

    def getgroup(self, name: str, description: str = "") -> _Recorder:
        return self

    def addoption(self, *names: str, **attrs: Any) -> None:
        self.options.append((names, attrs))

    def addini(self, name: str, help: str, **attrs: Any) -> None:
        self.ini.append((name, help))


def test_every_option_help_renders_through_argparse() -> None:
    """Catches a help string that argparse cannot %-format (a bare `%`, as in 'TOL%
    (relative' did: ValueError: unsupported format character '('), option by option, so
    the failure names the option."""
    recorder = _Recorder()
    add_options(recorder)  # type: ignore[arg-type]
    assert len(recorder.options) >= 10
    for names, attrs in recorder.options:
        parser = argparse.ArgumentParser(prog="pytest")
        parser.add_argument(*names, **attrs)
        try:
            text = parser.format_help()
        except (ValueError, TypeError, KeyError) as error:
            pytest.fail(f"{names[0]}: its help does not render: {error}")
        assert names[0] in text
        assert "%%" not in text, f"{names[0]}: a doubled %% shows in the help"
    for name, help in recorder.ini:
        assert help and "%%" not in help, name  # pytest prints ini help as it is


def test_help_in_process_lists_every_option(pytester: pytest.Pytester) -> None:
    """Catches `pytest --help` crashing or leaving an option out, in pytest's own parser."""
    result = pytester.runpytest("--help")
    assert result.ret == 0, result.stderr.str()
    recorder = _Recorder()
    add_options(recorder)  # type: ignore[arg-type]
    text = result.stdout.str()
    for names, _ in recorder.options:
        assert names[0] in text
    assert "TOL% (relative" in text


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("where", "args", "loaded"),
    [
        ("plain", ("--help",), True),
        ("plain", ("-p", "no:robust", "--help"), False),
        ("plain", ("-n", "2", "--help"), True),
        ("plain", ("--version",), None),
        ("digits", ("--help",), True),
        ("digits", ("-p", "no:robust", "--help"), False),
        ("digits", ("-n", "2", "--help"), True),
        ("digits", ("--version",), None),
    ],
)
def test_help_and_version_work_everywhere(
    tmp_path: Path, where: str, args: tuple[str, ...], loaded: bool | None
) -> None:
    """Catches `pytest --help` / `--version` failing in a fresh interpreter, in a plain
    folder and in the example suite (its conftest and ini), with the plugin loaded, under
    -p no:robust and under xdist."""
    pytest.importorskip("xdist")
    result = _pytest(tmp_path if where == "plain" else DIGITS, *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback (most recent call last)" not in result.stdout + result.stderr
    if loaded is None:
        assert "pytest" in result.stdout + result.stderr
    else:
        assert ("--robust-compare-fail" in result.stdout) is loaded
