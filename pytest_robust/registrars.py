"""Attack registrations that wait until the registry is first used.

The pytest layer must not import torch at start-up (every pytest run of every project
loads it), and the attack registry imports torch; the core must not import pytest. So a
plugin's `pytest_robust_register_attacks` hook reaches attacks/registry.py through this
small, dependency-free queue: the pytest layer queues a registrar at configure time, and
the registry runs the queued registrars the first time an attack name is looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# A registrar is called once with `register_attack` and registers what it likes.
Registrar = Callable[[Callable[..., Any]], object]

_pending: list[Registrar] = []


def defer(registrar: Registrar) -> None:
    """Run `registrar(register_attack)` when the registry is next consulted."""
    _pending.append(registrar)


def cancel(registrar: Registrar) -> None:
    """Drop a registrar that has not run yet (no-op when it has)."""
    if registrar in _pending:
        _pending.remove(registrar)


def take() -> list[Registrar]:
    """The queued registrars, in order; the queue is left empty."""
    taken = list(_pending)
    _pending.clear()
    return taken
