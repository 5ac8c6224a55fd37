"""The files a run writes, on the pytest side: whether this process writes them (so their
destinations are checked at start-up), the exit status when one is lost, and the plugin's
store in pytest's cache directory."""

from __future__ import annotations

import warnings

import pytest

from pytest_robust.files import JsonStore
from pytest_robust.plugin.workers import is_controller

# Where --robust-cache results and remembered counterexamples live: .pytest_cache/d/NAME.
CACHE_DIR = "pytest-robust"
# A report or the baseline that could not be written fails the run (see docs/reports.md).
LOST_FILE_EXIT = pytest.ExitCode.TESTS_FAILED


def writes_files(config: pytest.Config) -> bool:
    """A real run whose reports and baseline this process writes: not --help/--version,
    and the controller (not an xdist worker or a non-zero torchrun rank)."""
    shown = config.getoption("help", False) or config.getoption("version", False)
    return not shown and is_controller(config)


def lose_file(session: pytest.Session) -> None:
    """Make the exit status say that a file was lost: 1 where every test passed (a run
    that already failed keeps its status)."""
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = LOST_FILE_EXIT


def cache_store(config: pytest.Config) -> JsonStore | None:
    """The plugin's store in pytest's cache directory (None under -p no:cacheprovider):
    written atomically, which pytest's config.cache.set is not."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return None

    def warn(message: str) -> None:
        warnings.warn(pytest.PytestCacheWarning(message), stacklevel=2)

    return JsonStore(lambda: cache.mkdir(CACHE_DIR), warn)
