"""--robust-report=json|md|html: each file written, announced, and read back; the HTML
escapes markup in test ids and embeds its pictures; without the report extra it says what to
install."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

SUITE = """
import pytest
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_gate():
    pass

@robust(attack="fgsm", eps=[0.03, 0.1, 0.3])
def test_curve():
    pass

@pytest.mark.parametrize("who", ["<script>alert(1)</script>"])
@robust(attack="fgsm", eps=0.3)
def test_markup(who):
    pass

@robust(check="gradients")
def test_gradients():
    pass
"""
NODEIDS = [
    "test_r.py::test_gate",
    "test_r.py::test_curve[fgsm-eps=0.03]",
    "test_r.py::test_curve[fgsm-eps=0.1]",
    "test_r.py::test_curve[fgsm-eps=0.3]",
    "test_r.py::test_markup[<script>alert(1)</script>]",
    "test_r.py::test_gradients",
]


def test_json_and_html_reports_of_one_run(rtester: pytest.Pytester) -> None:
    """One run (its pictures take seconds) for both files.

    JSON: catches a report missing the fields a CI consumer relies on: schema version,
    plugin version, environment, seed, every check with parameters, provenance, thresholds,
    status and fingerprints; and picture data leaking into it (the HTML report keeps the
    samples in the records).

    HTML: catches a report that runs a test id as script, links its pictures instead of
    embedding them, or lacks the fooled samples, the eps curve or the gradient histogram."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest(
        "--robust-report=json:out/r.json", "--robust-report=html:site/r.html", "--robust-seed=7"
    )
    result.assert_outcomes(passed=6)
    report = json.loads((rtester.path / "out" / "r.json").read_text())
    assert report["schema"] == 1
    assert report["plugin_version"]
    assert re.match(r"\d{4}-\d\d-\d\dT", report["created"])
    env = report["environment"]
    assert {"python", "platform", "torch", "devices"} <= env.keys()
    assert env["devices"] == ["cpu"]
    assert report["run"]["seed"] == 7
    assert "seed=7" in report["run"]["settings"]
    assert [c["nodeid"] for c in report["checks"]] == NODEIDS
    gate = report["checks"][0]
    for key in ("params", "provenance", "thresholds", "status", "ci95", "n", "robust_acc"):
        assert key in gate, key
    assert gate["thresholds"] == {"min_acc": 0.4}
    assert gate["provenance"]["eps"] == "marker" and gate["provenance"]["seed"] == "--robust-seed"
    assert re.fullmatch(r"[0-9a-f]{16,}", gate["data_fingerprint"])
    assert re.fullmatch(r"[0-9a-f]{16,}", gate["model_fingerprint"])
    assert all("examples" not in c for c in report["checks"])
    assert "commit" not in report  # the test directory is not in a git repository

    path = rtester.path / "site" / "r.html"
    result.stdout.fnmatch_lines([f"report written: {path}"])
    page = path.read_text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="http' not in page and "src='" not in page
    images = re.findall(
        r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"[^>]* alt="([^"]+)"', page
    )
    # test_gate, eps 0.1 and 0.3 of the curve and test_markup break samples; eps 0.03 not.
    assert images.count("most confidently fooled samples") == 4
    assert images.count("robust accuracy against eps") == 1
    assert images.count("input-gradient amplitudes") == 1
    assert page.count("No successful adversarial input to show.") == 1
    assert not list((rtester.path / "site").glob(".*.tmp"))


def test_json_report_records_the_git_commit(rtester: pytest.Pytester) -> None:
    """Catches the commit missing in a repository (or a wrong one)."""
    rtester.makepyfile(
        test_r="from pytest_robust import robust\n\n"
        "@robust(attack='fgsm', eps=0.1)\ndef test_gate():\n    pass\n"
    )

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=rtester.path,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q")
    git("add", "test_r.py")
    git("commit", "-qm", "x")
    rtester.runpytest("--robust-report=json:r.json").assert_outcomes(passed=1)
    report = json.loads((rtester.path / "r.json").read_text())
    assert report["commit"] == {"id": git("rev-parse", "HEAD"), "dirty": False}


def test_markdown_report_is_a_table_with_escaped_cells(rtester: pytest.Pytester) -> None:
    """Catches a Markdown report without its table, a row per check, or with raw markup or
    column-breaking pipes from a test id."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest("--robust-report=md:r.md")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines([f"report written: {rtester.path / 'r.md'}"])
    text = (rtester.path / "r.md").read_text()
    lines = text.splitlines()
    header = (
        "| Test | Attack | ε | n | Clean acc | Robust acc [95% CI] | Threshold | Δ baseline "
        "| Status |"
    )
    assert header in lines
    rows = [line for line in lines if line.startswith("| `test_r.py") or "test_markup" in line]
    assert len(rows) == len(NODEIDS)
    assert (
        "| `test_r.py::test_gate` | fgsm | 0.1 | 64 | 1.000 | **0.500** [0.381, 0.619] "
        "| min_acc ≥ 0.4 | – | ✅ pass |" in lines
    )
    # Inside a code span markup is shown as text; nowhere else does it appear raw.
    assert text.count("<script>") == 1
    assert "| `test_r.py::test_markup[<script>alert(1)</script>]` |" in text
    assert all(row.count(" | ") == 8 for row in rows)


def test_markdown_without_path_appends_to_the_github_step_summary(
    rtester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches `md` overwriting the step summary (other steps write there too) or ignoring
    $GITHUB_STEP_SUMMARY."""
    summary = rtester.path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rtester.makepyfile(test_r=SUITE)
    rtester.runpytest("--robust-report=md").assert_outcomes(passed=6)
    text = summary.read_text()
    assert text.startswith("earlier step\n## Robustness")
    assert not (rtester.path / "robust-report.md").exists()


def test_html_without_the_report_extra_says_what_to_install(
    rtester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches a traceback (or a silently empty page) when matplotlib / Pillow are not
    installed: the page names them and the install command, and still lists the checks."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "PIL", None)
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest("--robust-report=html:r.html")
    result.assert_outcomes(passed=6)
    page = (rtester.path / "r.html").read_text()
    assert "need matplotlib, Pillow: pip install &#x27;pytest-robust[report]&#x27;" in page
    assert "data:image" not in page and "<script" not in page
    assert "test_gate" in page and "6 robustness checks" in page


def test_full_terminal_table_notes_sanity_flags(rtester: pytest.Pytester) -> None:
    """Catches a flag (here: the model handed over in train mode) missing from the full
    table, or printed away from its row."""
    rtester.makepyfile(
        test_r="""
import pytest
from pytest_robust import robust

@pytest.fixture
def train_model(robust_model):
    return robust_model.train()

@robust(attack="fgsm", eps=0.1, model="train_model")
def test_train():
    pass
"""
    )
    result = rtester.runpytest("--robust-report")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_r.py::test_train",
            "  -  *fgsm*measured*",
            "      ! warning: train_mode: the model was handed over in train mode*"
            " — fix: call model.eval()*",
        ]
    )
