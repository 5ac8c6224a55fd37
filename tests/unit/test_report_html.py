"""The HTML report's page: an overview table of every check linking to its card, the reason
a row failed, readable pictures with the thresholds drawn, targeted checks' samples that
missed their target, and the page as a real browser (headless Chromium) renders it.

The records are real RobustnessResult records (to_dict), so the verdict the page explains
is the engine's own."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_robust.engine.result import RobustnessResult

pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")

from pytest_robust.report import pictures
from pytest_robust.report.html import build_html

N = 40
FLAG = {
    "name": "softmax_saturation",
    "severity": "masking",
    "message": "the softmax saturates",
    "fix": "attack the logits",
}


def check(nodeid: str, robust: int, row_status: str | None = None, **extra: Any) -> dict[str, Any]:
    """A check's record as the plugin writes it: `robust` of N samples stay robust."""
    fields: dict[str, Any] = {
        "attack": "pgd",
        "eps": 0.1,
        "norm": "linf",
        "bounds": (0.0, 1.0),
        "params": {"steps": 10},
        "targeted": False,
        "clean_correct": "1" * N,
        "robust": "1" * robust + "0" * (N - robust),
        "success": "0" * robust + "1" * (N - robust),
        "thresholds": {"min_acc": 0.5},
        "seed": 0,
        "device": "cpu",
        "duration_s": 0.5,
        "data_fingerprint": "d" * 32,
        "model_fingerprint": "m" * 32,
        "model_structure": "s" * 32,
    }
    names = set(RobustnessResult.__dataclass_fields__) - {"examples", "adversarial"}
    fields.update({k: v for k, v in extra.items() if k in names})
    record = RobustnessResult(**fields).to_dict()
    record.update({k: v for k, v in extra.items() if k not in names})
    record.update(nodeid=nodeid, order=0, row_status=row_status or record["status"])
    return record


class Page(HTMLParser):
    """The overview table's rows (cell texts and the link), and every element id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.rows: list[dict[str, Any]] = []
        self._in_overview = False
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "table" and found.get("id") == "overview-table":
            self._in_overview = True
        elif self._in_overview and tag == "tr":
            self.rows.append({"cells": [], "href": None})
        elif self._in_overview and tag == "td":
            self._cell = []
        elif self._in_overview and tag == "a" and self.rows:
            self.rows[-1]["href"] = found.get("href")
        elif self._in_overview and tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_overview = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def overview(page: str) -> list[dict[str, Any]]:
    return [row for row in Page(page).rows if row["cells"]]  # the header row has no td


def records() -> list[dict[str, Any]]:
    """A passing gate, a missed threshold, a passing gate failed by a masking flag, a
    certificate and an attack that pair into an interval, a transfer, an xfailed row."""
    cert_details = {"bound": "certified", "method": "ibp", "classifier": "model", "flags": []}
    return [
        check("t.py::test_gate", 30),
        check("t.py::test_low", 10),
        check("t.py::test_masked", 30, details={"flags": [FLAG]}),
        check(
            "t.py::test_certified",
            12,
            check="certify",
            attack="certify-ibp",
            params={},
            details=cert_details,
        ),
        check(
            "t.py::test_transfer",
            25,
            attack="transfer",
            params={"surrogate": "held_out", "via": "pgd"},
        ),
        check("t.py::test_known[a]", 5, row_status="fail (xfail)"),
    ]


def test_the_overview_lists_every_check_with_a_link_to_its_card() -> None:
    """Catches a page without the overview, a row missing a column (status, test, attack,
    eps, robust with interval, threshold, flags), or a link that leads nowhere."""
    page = build_html(records(), [], "0.1")
    rows = overview(page)
    ids = Page(page).ids
    assert [row["cells"][1] for row in rows] == [
        "t.py::test_gate",
        "t.py::test_low",
        "t.py::test_masked",
        "t.py::test_certified",
        "t.py::test_transfer",
        "t.py::test_known[a]",
    ]
    for row in rows:
        assert row["href"].startswith("#") and row["href"][1:] in ids
    status, _, attack, eps, robust, threshold, flags, _ = rows[0]["cells"]
    assert (status, attack, eps, threshold, flags) == ("pass", "pgd", "0.1", "min_acc>=0.5", "-")
    assert robust.startswith("0.750 [0.598, 0.858]")
    assert rows[2]["cells"][6] == "masking softmax_saturation"
    # The certificate (0.3) and the attacks at the same eps pair: [0.3, min of attacks].
    assert "in [certified 0.300, attacked 0.125]" in rows[0]["cells"][4]
    assert "in [certified 0.300, attacked 0.125]" in rows[3]["cells"][4]
    assert rows[5]["cells"][0] == "fail (xfail)"


def test_a_failed_row_says_why() -> None:
    """Catches a row that says `fail` next to a robust accuracy above its threshold and
    nothing else: the masking flag that failed the gate, the missed threshold, the strict
    interval and the baseline regression are each named in the row."""
    page = build_html(records(), [], "0.1")
    rows = overview(page)
    assert rows[0]["cells"][7] == ""  # passed: no reason
    assert rows[1]["cells"][7] == "robust_acc 0.250 < min_acc 0.500"
    assert rows[2]["cells"][0] == "fail"
    assert rows[2]["cells"][7] == "masking flag softmax_saturation: gate not trustworthy"
    assert rows[5]["cells"][7] == "robust_acc 0.125 < min_acc 0.500"
    # The card repeats the verdict's full sentence under the row.
    assert "✗ failed: not trustworthy: [softmax_saturation] the softmax saturates" in page
    from pytest_robust.report.html import reasons

    strict = check("t.py::s", 21, strict=True)
    assert strict["status"] == "fail"
    assert [r["short"] for r in reasons(strict)] == [
        "robust_acc 0.525 >= min_acc 0.500 but its 95% CI lower bound 0.375 is below it (strict)"
    ]
    message = "regressed vs baseline: robust_acc 0.750 vs baseline 0.900 (-0.150, tolerance 0.05)"
    regressed = check("t.py::r", 30, row_status="regressed")
    regressed["baseline"] = {"status": "regressed", "delta": -0.15, "message": message}
    assert [r["short"] for r in reasons(regressed)] == [
        "regressed vs baseline: robust_acc 0.750 vs baseline 0.900"
    ]
    changed = check("t.py::c", 30, row_status="data changed")
    changed["baseline"] = {"status": "data changed", "delta": None, "message": "the data differ"}
    assert [r["short"] for r in reasons(changed)] == ["baseline: data changed"]


def test_a_transfer_row_names_its_surrogate_fixture() -> None:
    rows = overview(build_html(records(), [], "0.1"))
    assert rows[4]["cells"][2] == "transfer from held_out"


def _texts(figure: Any) -> list[Any]:
    return [t for t in figure.findobj(match=lambda a: hasattr(a, "get_fontsize")) if t.get_text()]


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every matplotlib figure the pictures draw, in order (still rendered as before)."""
    figures: list[Any] = []
    real_png = pictures._png

    def keep(figure: Any) -> str:
        figures.append(figure)
        return real_png(figure)

    monkeypatch.setattr(pictures, "_png", keep)
    return figures


def test_pictures_are_readable_at_normal_zoom(drawn: list[Any]) -> None:
    """Catches text in a picture smaller than 13 CSS pixels as the page shows it (it was
    about 8 px), and an eps curve narrower than 900 CSS pixels (it was 400)."""
    import torch

    from pytest_robust.engine.examples import Example
    from pytest_robust.engine.examples import encode

    image = encode([Example(0, torch.rand(1, 8, 8), torch.rand(1, 8, 8), 1, 2, 0.9)], (0, 1))
    vector = encode([Example(0, torch.rand(12), torch.rand(12), 1, 2, 0.9)], (0, 1))
    sweep = [check(f"t.py::c[{e}]", r, eps=e) for e, r in ((0.05, 30), (0.1, 20), (0.2, 5))]
    curve = pictures.sweep_curve(sweep)
    assert curve is not None
    pictures.examples_figure(image)
    pictures.examples_figure(vector)
    interval = {"norm": "linf", "attacked": [(0.1, 0.6), (0.2, 0.3)],
                "certified": [(0.1, 0.4), (0.2, 0.1)],
                "attacked_by": ["pgd"], "certified_by": ["certify-ibp"]}  # fmt: skip
    pictures.interval_curve(interval)
    bins = [{"low": 0.0, "high": 1e-8, "count": 3}, {"low": 1e-8, "high": float("inf"), "count": 9}]
    pictures.gradient_histogram({"bins": bins, "median": 0.1})
    assert len(drawn) == 5
    shown_dpi = pictures.DPI / getattr(pictures, "SCALE", 1)  # pixels per inch on the page
    for figure in drawn:
        sizes = [t.get_fontsize() * shown_dpi / 72 for t in _texts(figure)]
        assert sizes and min(sizes) >= 13, (figure, min(sizes))
    # The curve's width as the page shows it (the PNG's width at the page's density).
    from PIL import Image

    png = Image.open(io.BytesIO(base64.b64decode(curve[1].partition("base64,")[2])))
    assert png.width * 96 / shown_dpi >= 900


def test_the_eps_curve_draws_each_cases_threshold(drawn: list[Any]) -> None:
    """Catches thresholds shown as small dashes without their values: each case's floor
    (min_acc, and clean_acc - max_drop) is drawn, labelled in the legend and written as a
    number; a failed case is marked."""
    sweep = [
        check("t.py::c[a]", 38, eps=0.05, thresholds={"min_acc": 0.9}),
        check("t.py::c[b]", 20, eps=0.1, thresholds={"min_acc": 0.6}),
        check("t.py::c[c]", 12, eps=0.2, thresholds={"max_drop": 0.8}),
    ]
    assert [r["status"] for r in sweep] == ["pass", "fail", "pass"]
    pictures.sweep_curve(sweep)
    (figure,) = drawn
    (ax,) = figure.axes
    texts = {t.get_text() for t in ax.texts}
    assert texts == {"0.90", "0.60", "0.20"}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "threshold: min_acc" in legend and "threshold: clean_acc − max_drop" in legend
    assert "failed" in legend


def test_a_targeted_check_shows_its_missed_targets_not_nothing() -> None:
    """Catches 'No successful adversarial input to show' for a targeted check whose
    attack pushed samples to a wrong class other than their target."""
    import torch

    from pytest_robust.engine.examples import Example
    from pytest_robust.engine.examples import encode

    missed = Example(3, torch.rand(1, 8, 8), torch.rand(1, 8, 8), 1, 8, 0.7, 1, 0.9, 4, True)
    targeted = check("t.py::ll", 30, targeted=True, examples=encode([missed], (0, 1)))
    page = build_html([targeted], [], "0.1")
    assert "No successful adversarial input to show" not in page
    assert 'alt="most confidently fooled samples"' in page
    assert "the 1 most confident sample pushed to a wrong class that is not the target" in page
    assert pictures.adversarial_title(encode([missed], (0, 1))["items"][0]) == (
        "misclassified: pred 8 (70%)\n(not the target 4)",
        pictures.MISSED_COLOUR,
    )


def test_the_overview_is_in_the_dom_chromium_renders(tmp_path: Path) -> None:
    """Loads the page in headless Chromium (skipped where it is absent): the rendered DOM
    holds the overview table with one row per check, each linking to an element that
    exists (a malformed table would be rebuilt by the browser's parser)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "robust.html"
    page.write_text(build_html(records(), [("torch", "2")], "0.1"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rendered = Page(dom)
    rows = [row for row in rendered.rows if row["cells"]]
    assert len(rows) == len(records())
    assert all(len(row["cells"]) == 8 for row in rows)
    assert {row["href"][1:] for row in rows} <= rendered.ids
    assert rows[2]["cells"][7] == "masking flag softmax_saturation: gate not trustworthy"


def test_the_palette_keeps_the_pictures_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches a colour reduction that changes what the fooled samples look like (64
    random grey levels per panel): the PNG differs from the full-colour drawing it was made
    from by at most 4 of 255 anywhere."""
    import numpy as np
    import torch
    from PIL import Image

    from pytest_robust.engine.examples import Example
    from pytest_robust.engine.examples import encode

    g = torch.Generator().manual_seed(0)
    images = [
        Example(i, torch.rand(1, 8, 8, generator=g), torch.rand(1, 8, 8, generator=g), 1, 2, 0.9)
        for i in range(4)
    ]
    full: list[Any] = []
    quantize = Image.Image.quantize

    def keep(image: Image.Image, *args: Any, **kwargs: Any) -> Image.Image:
        full.append(np.asarray(image.convert("RGB")).astype(int))
        return quantize(image, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "quantize", keep)
    uri = pictures.examples_figure(encode(images, (0, 1)))
    assert uri is not None and len(full) == 1
    png = Image.open(io.BytesIO(base64.b64decode(uri.partition("base64,")[2]))).convert("RGB")
    assert len(np.unique(full[0].reshape(-1, 3), axis=0)) > 256  # a palette must merge some
    assert int(np.abs(np.asarray(png).astype(int) - full[0]).max()) <= 4


def test_threshold_labels_stay_off_the_curve(drawn: list[Any]) -> None:
    """Catches a threshold's value written where the curve passes (the digits example's
    curve crossed its "0.95" and "0.80" labels at the right ends of their bars), or over
    an error bar or a threshold's bar."""
    from matplotlib.collections import LineCollection

    sweep = [
        check("t.py::c[a]", 39, eps=0.02, thresholds={"min_acc": 0.95}),
        check("t.py::c[b]", 35, eps=0.05, thresholds={"min_acc": 0.8}),
        check("t.py::c[c]", 20, eps=0.1, thresholds={"min_acc": 0.35}),
    ]
    pictures.sweep_curve(sweep)
    (figure,) = drawn
    (ax,) = figure.axes
    renderer = figure.canvas.get_renderer()
    # Drawn lines (error bar caps are markers only) and line collections (error bars,
    # threshold bars), in display coordinates.
    curves = [
        line.get_transform().transform_path(line.get_path())
        for line in ax.lines
        if line.get_linestyle() != "None" and len(line.get_xdata()) > 1
    ]
    assert len(curves) == 1
    collections = [c for c in ax.collections if isinstance(c, LineCollection)]
    curves += [c.get_transform().transform_path(p) for c in collections for p in c.get_paths()]
    labels = list(ax.texts)
    assert {t.get_text() for t in labels} == {"0.95", "0.80", "0.35"}
    for label in labels:
        box = label.get_window_extent(renderer)
        assert ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1), label
        for path in curves:
            assert not path.intersects_bbox(box, filled=False), label.get_text()
