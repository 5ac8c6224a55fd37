"""What a marker's `attack=` stands for: its member attacks (one name, a list, or a preset
and its version=), and every parameter those members take.

Pure, no torch and no pytest; validate.py checks the arguments against what this module
finds, and the plugin's session asks `attack_params` which settings the attack takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param
from pytest_robust.params import suggest
from pytest_robust.spec.schema import CERTIFY_PARAMS
from pytest_robust.spec.schema import PRESETS
from pytest_robust.spec.schema import AttackSchema
from pytest_robust.spec.schema import Preset


def fixed_preset(attack: Any) -> Preset | None:
    """The fixed preset `attack` names (attack='autoattack'), or None."""
    preset = PRESETS.get(attack) if isinstance(attack, str) else None
    return preset if preset is not None and preset.fixed else None


def preset_version(preset: Preset, attack: str, kwargs: Mapping[str, Any]) -> str:
    """The version= a fixed preset runs: the given one (checked), else the default."""
    if "version" not in kwargs:
        return preset.default
    version = kwargs["version"]
    if isinstance(version, (list, tuple)):
        raise RobustConfigError(
            f"version={version!r}: attack={attack!r} runs one version per test (their "
            "members differ); use pytest.mark.parametrize for several"
        )
    if isinstance(version, str) and version in preset.withheld:
        raise RobustConfigError(f"version={version!r}: {preset.withheld[version]}")
    parsed: str = preset.params["version"].parse("version", version)
    return parsed


def preset_params(
    preset: Preset, members: tuple[str, ...], attacks: Mapping[str, AttackSchema]
) -> dict[str, Param]:
    """What a fixed preset takes: version=, and the member parameters it passes on."""
    params = dict(preset.params)
    for name in members:
        params.update({k: v for k, v in attacks[name].params.items() if k in preset.passes})
    return params


def attack_members(
    attack: Any, attacks: Mapping[str, AttackSchema], kwargs: Mapping[str, Any] | None = None
) -> tuple[str, ...]:
    """The attack names a marker's `attack=` stands for: one name, a list of names (worst
    case per sample over all of them), or a preset name (for a fixed preset, the members
    of the version= in `kwargs`)."""
    if isinstance(attack, str) and attack in PRESETS:
        preset = PRESETS[attack]
        version = preset_version(preset, attack, kwargs or {}) if preset.fixed else None
        return preset.members(version)
    names = tuple(attack) if isinstance(attack, (list, tuple)) else (attack,)
    if not names:
        raise RobustConfigError("attack=[]: name at least one attack")
    for name in names:
        if not isinstance(name, str) or name not in attacks:
            known = sorted([*attacks, *PRESETS])
            raise RobustConfigError(
                f"attack={name!r} is not a registered attack{suggest(str(name), known)}; "
                f"known attacks: {', '.join(known)}"
            )
    if len(set(names)) != len(names):
        raise RobustConfigError(f"attack={list(names)!r}: each attack may appear once")
    return names


def attack_params(
    members: Any, attacks: Mapping[str, AttackSchema], kwargs: Mapping[str, Any]
) -> dict[str, Param]:
    """Every attack-specific parameter the members accept (for a delegating attack such
    as transfer, also those of the attack it delegates to); for check="certify", which
    runs no attack, the certificate's own (method=)."""
    if kwargs.get("check") == "certify":
        return dict(CERTIFY_PARAMS)
    preset = fixed_preset(members)
    if preset is not None:
        return preset_params(preset, attack_members(members, attacks, kwargs), attacks)
    names = members if isinstance(members, tuple) else attack_members(members, attacks, kwargs)
    params: dict[str, Param] = {}
    for name in names:
        schema = attacks[name]
        params.update({k: v for k, v in schema.params.items() if k not in params})
        delegate = delegate_of(schema, kwargs, attacks)
        if delegate is not None:
            params.update({k: v for k, v in attacks[delegate].params.items() if k not in params})
    return params


def delegate_of(
    schema: AttackSchema, kwargs: Mapping[str, Any], attacks: Mapping[str, AttackSchema]
) -> str | None:
    """The attack a delegating attack (transfer) runs on its surrogate, checked to be a
    white-box eps-ball attack that delegates to nothing; None for any other attack."""
    if schema.delegate is None:
        return None
    inner = kwargs.get(schema.delegate, schema.params[schema.delegate].default)
    if (
        not isinstance(inner, str)
        or inner not in attacks
        or attacks[inner].delegate
        or not attacks[inner].eps_ball
    ):
        usable = sorted(a for a, s in attacks.items() if s.delegate is None and s.eps_ball)
        raise RobustConfigError(
            f"{schema.delegate}={inner!r}: name the white-box attack to run on the surrogate"
            f"{suggest(str(inner), usable)}; one of {', '.join(usable)}"
        )
    return inner
