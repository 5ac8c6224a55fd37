"""Reusing a result across runs (--robust-cache): reused only when everything it depends on
is provably unchanged; where that cannot be established, it runs again.

A result is stored as plain JSON under a key that digests: the model's identity (its code,
module tree, attributes, hooks, weights and buffers: engine/fingerprint.py), the data's
fingerprint, every attack parameter by content (a surrogate model by its identity, a
callable by its code), the target and output= adapter by content, the code of every
attack class it runs (custom attacks included), the plugin's own source, the seed, device,
batch size, max_samples, sanity level, check=, decide_early/amp, draws= (eot= is an
attack parameter), and the plugin's, torch's
and Python's versions. Thresholds, strict and allow_masking are not part of the key: the
verdict is recomputed from the stored per-sample outcomes and flags (except with
decide_early, where the thresholds decided where the evaluation stopped). A check with
anything that cannot be established (identity None) is never reused. docs/scaling.md says
exactly what is compared and what is not.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import replace
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version
from typing import Any

import torch

from pytest_robust.attacks import get_attack
from pytest_robust.engine.digests import Unidentifiable
from pytest_robust.engine.digests import code_version
from pytest_robust.engine.fingerprint import class_identity
from pytest_robust.engine.fingerprint import value_identity
from pytest_robust.engine.result import RobustnessResult
from pytest_robust.engine.stores import Store
from pytest_robust.spec import Spec


def _content(value: Any) -> Any:
    """A JSON-safe, content-based description of an argument; None cannot be a content
    (an identity that cannot be established raises Unidentifiable)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_content(v) for v in value]
    identity = value_identity(value)
    if identity is None:
        raise Unidentifiable(type(value).__name__)
    return {type(value).__name__: identity}


def result_key(
    spec: Spec, model_identity: str | None, data_fp: str, device: torch.device
) -> str | None:
    """The digest a stored result must match, or None when the check cannot be reused."""
    if model_identity is None:
        return None
    try:
        plugin = version("pytest-robust")
    except PackageNotFoundError:
        plugin = "unknown"
    names = [name for name, _ in spec.members]
    try:
        described = {
            "model": model_identity,
            "data": data_fp,
            "device": str(device),
            "seed": spec.seed,
            "attack": _content(spec.attack),
            "attack_code": [class_identity(get_attack(name)) for name in names],
            "eps": spec.eps,
            "norm": spec.norm,
            "bounds": _content(spec.bounds),
            "params": {k: _content(v) for k, v in sorted(spec.attack_params.items())},
            "target": _content(spec.target),
            "output": _content(spec.output),
            "mask": _content(spec.mask),
            "inputs": spec.inputs,
            "max_samples": spec.max_samples,
            "batch_size": spec.batch_size,
            "sanity": spec.sanity,
            "check": spec.check,
            "amp": spec.amp,
            "draws": spec.draws,
            "decide_early": dict(spec.thresholds) if spec.decide_early else False,
            "versions": [plugin, code_version(), torch.__version__, sys.version],
        }
    except (Unidentifiable, RecursionError):
        return None
    text = json.dumps(described, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def load(store: Store, slot: str, key: str, spec: Spec) -> RobustnessResult | None:
    """The stored result for `key` in `slot`, judged against the spec's thresholds now."""
    stored = store.get(slot, None)
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
        # Verdict settings, not measurements: today's apply (the flags are stored).
        allow_masking=spec.allow_masking,
        strict=spec.strict,
        details=details,
        duration_s=time.perf_counter() - started,
    )


def save(store: Store, slot: str, key: str, result: RobustnessResult) -> None:
    record = result.to_dict()
    store.set(slot, {"key": key, "result": record})
