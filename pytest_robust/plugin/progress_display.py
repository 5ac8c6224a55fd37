"""A live progress line for long attacks: samples done of total, rate and ETA.

Only on an interactive terminal (never in CI logs, where carriage returns would pile up),
not with -q, only in the controller (never on xdist workers or torchrun ranks other than
0), and only once a check has run for AFTER_S seconds.
The line is written with pytest's capturing suspended (as live logging does) and ends as
one line saying how long the attack took; pytest then starts its own line afresh.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from pytest_robust.plugin.workers import is_controller

AFTER_S = 2.0  # quiet for checks shorter than this
EVERY_S = 0.5  # at most two updates a second


def progress_text(name: str, done: int, total: int, elapsed: float) -> str:
    """'robust: pgd 1024/4096 samples, 85.3/s, ETA 36s' (pure, tested)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if done >= total:
        return f"robust: {name} {done}/{total} samples in {elapsed:.1f}s ({rate:.1f}/s)"
    eta = f", ETA {(total - done) / rate:.0f}s" if rate > 0 else ""
    return f"robust: {name} {done}/{total} samples, {rate:.1f}/s{eta}"


class TerminalProgress:
    """The listener for engine.progress.reporting(); None from `for_config` when disabled."""

    def __init__(self, terminal: Any, capture: Any, nodeid: str, verbose: bool) -> None:
        self.terminal = terminal
        self.capture = capture
        self.nodeid = nodeid
        self.verbose = verbose
        self.started = time.perf_counter()
        self.last = 0.0
        self.shown = ""
        # The current pass (attack name, samples) and when it started: the end of the
        # previous pass's last batch (or the check's start), so the rate is this pass's.
        self.current: tuple[str, int] = ("", -1)
        self.done = 0
        self.pass_started = self.pass_started_next = self.started

    @classmethod
    def for_config(cls, config: pytest.Config, nodeid: str) -> TerminalProgress | None:
        terminal = config.pluginmanager.getplugin("terminalreporter")
        if terminal is None or not is_controller(config) or config.get_verbosity() < 0:
            return None
        if not terminal.isatty():
            return None
        capture = config.pluginmanager.getplugin("capturemanager")
        return cls(terminal, capture, nodeid, config.get_verbosity() > 0)

    def __call__(self, name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if (name, total) != self.current or done < self.done:  # a new pass: its own rate
            self.current, self.pass_started = (name, total), self.pass_started_next
        self.done, self.pass_started_next = done, now
        finished = done >= total
        if now - self.started < AFTER_S or (
            now - self.last < EVERY_S and not (finished and self.shown)
        ):
            return
        self.last = now
        text = progress_text(name, done, total, now - self.pass_started)
        with self._uncaptured():
            if not self.shown:
                self.terminal.ensure_newline()  # keep pytest's "file.py ..." line whole
            self.terminal.rewrite(text, erase=True)
        self.shown = text

    def close(self) -> None:
        """End our line and give pytest its own back: the file name (or, with -v, the
        test id) again, so the test's result is not written after our text."""
        if not self.shown:
            return
        with self._uncaptured():
            self.terminal.currentfspath = None
            if not self.verbose:
                self.terminal.write_fspath_result(self.nodeid, "")

    def _uncaptured(self) -> Any:
        if self.capture is None:
            return contextlib.nullcontext()
        return self.capture.global_and_fixture_disabled()
