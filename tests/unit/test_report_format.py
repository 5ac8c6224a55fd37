"""Pure report formatting: the delta slot, flag notes, Markdown cell escaping, picture
helpers. No pytest run needed."""

from __future__ import annotations

from typing import Any

from pytest_robust.report.markdown import build_markdown
from pytest_robust.report.markdown import code
from pytest_robust.report.terminal import format_full


def record(nodeid: str, **extra: Any) -> dict[str, Any]:
    base = {
        "nodeid": nodeid,
        "attack": "pgd",
        "targeted": False,
        "params": {"steps": 10},
        "norm": "linf",
        "eps": 0.1,
        "n": 100,
        "clean_acc": 0.99,
        "robust_acc": 0.8,
        "ci95": [0.71, 0.87],
        "thresholds": {"min_acc": 0.75},
        "row_status": "pass",
        "duration_s": 1.5,
        "details": {},
    }
    return {**base, **extra}


def test_delta_shows_dash_until_a_baseline_was_compared() -> None:
    """Catches a delta printed without a baseline, or the baseline's delta not shown."""
    rows = format_full(
        [
            record("t.py::test_a[x]"),
            record("t.py::test_a[y]", baseline={"robust_acc": 0.812, "delta": -0.012}),
        ]
    )
    header, function, first, second = (line for line, _ in rows)
    assert "delta" in header.split()
    assert function == "t.py::test_a"
    assert first.split()[-3] == "-" and second.split()[-3] == "-0.012"
    assert [kind for _, kind in rows] == ["header", "function", "pass", "pass"]


def test_flags_become_note_lines_under_their_row() -> None:
    flag = {"name": "softmax_saturation", "severity": "masking", "message": "m", "fix": "f"}
    rows = format_full([record("t.py::test_a", details={"flags": [flag]}), record("t.py::test_b")])
    lines = [line for line, _ in rows]
    assert lines[3] == "      ! masking: softmax_saturation: m — fix: f"
    assert lines[4] == "t.py::test_b"


def test_markdown_cells_never_break_the_table_or_carry_markup() -> None:
    """Catches a pipe in a test id splitting a row into extra columns, and raw HTML."""
    assert code("t.py::test[a|b]") == "t.py::test[a\\|b]"
    assert code("t.py::test[`<b>`]") == "t.py::test[`&lt;b&gt;`]"
    text = build_markdown([record("t.py::test[a|<b>]")], {}, {}, None)
    row = next(line for line in text.splitlines() if line.startswith("| t.py"))
    assert row.replace("\\|", "").count("|") == 10
    assert "<b>" not in text


def test_the_curve_follows_what_the_cases_sweep() -> None:
    """Catches a curve drawn for a test whose cases differ in nothing numeric, or missing
    for a noise sweep (eps None, sigma varies)."""
    from pytest_robust.report.pictures import sweep_curve
    from pytest_robust.report.pictures import sweep_key

    by_eps = [record("t.py::a[x]", eps=0.1), record("t.py::a[y]", eps=0.3)]
    noise = [
        record("t.py::n[x]", eps=None, attack="noise", params={"sigma": 0.1, "draws": 1}),
        record("t.py::n[y]", eps=None, attack="noise", params={"sigma": 0.2, "draws": 1}),
    ]
    same = [record("t.py::s[x]"), record("t.py::s[y]")]
    assert sweep_key(by_eps) == "eps"
    assert sweep_key(noise) == "sigma"
    assert sweep_key(same) is None and sweep_curve(same) is None
    swept, png = sweep_curve(noise) or ("", "")
    assert swept == "sigma" and png.startswith("data:image/png;base64,")


def test_markdown_lists_flags_under_the_table() -> None:
    flag = {"name": "softmax_saturation", "severity": "masking", "message": "m", "fix": "f"}
    text = build_markdown([record("t.py::a", details={"flags": [flag]})], {}, {}, None)
    assert "**Sanity flags**" in text
    assert "- ⚠️ `t.py::a`: masking `softmax_saturation`: m. Fix: f" in text


def test_html_shows_flags_as_text_and_draws_image_examples() -> None:
    """Catches a flag message rendered as markup, and image-shaped samples (grey and RGB)
    that fail to draw."""
    import torch

    from pytest_robust.engine.examples import Example
    from pytest_robust.engine.examples import encode
    from pytest_robust.report.html import build_html

    flag = {
        "name": "x",
        "severity": "masking",
        "message": "<img src=x onerror=alert(1)>",
        "fix": "f",
    }
    grey = encode([Example(0, torch.rand(1, 8, 8), torch.rand(1, 8, 8), 1, 2, 0.9, 1, 0.8)], (0, 1))
    rgb = encode([Example(0, torch.rand(3, 120, 90), torch.rand(3, 120, 90), 1, 2, 0.9)], (0, 1))
    assert rgb["shape"] == [3, 110, 83]  # averaged down to at most 96 * 96 pixels for display
    page = build_html(
        [
            record("t.py::a", details={"flags": [flag]}, examples=grey),
            record("t.py::b", examples=rgb),
        ],
        [("torch", "2")],
        "0.1",
    )
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count('alt="most confidently fooled samples"') == 2
