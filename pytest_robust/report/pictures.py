"""The HTML report's pictures, as PNG data URIs: fooled samples, eps curves, gradient
histograms. matplotlib (object API, no pyplot state) and Pillow; imported by the caller
only when they are installed."""

from __future__ import annotations

import base64
import io
import itertools
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image

PANEL_PX = 112  # images are enlarged (nearest neighbour) to at least this many pixels
# Figures are sized in inches at the 96 CSS pixels per inch a browser shows, and drawn at
# SCALE times that density (sharp on high-density screens); the HTML page shows them at
# 1 / SCALE of their pixel size, so a 10.5 pt label is 14 CSS pixels tall.
SCALE = 2
DPI = 96 * SCALE
TEXT = 10.5  # points: sample titles, legends, tick labels
LABEL = 12  # points: axis labels


def _png(figure: Figure) -> str:
    """The figure (made with dpi=DPI) as a PNG data URI: drawn into memory and encoded once,
    with a 256-colour palette (a plot has few colours: half the bytes, the same look) and
    no metadata (the same run gives the same bytes)."""
    FigureCanvasAgg(figure)
    raw = io.BytesIO()
    figure.savefig(raw, format="rgba", dpi=figure.dpi)  # the figures are made at DPI
    width, height = int(figure.bbox.width), int(figure.bbox.height)  # as Agg's renderer
    rgba = Image.frombuffer("RGBA", (width, height), raw.getvalue(), "raw", "RGBA", 0, 1)
    rgb = rgba.convert("RGB")
    small = io.BytesIO()
    # Max-coverage: off by at most a few levels of 255 on these figures (median cut: up to
    # 22, fast octree: 15 on the digits' greys), and faster than median cut.
    rgb.quantize(256, method=Image.Quantize.MAXCOVERAGE).save(small, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(small.getvalue()).decode()


def _pixels(encoded: str, shape: Sequence[int]) -> np.ndarray:
    """uint8 (C, H, W) base64 -> an enlarged (H', W'[, 3]) array for imshow."""
    channels, height, width = shape
    array = np.frombuffer(base64.b64decode(encoded), dtype=np.uint8).reshape(
        channels, height, width
    )
    image = Image.fromarray(array[0] if channels == 1 else array.transpose(1, 2, 0))
    scale = max(1, -(-PANEL_PX // min(height, width)))
    image = image.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    return np.asarray(image)


def examples_figure(examples: Mapping[str, Any]) -> str | None:
    """clean | adversarial | perturbation, one row per fooled sample; None when none."""
    items = examples.get("items") or []
    if not items:
        return None
    if examples["kind"] == "image":
        return _image_rows(items, examples["shape"])
    return _vector_rows(items)


def _label(prefix: str, cls: int, confidence: float) -> str:
    return f"{prefix} {cls} ({confidence:.0%})"


# A sample pushed to a wrong class that is not its target: not a success, shown apart.
MISSED_COLOUR = "#9a6700"
FOOLED_COLOUR = "#b00020"


def adversarial_title(item: Mapping[str, Any]) -> tuple[str, str]:
    """(title, colour) of an adversarial input: its prediction, and for a targeted check
    whether that is the target or another wrong class."""
    pred = _label("pred", item["prediction"], item["confidence"])
    target = int(item.get("target", -1))
    if item.get("missed_target"):
        return f"misclassified: {pred}\n(not the target {target})", MISSED_COLOUR
    if target >= 0:
        return f"adversarial: {pred}\n= its target {target}", FOOLED_COLOUR
    return f"adversarial: {pred}", FOOLED_COLOUR


def _image_rows(items: Sequence[Mapping[str, Any]], shape: Sequence[int]) -> str:
    """One column per sample; rows clean, adversarial, perturbation."""
    columns = max(len(items), 2)  # a lone sample would fill the whole width
    figure = Figure(figsize=(2.15 * columns, 7.6), layout="constrained", dpi=DPI)
    axes = figure.subplots(3, columns, squeeze=False)
    gray = {"cmap": "gray", "vmin": 0, "vmax": 255} if shape[0] == 1 else {}
    for column, item in enumerate(items):
        clean, adversarial, perturbation = axes[:, column]
        clean.imshow(_pixels(item["clean"], shape), **gray)
        clean.set_title(
            f"#{item['index']}, label {item['label']}\n"
            + _label("clean: pred", item["clean_prediction"], item["clean_confidence"]),
            fontsize=TEXT,
        )
        adversarial.imshow(_pixels(item["adversarial"], shape), **gray)
        title, colour = adversarial_title(item)
        adversarial.set_title(title, fontsize=TEXT, color=colour)
        if item.get("missed_target"):  # framed in the same colour as its title
            for spine in adversarial.spines.values():
                spine.set(color=colour, linewidth=3)
        perturbation.imshow(_pixels(item["perturbation"], shape), cmap="gray", vmin=0, vmax=255)
        perturbation.set_title(
            f"δ ×{item['amplification']:.3g} (grey = 0)\n"
            f"max |δ| {item['max_abs_perturbation']:.3g}",
            fontsize=TEXT,
        )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[:, len(items) :].flat:
        ax.set_axis_off()
    return _png(figure)


def _vector_rows(items: Sequence[Mapping[str, Any]]) -> str:
    figure = Figure(figsize=(10.0, 2.6 * len(items)), layout="constrained", dpi=DPI)
    axes = figure.subplots(len(items), 2, squeeze=False, width_ratios=[2, 1])
    for (left, right), item in zip(axes, items, strict=True):
        clean = np.asarray(item["clean"])
        adversarial = np.asarray(item["adversarial"])
        features = np.arange(len(clean))
        title, colour = adversarial_title(item)
        left.plot(features, clean, label="clean", color="#1f77b4", linewidth=1.2)
        left.plot(features, adversarial, label="adversarial", color="#d62728", linewidth=1.0)
        left.set_title(
            f"#{item['index']} label {item['label']}, "
            + _label("clean pred", item["clean_prediction"], item["clean_confidence"])
            + "; "
            + title.replace("\n", " "),
            fontsize=TEXT,
            color=colour if item.get("missed_target") else "black",
        )
        left.legend(fontsize=TEXT, loc="best")
        left.tick_params(labelsize=TEXT)
        right.bar(features, adversarial - clean, color="#7f7f7f", width=1.0)
        right.set_title(
            f"perturbation (own scale)\nmax |δ| {item['max_abs_perturbation']:.3g}", fontsize=TEXT
        )
        right.tick_params(labelsize=TEXT)
    return _png(figure)


def sweep_key(records: Sequence[Mapping[str, Any]]) -> str | None:
    """What the cases of one test vary: 'eps', else a numeric attack parameter (noise's
    sigma, ...); None when there is no such sweep."""
    if len({r.get("eps") for r in records if r.get("eps") is not None}) >= 2:
        return "eps"
    for key in records[0]["params"] if records else ():
        values = [r["params"].get(key) for r in records]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric and len(set(values)) >= 2:
            return str(key)
    return None


def _value(record: Mapping[str, Any], key: str) -> float:
    return float(record["eps"] if key == "eps" else record["params"][key])


def floors(record: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The thresholds of a record that are a floor on its robust accuracy: min_acc, and
    max_drop as clean_acc - max_drop."""
    thresholds = record.get("thresholds") or {}
    out = []
    if "min_acc" in thresholds:
        out.append(("min_acc", float(thresholds["min_acc"])))
    if "max_drop" in thresholds:
        out.append(("clean_acc − max_drop", float(record["clean_acc"]) - thresholds["max_drop"]))
    return out


def sweep_curve(records: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(swept name, PNG) of robust accuracy (with its 95% interval) against eps, or against
    the attack parameter the cases sweep; None when they sweep nothing. A floor threshold
    is a red bar at each case with the region below it shaded and its value written next
    to it; a failed case is a red cross."""
    key = sweep_key(records)
    if key is None:
        return None
    points = sorted(
        ((_value(r, key), r) for r in records if key != "eps" or r.get("eps") is not None),
        key=lambda p: p[0],
    )
    figure = Figure(figsize=(10.5, 4.4), layout="constrained", dpi=DPI)
    ax = figure.subplots()
    for attack in dict.fromkeys(r["attack"] for _, r in points):
        mine = [(x, r) for x, r in points if r["attack"] == attack]
        xs = [x for x, _ in mine]
        acc = [r["robust_acc"] for _, r in mine]
        low = [r["robust_acc"] - r["ci95"][0] for _, r in mine]
        high = [r["ci95"][1] - r["robust_acc"] for _, r in mine]
        ax.errorbar(
            xs, acc, yerr=[low, high], marker="o", markersize=7, capsize=5, lw=2, label=attack
        )
    _draw_floors(ax, points)
    failed = [(x, r["robust_acc"]) for x, r in points if str(r.get("status")) == "fail"]
    if failed:
        fx, fy = zip(*failed, strict=True)
        ax.scatter(fx, fy, marker="X", s=160, color="#cf222e", zorder=5, label="failed")
    norms = {str(r.get("norm")) for _, r in points}
    label = f"eps ({norms.pop()})" if key == "eps" and len(norms) == 1 else key
    ax.set_xlabel(label, fontsize=LABEL)
    ax.set_ylabel("robust accuracy", fontsize=LABEL)
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=TEXT)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=TEXT, loc="best")
    return key, _png(figure)


def _draw_floors(ax: Any, points: Sequence[tuple[float, Mapping[str, Any]]]) -> None:
    """Each floor threshold as a bar centred on its case's x, the region below it shaded
    and its value written beside it where no curve passes (`_place_off_curves`); between
    cases no threshold is drawn: none was set there."""
    xs = sorted({x for x, _ in points})
    if len(xs) < 2:
        return
    half = min(b - a for a, b in itertools.pairwise(xs)) * 0.3
    styles = {"min_acc": "-", "clean_acc − max_drop": "--"}
    labels: list[tuple[float, float, float]] = []
    for name, style in styles.items():
        level: dict[float, float] = {}
        for x, r in points:
            for floor_name, value in floors(r):
                if floor_name == name:  # several attacks at one x: the highest floor
                    level[x] = max(value, level.get(x, value))
        for number, (x, y) in enumerate(sorted(level.items())):
            ax.hlines(
                y,
                x - half,
                x + half,
                color="#cf222e",
                lw=3,
                linestyles=style,
                label=f"threshold: {name}" if number == 0 else None,
                zorder=3,
            )
            ax.fill_between([x - half, x + half], -0.02, y, color="#cf222e", alpha=0.1, lw=0)
            labels.append((x - half, x + half, y))
    ax.set_xlim(xs[0] - 2 * half, xs[-1] + 3 * half)
    _place_off_curves(ax, labels)


# Where a threshold's value may go, tried in order: under the bar's left end (inside the
# shaded fail region), past its right end, under its right end, above either end.
# (anchor: "left" or "right" end of the bar; offset in points; alignment)
_SPOTS = (
    ("left", (3, -3), "left", "top"),
    ("right", (4, 0), "left", "center"),
    ("right", (-3, -3), "right", "top"),
    ("left", (3, 3), "left", "bottom"),
    ("right", (-3, 3), "right", "bottom"),
)


def _place_off_curves(ax: Any, labels: Sequence[tuple[float, float, float]]) -> None:
    """Writes each (left, right, y) bar's value at the first of `_SPOTS` that lies inside the
    axes and crosses no curve, so that neither hides the other (the first spot if none)."""
    figure = ax.figure
    FigureCanvasAgg(figure)
    figure.draw_without_rendering()  # the constrained layout settles the axes' place
    renderer = figure.canvas.get_renderer()
    # What a value must not cover: drawn lines (not marker-only ones, such as error bar
    # caps) and line collections (error bars, threshold bars), in display coordinates.
    curves = [
        line.get_transform().transform_path(line.get_path())
        for line in ax.lines
        if line.get_linestyle() not in ("None", "", " ") and len(line.get_xdata()) > 1
    ]
    curves += [
        collection.get_transform().transform_path(path)
        for collection in ax.collections
        if isinstance(collection, LineCollection)
        for path in collection.get_paths()
    ]

    def free(label: Any) -> bool:
        box = label.get_window_extent(renderer)
        inside = ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1)
        return inside and not any(c.intersects_bbox(box, filled=False) for c in curves)

    def write(spot: tuple[str, tuple[int, int], str, str], bar: tuple[float, ...]) -> Any:
        (end, offset, ha, va), (left, right, y) = spot, bar
        label = ax.annotate(
            f"{y:.2f}",
            (left if end == "left" else right, y),
            xytext=offset,
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=TEXT,
            color="#cf222e",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            annotation_clip=False,
        )
        label.set_in_layout(False)  # where it goes must not move the axes
        return label

    for bar in labels:
        for spot in _SPOTS:
            label = write(spot, bar)
            if free(label):
                break
            label.remove()
        else:
            write(_SPOTS[0], bar)


def interval_curve(curve: Mapping[str, Any]) -> str:
    """Both bounds of robust accuracy against eps (a curve of report/intervals.py): the
    certified lower bound dashed, the attacked upper bound solid, the gap shaded where both
    were measured."""
    figure = Figure(figsize=(10.5, 4.4), layout="constrained", dpi=DPI)
    ax = figure.subplots()
    upper = dict(curve["attacked"])
    lower = dict(curve["certified"])
    if upper:
        xs, ys = zip(*sorted(upper.items()), strict=True)
        label = "attacked (upper): " + ", ".join(curve["attacked_by"])
        ax.plot(xs, ys, marker="o", color="#d62728", label=label)
    if lower:
        xs, ys = zip(*sorted(lower.items()), strict=True)
        label = "certified (lower): " + ", ".join(curve["certified_by"])
        ax.plot(xs, ys, marker="s", linestyle="--", color="#1f77b4", label=label)
    both = sorted(set(upper) & set(lower))
    if len(both) >= 2:
        ax.fill_between(
            both, [lower[e] for e in both], [upper[e] for e in both], color="#9467bd", alpha=0.2
        )
    # Each interval also as a bar, so that a single eps shows its gap too.
    ax.vlines(both, [lower[e] for e in both], [upper[e] for e in both], color="#9467bd", lw=3)
    ax.set_xlabel(f"eps ({curve['norm']})", fontsize=LABEL)
    ax.set_ylabel("robust accuracy", fontsize=LABEL)
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=TEXT)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=TEXT)
    return _png(figure)


def gradient_histogram(stats: Mapping[str, Any]) -> str | None:
    """The histogram of per-sample input-gradient amplitudes of check='gradients'."""
    bins = stats.get("bins") or []
    if not bins:
        return None
    figure = Figure(figsize=(7.5, 3.8), layout="constrained", dpi=DPI)
    ax = figure.subplots()
    labels = [_bin_label(b) for b in bins]
    ax.bar(range(len(bins)), [b["count"] for b in bins], color="#1f77b4")
    ax.set_xticks(range(len(bins)), labels, rotation=45, ha="right", fontsize=TEXT)
    ax.tick_params(axis="y", labelsize=TEXT)
    ax.set_ylabel("samples", fontsize=LABEL)
    median = stats.get("median")
    title = f"mean |∇x loss| per sample ({stats.get('loss', 'ce')})"
    if isinstance(median, (int, float)):
        title += f", median {median:.3g}"
    ax.set_title(title, fontsize=LABEL)
    return _png(figure)


def _bin_label(b: Mapping[str, Any]) -> str:
    low, high = float(b["low"]), float(b["high"])
    if high == float("inf"):
        return f"≥{low:.0e}" if low < 1 else f"≥{low:g}"
    if low == 0:
        return f"<{high:.0e}"
    return f"{low:.0e}–{high:.0e}" if high < 1 else f"{low:.0e}–{high:g}"
