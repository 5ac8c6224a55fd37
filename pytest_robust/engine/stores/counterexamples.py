"""Counterexamples remembered between runs, so a regression is found first and every time.

An attack that can replay what broke a sample (the transform attack: the breaking
transformation's parameters) returns them from `Attack.remember()`; the next run hands
them back through `Attack.recall()` before searching. Entries live in a plain key-value
`Store` (engine/stores/__init__.py): the plugin passes its on-disk store, `evaluate()`
users a `DictStore`.

An entry is keyed by the check (the test's node id) and the attack's name. It records the
data fingerprint, because the sample indices it holds only mean something for the same
data; it does not depend on the model, because trying an old counterexample on a new model
is the point (a retrained model that breaks the same way is caught on the first try).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pytest_robust.engine.stores import Store


class CounterexampleMemory:
    """The counterexamples of one check (`check`: e.g. a test's node id) in `store`."""

    def __init__(self, store: Store, check: str) -> None:
        self.store = store
        # Cache keys become file paths under .pytest_cache: a digest, not the node id.
        self.prefix = "pytest_robust/counterexamples/" + hashlib.sha1(check.encode()).hexdigest()

    def load(self, attack: str, data_fingerprint: str) -> dict[int, Any]:
        entry = self.store.get(f"{self.prefix}/{attack}", None)
        if not isinstance(entry, dict) or entry.get("data") != data_fingerprint:
            return {}
        samples = entry.get("samples")
        if not isinstance(samples, dict):
            return {}
        return {int(k): v for k, v in samples.items() if str(k).isdigit()}

    def save(self, attack: str, data_fingerprint: str, samples: dict[int, Any]) -> None:
        entry = {"data": data_fingerprint, "samples": {str(k): v for k, v in samples.items()}}
        self.store.set(f"{self.prefix}/{attack}", entry)
