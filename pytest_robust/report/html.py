"""The HTML report: one self-contained file (pictures as data URIs), rendered by Jinja2
with autoescaping, so a test id or parameter holding markup shows as text."""

from __future__ import annotations

import html
import importlib
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

from pytest_robust.report.intervals import contradiction_text
from pytest_robust.report.intervals import curves
from pytest_robust.report.intervals import intervals
from pytest_robust.report.intervals import model_text
from pytest_robust.report.terminal import delta
from pytest_robust.report.terminal import format_intervals
from pytest_robust.report.terminal import format_table
from pytest_robust.report.terminal import format_totals
from pytest_robust.report.terminal import params_text
from pytest_robust.report.terminal import short_names
from pytest_robust.report.terminal import split_nodeid
from pytest_robust.report.terminal import threshold_text

NEEDS = {"jinja2": "Jinja2", "matplotlib": "matplotlib", "PIL": "Pillow"}
TEMPLATES = Path(__file__).parent / "templates"


def missing_packages() -> list[str]:
    """The report extra's packages that cannot be imported."""
    missing = []
    for module, name in NEEDS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(name)
    return missing


def install_hint(missing: Sequence[str]) -> str:
    return (
        f"The HTML report's pictures need {', '.join(missing)}: "
        "pip install 'pytest-robust[report]' (matplotlib, Pillow, Jinja2)"
    )


def build_html(
    records: Sequence[Mapping[str, Any]],
    facts: Sequence[tuple[str, str]],
    plugin_version: str | None,
) -> str:
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    missing = missing_packages()
    if missing:
        return _plain_page(records, facts, install_hint(missing), created)
    import jinja2

    from pytest_robust.report import pictures

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    groups = _groups(records, pictures)
    return env.get_template("report.html.j2").render(
        plugin_version=plugin_version,
        created=created,
        totals=format_totals(records) if records else "no robustness check completed",
        facts=facts,
        hint=None,
        groups=groups,
        intervals=_intervals(records, pictures),
    )


def _intervals(records: Sequence[Mapping[str, Any]], pictures: Any) -> dict[str, Any] | None:
    """The section 'robust accuracy in [certified, attacked]': a row per interval, a note
    per contradiction and, per model, both bounds against eps; None when nothing pairs."""
    found = intervals(records)
    if not found:
        return None
    nodeids = [str(r.get("nodeid", "")) for r in records]
    names = dict(zip(nodeids, short_names(nodeids), strict=True))
    rows = [
        {
            "model": model_text(i),
            "eps": f"{i['eps']:g}",
            "norm": i["norm"],
            "n": i["n"],
            "interval": f"[{i['certified']:.3f}, {i['attacked']:.3f}]",
            "width": f"{i['width']:.3f}",
            "certified_by": [
                f"{c['attack']} {names.get(c['nodeid'], c['nodeid'])}" for c in i["certificates"]
            ],
            "attacked_by": [
                f"{a['attack']} {names.get(a['nodeid'], a['nodeid'])}" for a in i["attacks"]
            ],
            "notes": [contradiction_text(c, i["eps"], names) for c in i["contradictions"]],
        }
        for i in found
    ]
    figures = [
        {
            "model": model_text(curve),
            "norm": curve["norm"],
            "png": pictures.interval_curve(curve),
        }
        for curve in curves(records)
    ]
    return {"rows": rows, "curves": figures}


def _groups(records: Sequence[Mapping[str, Any]], pictures: Any) -> list[dict[str, Any]]:
    functions = [split_nodeid(r["nodeid"])[0] for r in records]
    names = dict(zip(functions, short_names(functions), strict=True))
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for function, record in zip(functions, records, strict=True):
        grouped.setdefault(function, []).append(record)
    groups = []
    for function, mine in grouped.items():
        curve = pictures.sweep_curve(mine) if len(mine) > 1 else None
        groups.append(
            {
                "name": names[function],
                "rows": [_row(r, pictures) for r in mine],
                "curve": curve[1] if curve else None,
                "swept": curve[0] if curve else None,
            }
        )
    return groups


def _row(r: Mapping[str, Any], pictures: Any) -> dict[str, Any]:
    lo, hi = r["ci95"]
    status = str(r["row_status"])
    head = status.split(" ")[0]
    details = r.get("details") or {}
    examples = r.get("examples")
    figure = pictures.examples_figure(examples) if examples else None
    no_examples = None
    if examples is not None and figure is None:
        no_examples = "No successful adversarial input to show."
    gradients = details.get("gradients")
    return {
        "case": split_nodeid(r["nodeid"])[1] or "(single case)",
        "attack": r["attack"] + (" (targeted)" if r["targeted"] else ""),
        "params": params_text(r),
        "eps": f"{r['eps']:g}" if r["eps"] is not None else "-",
        "n": r["n"],
        "clean": f"{r['clean_acc']:.3f}",
        "robust": f"{r['robust_acc']:.3f}",
        "ci": f"[{lo:.3f}, {hi:.3f}]",
        "threshold": threshold_text(r),
        "delta": delta(r),
        "status": status,
        "status_class": head if head in ("pass", "fail", "measured") else "other",
        "time": f"{r['duration_s']:.2f}s",
        "flags": list(details.get("flags") or []),
        "examples": figure,
        "n_examples": len(examples["items"]) if examples and figure else 0,
        "no_examples": no_examples,
        "histogram": pictures.gradient_histogram(gradients) if gradients else None,
    }


def _plain_page(
    records: Sequence[Mapping[str, Any]],
    facts: Sequence[tuple[str, str]],
    hint: str,
    created: str,
) -> str:
    """Without the report extra: the hint and the table as escaped text, no pictures."""
    lines = format_table(records, detailed=True) if records else []
    table = "\n".join([*lines, *(line for line, _ in format_intervals(records))])
    items = "".join(f"<li>{html.escape(name)}: {html.escape(value)}</li>" for name, value in facts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Robustness report</title></head><body>\n"
        f"<h1>Robustness report</h1>\n<p><strong>{html.escape(hint)}</strong></p>\n"
        f"<p>{html.escape(format_totals(records) if records else 'no check completed')}"
        f" ({html.escape(created)})</p>\n<ul>{items}</ul>\n"
        f"<pre>{html.escape(table)}</pre>\n</body></html>\n"
    )
