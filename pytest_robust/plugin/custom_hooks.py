"""Where the plugin calls its own `pytest_robust_*` hooks (hookspecs.py, docs/hooks.md):
the record of a check, the reports' environment, and attacks registered by plugins."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

import pytest

from pytest_robust import registrars
from pytest_robust.errors import RobustConfigError
from pytest_robust.plugin.results import check_record

if TYPE_CHECKING:
    from pytest_robust.attacks import Attack
    from pytest_robust.engine import RobustnessResult

HOOK_RESULT = "pytest_robust_update_result"
HOOK_ATTACKS = "pytest_robust_register_attacks"


def updated_record(item: pytest.Item, result: RobustnessResult) -> dict[str, Any]:
    """The check's record after `pytest_robust_update_result`; a record the hook broke (a
    key removed, a value JSON cannot hold) fails the test naming the hook and the key."""
    record = check_record(item, result)
    written = set(record)
    # ihook: a conftest.py applies to the tests in its own directory only.
    item.ihook.pytest_robust_update_result(item=item, result=result, record=record)
    problem = _record_problem(record, written)
    if problem:
        pytest.fail(f"{item.nodeid}: {HOOK_RESULT}: {problem}", pytrace=False)
    return record


def _record_problem(record: dict[str, Any], written: set[str]) -> str:
    removed = sorted(written - set(record))
    if removed:
        return (
            f"removed {', '.join(map(repr, removed))} from the record; the plugin needs the "
            "keys it wrote: add keys or change values instead"
        )
    for key, value in record.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            return (
                f"record[{key!r}] holds a value of type {type(value).__name__}, which JSON "
                "cannot hold; records travel to the xdist controller and into the JSON "
                "report: store str, int, float, bool, None, or lists and dicts of them"
            )
    return ""


def environment_updater(config: pytest.Config) -> Callable[[dict[str, Any]], None]:
    """What the report writer calls on the reports' environment block."""

    def update(environment: dict[str, Any]) -> None:
        config.hook.pytest_robust_update_environment(config=config, environment=environment)
        # A value JSON cannot hold is written as its str(), so a report is never lost to it.
        safe = json.loads(json.dumps(environment, default=str))
        environment.clear()
        environment.update(safe)

    return update


def queue_plugin_attacks(config: pytest.Config) -> None:
    """Queue `pytest_robust_register_attacks` for the registry's first lookup (so torch is
    imported only by a run that checks something), and undo its registrations when this
    run ends (in-process runs, as pytester's, must not see each other's attacks)."""
    done: list[tuple[str, type[Attack] | None]] = []  # (name, the attack it replaced)

    def registrar(register_attack: Callable[..., type[Attack]]) -> None:
        from pytest_robust.attacks.registry import registered_attacks

        def register(cls: type[Attack], *, replace: bool = False) -> type[Attack]:
            before = registered_attacks().get(getattr(cls, "name", None) or "")
            try:
                register_attack(cls, replace=replace)
            except (TypeError, ValueError) as error:
                raise RobustConfigError(f"{HOOK_ATTACKS}: {error}") from None
            done.append((cls.name, before))
            return cls

        config.hook.pytest_robust_register_attacks(config=config, register=register)

    def undo() -> None:
        registrars.cancel(registrar)
        if not done:
            return
        from pytest_robust.attacks.registry import register_attack
        from pytest_robust.attacks.registry import unregister_attack

        for name, before in reversed(done):
            unregister_attack(name)
            if before is not None:
                register_attack(before)

    registrars.defer(registrar)
    config.add_cleanup(undo)
