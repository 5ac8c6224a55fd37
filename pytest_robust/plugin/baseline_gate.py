"""The pytest side of baselines: load in every process, compare per test, save on the controller.

Registered as a plugin by hooks.py. Each xdist worker loads the file itself, so a
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

from pytest_robust.plugin.keys import REPORT_KEY
from pytest_robust.plugin.options import typed_ini
from pytest_robust.plugin.outputs import lose_file
from pytest_robust.plugin.outputs import writes_files
from pytest_robust.plugin.summary import write_comparison
from pytest_robust.plugin.workers import is_controller
from pytest_robust.plugin.workers import is_xdist_worker
from pytest_robust.report import baseline


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
        strict = config.getoption("robust_strict", None)
        if strict is None:
            strict = typed_ini(config, "robust_strict")
        self.strict = bool(strict)
        if self.save:
            from pytest_robust.files import unwritable

            problem = unwritable(self.path) if writes_files(config) else ""
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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seen.add(report.nodeid)
        record = getattr(report, REPORT_KEY, None)
        if record is not None:
            self.records.append(record)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield
        # Every process that ran the whole session decides (each torchrun rank exits with
        # the same status); an xdist worker saw only its share of the tests.
        if is_xdist_worker(self.config) or not self.compare:
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
        if self.save and is_controller(self.config) and self.records:
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
        if not is_controller(self.config) or not (self.compare or self.save) or not self.records:
            return
        terminalreporter.section("robustness baseline")
        if self.compare:
            records = sorted(self.records, key=_order)
            missing_and_stale = (self.missing, self.stale)
            write_comparison(terminalreporter, records, self.path, self.strict, missing_and_stale)
        if self.save_error:
            terminalreporter.write_line(f"baseline NOT saved: {self.save_error}", red=True)
        elif self.save:
            terminalreporter.write_line(f"baseline saved: {self.saved} entries -> {self.path}")


def _order(record: Mapping[str, Any]) -> tuple[int, str]:
    return (int(record.get("order", 0)), str(record["nodeid"]))
