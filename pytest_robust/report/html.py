"""The HTML report: one self-contained file (pictures as data URIs), rendered by Jinja2
with autoescaping, so a test id or parameter holding markup shows as text."""

from __future__ import annotations

import base64
import html
import importlib
import re
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
        overview=[row for group in groups for row in group["rows"]],
        groups=groups,
        intervals=_intervals(records, pictures),
        picture=picture,
    )


# Pictures are drawn at pictures.SCALE times the density they are shown at (sharp on
# high-density screens); the page shows them at their CSS size, text at its point size.
def picture(uri: str) -> dict[str, Any]:
    """src, width and height (CSS pixels) of a PNG data URI, for an <img>."""
    from pytest_robust.report.pictures import SCALE

    header = base64.b64decode(uri.partition("base64,")[2][:44])
    width = int.from_bytes(header[16:20], "big")  # the PNG's IHDR chunk
    height = int.from_bytes(header[20:24], "big")
    return {"src": uri, "width": round(width / SCALE), "height": round(height / SCALE)}


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
    """Per test function (in record order): its card's rows, and its sweep curve."""
    functions = [split_nodeid(r["nodeid"])[0] for r in records]
    names = dict(zip(functions, short_names(functions), strict=True))
    nodeids = [str(r["nodeid"]) for r in records]
    tests = dict(zip(nodeids, short_names(nodeids), strict=True))
    in_interval = _interval_texts(records)
    grouped: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for number, (function, record) in enumerate(zip(functions, records, strict=True), 1):
        grouped.setdefault(function, []).append((number, record))
    groups = []
    for index, (function, mine) in enumerate(grouped.items(), 1):
        curve = pictures.sweep_curve([r for _, r in mine]) if len(mine) > 1 else None
        rows = [_row(r, pictures) for _, r in mine]
        for row, (number, r) in zip(rows, mine, strict=True):
            test = tests[str(r["nodeid"])]
            path, sep, name = test.rpartition("::")
            test_function, case = split_nodeid(name)
            row.update(
                anchor=f"check-{number}",
                test=test,
                test_path=path + sep,
                test_function=test_function,
                test_case=case,
                in_interval=in_interval.get(str(r["nodeid"])),
            )
        groups.append(
            {
                "anchor": f"test-{index}",
                "name": names[function],
                "rows": rows,
                "curve": curve[1] if curve else None,
                "swept": curve[0] if curve else None,
            }
        )
    return groups


def _interval_texts(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Per node id of a certificate or attack that pairs (report/intervals.py): 'in
    [certified, attacked]' of its model, data and eps."""
    out: dict[str, str] = {}
    for i in intervals(records):
        text = f"in [certified {i['certified']:.3f}, attacked {i['attacked']:.3f}]"
        for side in (*i["certificates"], *i["attacks"]):
            out[str(side["nodeid"])] = text
    return out


# Statuses a baseline comparison sets when it fails a test (plugin/session.py).
BASELINE_FAILURES = ("regressed", "data changed", "spec changed", "partial")


def reasons(record: Mapping[str, Any]) -> list[dict[str, str]]:
    """Why a row failed, each as a short text for its row and the full sentence: every
    missed threshold, every masking flag that made a passing gate untrustworthy (the
    verdict's own sentences, engine/verdict.py), and a failed baseline comparison. Empty
    for a row that did not fail."""
    status = str(record.get("row_status", record.get("status", "")))
    head = status.split(" (")[0]
    out: list[dict[str, str]] = []
    if head == "fail":
        out += [{"short": _short(text), "full": text} for text in _verdict(record)]
    baseline = record.get("baseline") or {}
    if head in BASELINE_FAILURES or (head == "fail" and baseline.get("message")):
        message = str(baseline.get("message") or "")
        kind = str(baseline.get("status") or head)
        short = _short(message) if kind == "regressed" else f"baseline: {kind}"
        out.append({"short": short, "full": message or short})
    return out


def _verdict(record: Mapping[str, Any]) -> list[str]:
    from pytest_robust.engine.result import RobustnessResult

    try:
        result = RobustnessResult.from_dict(record)
    except (KeyError, TypeError):  # not a whole check record (one built by hand)
        return []
    return result.threshold_failures()


FLAG_SENTENCE = re.compile(r"^not trustworthy: \[(?P<name>[^\]]+)\]")


def _short(sentence: str) -> str:
    """A verdict sentence without its parenthesised detail: 'robust_acc 0.009 < min_acc
    0.500'; a masking flag's: 'masking flag NAME: gate not trustworthy'."""
    flag = FLAG_SENTENCE.match(sentence)
    if flag:
        return f"masking flag {flag['name']}: gate not trustworthy"
    short = sentence.split(" (")[0].split("; ")[0]
    return short + (" (strict)" if "(strict" in sentence else "")


def _attack_text(r: Mapping[str, Any]) -> str:
    """The attack, '(targeted)', and a transfer's surrogate fixture(s)."""
    text = str(r["attack"]) + (" (targeted)" if r["targeted"] else "")
    surrogate = (r.get("params") or {}).get("surrogate")
    return text + (f" from {surrogate}" if surrogate else "")


def _examples_caption(examples: Mapping[str, Any], targeted: bool) -> str:
    """What the picture's columns are: successes, and for a targeted check the samples
    pushed to a wrong class that is not their target."""
    items = examples.get("items") or []
    missed = sum(1 for item in items if item.get("missed_target"))
    reached = len(items) - missed
    if reached == 1:
        text = "The only fooled sample" if not missed else "The only sample that reached its target"
    elif reached:
        text = f"The {reached} most confidently fooled samples"
    else:
        text = "No sample reached its target"
    if targeted and reached and not missed:
        text += " (each classified as its target)"
    if missed:
        text += (
            f"{', then' if reached else '; shown instead:'} the {missed} most confident "
            f"{'sample' if missed == 1 else 'samples'} pushed to a wrong class that is not "
            "the target (in amber: 'misclassified … not the target')"
        )
    return text


def _row(r: Mapping[str, Any], pictures: Any) -> dict[str, Any]:
    lo, hi = r["ci95"]
    status = str(r["row_status"])
    head = status.split(" ")[0]
    details = r.get("details") or {}
    examples = r.get("examples")
    figure = pictures.examples_figure(examples) if examples else None
    no_examples = None
    if examples is not None and figure is None:
        no_examples = (
            "The attack pushed no sample to its target or to any other wrong class."
            if r["targeted"]
            else "No successful adversarial input to show."
        )
    gradients = details.get("gradients")
    flags = list(details.get("flags") or [])
    return {
        "case": split_nodeid(r["nodeid"])[1] or "(single case)",
        "attack": _attack_text(r),
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
        "flags": flags,
        "flag_names": [f"{f.get('severity', 'flag')} {f.get('name', '?')}" for f in flags],
        "reasons": reasons(r),
        "examples": figure,
        "examples_caption": _examples_caption(examples, r["targeted"]) if examples else "",
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
