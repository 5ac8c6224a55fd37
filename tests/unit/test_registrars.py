"""registrars.py: registrations queued for the registry's first lookup (how a plugin's
pytest_robust_register_attacks hook reaches attacks/registry.py without importing torch at
start-up)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_robust import registrars
from pytest_robust.attacks import Attack
from pytest_robust.attacks import get_attack
from pytest_robust.attacks import registered_attacks
from pytest_robust.attacks.registry import unregister_attack


class Queued(Attack):
    name = "queued-for-test"

    def propose(self, batch: Any) -> Any:
        return batch.x


def test_a_queued_registrar_runs_once_at_the_first_lookup() -> None:
    """Catches a registrar that never runs, runs at every lookup, or runs before one."""
    calls: list[int] = []

    def registrar(register: Callable[..., Any]) -> None:
        calls.append(1)
        register(Queued)

    registrars.defer(registrar)
    try:
        assert calls == []
        assert get_attack("queued-for-test") is Queued
        assert "queued-for-test" in registered_attacks()
        assert calls == [1]
    finally:
        registrars.cancel(registrar)
        unregister_attack("queued-for-test")
    assert "queued-for-test" not in registered_attacks()


def test_a_cancelled_registrar_never_runs() -> None:
    calls: list[int] = []

    def registrar(register: Callable[..., Any]) -> None:
        calls.append(1)

    registrars.defer(registrar)
    registrars.cancel(registrar)
    registered_attacks()
    assert calls == []
    registrars.cancel(registrar)  # cancelling twice (or after it ran) is a no-op
