"""pytest-xdist: under `-n 2` the outcomes, the summary and the report files (JSON,
Markdown, HTML with its pictures) match a serial run, and the controller alone prints and
writes them (once)."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET

import pytest
import torch

from pytest_robust.report import json_report
from pytest_robust.report import writers

FILE_A = """
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_a_pass():
    pass

@robust(attack="fgsm", eps=0.1, min_acc=0.9)
def test_a_fail():
    pass

def test_a_plain():
    pass
"""
FILE_B = """
from pytest_robust import robust

@robust(attack="pgd", eps=[0.03, 0.3], steps=2)
def test_b_curve():
    pass
"""
FILE_G = """
from pytest_robust import robust

@robust(check="gradients")
def test_g_gradients():
    pass
"""
# Appended to the world's conftest: log which process writes the report files, and the
# JSON report.
WRITER_LOG = """

import os
import pytest_robust.report.json_report as _json_report
import pytest_robust.report.writers as _writers

_write_json = _json_report.write_json
_write_reports = _writers.write_reports


def _log(line):
    with open("writers.log", "a") as log:
        log.write(os.environ.get("PYTEST_XDIST_WORKER", "controller") + " " + line + "\\n")


def _logged_write_json(path, report):
    _log(path.name)
    _write_json(path, report)


def _logged_write_reports(targets, *args):
    _log("reports")
    return _write_reports(targets, *args)


_json_report.write_json = _logged_write_json
_writers.write_reports = _logged_write_reports
"""
NODEIDS = [
    "test_xa.py::test_a_pass",
    "test_xa.py::test_a_fail",
    "test_xb.py::test_b_curve[pgd-eps=0.03]",
    "test_xb.py::test_b_curve[pgd-eps=0.3]",
]


def comparable(report: dict) -> list[dict]:
    """The checks without what legitimately differs between runs (timings)."""
    return [{k: v for k, v in c.items() if k != "duration_s"} for c in report["checks"]]


TIMES = re.compile(r"\d+\.\d\ds|\d{4}-\d\d-\d\dT[\d:+]+")
REPORTS = ("json:{}.json", "md:{}.md", "html:{}.html")


def test_xdist_matches_serial_and_reports_once(
    rtester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches, under -n 2: results lost between workers and controller (missing rows or
    JSON entries), a summary or report files written by every worker (duplicated sections,
    rows, 'report written' lines), a baseline save that loses a worker's entries or is
    announced by every worker, junit properties lost in transit, pictures lost on the
    way to the controller (they travel on the test reports), and numbers (seeds,
    accuracies) or report content that depend on which process ran the test."""
    # When this suite itself runs under xdist, the inner runs would inherit its worker id.
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    rtester.makepyfile(test_xa=FILE_A, test_xb=FILE_B, test_xg=FILE_G)
    conftest = rtester.path / "conftest.py"
    conftest.write_text(conftest.read_text() + WRITER_LOG)
    # The serial run is in this process: its conftest's patches are undone after the test.
    monkeypatch.setattr(json_report, "write_json", json_report.write_json)
    monkeypatch.setattr(writers, "write_reports", writers.write_reports)

    # Each run saves its own baseline: the -n 2 one must hold every worker's entries.
    serial = rtester.runpytest(
        *(f"--robust-report={r.format('serial')}" for r in REPORTS),
        *("--robust-baseline-save", "--robust-baseline=serial-baseline.json"),
    )
    serial.assert_outcomes(passed=5, failed=1)

    result = rtester.runpytest_subprocess(
        *("-p", "xdist", "-n", "2", "--junit-xml=j.xml"),
        *(f"--robust-report={r.format('xdist')}" for r in REPORTS),
        *("--robust-baseline-save", "--robust-baseline=xdist-baseline.json"),
        timeout=120,
    )
    result.assert_outcomes(passed=5, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*2 workers*"])  # really distributed

    out = result.outlines
    assert [line.strip("= ") for line in out].count("robustness") == 1
    for nodeid in NODEIDS:
        rows = [line for line in out if line.startswith(nodeid + " ")]
        assert len(rows) == 1, (nodeid, rows)
    assert sum(line.startswith("report written:") for line in out) == 3
    result.stdout.fnmatch_lines(["baseline saved: 5 entries -> *xdist-baseline.json"])
    assert sum("baseline saved" in line for line in out) == 1
    result.stdout.fnmatch_lines(["*5 robustness checks: 1 fail, 2 measured, 2 pass*"])

    report = json.loads((rtester.path / "xdist.json").read_text())
    assert report["schema"] == 1
    assert [c["nodeid"] for c in report["checks"]] == [*NODEIDS, "test_xg.py::test_g_gradients"]
    serial_report = json.loads((rtester.path / "serial.json").read_text())
    assert {c["nodeid"]: c["robust_acc"] for c in report["checks"]} == {
        c["nodeid"]: c["robust_acc"] for c in serial_report["checks"]
    }
    assert comparable(report) == comparable(serial_report)
    # Written once per run, by the serial process and by the xdist controller only.
    assert (rtester.path / "writers.log").read_text().splitlines() == [
        "controller reports",
        "controller serial.json",
        "controller reports",
        "controller xdist.json",
    ]
    assert not list(rtester.path.glob(".*.tmp"))

    def read(name: str) -> str:
        return (rtester.path / name).read_text()

    entries = json.loads(read("xdist-baseline.json"))["entries"]
    assert entries == json.loads(read("serial-baseline.json"))["entries"]
    assert read("xdist.md") == read("serial.md")
    assert TIMES.sub("T", read("xdist.html")) == TIMES.sub("T", read("serial.html"))
    # The fooled samples of test_a_pass, test_a_fail and eps 0.3, the curve, the histogram.
    assert read("xdist.html").count("data:image/png;base64,") == 5

    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(rtester.path / "j.xml").iter("testcase")
    }
    assert props["test_a_pass"]["robust.robust_acc"] == "0.5"
    assert props["test_b_curve[pgd-eps=0.3]"]["robust.robust_acc"] == "0.0"
    assert props["test_a_plain"] == {}


def test_xdist_without_robust_tests_prints_nothing_of_ours(pytester: pytest.Pytester) -> None:
    """Catches a robustness section, a report line or a warning printed by a -n 2 run
    that has no robust tests at all (also with --robust-report given)."""
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "--robust-report", timeout=60)
    result.assert_outcomes(passed=1, warnings=0)
    result.stdout.no_fnmatch_line("*robustness*")
    result.stdout.no_fnmatch_line("*report written*")


THREADS = """
import os
import torch
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_threads():
    with open(f"threads-{os.environ.get('PYTEST_XDIST_WORKER', 'serial')}.txt", "w") as out:
        out.write(str(torch.get_num_threads()))
"""


def section(lines: list[str], title: str) -> list[str]:
    """The lines of one `=== title ===` section of a terminal summary."""
    start = next(i for i, line in enumerate(lines) if line.strip("= ") == title) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("===")), len(lines))
    return lines[start:end]


def test_xdist_baseline_compare_junit_rows_and_threads(
    rtester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches, under -n 2: a regression that does not fail its test (workers that do not
    load the baseline), baseline properties missing from JUnit, summary rows that differ
    from a serial run's, and CPU workers that each start a full thread pool."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    rtester.makepyfile(test_xa=FILE_A, test_xb=FILE_B, test_xt=THREADS)
    # Saved serially: a save under -n 2 is test_xdist_matches_serial_and_reports_once's.
    saved = rtester.runpytest(
        "-p", "no:cacheprovider", "-k", "not threads", "--robust-baseline-save"
    )
    saved.assert_outcomes(passed=4, failed=1)
    path = rtester.path / "robust-baseline.json"
    data = json.loads(path.read_text())
    assert sorted(data["entries"]) == sorted(NODEIDS)
    # Pretend test_a_pass was fully robust when the baseline was saved.
    data["entries"]["test_xa.py::test_a_pass"].update(robust_acc=1.0, robust="//////////8=")
    path.write_text(json.dumps(data))

    # test_threads has no entry: listed as missing, the same in both runs.
    args = ("--robust-compare-fail=robust_acc:0.02",)
    # The serial run in this process: a thread count no share of the cores gives is set
    # first, and the run must leave it as it is (only a worker takes its share).
    threads = torch.get_num_threads()
    untouched = (os.cpu_count() or 1) + 3
    torch.set_num_threads(untouched)
    try:
        serial = rtester.runpytest("-p", "no:cacheprovider", *args)
    finally:
        torch.set_num_threads(threads)
    serial.assert_outcomes(passed=4, failed=2)
    parallel = rtester.runpytest_subprocess(
        *("-p", "xdist", "-n", "2", "-p", "no:cacheprovider", *args, "--junit-xml=j.xml"),
        timeout=120,
    )
    parallel.assert_outcomes(passed=4, failed=2)
    parallel.stdout.fnmatch_lines(["missing entry: test_xt.py::test_threads *"])
    parallel.stdout.fnmatch_lines(
        ["*regressed vs baseline: robust_acc 0.500 vs baseline 1.000*32 sample(s) flipped*"]
    )
    assert section(parallel.outlines, "robustness") == section(serial.outlines, "robustness")
    assert section(parallel.outlines, "robustness baseline") == section(
        serial.outlines, "robustness baseline"
    )
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(rtester.path / "j.xml").iter("testcase")
    }
    assert props["test_a_pass"]["robust.baseline_status"] == "regressed"
    assert props["test_a_pass"]["robust.baseline_delta"] == "-0.5"
    assert props["test_a_fail"]["robust.baseline_delta"] == "0.0"
    assert props["test_a_fail"]["robust.threshold"] == "min_acc>=0.9"

    # Threads: each CPU worker takes its share of the cores, at its first check; a serial
    # run keeps the count it found.
    (written,) = rtester.path.glob("threads-gw*.txt")
    assert int(written.read_text()) == max(1, (os.cpu_count() or 1) // 2)
    assert int((rtester.path / "threads-serial.txt").read_text()) == untouched
