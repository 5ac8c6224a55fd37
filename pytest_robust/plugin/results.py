"""A check's result on the pytest side: its record (JSON-safe builtins that travel on the
call report to the xdist controller, the reports and the baseline), and what it does to
the test's outcome."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import pytest

from pytest_robust.plugin.keys import ORDER_KEY

if TYPE_CHECKING:
    from pytest_robust.engine import RobustnessResult


def check_record(item: pytest.Item, result: RobustnessResult) -> dict[str, Any]:
    """The result as JSON-safe builtins, with what the controller needs to place it."""
    record = result.to_dict()
    record["nodeid"] = item.nodeid
    record["order"] = item.stash.get(ORDER_KEY, 0)
    torch = sys.modules.get("torch")  # imported by the check that produced the result
    record["torch_version"] = str(getattr(torch, "__version__", "")) or None
    return record


def report_record(
    checked: Mapping[str, Any],
    result: RobustnessResult,
    keep_examples: int,
    comparison: dict[str, Any] | None,
) -> dict[str, Any]:
    """The record the call report carries: the check's record (after the
    pytest_robust_update_result hook) with the pictured samples for the HTML report
    (`keep_examples`) and the baseline comparison, when there are any."""
    record = dict(checked)
    if keep_examples and result.check is None:
        # For the HTML report's pictures: a few samples as small builtins.
        from pytest_robust.engine.examples import encode

        record["examples"] = encode(list(result.examples), result.bounds)
    if comparison is not None:
        record["baseline"] = comparison
    return record


def fail_or_warn(
    item: pytest.Item, result: RobustnessResult, comparison: dict[str, Any] | None
) -> None:
    """Fail the test for a missed threshold or a baseline failure, with the small-sample
    notes; otherwise let the small-sample notes be warnings."""
    failures = [result.failure_message()] if result.status == "fail" else []
    if comparison is not None and comparison["message"]:
        failures.append(comparison["message"])
    small = result.sample_size_warnings()
    if failures:
        # Said with the failure (a warning turned error by filterwarnings would hide it).
        failures += [f"note: {warning}" for warning in small]
        pytest.fail("\n".join(failures), pytrace=False)
    for warning in small:
        item.warn(warning)
