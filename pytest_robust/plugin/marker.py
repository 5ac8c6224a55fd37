"""`robust(...)`: the typed, validated way to write `pytest.mark.robust(...)`."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import pytest

from pytest_robust.errors import RobustConfigError

Number = float | Sequence[float]


def validate_marker(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Validate marker arguments against the attack registry (this imports torch)."""
    from pytest_robust.attacks import registered_attacks
    from pytest_robust.spec.validate import validate

    return validate(kwargs, registered_attacks(), "marker")


# Each mark's validated arguments, so that they are validated once: robust() validates at
# decoration (the error names the test at import), collection and the check reuse that.
# Keyed by id(mark) (a Mark is not hashable); an entry lives exactly as long as its mark.
_VALIDATED: dict[int, tuple[weakref.ref[pytest.Mark], dict[str, Any]]] = {}


def _remember(mark: pytest.Mark, validated: dict[str, Any]) -> None:
    _VALIDATED[id(mark)] = (weakref.ref(mark), validated)
    weakref.finalize(mark, _VALIDATED.pop, id(mark), None)


def validated_arguments(mark: pytest.Mark) -> dict[str, Any]:
    """The mark's validated arguments: those robust() checked, else checked now (a plain
    pytest.mark.robust(...)) and kept. RobustConfigError when they are bad."""
    entry = _VALIDATED.get(id(mark))
    if entry is not None and entry[0]() is mark:
        return entry[1]
    validated = validate_marker(dict(mark.kwargs))
    _remember(mark, validated)
    return validated


class _InvalidMarker:
    """Stands in for the mark when the arguments are bad, to name the test in the error."""

    def __init__(self, error: RobustConfigError) -> None:
        self.error = error

    def __call__(self, obj: Any) -> Any:
        __tracebackhide__ = True
        code = getattr(obj, "__code__", None)
        where = f" ({code.co_filename}:{code.co_firstlineno})" if code else ""
        name = getattr(obj, "__qualname__", repr(obj))
        raise RobustConfigError(f"@robust on {name}{where}: {self.error}") from None


def robust(
    *,
    attack: str | None = None,
    eps: Number | None = None,
    min_acc: Number | None = None,
    max_success: Number | None = None,
    max_drop: Number | None = None,
    norm: str | None = None,
    bounds: tuple[float, float] | None = None,
    batch_size: int | None = None,
    max_samples: int | None = None,
    seed: int | None = None,
    model: str | None = None,
    data: str | None = None,
    **attack_params: Any,
) -> pytest.MarkDecorator:
    """Mark a test as a robustness check.

    The attack runs on the `robust_model` and `robust_data` fixtures (or the fixtures
    named by `model=` / `data=`) before the test body; the test fails when a threshold is
    missed. List-valued arguments (eps=[0.05, 0.1], min_acc=[0.9, 0.8]) are zipped into
    one test per position. Attack parameters (steps, alpha, random_start, restarts, ...)
    pass through `attack_params`. Arguments are checked here, at import of the test module.

        @robust(attack="pgd", eps=0.1, steps=20, min_acc=0.8)
        def test_pgd(robustness): ...
    """
    given = {
        "attack": attack,
        "eps": eps,
        "min_acc": min_acc,
        "max_success": max_success,
        "max_drop": max_drop,
        "norm": norm,
        "bounds": bounds,
        "batch_size": batch_size,
        "max_samples": max_samples,
        "seed": seed,
        "model": model,
        "data": data,
    }
    kwargs = {k: v for k, v in given.items() if v is not None}
    kwargs.update(attack_params)
    try:
        validated = validate_marker(kwargs)
    except RobustConfigError as error:
        return _InvalidMarker(error)  # type: ignore[return-value]
    decorator = pytest.mark.robust(**kwargs)
    _remember(decorator.mark, validated)
    return decorator
