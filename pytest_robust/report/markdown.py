"""The Markdown report: a table that reads well in a GitHub step summary or a PR comment."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from pytest_robust.report.intervals import contradiction_text
from pytest_robust.report.intervals import intervals
from pytest_robust.report.intervals import model_text
from pytest_robust.report.json_report import ENVIRONMENT_KEYS
from pytest_robust.report.terminal import THRESHOLD_SIGNS
from pytest_robust.report.terminal import delta
from pytest_robust.report.terminal import format_totals

STATUS_ICONS = {"pass": "✅", "fail": "❌", "measured": "📏"}
SIGNS = {">=": "≥", "<=": "≤"}


def cell(text: str) -> str:
    """Text safe inside a table cell: no column break, no raw HTML, no line break."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\n", " ")
    )


def code(text: str) -> str:
    """An inline code span when the text allows one (no backtick, no pipe), else escaped."""
    if "`" in text or "|" in text:
        return cell(text)
    return f"`{text}`"


def _threshold(record: Mapping[str, Any]) -> str:
    parts = [f"{k} {SIGNS[THRESHOLD_SIGNS[k]]} {v:g}" for k, v in record["thresholds"].items()]
    return ", ".join(parts) or "–"


def _status(status: str) -> str:
    icon = STATUS_ICONS.get(status.split(" ")[0], "")
    return f"{icon} {status}".strip()


def build_markdown(
    records: Sequence[Mapping[str, Any]],
    environment: Mapping[str, Any],
    run: Mapping[str, Any],
    commit: Mapping[str, Any] | None,
    plugin_version: str | None = None,
) -> str:
    lines = ["## Robustness", ""]
    if not records:
        lines.append("No robustness check completed.")
    else:
        lines += [
            f"**{cell(format_totals(records))}**",
            "",
            "| Test | Attack | ε | n | Clean acc | Robust acc [95% CI] | Threshold | Δ baseline "
            "| Status |",
            "|---|---|--:|--:|--:|---|---|--:|---|",
        ]
        for r in records:
            lo, hi = r["ci95"]
            attack = r["attack"] + (" (targeted)" if r["targeted"] else "")
            eps = f"{r['eps']:g}" if r["eps"] is not None else "–"
            robust = f"**{r['robust_acc']:.3f}** [{lo:.3f}, {hi:.3f}]"
            change = delta(r) if delta(r) != "-" else "–"
            lines.append(
                f"| {code(r['nodeid'])} | {cell(attack)} | {eps} | {r['n']} | "
                f"{r['clean_acc']:.3f} | {robust} | {cell(_threshold(r))} | "
                f"{change} | {_status(r['row_status'])} |"
            )
        flagged = [(r, f) for r in records for f in (r.get("details") or {}).get("flags") or []]
        if flagged:
            lines += ["", "**Sanity flags**", ""]
            for r, flag in flagged:
                lines.append(
                    f"- ⚠️ {code(r['nodeid'])}: {cell(str(flag.get('severity')))} "
                    f"{code(str(flag.get('name')))}: {cell(str(flag.get('message')))}. "
                    f"Fix: {cell(str(flag.get('fix')))}"
                )
        lines += _intervals(records)
    lines += ["", "<details><summary>Run details</summary>", ""]
    facts = {
        "settings": run.get("settings"),
        "pytest-robust": plugin_version,
        "torch": environment.get("torch"),
        "devices": ", ".join(environment.get("devices") or []) or None,
        "python": environment.get("python"),
        "platform": environment.get("platform"),
        "commit": (commit["id"] + (" (dirty)" if commit.get("dirty") else "")) if commit else None,
    }
    added = {k: v for k, v in environment.items() if k not in ENVIRONMENT_KEYS and k not in facts}
    facts.update(added)
    lines += [f"- {name}: {code(str(value))}" for name, value in facts.items() if value]
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def _intervals(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Robust accuracy in [certified, attacked] where a certificate and an attack measured
    the same model, data, norm and eps (report/intervals.py); [] when nothing pairs."""
    found = intervals(records)
    if not found:
        return []
    lines = [
        "",
        "**Robust accuracy in [certified, attacked]** (the width is what the evaluation "
        "leaves open)",
        "",
        "| Model | ε | n | Interval | Width | Certified by | Attacked by |",
        "|---|--:|--:|---|--:|---|---|",
    ]
    notes = []
    for i in found:
        certified = "<br>".join(
            f"{cell(c['attack'])} {code(c['nodeid'])}" for c in i["certificates"]
        )
        attacked = "<br>".join(f"{cell(a['attack'])} {code(a['nodeid'])}" for a in i["attacks"])
        lines.append(
            f"| {code(model_text(i))} | {i['eps']:g} {i['norm']} | {i['n']} | "
            f"**[{i['certified']:.3f}, {i['attacked']:.3f}]** | {i['width']:.3f} | "
            f"{certified} | {attacked} |"
        )
        notes += [f"- ❗ {cell(contradiction_text(c, i['eps'], {}))}" for c in i["contradictions"]]
    return lines + (["", *notes] if notes else [])
