"""A validated marker's arguments as cases: list arguments zipped into one case each,
with the readable id pytest shows ("pgd-eps=0.1").

Pure, no torch and no pytest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_robust.spec.schema import THRESHOLDS


@dataclass(frozen=True)
class Case:
    """One expanded case of a marker: validated scalar arguments and a readable id."""

    kwargs: Mapping[str, Any]
    id: str


def _attack_id(kwargs: Mapping[str, Any]) -> str:
    attack = kwargs["attack"]
    if kwargs.get("check") == "certify":
        return f"certify-{kwargs['method']}"
    if isinstance(attack, tuple):
        return "+".join(attack) or "gradients"  # () is check="gradients"
    return str(attack)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expand(kwargs: Mapping[str, Any]) -> list[Case]:
    """Zip list-valued arguments into cases. No list argument gives one case, id ''."""
    lists = {n: v for n, v in kwargs.items() if isinstance(v, list) and n != "attack"}
    if not lists:
        return [Case(dict(kwargs), "")]
    (length,) = {len(v) for v in lists.values()}
    shown = [n for n in lists if n not in THRESHOLDS] or list(lists)
    cases = []
    for i in range(length):
        case = {n: (v[i] if n in lists else v) for n, v in kwargs.items()}
        parts = [_attack_id(kwargs)] + [f"{n}={_format_value(case[n])}" for n in shown]
        cases.append(Case(case, "-".join(parts)))
    return cases
