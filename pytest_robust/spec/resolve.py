"""Precedence: one validated case plus the run settings into a fully resolved Spec.

Marker (or evaluate() argument) > command line > ini > profile > default. A profile
(profiles.py) is a bundle of defaults: it fills only what nobody wrote, and its max_samples
is a default, not a cap. `max_samples` from the
command line or ini is a cap that a marker can lower but not raise; `device` is chosen
per run (command line, ini, or the `robust_device` fixture), never per marker.

The case was validated once (validate.py) and is taken as it is; only the run settings
are parsed here, so that an error says where a bad value came from. The plugin hands them
over typed (argparse types, pytest's typed ini keys); text is still accepted and converted,
for callers that read settings from text of their own.
The caller names those places (SourceLabels): the plugin's option and ini names belong
to the plugin, not to this pure core.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from pytest_robust.params import Param
from pytest_robust.spec.profiles import Profile
from pytest_robust.spec.schema import CERTIFY_PARAMS
from pytest_robust.spec.schema import COMMON_PARAMS
from pytest_robust.spec.schema import PRESETS
from pytest_robust.spec.schema import THRESHOLDS
from pytest_robust.spec.schema import Preset


@dataclass(frozen=True)
class Spec:
    """A fully resolved check: every value known, and where each came from."""

    attack: str | tuple[str, ...]  # a tuple: worst case per sample; () for check="gradients"
    eps: float | None  # None for attacks that are not eps-ball attacks (eps_ball=False)
    norm: str
    bounds: tuple[Any, Any]  # numbers, or per-feature tensors (see envelope)
    attack_params: Mapping[str, Any]
    target: Any
    output: Any
    min_acc: float | None
    max_success: float | None
    max_drop: float | None
    max_confidence: float | None
    max_zero_frac: float | None
    min_median: float | None
    check: str | None
    allow_masking: bool
    sanity: str
    batch_size: int
    max_samples: int | None
    seed: int
    device: str
    model: str
    data: str
    provenance: Mapping[str, str] = field(default_factory=dict)
    strict: bool = False  # thresholds must be cleared by the 95% interval
    decide_early: bool = False
    amp: bool = False
    draws: int | None = None  # None: 1, or 10 when a member has eot > 1 (engine/stochastic.py)
    # Dict batches: the keys of the inputs and the labels (engine/data.py).
    inputs: str | None = None
    labels: str | None = None
    mask: Any = None  # a tensor or array: features that may not be perturbed

    @property
    def preset(self) -> Preset | None:
        """The fixed preset this check runs (attack='autoattack'), or None."""
        preset = PRESETS.get(self.attack) if isinstance(self.attack, str) else None
        return preset if preset is not None and preset.fixed else None

    @property
    def members(self) -> tuple[tuple[str, Mapping[str, Any] | None], ...]:
        """The attacks that run, in order, each with the settings a fixed preset gives it
        (None: the spec's attack_params, as for attack=[...])."""
        preset = self.preset
        if preset is not None:
            return preset.configured(self.attack_params.get("version"))
        names = self.attack if isinstance(self.attack, tuple) else (self.attack,)
        return tuple((name, None) for name in names)

    @property
    def envelope(self) -> tuple[float, float]:
        """(lowest low, highest high) of the bounds: the bounds themselves, or the range
        that per-feature bounds (tensors) span; the attacks' own clipping and the reports
        use it, the threat model enforces the per-feature bounds (attacks/threat.py)."""
        low, high = self.bounds
        return (
            float(low.min()) if hasattr(low, "min") else float(low),
            float(high.max()) if hasattr(high, "max") else float(high),
        )

    @property
    def per_feature(self) -> bool:
        """True when the bounds are given per feature (tensors or arrays)."""
        return any(hasattr(bound, "shape") for bound in self.bounds)

    @property
    def thresholds(self) -> dict[str, float]:
        return {name: value for name in THRESHOLDS if (value := getattr(self, name)) is not None}


# The Spec fields that hold one common parameter each (the rest: attack_params, provenance).
_COMMON_FIELDS = tuple(
    f.name for f in dataclasses.fields(Spec) if f.name not in ("attack_params", "provenance")
)


@dataclass(frozen=True)
class SourceLabels:
    """How the caller names the places run settings come from, for provenance and error
    messages: setting name -> label, e.g. 'seed' -> '--robust-seed' / 'ini robust_seed'."""

    cli: Callable[[str], str]
    ini: Callable[[str], str]


def resolve(
    case: Mapping[str, Any],
    attack_params: Mapping[str, Param],
    cli: Mapping[str, Any] | None = None,
    ini: Mapping[str, Any] | None = None,
    case_where: str = "marker",
    *,
    labels: SourceLabels | None = None,
    profile: Profile | None = None,
) -> Spec:
    """Resolve one validated case into a Spec: case > command line > ini > profile > default.

    `cli` and `ini` hold the run settings that were given, as raw values (`labels` names
    where they came from, and is required with them); a case value is taken as validated.
    A profile's attack parameters reach only the attacks that declare them (`attack_params`).
    """
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    ini = {k: v for k, v in (ini or {}).items() if v not in (None, "")}
    if (cli or ini) and labels is None:
        raise TypeError("resolve(): pass labels= naming where the cli/ini settings came from")
    sources = [(cli, labels.cli), (ini, labels.ini)] if labels is not None else []
    # The profile is the last source, and not one that caps a marker's max_samples.
    settings = dict(profile.settings) if profile else {}
    if case.get("check") == "certify":
        # A profile speaks of attacks: its alpha= is a step size, its n= nothing a
        # certificate should take. A certificate's own settings (alpha, its confidence;
        # n, its draws) come from the marker or their defaults only.
        settings = {k: v for k, v in settings.items() if k not in CERTIFY_PARAMS}
    layers = sources + ([(settings, _label(profile.label))] if profile else [])
    values: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for name, param in {**COMMON_PARAMS, **attack_params}.items():
        given = [(source[name], label(name)) for source, label in layers if name in source]
        if name in case:
            values[name], provenance[name] = case[name], case_where
        elif given:
            raw, where = given[0]
            values[name], provenance[name] = param.parse(name, raw, where, text=True), where
        else:
            values[name], provenance[name] = param.default, "default"
    _cap_max_samples(values, provenance, sources, case_where)
    # A common parameter an attack declares itself stays the attack's (attack='noise' has
    # its own draws=: noisy copies per sample); the Spec field keeps its default.
    common = {name: values.pop(name) for name in _COMMON_FIELDS if name not in attack_params}
    return Spec(**common, attack_params=values, provenance=provenance)


def _cap_max_samples(
    values: dict[str, Any],
    provenance: dict[str, str],
    sources: list[tuple[dict[str, Any], Callable[[str], str]]],
    case_where: str,
) -> None:
    """A run-wide sample cap (the first source that gives one) can lower a case's
    max_samples, never raise it."""
    if provenance["max_samples"] != case_where:
        return
    for source, label in sources:
        if "max_samples" in source:
            where = label("max_samples")
            cap = COMMON_PARAMS["max_samples"].parse(
                "max_samples", source["max_samples"], where, text=True
            )
            if cap is not None and cap < values["max_samples"]:
                values["max_samples"], provenance["max_samples"] = cap, where
            return


def _label(text: str) -> Callable[[str], str]:
    return lambda _name: text


def derive_seed(base: int, key: str) -> int:
    """A per-test seed from the run's base seed and the test's id (order-independent)."""
    return (base + zlib.crc32(key.encode())) % (2**31)
