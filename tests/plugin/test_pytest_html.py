"""pytest-html integration (plugin/pytest_html_hooks.py): with `--html=...` its results
table has our columns and each check's row has a detail block and the fooled samples'
picture as extras; with pytest-html absent (`-p no:html`) nothing changes."""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Any

import pytest

pytest.importorskip("pytest_html")

SUITE = """
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_pass():
    pass

@robust(attack="fgsm", eps=0.1, min_acc=0.9)
def test_fail():
    pass

@robust(attack="fgsm", eps=0.03)
def test_unbroken():
    pass

def test_plain():
    pass
"""
# What each run saw, written by a conftest hook: was our pytest-html plugin registered, and
# did the call reports carry extras or pictured samples.
SPY = """

def pytest_runtest_logreport(report):
    if report.when == "call":
        record = getattr(report, "robust_result", None) or {}
        seen.append(
            {"nodeid": report.nodeid, "extras": len(getattr(report, "extras", []) or []),
             "examples": "examples" in record}
        )


def pytest_sessionfinish(session):
    import json
    registered = session.config.pluginmanager.has_plugin("pytest_robust.html")
    (session.config.rootpath / "seen.json").write_text(
        json.dumps({"registered": registered, "reports": seen})
    )


seen = []
"""
HEADERS = ["Result", "Test", "Attack", "eps", "Clean", "Robust [95% CI]", "Threshold", "Flags"]
# (attack, eps, clean, robust [95% CI], threshold, flags): the tiny world's known answers.
CELLS = {
    "test_r.py::test_pass": ["fgsm", "0.1", "1.000", "0.500 [0.381, 0.619]", "min_acc>=0.4", "-"],
    "test_r.py::test_fail": ["fgsm", "0.1", "1.000", "0.500 [0.381, 0.619]", "min_acc>=0.9", "-"],
    "test_r.py::test_unbroken": ["fgsm", "0.03", "1.000", "1.000 [0.943, 1.000]", "-", "-"],
    "test_r.py::test_plain": ["", "", "", "", "", ""],
}


def html_data(path: Any) -> tuple[list[str], dict[str, Any]]:
    """(column headers, {nodeid: row data}) of a pytest-html 4.x report: the table's rows
    live as JSON in the page's data-jsonblob attribute."""
    page = path.read_text()
    headers = [html.unescape(h) for h in re.findall(r"<th[^>]*>([^<]*)</th>", page)]
    (blob,) = re.findall(r'data-jsonblob="([^"]*)"', page)
    tests = json.loads(html.unescape(blob))["tests"]
    return headers, {nodeid: rows[-1] for nodeid, rows in tests.items()}


def cell_texts(row: dict[str, Any]) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in row["resultsTableRow"]]


def test_pytest_html_table_has_the_robustness_columns_and_extras(
    rtester: pytest.Pytester,
) -> None:
    """Catches columns missing or out of step with the header, wrong numbers in them, a row
    without a check that shifts the table, and a check whose row lacks its detail block or
    its picture of the fooled samples (none for a check that fooled nothing)."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest("--html=r.html", "--self-contained-html")
    result.assert_outcomes(passed=3, failed=1)
    headers, rows = html_data(rtester.path / "r.html")
    assert headers[: len(HEADERS)] == HEADERS
    for nodeid, cells in CELLS.items():
        texts = cell_texts(rows[nodeid])
        assert len(texts) == len(headers), texts
        assert texts[2:8] == cells, nodeid
    extras = {nodeid: row["extras"] for nodeid, row in rows.items()}
    assert extras["test_r.py::test_plain"] == []
    for nodeid in ("test_r.py::test_pass", "test_r.py::test_fail", "test_r.py::test_unbroken"):
        (detail,) = [e for e in extras[nodeid] if e["format_type"] == "html"]
        assert "robust_acc" in detail["content"] and "fgsm eps=" in detail["content"]
    assert "robust_acc 0.500 [95% CI 0.381, 0.619]" in extras["test_r.py::test_fail"][0]["content"]
    for nodeid in ("test_r.py::test_pass", "test_r.py::test_fail"):
        (image,) = [e for e in extras[nodeid] if e["format_type"] == "image"]
        assert image["content"].startswith("data:image/png;base64,")
        png = base64.b64decode(image["content"].partition("base64,")[2])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert not [e for e in extras["test_r.py::test_unbroken"] if e["format_type"] == "image"]


def test_markup_in_a_cell_is_shown_as_text(rtester: pytest.Pytester) -> None:
    """Catches an attack name or flag that pytest-html would render as markup (the cells
    are raw HTML): a pytest_robust_update_result hook can put any text in the record."""
    rtester.makeconftest(
        (rtester.path / "conftest.py").read_text()
        + "\n\ndef pytest_robust_update_result(record):\n"
        "    record['attack'] = '<b>fgsm</b>'\n"
    )
    rtester.makepyfile(test_r=SUITE)
    rtester.runpytest("--html=r.html", "--self-contained-html", "-k", "test_pass")
    _, rows = html_data(rtester.path / "r.html")
    row = rows["test_r.py::test_pass"]
    assert '<td class="col-robustAttack">&lt;b&gt;fgsm&lt;/b&gt;</td>' in row["resultsTableRow"]
    assert "&lt;b&gt;fgsm&lt;/b&gt;" in row["extras"][0]["content"]


def test_without_pytest_html_nothing_changes(rtester: pytest.Pytester) -> None:
    """Catches our pytest-html plugin registered (its hooks would be unknown hooks without
    pytest-html), extras or pictured samples made, or the output changed, when pytest-html
    is absent (-p no:html); and pictures made while pytest-html is loaded but writes no
    report."""
    rtester.makeconftest((rtester.path / "conftest.py").read_text() + SPY)
    rtester.makepyfile(test_r=SUITE)
    absent = rtester.runpytest("-p", "no:html")
    absent.assert_outcomes(passed=3, failed=1)
    seen = json.loads((rtester.path / "seen.json").read_text())
    assert seen["registered"] is False
    assert len(seen["reports"]) == 4
    assert all(r["extras"] == 0 and not r["examples"] for r in seen["reports"])
    loaded = rtester.runpytest()  # pytest-html loaded, no --html: columns ready, no pictures
    loaded.assert_outcomes(passed=3, failed=1)
    seen = json.loads((rtester.path / "seen.json").read_text())
    assert seen["registered"] is True
    assert not any(r["examples"] for r in seen["reports"])

    def robustness_section(result: pytest.RunResult) -> list[str]:
        lines = result.outlines
        start = next(i for i, line in enumerate(lines) if line.strip("= ") == "robustness")
        end = next(i for i in range(start + 1, len(lines)) if lines[i][:1] in ("=", "-"))
        return lines[start:end]

    assert robustness_section(absent) == robustness_section(loaded)
    with_html = rtester.runpytest("--html=r.html")
    seen = json.loads((rtester.path / "seen.json").read_text())
    assert sum(r["examples"] for r in seen["reports"]) == 3  # the three checks
    assert robustness_section(with_html) == robustness_section(loaded)


# Appended to the world's conftest: the kinds of each call report's extras, a line a test.
KINDS_SPY = """

def pytest_runtest_logreport(report):
    if report.when == "call":
        kinds = [e["format_type"] for e in getattr(report, "extras", [])]
        with open("kinds.txt", "a") as out:
            out.write(" ".join(kinds) + "\\n")
"""


def test_our_html_report_alone_makes_no_pytest_html_picture(rtester: pytest.Pytester) -> None:
    """Catches the fooled samples drawn a second time, as a pytest-html extra, when
    pytest-html is installed but writes no report (no --html) and only our HTML report
    asked for the samples: every such run drew each check's picture twice."""
    rtester.makeconftest((rtester.path / "conftest.py").read_text() + KINDS_SPY)
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest("--robust-report=html:ours.html", "-k", "test_pass")
    result.assert_outcomes(passed=1)
    assert "most confidently fooled samples" in (rtester.path / "ours.html").read_text()
    assert (rtester.path / "kinds.txt").read_text().split() == ["html"]


def test_pytest_html_under_xdist_gets_the_same_columns_and_pictures(
    rtester: pytest.Pytester,
) -> None:
    """Catches extras made on an xdist worker that do not travel to the controller (which
    writes the page), and cells read from state only the worker has."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest_subprocess(
        "-p", "xdist", "-n", "2", "--html=r.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=3, failed=1)
    _, rows = html_data(rtester.path / "r.html")
    for nodeid, cells in CELLS.items():
        assert cell_texts(rows[nodeid])[2:8] == cells, nodeid
    kinds = {nodeid: [e["format_type"] for e in row["extras"]] for nodeid, row in rows.items()}
    assert kinds == {
        "test_r.py::test_pass": ["html", "image"],
        "test_r.py::test_fail": ["html", "image"],
        "test_r.py::test_unbroken": ["html"],
        "test_r.py::test_plain": [],
    }
