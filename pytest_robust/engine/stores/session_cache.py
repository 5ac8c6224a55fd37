"""Work shared by the checks of a session: data read once, clean predictions made once.

Clean logits and the cheap sanity flags are keyed by the model's identity (its code,
module tree, attributes, hooks, weights and buffers: engine/fingerprint.py), the data's
fingerprint, the device and the output= adapter's content: a model changed in any of
these between tests is evaluated again. A model whose identity cannot be established is
never served from the cache (run_check passes no key).
"""

from __future__ import annotations

from typing import Any

import torch

from pytest_robust.engine.data import PAIRS
from pytest_robust.engine.data import Keys
from pytest_robust.engine.data import Samples
from pytest_robust.engine.data import load_samples


class EvaluationCache:
    def __init__(self) -> None:
        # id(data) is only stable while the object lives, so the object is kept with it.
        # The tensors' version counters too: data changed in place is read again (a lazily
        # read Dataset or DataLoader is checked against its digests on every read).
        self._samples: dict[tuple[Any, ...], tuple[Any, Samples, tuple[int, ...]]] = {}
        self._clean: dict[tuple[str, str, str, str], torch.Tensor] = {}
        # Cheap sanity flags depend on the same things plus the attack's loss and which
        # samples are attacked: another check of the same model gets them for free.
        self._flags: dict[tuple[Any, ...], list[Any]] = {}

    def samples(self, data: Any, max_samples: int | None, keys: Keys = PAIRS) -> Samples:
        key = (id(data), max_samples, keys)
        hit = self._samples.get(key)
        if hit is not None and hit[0] is data and hit[2] == hit[1].versions():
            return hit[1]
        samples = load_samples(data, max_samples, keys)
        self._samples[key] = (data, samples, samples.versions())
        return samples

    def clean_logits(self, key: tuple[str, str, str, str]) -> torch.Tensor | None:
        return self._clean.get(key)

    def store_clean_logits(self, key: tuple[str, str, str, str], logits: torch.Tensor) -> None:
        self._clean[key] = logits

    def sanity_flags(self, key: tuple[Any, ...]) -> list[Any] | None:
        return self._flags.get(key)

    def store_sanity_flags(self, key: tuple[Any, ...], flags: list[Any]) -> None:
        self._flags[key] = list(flags)
