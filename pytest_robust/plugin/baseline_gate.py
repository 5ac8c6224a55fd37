"""The pytest side of baselines: load in every process, compare per test, save on the controller.

Registered as a plugin by plugin.py. Each xdist worker loads the file itself, so a
regression fails its own test wherever it runs; the controller alone saves the file,
lists missing and stale entries and, under strict mode, fails the run for them.
"""

from __future__ import annotations

import argparse
from collections.abc import Generator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_robust.params import Param
from pytest_robust.report import baseline

STRICT = Param(bool, False)


def strict_ini(config: pytest.Config) -> bool | None:
    """ini robust_strict as a bool, None when not set (UsageError when not a bool)."""
    raw = str(config.getini("robust_strict")).strip()
    if not raw:
        return None
    try:
        return bool(STRICT.parse("robust_strict", raw, "ini robust_strict", text=True))
    except ValueError as error:
        raise pytest.UsageError(f"pytest-robust: {error}") from None


class BaselineGate:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        option = config.getoption("robust_baseline", None)
        ini = str(config.getini("robust_baseline")).strip()
        base = config.invocation_params.dir if option else config.rootpath
        self.path = Path(base) / (option or ini or "robust-baseline.json")
        self.save = bool(config.getoption("robust_baseline_save", False))
        try:
            self.tolerances = list(config.getoption("robust_compare_fail", None) or []) + [
                baseline.parse_tolerance(v) for v in config.getini("robust_compare_fail")
            ]
        except argparse.ArgumentTypeError as error:
            raise pytest.UsageError(f"pytest-robust: ini robust_compare_fail {error}") from None
        self.compare = bool(config.getoption("robust_compare", False)) or bool(self.tolerances)
        cli_strict = config.getoption("robust_strict", None)
        self.strict = bool(cli_strict if cli_strict is not None else strict_ini(config))
        if self.save:
            from pytest_robust.files import unwritable
            from pytest_robust.plugin.session import starting_up

            problem = unwritable(self.path) if starting_up(config) else ""
            if problem:
                raise pytest.UsageError(
                    f"pytest-robust: --robust-baseline-save: {problem}; pass a path that can "
                    "be written with --robust-baseline PATH"
                )
        self.entries: dict[str, dict[str, Any]] = {}
        if self.compare or self.save:
            try:
                self.entries = baseline.load(self.path)
            except baseline.BaselineError as error:
                raise pytest.UsageError(f"pytest-robust: {error}") from None
            if self.compare and not self.path.exists() and self.strict:
                raise pytest.UsageError(
                    f"pytest-robust: --robust-compare under strict mode, but the baseline "
                    f"{self.path} does not exist; create it with --robust-baseline-save"
                )
        self.records: list[Mapping[str, Any]] = []
        self.seen: set[str] = set()
        self.saved = 0
        self.save_error = ""
        self.missing: list[str] = []
        self.stale: list[str] = []

    def describe(self) -> str:
        """' baseline=PATH (compare, save)' for the -v header; '' when not in use."""
        modes = [m for m, on in (("compare", self.compare), ("save", self.save)) if on]
        strict = " strict" if self.strict else ""
        return f" baseline={self.path} ({', '.join(modes)}){strict}" if modes else strict

    # --- per test (any process) -------------------------------------------------------

    def check(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """The comparison of this test's record with its entry, or None when not comparing."""
        if not self.compare:
            return None
        entry = self.entries.get(record["nodeid"])
        return baseline.compare(entry, record, self.tolerances)

    # --- controller --------------------------------------------------------------------

    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seen.add(report.nodeid)
        record = getattr(report, "robust_result", None)
        if record is not None:
            self.records.append(record)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield
        if self.is_worker() or not self.compare:
            return result
        self.missing = [
            r["nodeid"]
            for r in sorted(self.records, key=_order)
            if (r.get("baseline") or {}).get("status") == "missing"
        ]
        narrowed = self.config.option.keyword or self.config.option.markexpr
        partial = narrowed or session.shouldstop or session.shouldfail
        # In a partial run (-k, -m, -x) tests that did not run are not stale.
        self.stale = [] if partial else baseline.stale(self.entries, self.seen)
        # Run-level gate, counted as a failure so every plugin sees exit status 1 (as
        # pytest-cov's --cov-fail-under does); stale/missing entries fail only when strict.
        if self.strict and (self.missing or self.stale):
            session.testsfailed += 1
        return result

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from pytest_robust.plugin.session import lose_file

        if self.save and not self.is_worker() and self.records:
            try:
                self.saved = baseline.save(self.path, sorted(self.records, key=_order))
            except OSError as error:
                self.save_error = f"{self.path}: {error.strerror or error}"
                lose_file(session)
            except baseline.BaselineError as error:
                self.save_error = str(error)
                lose_file(session)

    @pytest.hookimpl(trylast=True)  # after the robustness table
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.is_worker() or not (self.compare or self.save) or not self.records:
            return
        write = terminalreporter.write_line
        terminalreporter.section("robustness baseline")
        if self.compare:
            comparisons = [r.get("baseline") or {} for r in self.records]
            counts: dict[str, int] = {}
            for comparison in comparisons:
                status = comparison.get("status", "not compared")
                counts[status] = counts.get(status, 0) + 1
            summary = ", ".join(f"{k} {counts[k]}" for k in sorted(counts))
            write(f"compared with {self.path}: {summary}")
            changed = sum(bool(c.get("model_changed")) for c in comparisons)
            if changed:
                total = len(comparisons)
                write(f"the model differs from the baseline's in {changed} of {total} checks")
            for record in sorted(self.records, key=_order):
                comparison = record.get("baseline") or {}
                if comparison.get("status") in (
                    "regressed",
                    "data changed",
                    "spec changed",
                    "partial",
                ):
                    write(f"{comparison['status']}: {record['nodeid']}", red=True)
                elif comparison.get("status") == "improved":
                    write(
                        f"improved: {record['nodeid']} (robust_acc {comparison['delta']:+.3f}; "
                        "consider --robust-baseline-save)",
                        green=True,
                    )
            environments = sorted({c["environment"] for c in comparisons if c.get("environment")})
            for change in environments:
                write(f"warning: the baseline was measured elsewhere: {change}", yellow=True)
            strict = " (fails under strict mode)" if not self.strict else ""
            for nodeid in self.missing:
                write(f"missing entry: {nodeid}{strict}", yellow=not self.strict, red=self.strict)
            for nodeid in self.stale:
                write(
                    f"stale entry (no such test ran): {nodeid}{strict}",
                    yellow=not self.strict,
                    red=self.strict,
                )
            if self.strict and (self.missing or self.stale):
                write(
                    "FAIL robustness gate: missing or stale baseline entries under strict mode; "
                    "update the baseline with --robust-baseline-save",
                    red=True,
                )
        if self.save:
            if self.save_error:
                write(f"baseline NOT saved: {self.save_error}", red=True)
            else:
                write(f"baseline saved: {self.saved} entries -> {self.path}")


def _order(record: Mapping[str, Any]) -> tuple[int, str]:
    return (int(record.get("order", 0)), str(record["nodeid"]))
