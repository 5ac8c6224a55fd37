"""The terminal summary: the `robustness` section (the table, or the full term report)
and the `robustness baseline` section. Written by the controller alone (workers.py).

The formatting itself is pure and lives in report/terminal.py; this module only colours
lines and writes them through pytest's terminal reporter.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

Records = Sequence[Mapping[str, Any]]
# Row statuses (a check's, or the baseline's) that failed the test.
FAILED = ("fail", "regressed", "data changed", "spec changed")
BASELINE_FAILED = ("regressed", "data changed", "spec changed", "partial")


def write_robustness(
    terminal: pytest.TerminalReporter,
    records: Records,
    settings: str,
    full: bool,
    files: tuple[Sequence[Path], Sequence[str]],
) -> None:
    """The `robustness` section: totals, then the table (or with `full`, the term report's
    per-check lines), then the report files written and lost."""
    written, lost = files
    terminal.ensure_newline()  # end the progress line, so no blank line follows
    terminal.section("robustness")
    if not records:
        terminal.write_line("no robustness check completed")
    else:
        _write_checks(terminal, records, settings, full)
    for path in written:
        terminal.write_line(f"report written: {path}")
    for line in lost:
        terminal.write_line(line, red=True)


def _write_checks(
    terminal: pytest.TerminalReporter, records: Records, settings: str, full: bool
) -> None:
    from pytest_robust.report.terminal import format_full
    from pytest_robust.report.terminal import format_intervals
    from pytest_robust.report.terminal import format_table
    from pytest_robust.report.terminal import format_totals

    terminal.write_line(f"{format_totals(records)} ({settings})")
    if full:
        for line, kind in format_full(records):
            terminal.write_line(
                line,
                bold=kind in ("header", "function"),
                red=kind == "fail",
                green=kind == "pass",
                yellow=kind == "note",
            )
    else:
        header, *rows = format_table(records)
        terminal.write_line(header, bold=True)
        for line, record in zip(rows, records, strict=True):
            status = record["row_status"]
            terminal.write_line(line, red=status in FAILED, green=status == "pass")
    for line, kind in format_intervals(records):
        terminal.write_line(line, bold=kind in ("title", "header"), red=kind == "fail")


def write_comparison(
    terminal: pytest.TerminalReporter,
    records: Records,
    path: Path,
    strict: bool,
    missing_and_stale: tuple[Sequence[str], Sequence[str]],
) -> None:
    """What --robust-compare found: counts per status, the changed model, each failed or
    improved test, a baseline measured elsewhere, and missing or stale entries."""
    comparisons = [r.get("baseline") or {} for r in records]
    counts: dict[str, int] = {}
    for comparison in comparisons:
        status = comparison.get("status", "not compared")
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{k} {counts[k]}" for k in sorted(counts))
    terminal.write_line(f"compared with {path}: {summary}")
    changed = sum(bool(c.get("model_changed")) for c in comparisons)
    if changed:
        total = len(comparisons)
        terminal.write_line(f"the model differs from the baseline's in {changed} of {total} checks")
    _write_per_test(terminal, records)
    environments = sorted({c["environment"] for c in comparisons if c.get("environment")})
    for change in environments:
        terminal.write_line(f"warning: the baseline was measured elsewhere: {change}", yellow=True)
    _write_entries(terminal, strict, *missing_and_stale)


def _write_per_test(terminal: pytest.TerminalReporter, records: Records) -> None:
    for record in records:
        comparison = record.get("baseline") or {}
        if comparison.get("status") in BASELINE_FAILED:
            terminal.write_line(f"{comparison['status']}: {record['nodeid']}", red=True)
        elif comparison.get("status") == "improved":
            terminal.write_line(
                f"improved: {record['nodeid']} (robust_acc {comparison['delta']:+.3f}; "
                "consider --robust-baseline-save)",
                green=True,
            )


def _write_entries(
    terminal: pytest.TerminalReporter, strict: bool, missing: Sequence[str], stale: Sequence[str]
) -> None:
    """Missing and stale entries: warnings, or failures under strict mode."""
    note = " (fails under strict mode)" if not strict else ""
    lines = [f"missing entry: {nodeid}{note}" for nodeid in missing]
    lines += [f"stale entry (no such test ran): {nodeid}{note}" for nodeid in stale]
    for line in lines:
        terminal.write_line(line, yellow=not strict, red=strict)
    if strict and lines:
        terminal.write_line(
            "FAIL robustness gate: missing or stale baseline entries under strict mode; "
            "update the baseline with --robust-baseline-save",
            red=True,
        )
