"""Progress of an attack over its batches, for whoever listens (the plugin's terminal line).

No torch and no pytest: `AttackPasses.run` reports after every batch to the listener set by
`reporting()`, if any; without one a report costs one context-variable lookup.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from collections.abc import Iterator

# listener(attack name, samples done, samples in this pass)
Listener = Callable[[str, int, int], None]
_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar(
    "pytest_robust_progress", default=None
)


@contextlib.contextmanager
def reporting(listener: Listener | None) -> Iterator[None]:
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def report(name: str, done: int, total: int) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(name, done, total)
