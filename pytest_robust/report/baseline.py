"""Baselines: a committed JSON file of what each robustness check measured, to compare against.

No torch and no pytest here: the plugin loads the file in every process (controller and
xdist workers), compares each test's result in that test's call phase, and the controller
alone saves. Plain JSON only, so a baseline from an untrusted branch cannot run code.

An entry is keyed by the test's node id (which holds the case id of list-expanded markers)
and stores the measurement, the per-sample robust flags (packed bits, base64) and the
fingerprints of the check's spec, the data and the model.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from pytest_robust.files import write_atomic

SCHEMA = 1
KIND = "pytest-robust baseline"
FIELDS = ("robust_acc", "clean_acc", "success_rate")
# Drops in these fields are regressions; success_rate regresses when it rises.
HIGHER_IS_WORSE = {"success_rate"}
_TOLERANCE = re.compile(r"^(?P<field>[a-z_]+):(?P<amount>[0-9]*\.?[0-9]+)(?P<percent>%?)$")
# How long a save waits for another run's save of the same file (a save takes milliseconds).
LOCK_TIMEOUT_S = 60.0
# Entry fields and their JSON types, checked on load so a hand edit gives a clear error.
_ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "n": int,
    "robust_acc": (int, float),
    "clean_acc": (int, float),
    "success_rate": (int, float),
    "robust": str,
    "spec_fingerprint": str,
    "data_fingerprint": str,
    "model_fingerprint": str,
    "environment": dict,
}


class BaselineError(ValueError):
    """The baseline file cannot be used (bad JSON, wrong schema, wrong types)."""


@dataclass(frozen=True)
class Tolerance:
    """How far a field may regress before the test fails: absolute or relative (percent)."""

    field: str
    amount: float
    relative: bool

    def allowed(self, baseline: float) -> float:
        return baseline * self.amount / 100 if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.field}:{self.amount:g}{'%' if self.relative else ''}"


def parse_tolerance(value: str) -> Tolerance:
    """'robust_acc:0.02' (absolute) or 'robust_acc:3%' (relative); an argparse type."""
    match = _TOLERANCE.match(value.strip())
    if match is None or match["field"] not in FIELDS:
        raise argparse.ArgumentTypeError(
            f"{value!r}: write FIELD:AMOUNT (absolute) or FIELD:PERCENT% (relative), FIELD one "
            f"of {', '.join(FIELDS)}, e.g. robust_acc:0.02 or robust_acc:3%"
        )
    amount = float(match["amount"])
    relative = bool(match["percent"])
    if not relative and amount > 1:
        raise argparse.ArgumentTypeError(
            f"{value!r}: an absolute tolerance is a fraction in [0, 1]; write {amount:g}% "
            "for a relative one"
        )
    return Tolerance(match["field"], amount, relative)


def pack_flags(flags: str) -> str:
    """'0110...' -> base64 of the packed bits (sample i is bit i); the length is stored apart."""
    value = int(flags[::-1], 2) if flags else 0
    return base64.b64encode(value.to_bytes((len(flags) + 7) // 8, "little")).decode("ascii")


def unpack_flags(packed: str, n: int) -> str:
    value = int.from_bytes(base64.b64decode(packed.encode("ascii"), validate=True), "little")
    if value >> n:
        raise ValueError("more bits than samples")
    return format(value, f"0{n}b")[::-1] if n else ""


def spec_fingerprint(record: Mapping[str, Any]) -> str:
    """What defines the check (attack, budget, its parameters), not its thresholds."""
    spec = {k: record.get(k) for k in ("attack", "eps", "norm", "bounds", "params", "targeted")}
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def make_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attack": record["attack"],
        "eps": record["eps"],
        "n": record["n"],
        "clean_acc": record["clean_acc"],
        "robust_acc": record["robust_acc"],
        "success_rate": record["success_rate"],
        "robust": pack_flags(record["robust"]),
        "spec_fingerprint": spec_fingerprint(record),
        "data_fingerprint": record["data_fingerprint"],
        "model_fingerprint": record["model_fingerprint"],
        "environment": environment(record),
    }


def environment(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"torch": record.get("torch_version"), "device": record.get("device")}


def load(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of a baseline file ({} when it does not exist); BaselineError if unusable."""
    if not path.exists():
        return {}
    where = f"baseline {path}"
    try:
        # NaN and Infinity are not JSON, though Python's json reads them: keep them as a
        # token that no type check accepts, so the entry holding one is named below.
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_NotANumber)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(f"{where} is not readable JSON ({error}); {_fix(path)}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise BaselineError(f"{where} is not a pytest-robust baseline; {_fix(path)}")
    if data.get("schema") != SCHEMA:
        raise BaselineError(
            f"{where} has schema {data.get('schema')!r}, this pytest-robust reads schema "
            f"{SCHEMA}; {_fix(path)}"
        )
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise BaselineError(f"{where}: 'entries' must be an object; {_fix(path)}")
    for key, entry in entries.items():
        problem = _entry_problem(entry)
        if problem:
            raise BaselineError(f"{where}: entry {key!r}: {problem}; {_fix(path)}")
    return entries


class _NotANumber(str):
    """NaN, Infinity or -Infinity as read from the file (not JSON; Python's json reads them)."""

    def __repr__(self) -> str:
        return str(self)


def _entry_problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "must be an object"
    for name, kind in _ENTRY_TYPES.items():
        value = entry.get(name)
        if isinstance(value, _NotANumber):
            return f"{name!r} is {value}, expected a finite number"
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{name!r} is {value!r}, expected {getattr(kind, '__name__', 'a number')}"
    if entry["n"] < 0:
        return f"'n' is {entry['n']!r}, expected an integer >= 0 (the number of samples)"
    # Each rate is a count over n (or over the clean-correct samples): a finite fraction.
    for name in FIELDS:
        if not 0 <= entry[name] <= 1:  # also False for NaN, and infinities fail here
            return f"{name!r} is {entry[name]!r}, expected a fraction in [0, 1]"
    if entry["robust_acc"] > entry["clean_acc"] + 1e-9:
        return (
            f"'robust_acc' {entry['robust_acc']!r} exceeds 'clean_acc' {entry['clean_acc']!r}; "
            "a robust sample is clean-correct, so robust_acc <= clean_acc"
        )
    eps = entry.get("eps")
    if isinstance(eps, _NotANumber) or not (
        eps is None
        or (isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 <= eps < math.inf)
    ):
        return f"'eps' is {eps!r}, expected a finite number >= 0 (or null)"
    try:
        unpack_flags(entry["robust"], entry["n"])
    except ValueError:
        return "'robust' is not the packed flags of n samples"
    return ""


def _fix(path: Path) -> str:
    return (
        f"fix it, restore it from version control (git checkout -- {path.name}), or delete "
        "it and run with --robust-baseline-save"
    )


def save(path: Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Write (or update) the entries of `records` into `path`, keeping the other entries.

    Atomic (see files.write_atomic): a crash leaves the old file whole. Under a lock
    (`.NAME.lock` next to the file), so that runs saving to the same baseline at once
    merge their entries instead of the last one dropping the others'. Returns the number
    of entries written; OSError when the file cannot be written or locked.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(path), timeout=LOCK_TIMEOUT_S):
        entries = dict(load(path))  # read under the lock: another run may have just saved
        count = 0
        for record in records:
            if (record.get("details") or {}).get("decided_early"):
                continue  # a prefix of the data is no baseline (see compare)
            entries[record["nodeid"]] = make_entry(record)
            count += 1
        document = {"kind": KIND, "schema": SCHEMA, "entries": dict(sorted(entries.items()))}
        write_atomic(path, json.dumps(document, indent=1, sort_keys=False) + "\n")
    return count


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def compare(
    entry: Mapping[str, Any] | None,
    record: Mapping[str, Any],
    tolerances: Iterable[Tolerance],
) -> dict[str, Any]:
    """The comparison of one result with its baseline entry, JSON-safe:

    status: 'ok', 'regressed', 'improved', 'missing' (no entry), 'data changed',
    'spec changed' or 'partial' (refused: the numbers would not be comparable); delta
    (robust_acc now minus then); flipped (indices robust then, broken now); message (the
    failure line).
    """
    decided = (record.get("details") or {}).get("decided_early")
    if decided:
        return _refused(
            "partial",
            f"decided early after {decided['after']} of {decided['of']} samples: a partial "
            "result is not compared with the baseline; drop decide_early=True to compare",
        )
    if entry is None:
        return {"status": "missing", "delta": None, "flipped": [], "message": ""}
    if entry["data_fingerprint"] != record["data_fingerprint"] or entry["n"] != record["n"]:
        return _refused(
            "data changed",
            f"the data differ from the baseline's (fingerprint {record['data_fingerprint'][:12]}"
            f" != {entry['data_fingerprint'][:12]}, n={record['n']} vs {entry['n']}): the "
            "numbers are not comparable; re-save the baseline with --robust-baseline-save",
        )
    if entry["spec_fingerprint"] != spec_fingerprint(record):
        return _refused(
            "spec changed",
            "the check's attack or its parameters differ from the baseline's: the numbers are "
            "not comparable; re-save the baseline with --robust-baseline-save",
        )
    before = unpack_flags(entry["robust"], entry["n"])
    flipped = [i for i, (a, b) in enumerate(zip(before, record["robust"], strict=True)) if a > b]
    delta = record["robust_acc"] - entry["robust_acc"]
    regressions, improvements = [], []
    for tolerance in tolerances:
        was, now = float(entry[tolerance.field]), float(record[tolerance.field])
        worse = now - was if tolerance.field in HIGHER_IS_WORSE else was - now
        allowed = tolerance.allowed(was)
        if worse > allowed + 1e-12:
            regressions.append(
                f"{tolerance.field} {now:.3f} vs baseline {was:.3f} "
                f"({now - was:+.3f}, tolerance {tolerance})"
            )
        elif -worse > allowed + 1e-12:
            improvements.append(tolerance.field)
    status = "regressed" if regressions else "improved" if improvements else "ok"
    message = ""
    if regressions:
        message = "regressed vs baseline: " + "; ".join(regressions) + _flipped_text(flipped)
    return {
        "status": status,
        "delta": delta,
        "flipped": flipped,
        "message": message,
        "model_changed": entry["model_fingerprint"] != record["model_fingerprint"],
        "baseline_robust_acc": entry["robust_acc"],
        "environment": environment_difference(entry["environment"], environment(record)),
    }


def _refused(status: str, message: str) -> dict[str, Any]:
    return {"status": status, "delta": None, "flipped": [], "message": message}


def _flipped_text(flipped: list[int], shown: int = 10) -> str:
    if not flipped:
        return ""
    listed = ", ".join(map(str, flipped[:shown])) + (", ..." if len(flipped) > shown else "")
    return f"; {len(flipped)} sample(s) flipped from robust to broken: [{listed}]"


def environment_difference(then: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """'torch 2.3.0 -> 2.4.1, device cuda:0 -> cpu', or '' when the same."""
    changes = [
        f"{key} {then.get(key)} -> {now.get(key)}"
        for key in ("torch", "device")
        if then.get(key) is not None and now.get(key) is not None and then[key] != now[key]
    ]
    return ", ".join(changes)


def stale(entries: Mapping[str, Any], seen: set[str]) -> list[str]:
    """Entries of the files that ran whose tests did not run (renamed or removed tests)."""
    files = {nodeid.partition("::")[0] for nodeid in seen}
    return sorted(k for k in entries if k not in seen and k.partition("::")[0] in files)
