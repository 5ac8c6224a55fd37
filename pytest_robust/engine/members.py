"""The attacks a check runs ("members"), configured from its Spec, and how they are
described in the result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pytest_robust.attacks import Attack
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import get_attack
from pytest_robust.attacks import registered_attacks
from pytest_robust.engine.targets import describe
from pytest_robust.errors import RobustConfigError
from pytest_robust.spec import PRESETS
from pytest_robust.spec import Spec
from pytest_robust.spec import attack_params

Members = list[tuple[str, Attack]]


def threat_of(
    spec: Spec,
    frozen: torch.Tensor | None = None,
    per_feature: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ThreatModel:
    """The eps-ball and bounds every member keeps to (only the bounds without an eps), the
    features mask= freezes (`frozen`) and per-feature bounds, both checked against the
    samples' shape (engine/data.py)."""
    if spec.eps is not None:
        return ThreatModel(spec.eps, spec.norm, spec.envelope, frozen, per_feature)
    return ThreatModel.bounds_only(spec.envelope, frozen, per_feature)


def build_members(spec: Spec, threat: ThreatModel) -> Members:
    """(name, configured attack) for each attack of the spec, in order."""
    configured = spec.members
    registry = registered_attacks()
    members = []
    for name, fixed in configured:
        cls = get_attack(name)  # target= was checked against the attack by validate()
        if cls.targeted and len(configured) > 1:
            raise RobustConfigError(
                f"attack {name!r} always picks its own targets, so it cannot be combined with "
                "other attacks; run it in its own test"
            )
        own = attack_params((name,), registry, spec.attack_params)
        config = {}
        for key, param in own.items():
            # In a combination, a parameter nobody set takes each attack's own default.
            given = len(configured) == 1 or spec.provenance.get(key, "default") != "default"
            if fixed is not None:  # a fixed preset: its settings, or what the user passed
                given = given and key in spec.attack_params
                default = fixed.get(key, param.default)
            else:
                default = param.default
            config[key] = spec.attack_params.get(key, default) if given else default
        config = cls.finalize(config, threat)
        if config.get("eot") == 1:
            # One draw is no EOT: left out, so a deterministic check's params (and stored
            # results' keys) read as they did before eot= existed.
            del config["eot"]
        members.append((name, cls(threat, **config)))
    return members


def is_preset(spec: Spec) -> bool:
    """Whether the check's attack is a preset (attack='strong', 'autoattack'); an open
    preset reaches here as its list of members."""
    names = (spec.attack,) if isinstance(spec.attack, str) else tuple(spec.attack)
    return any(
        names == (name,) or (not preset.fixed and names == preset.members())
        for name, preset in PRESETS.items()
    )


def fitting_members(spec: Spec, members: Members, classes: int) -> tuple[Members, dict[str, str]]:
    """A preset's members that can run on a model with `classes` classes, and a note for
    each one left out (a DLR loss on a binary classifier). Only a preset (attack='strong',
    'autoattack') drops members: an attack the user named runs or raises its own error."""
    if not is_preset(spec) or spec.target is not None:
        return members, {}
    kept: Members = []
    skipped: dict[str, str] = {}
    for name, attack in members:
        needed = attack.classes_needed(False)
        if classes >= needed:
            kept.append((name, attack))
        else:
            skipped[name] = (
                f"left out: its DLR loss needs at least {needed} classes and the model has "
                f"{classes}"
            )
    return kept, skipped


def models_in(members: Members) -> list[torch.nn.Module]:
    """The models the members were configured with (e.g. transfer surrogates)."""
    found: list[torch.nn.Module] = []
    for _, attack in members:
        for value in attack.config.values():
            values = value if isinstance(value, (list, tuple)) else [value]
            found.extend(v for v in values if isinstance(v, torch.nn.Module))
    return found


def describe_params(members: Members, spec: Spec) -> dict[str, Any]:
    """The result's `params`: every member's configuration, JSON-safe."""

    def plain(config: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: v if isinstance(v, (int, float, str, bool)) else describe(v)
            for k, v in config.items()
        }

    if spec.check == "certify":  # the method is in the result's name (certify-ibp)
        params: dict[str, Any] = {}
        if spec.attack_params["method"] == "smoothing":
            params = {k: spec.attack_params[k] for k in ("sigma", "n0", "n", "alpha")}
    elif not members:  # check="gradients"
        params = {"check": "gradients", "losses": "ce margin dlr ce_rescaled"}
    elif len(members) == 1:
        params = plain(members[0][1].config)
    else:
        params = {"attacks": {name: plain(attack.config) for name, attack in members}}
        if spec.preset is not None:
            params = {"version": spec.attack_params["version"], **params}
    if spec.target is not None:
        params["target"] = describe(spec.target)
    if spec.output is not None:
        params["output"] = describe(spec.output)
    return params
