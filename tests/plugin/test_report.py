"""Reports: the terminal "robustness" section, --robust-report (term, json:PATH), the
robust_report ini key, and JUnit XML properties."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_robust.engine.stats import wilson

SUITE = """
import pytest
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_pass():
    pass

@robust(attack="fgsm", eps=0.1, min_acc=0.9)
def test_fail():
    pass

@robust(attack="pgd", eps=0.3, steps=2)
def test_measured():
    pass

@pytest.mark.skip(reason="not today")
@robust(attack="fgsm", eps=0.1)
def test_skipped():
    pass

def test_plain():
    pass
"""
ROWS = {
    "test_pass": "test_r.py::test_pass *fgsm*0.1*64*1.000*0.500 [[]0.381, 0.619]*min_acc>=0.4*pass",
    "test_fail": "test_r.py::test_fail *fgsm*0.1*64*1.000*0.500 [[]0.381, 0.619]*min_acc>=0.9*fail",
    "test_measured": "test_r.py::test_measured *pgd*0.3*64*1.000*0.000 [[]0.000, 0.057]*-*measured",
}


def section(result: pytest.RunResult) -> list[str]:
    """The non-empty lines of the robustness section (up to the next ==== line)."""
    lines = result.outlines
    (start,) = [i for i, line in enumerate(lines) if line.strip("= ") == "robustness"]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("====")), len(lines))
    return [line for line in lines[start + 1 : end] if line.strip()]


def test_summary_section_has_a_header_and_one_row_per_executed_check(
    rtester: pytest.Pytester,
) -> None:
    """Catches a missing section, wrong columns or numbers, rows for tests that did not run
    a check (skipped, unmarked), and duplicated or missing rows."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest()
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    body = section(result)
    assert body[0].startswith("3 robustness checks: 1 fail, 1 measured, 1 pass")
    columns = "test attack eps n clean robust [95% CI] threshold status"
    assert body[1].split() == columns.split()
    rows = body[2:]
    assert len(rows) == 3, rows
    for name in ROWS:
        assert sum(row.startswith(f"test_r.py::{name} ") for row in rows) == 1, rows
    result.stdout.fnmatch_lines(["*= robustness =*", *ROWS.values()])
    assert not any("test_skipped" in row or "test_plain" in row for row in rows)


def test_rows_of_same_named_files_in_different_directories_are_distinct(
    rtester: pytest.Pytester,
) -> None:
    """Catches a test column shortened so far that two different tests (same file name,
    different directories, as importlib mode allows) print identical rows."""
    for directory in ("unit", "integration"):
        (rtester.path / directory).mkdir()
        (rtester.path / directory / "test_same.py").write_text(
            "from pytest_robust import robust\n\n"
            "@robust(attack='fgsm', eps=0.1)\n"
            "def test_gate():\n"
            "    pass\n"
        )
    result = rtester.runpytest("--import-mode=importlib")
    result.assert_outcomes(passed=2)
    rows = section(result)[2:]
    assert len(rows) == 2
    assert len({row.split()[0] for row in rows}) == 2, rows


def test_bare_robust_report_prints_the_full_table_grouped_by_function(
    rtester: pytest.Pytester,
) -> None:
    """Catches --robust-report (bare, meaning 'term') not switching on the full table: one
    line per test function, one row per case with params, delta and time columns."""
    rtester.makepyfile(
        test_r=SUITE
        + """

@robust(attack="fgsm", eps=[0.03, 0.3])
def test_curve():
    pass
"""
    )
    result = rtester.runpytest("--robust-report")
    result.assert_outcomes(passed=5, failed=1, skipped=1)
    header, *lines = section(result)[1:]
    columns = "case attack params eps n clean robust [95% CI] threshold delta status time"
    assert header.split() == columns.split()
    result.stdout.fnmatch_lines(
        [
            "test_r.py::test_measured",
            "  -  *pgd *linf steps=2 alpha=0.375 random_start=True restarts=1 *0.3*64*"
            "measured *[0-9].[0-9][0-9]s",
            "test_r.py::test_curve",
            "  [[]fgsm-eps=0.03]  *fgsm*0.03*64*1.000*1.000 *-  measured *s",
            "  [[]fgsm-eps=0.3] *fgsm*0.3*64*1.000*0.000 *-  measured *s",
        ]
    )
    functions = [line for line in lines if not line.startswith(" ")]
    assert functions == [f"test_r.py::{name}" for name in (*ROWS, "test_curve")]
    assert len(lines) == 4 + 5


def test_json_report_is_written_and_announced(rtester: pytest.Pytester) -> None:
    """Catches a JSON report that is not written, not announced, or whose content does not
    match what was measured (schema, one entry per check, values per nodeid)."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest("--robust-report=json:out/out.json")
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    path = rtester.path / "out" / "out.json"
    result.stdout.fnmatch_lines([f"report written: {path}"])
    report = json.loads(path.read_text())
    assert report["schema"] == 1
    checks = {c["nodeid"]: c for c in report["checks"]}
    assert len(checks) == len(report["checks"]) == 3
    assert {k: (c["robust_acc"], c["status"], c["n"]) for k, c in checks.items()} == {
        "test_r.py::test_pass": (0.5, "pass", 64),
        "test_r.py::test_fail": (0.5, "fail", 64),
        "test_r.py::test_measured": (0.0, "measured", 64),
    }
    assert checks["test_r.py::test_measured"]["params"]["steps"] == 2
    assert checks["test_r.py::test_fail"]["thresholds"] == {"min_acc": 0.9}


def test_json_without_a_path_writes_the_default_file(rtester: pytest.Pytester) -> None:
    """Catches --robust-report=json (no path) writing nothing or an oddly named file."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest("--robust-report=json")
    result.stdout.fnmatch_lines([f"report written: {rtester.path / 'robust-report.json'}"])
    assert json.loads((rtester.path / "robust-report.json").read_text())["schema"] == 1


def test_call_report_carries_a_json_safe_result(rtester: pytest.Pytester) -> None:
    """Catches the hand-over to the xdist controller breaking: the call report must carry
    the result as plain JSON data (xdist serialises reports), and only the call report."""
    rtester.makepyfile(test_r=SUITE)
    reprec = rtester.inline_run()
    carried = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        record = getattr(report, "robust_result", None)
        if record is not None:
            assert report.when == "call"
            assert json.loads(json.dumps(record)) == record
            carried[report.nodeid] = record
    assert sorted(carried) == [f"test_r.py::test_{n}" for n in ("fail", "measured", "pass")]
    assert all(carried[k]["nodeid"] == k for k in carried)


def test_robust_report_ini_key_writes_json(rtester: pytest.Pytester) -> None:
    """Catches the robust_report ini key being ignored."""
    rtester.makeini("[pytest]\nrobust_report =\n    json:ini.json\n")
    rtester.makepyfile(test_r=SUITE)
    rtester.runpytest().assert_outcomes(passed=3, failed=1, skipped=1)
    assert len(json.loads((rtester.path / "ini.json").read_text())["checks"]) == 3


@pytest.mark.parametrize("value", ["xml", "term:out.txt", "pdf:r.pdf"])
def test_invalid_robust_report_is_a_usage_error(rtester: pytest.Pytester, value: str) -> None:
    """Catches an unknown report type that is accepted and silently writes nothing."""
    rtester.makepyfile("def test_plain():\n    pass\n")
    result = rtester.runpytest(f"--robust-report={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--robust-report*{value}*"])


def test_invalid_robust_report_ini_value_is_a_usage_error(rtester: pytest.Pytester) -> None:
    """Catches a bad robust_report ini value that is accepted and silently ignored."""
    rtester.makeini("[pytest]\nrobust_report = xml\n")
    rtester.makepyfile("def test_plain():\n    pass\n")
    result = rtester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*robust_report*xml*"])


def test_junit_xml_carries_robust_properties(rtester: pytest.Pytester) -> None:
    """Catches results missing from --junit-xml (CI dashboards read them there), or
    robust properties attached to tests that ran no check."""
    rtester.makepyfile(test_r=SUITE)
    rtester.runpytest("--junit-xml=j.xml").assert_outcomes(passed=3, failed=1, skipped=1)
    text = (rtester.path / "j.xml").read_text()
    assert '<property name="robust.robust_acc" value="0.5"' in text
    cases = {c.get("name"): c for c in ET.parse(rtester.path / "j.xml").iter("testcase")}
    props = {
        name: {p.get("name"): p.get("value") for p in case.iter("property")}
        for name, case in cases.items()
    }
    low, high = wilson(32, 64)
    assert props["test_pass"] == {
        "robust.attack": "fgsm",
        "robust.eps": "0.1",
        "robust.n": "64",
        "robust.clean_acc": "1.0",
        "robust.robust_acc": "0.5",
        "robust.status": "pass",
        "robust.threshold": "min_acc>=0.4",
        "robust.ci95_low": str(low),
        "robust.ci95_high": str(high),
    }
    assert props["test_fail"]["robust.status"] == "fail"
    assert props["test_measured"]["robust.robust_acc"] == "0.0"
    assert props["test_plain"] == {}
    assert props["test_skipped"] == {}
