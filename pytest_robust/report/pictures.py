"""The HTML report's pictures, as PNG data URIs: fooled samples, eps curves, gradient
histograms. matplotlib (object API, no pyplot state) and Pillow; imported by the caller
only when they are installed."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

PANEL_PX = 112  # images are enlarged (nearest neighbour) to at least this many pixels
DPI = 80


def _png(figure: Figure) -> str:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    # No software/date metadata: the same run gives the same bytes.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    # A 256-colour palette keeps the report small (a plot has few colours) and looks the same.
    buffer.seek(0)
    small = io.BytesIO()
    Image.open(buffer).convert("RGB").quantize(256).save(small, format="PNG", optimize=True)
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


def _image_rows(items: Sequence[Mapping[str, Any]], shape: Sequence[int]) -> str:
    """One column per sample; rows clean, adversarial, perturbation."""
    columns = max(len(items), 2)  # a lone sample would fill the whole width
    figure = Figure(figsize=(1.75 * columns, 6.3), layout="constrained")
    axes = figure.subplots(3, columns, squeeze=False)
    gray = {"cmap": "gray", "vmin": 0, "vmax": 255} if shape[0] == 1 else {}
    for column, item in enumerate(items):
        clean, adversarial, perturbation = axes[:, column]
        clean.imshow(_pixels(item["clean"], shape), **gray)
        clean.set_title(
            f"#{item['index']}, label {item['label']}\n"
            + _label("clean: pred", item["clean_prediction"], item["clean_confidence"]),
            fontsize=9,
        )
        adversarial.imshow(_pixels(item["adversarial"], shape), **gray)
        adversarial.set_title(
            _label("adversarial: pred", item["prediction"], item["confidence"]),
            fontsize=9,
            color="#b00020",
        )
        perturbation.imshow(_pixels(item["perturbation"], shape), cmap="gray", vmin=0, vmax=255)
        perturbation.set_title(
            f"δ ×{item['amplification']:.3g} (grey = 0)\n"
            f"max |δ| {item['max_abs_perturbation']:.3g}",
            fontsize=9,
        )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[:, len(items) :].flat:
        ax.set_axis_off()
    return _png(figure)


def _vector_rows(items: Sequence[Mapping[str, Any]]) -> str:
    figure = Figure(figsize=(7.0, 1.9 * len(items)), layout="constrained")
    axes = figure.subplots(len(items), 2, squeeze=False, width_ratios=[2, 1])
    for (left, right), item in zip(axes, items, strict=True):
        clean = np.asarray(item["clean"])
        adversarial = np.asarray(item["adversarial"])
        features = np.arange(len(clean))
        left.plot(features, clean, label="clean", color="#1f77b4", linewidth=1.2)
        left.plot(features, adversarial, label="adversarial", color="#d62728", linewidth=1.0)
        left.set_title(
            f"#{item['index']} label {item['label']}: "
            + _label("clean pred", item["clean_prediction"], item["clean_confidence"])
            + ", "
            + _label("adversarial pred", item["prediction"], item["confidence"]),
            fontsize=8,
        )
        left.legend(fontsize=7, loc="best")
        left.tick_params(labelsize=7)
        right.bar(features, adversarial - clean, color="#7f7f7f", width=1.0)
        right.set_title(
            f"perturbation (own scale), max |δ| {item['max_abs_perturbation']:.3g}", fontsize=8
        )
        right.tick_params(labelsize=7)
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


def sweep_curve(records: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(swept name, PNG) of robust accuracy (with its 95% interval) against eps, or against
    the attack parameter the cases sweep; None when they sweep nothing."""
    key = sweep_key(records)
    if key is None:
        return None
    points = sorted(
        ((_value(r, key), r) for r in records if key != "eps" or r.get("eps") is not None),
        key=lambda p: p[0],
    )
    figure = Figure(figsize=(5.0, 3.0), layout="constrained")
    ax = figure.subplots()
    for attack in dict.fromkeys(r["attack"] for _, r in points):
        mine = [(x, r) for x, r in points if r["attack"] == attack]
        xs = [x for x, _ in mine]
        acc = [r["robust_acc"] for _, r in mine]
        low = [r["robust_acc"] - r["ci95"][0] for _, r in mine]
        high = [r["ci95"][1] - r["robust_acc"] for _, r in mine]
        ax.errorbar(xs, acc, yerr=[low, high], marker="o", capsize=3, label=attack)
    floors = [(x, r["thresholds"]["min_acc"]) for x, r in points if "min_acc" in r["thresholds"]]
    if floors:
        fx, fy = zip(*floors, strict=True)
        ax.scatter(fx, fy, marker="_", s=300, color="k", label="min_acc")
    ax.set_xlabel(key)
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return key, _png(figure)


def interval_curve(curve: Mapping[str, Any]) -> str:
    """Both bounds of robust accuracy against eps (a curve of report/intervals.py): the
    certified lower bound dashed, the attacked upper bound solid, the gap shaded where both
    were measured."""
    figure = Figure(figsize=(5.0, 3.0), layout="constrained")
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
    ax.set_xlabel(f"eps ({curve['norm']})")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(figure)


def gradient_histogram(stats: Mapping[str, Any]) -> str | None:
    """The histogram of per-sample input-gradient amplitudes of check='gradients'."""
    bins = stats.get("bins") or []
    if not bins:
        return None
    figure = Figure(figsize=(5.0, 2.8), layout="constrained")
    ax = figure.subplots()
    labels = [_bin_label(b) for b in bins]
    ax.bar(range(len(bins)), [b["count"] for b in bins], color="#1f77b4")
    ax.set_xticks(range(len(bins)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("samples")
    median = stats.get("median")
    title = f"mean |∇x loss| per sample ({stats.get('loss', 'ce')})"
    if isinstance(median, (int, float)):
        title += f", median {median:.3g}"
    ax.set_title(title, fontsize=9)
    return _png(figure)


def _bin_label(b: Mapping[str, Any]) -> str:
    low, high = float(b["low"]), float(b["high"])
    if high == float("inf"):
        return f"≥{low:.0e}" if low < 1 else f"≥{low:g}"
    if low == 0:
        return f"<{high:.0e}"
    return f"{low:.0e}–{high:.0e}" if high < 1 else f"{low:.0e}–{high:g}"
