"""The `pytest_robust_*` hooks a conftest.py or another plugin can implement
(docs/hooks.md). Registered by `pytest_addhooks` in hooks.py.

Like pytest-benchmark's hooks, each receives a mutable object to change in place; none
returns anything. They change what the reports say and which attacks exist, never a
verdict: a test's pass or fail is decided from the measured result, not from the record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

import pytest

if TYPE_CHECKING:
    from pytest_robust.attacks import Attack
    from pytest_robust.engine import RobustnessResult


@pytest.hookspec
def pytest_robust_update_result(
    item: pytest.Item, result: RobustnessResult, record: dict[str, Any]
) -> None:
    """Change a check's record before it reaches the reports and the baseline.

    Called once per check, right after the attack, in the process that ran the test (an
    xdist worker too). `record` is what the terminal table, the JSON, Markdown and HTML
    reports, JUnit properties, pytest-html and the baseline read: add keys or change
    values in place; every value must stay JSON-safe (str, int, float, bool, None, lists
    and dicts of them), and the keys the plugin wrote must stay. `result` is the measured
    RobustnessResult (read-only).
    """


@pytest.hookspec
def pytest_robust_update_environment(config: pytest.Config, environment: dict[str, Any]) -> None:
    """Add to (or change) the `environment` block of the JSON and Markdown reports.

    Called once on the controller, when a report file is written. A value JSON cannot
    hold is written as its str().
    """


@pytest.hookspec
def pytest_robust_register_attacks(
    config: pytest.Config, register: Callable[..., type[Attack]]
) -> None:
    """Register attacks from a plugin: call `register(MyAttack)` (the same signature as
    `pytest_robust.register_attack`, `replace=True` included) for each.

    Called once per process, the first time an attack name is looked up (so a run that
    checks nothing imports no torch). The attacks are registered for this pytest run only:
    at its end they are removed again and any attack they replaced comes back.
    """
