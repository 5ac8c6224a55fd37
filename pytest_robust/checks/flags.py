"""Sanity flags: a finding about an evaluation that says its number may not be trusted.

A flag of severity "masking" means the attack's gradients (or the model's outputs) make the
measured robustness unreliable: a PASS with such a flag is turned into a FAIL unless the
test accepts it with `allow_masking=True`. A flag of severity "warning" is reported only.
Every flag has an entry in docs/masking.md (what it means, the usual cause, the fix).
"""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

MASKING = "masking"
WARNING = "warning"

DOCS = "docs/masking.md"


@dataclass(frozen=True)
class Flag:
    name: str
    severity: str  # MASKING or WARNING
    message: str  # what was measured
    fix: str  # how to make the evaluation trustworthy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        """One line for a failure message or a report."""
        return f"[{self.name}] {self.message}; fix: {self.fix} (see {DOCS}#{self.name})"


def masking_flags(flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [flag for flag in flags if flag.get("severity") == MASKING]


def sentence(flag: dict[str, Any]) -> str:
    """Flag.sentence() for a flag stored as a dict (in a result's details)."""
    return Flag(**{k: flag[k] for k in ("name", "severity", "message", "fix")}).sentence()
