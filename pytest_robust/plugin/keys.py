"""Every key the plugin stores state under, once: the stash keys on config and items, and
the attribute that carries a check's record on the call report.

One home, so a new hook cannot make a second key for the same thing (two StashKey() calls
are two different keys, and the state would silently not be found).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import pytest

if TYPE_CHECKING:
    from pytest_robust.engine import RobustnessResult
    from pytest_robust.plugin.baseline_gate import BaselineGate
    from pytest_robust.plugin.session import RobustSession

# On config: the run's session and its baseline gate.
SESSION_KEY: pytest.StashKey[RobustSession] = pytest.StashKey()
GATE_KEY: pytest.StashKey[BaselineGate] = pytest.StashKey()
# On an item: its place in collection order, its check's result, the result's record
# (after the pytest_robust_update_result hook) and baseline comparison.
ORDER_KEY: pytest.StashKey[int] = pytest.StashKey()
RESULT_KEY: pytest.StashKey[RobustnessResult] = pytest.StashKey()
RECORD_KEY: pytest.StashKey[Mapping[str, Any]] = pytest.StashKey()
BASELINE_KEY: pytest.StashKey[dict[str, Any] | None] = pytest.StashKey()
# An attribute of the call report (not a stash): it is serialised with the report, so the
# record travels from an xdist worker to the controller.
REPORT_KEY = "robust_result"
