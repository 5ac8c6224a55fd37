"""Report files under pytest-xdist: written once, by the controller, with the same content
as a serial run (timings and creation times aside), pictures included."""

from __future__ import annotations

import json
import re

import pytest

from pytest_robust.report import writers

SUITE = """
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_gate():
    pass

@robust(attack="pgd", eps=[0.03, 0.3], steps=2)
def test_curve():
    pass

@robust(check="gradients")
def test_gradients():
    pass
"""
# Appended to the world's conftest: log which process writes report files.
WRITER_LOG = """

import os
import pytest_robust.report.writers as _writers

_write_reports = _writers.write_reports


def _logged(targets, *args):
    with open("writers.log", "a") as log:
        log.write(os.environ.get("PYTEST_XDIST_WORKER", "controller") + "\\n")
    return _write_reports(targets, *args)


_writers.write_reports = _logged
"""
TIMES = re.compile(r"\d+\.\d\ds|\d{4}-\d\d-\d\dT[\d:+]+")


def test_xdist_writes_each_report_once_with_the_serial_content(
    rtester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches reports written by every worker, pictures lost on the way to the controller
    (they travel on the test reports), and content that depends on the process."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    rtester.makepyfile(test_x=SUITE)
    conftest = rtester.path / "conftest.py"
    conftest.write_text(conftest.read_text() + WRITER_LOG)
    # The serial run is in this process: its conftest's patch is undone after the test.
    monkeypatch.setattr(writers, "write_reports", writers.write_reports)
    reports = [
        "--robust-report=json:{}.json",
        "--robust-report=md:{}.md",
        "--robust-report=html:{}.html",
    ]

    serial = rtester.runpytest(*(r.format("serial") for r in reports))
    serial.assert_outcomes(passed=4)
    result = rtester.runpytest_subprocess(
        "-p", "xdist", "-n", "2", *(r.format("xdist") for r in reports), timeout=120
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*2 workers*"])
    assert sum(line.startswith("report written:") for line in result.outlines) == 3
    assert (rtester.path / "writers.log").read_text().splitlines() == ["controller"] * 2

    def read(name: str) -> str:
        return (rtester.path / name).read_text()

    assert read("xdist.md") == read("serial.md")
    assert TIMES.sub("T", read("xdist.html")) == TIMES.sub("T", read("serial.html"))
    assert read("xdist.html").count("data:image/png;base64,") == 4  # 2 samples, curve, histogram

    def checks(name: str) -> list[dict]:
        return [
            {k: v for k, v in c.items() if k != "duration_s"}
            for c in json.loads(read(name))["checks"]
        ]

    assert checks("xdist.json") == checks("serial.json")
    assert not list(rtester.path.glob(".*.tmp"))
