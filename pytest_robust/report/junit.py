"""robust.* properties for --junitxml: a check's record as (name, value) pairs. Pure.

pytest writes them as <property> elements of the test case; they travel on the test
report, so they reach the XML also from xdist workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_robust.report.terminal import THRESHOLD_SIGNS

# Always present, in this order: (property robust.KEY, record[KEY]).
JUNIT_KEYS = ("attack", "eps", "n", "clean_acc", "robust_acc", "status")


def junit_properties(record: Mapping[str, Any]) -> list[tuple[str, object]]:
    """The record's properties; thresholds, strict, flags and the baseline comparison only
    when the check has them."""
    props: list[tuple[str, object]] = [(f"robust.{k}", record[k]) for k in JUNIT_KEYS]
    thresholds = [f"{k}{THRESHOLD_SIGNS[k]}{v:g}" for k, v in record["thresholds"].items()]
    if thresholds:
        props.append(("robust.threshold", " ".join(thresholds)))
    low, high = record["ci95"]
    props += [("robust.ci95_low", low), ("robust.ci95_high", high)]
    if record.get("strict"):
        props.append(("robust.strict", True))
    flags = [flag["name"] for flag in record["details"].get("flags") or []]
    if flags:
        props.append(("robust.flags", " ".join(flags)))
    comparison = record.get("baseline") or {}
    if comparison:
        props.append(("robust.baseline_status", comparison["status"]))
    if comparison.get("delta") is not None:
        props.append(("robust.baseline_delta", round(comparison["delta"], 6)))
    return props
