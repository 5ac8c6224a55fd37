"""Reusing a result across runs (--robust-cache): same inputs, same result.

A result is stored as plain JSON under a key that digests everything it depends on: the
model's weights and buffers (content fingerprint), the data's fingerprint, every attack
parameter, the seed, the device, the output adapter, decide_early/amp, and the plugin's
and torch's versions. Thresholds are not part of the key: the verdict is recomputed from
the stored per-sample outcomes (except with decide_early, where they decide where the
evaluation stopped). A check whose arguments cannot be fingerprinted (a callable target
or output adapter) is never reused.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version
from typing import Any
from typing import Protocol

import torch

from pytest_robust.engine.fingerprint import model_fingerprint
from pytest_robust.engine.result import RobustnessResult
from pytest_robust.spec import Spec


class ResultStore(Protocol):
    """Where results are kept between runs (pytest's config.cache through the plugin)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class _NoFingerprint(Exception):
    """An argument (a callable, say) whose content cannot be digested."""


def _plain(value: Any) -> Any:
    """A JSON-safe, content-based description of an argument."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.nn.Module):
        return {"model": model_fingerprint(value)}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest = hashlib.blake2b(t.numpy().tobytes(), digest_size=16).hexdigest()
        return {"tensor": [list(t.shape), str(t.dtype), digest]}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise _NoFingerprint(type(value).__name__)


def result_key(spec: Spec, model_fp: str, data_fp: str, device: torch.device) -> str | None:
    """The digest a stored result must match, or None when the check cannot be reused."""
    try:
        plugin = version("pytest-robust")
    except PackageNotFoundError:
        plugin = "unknown"
    try:
        described = {
            "model": model_fp,
            "data": data_fp,
            "device": str(device),
            "seed": spec.seed,
            "attack": _plain(spec.attack),
            "eps": spec.eps,
            "norm": spec.norm,
            "bounds": _plain(spec.bounds),
            "params": {k: _plain(v) for k, v in sorted(spec.attack_params.items())},
            "target": _plain(spec.target),
            "output": _plain(spec.output),
            "max_samples": spec.max_samples,
            "amp": spec.amp,
            "decide_early": dict(spec.thresholds) if spec.decide_early else False,
            "versions": [plugin, torch.__version__],
        }
    except _NoFingerprint:
        return None
    text = json.dumps(described, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def load(store: ResultStore, slot: str, key: str, spec: Spec) -> RobustnessResult | None:
    """The stored result for `key` in `slot`, judged against the spec's thresholds now."""
    stored = store.get(slot)
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    started = time.perf_counter()
    try:
        result = RobustnessResult.from_dict(stored["result"])
    except (KeyError, TypeError, ValueError):
        return None  # written by another version of the format: run again
    details = {**result.details, "cached": {"duration_s": result.duration_s}}
    return replace(
        result,
        thresholds=dict(spec.thresholds),
        provenance=dict(spec.provenance),
        details=details,
        duration_s=time.perf_counter() - started,
    )


def save(store: ResultStore, slot: str, key: str, result: RobustnessResult) -> None:
    record = result.to_dict()
    store.set(slot, {"key": key, "result": record})
