"""Where the engine keeps what it may reuse, one module each:

- session_cache.EvaluationCache: the in-session cache (data read once, clean logits and
  cheap sanity flags computed once per model identity); in memory, tensors, one session.
- result_reuse: whole results reused across runs (--robust-cache), in a `Store`.
- counterexamples.CounterexampleMemory: what broke samples last time, in a `Store`.

`Store` is the one key-value protocol of the two that outlive a run: JSON values under
'a/b/c' keys. pytest's `config.cache` and `files.JsonStore` (what the plugin passes) fit it
as they are, so the engine stays free of pytest; `DictStore` keeps entries in a dict for
`evaluate()` users.
"""

from __future__ import annotations

from typing import Any
from typing import Protocol


class Store(Protocol):
    """A key-value store of JSON values: pytest's `config.cache` has exactly this."""

    def get(self, key: str, default: Any) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class DictStore:
    """A store in a dict, for `evaluate(..., memory=CounterexampleMemory(DictStore(), k))`."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}

    def get(self, key: str, default: Any) -> Any:
        return self.entries.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.entries[key] = value
