"""Validation of a marker's (or evaluate()'s) arguments: an attack's, check="gradients"'s
and check="certify"'s.

Pure functions, no torch and no pytest. The marker validates here once, at collection,
so a bad argument is reported before anything runs; resolve.py then trusts the result.
What attack= stands for (members, presets) is attack_arg.py's; the expansion of list
arguments into cases is cases.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param
from pytest_robust.params import is_list_value
from pytest_robust.params import suggest
from pytest_robust.spec.attack_arg import attack_members
from pytest_robust.spec.attack_arg import attack_params
from pytest_robust.spec.attack_arg import delegate_of
from pytest_robust.spec.attack_arg import fixed_preset
from pytest_robust.spec.attack_arg import preset_params
from pytest_robust.spec.attack_arg import preset_version
from pytest_robust.spec.schema import CERTIFY_CHECK_ARGS
from pytest_robust.spec.schema import CERTIFY_METHODS
from pytest_robust.spec.schema import CERTIFY_PARAMS
from pytest_robust.spec.schema import CERTIFY_REFUSED
from pytest_robust.spec.schema import COMMON_PARAMS
from pytest_robust.spec.schema import GRADIENT_CHECK_ARGS
from pytest_robust.spec.schema import GRADIENT_THRESHOLDS
from pytest_robust.spec.schema import IBP_REFUSED
from pytest_robust.spec.schema import NOT_ON_MARKER
from pytest_robust.spec.schema import PRESETS
from pytest_robust.spec.schema import AttackSchema
from pytest_robust.spec.schema import Preset


def validate(
    kwargs: Mapping[str, Any],
    attacks: Mapping[str, AttackSchema],
    where: str = "marker",
) -> dict[str, Any]:
    """Check marker-style arguments (lists allowed) and return them normalised.

    `attacks` maps each registered attack name to its schema (its own parameters and
    the norms it supports); `where` is "marker" or "argument" (evaluate()). Raises
    RobustConfigError naming the argument and the fix.
    """
    check = COMMON_PARAMS["check"].parse("check", kwargs.get("check"))
    if check == "gradients":
        return _validate_gradient_check(kwargs, where)
    if check == "certify":
        return _validate_certify_check(kwargs, where)
    if "method" in kwargs:
        raise RobustConfigError(
            "method= belongs to check='certify' (a proven lower bound), e.g. "
            "check='certify', method='ibp', eps=0.05; an attack takes no method="
        )
    if "attack" not in kwargs:
        raise RobustConfigError(
            f"attack is missing: name one of {', '.join(sorted(attacks))}, for example "
            "attack='pgd' (or check='gradients' to measure input gradients without an attack)"
        )
    members = attack_members(kwargs["attack"], attacks, kwargs)
    preset = fixed_preset(kwargs["attack"])
    _refuse_gradient_thresholds(kwargs)
    if preset is not None and kwargs.get("target") is not None:
        raise RobustConfigError(
            f"target=: attack={kwargs['attack']!r} is untargeted, like the reference: its "
            "targeted members pick their own targets to find any wrong class. For a targeted "
            f"worst case, list targetable attacks: attack=['apgd-ce', 'square'], target=..."
        )
    if preset is not None:
        own = preset_params(preset, members, attacks)
    else:
        own = attack_params(members, attacks, kwargs)
    known = {**COMMON_PARAMS, **own}
    _check_names(members, attacks, kwargs, known, where)
    _check_threat_model(members, attacks, kwargs)
    if "eps" not in kwargs and attacks[members[0]].eps_ball:
        raise RobustConfigError(
            "eps is missing: give the perturbation budget in input units, e.g. eps=0.1 "
            "(for inputs in [0, 1]), or a list eps=[0.05, 0.1] for one test per value"
        )
    out, lengths = _parse_values(members, kwargs, known)
    if preset is not None:
        out["attack"] = kwargs["attack"]  # the preset's name: its members' settings go with it
    _default_norm(members, attacks, kwargs, out)
    _check_members(members, attacks, out)
    _check_list_lengths(lengths)
    return out


def _refuse_per_run_setting(name: str, where: str) -> None:
    if name in NOT_ON_MARKER and where == "marker":
        raise RobustConfigError(f"{name} cannot be set on the marker: {NOT_ON_MARKER[name]}")


def _refuse_gradient_thresholds(kwargs: Mapping[str, Any]) -> None:
    for name in GRADIENT_THRESHOLDS:
        if name in kwargs:
            raise RobustConfigError(
                f"{name}= is a threshold of check='gradients'; an attack is gated with "
                "min_acc, max_success, max_drop or max_confidence"
            )


def _check_names(
    members: tuple[str, ...],
    attacks: Mapping[str, AttackSchema],
    kwargs: Mapping[str, Any],
    known: Mapping[str, Param],
    where: str,
) -> None:
    """Every argument is one the attack (or combination) takes, or a named mistake."""
    attack = "+".join(members)
    preset = fixed_preset(kwargs["attack"])
    for name in kwargs:
        _refuse_per_run_setting(name, where)
        if (
            name not in known
            and preset is not None
            and any(name in attacks[m].params for m in members)
        ):
            raise RobustConfigError(_fixed_setting(str(kwargs["attack"]), preset, name, kwargs))
        if name not in known:
            others = [a for a, schema in attacks.items() if name in schema.params]
            others += [f"the {p!r} preset" for p, pr in PRESETS.items() if name in pr.params]
            hint = f"; it is a parameter of {', '.join(sorted(others))}" if others else ""
            raise RobustConfigError(
                f"{name}= is not an argument of attack {attack!r}{suggest(name, known)}{hint}"
            )


def _parse_values(
    members: tuple[str, ...], kwargs: Mapping[str, Any], known: Mapping[str, Param]
) -> tuple[dict[str, Any], dict[str, int]]:
    """Each value through its Param, a list argument element by element (zipped later);
    and the length of each list argument."""
    out: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for name, value in kwargs.items():
        param = known[name]
        if name == "attack":
            out[name] = members[0] if len(members) == 1 else members
        elif is_list_value(name, value, param):
            if len(value) == 0:
                raise RobustConfigError(f"{name}=[]: a list argument needs at least one value")
            out[name] = [param.parse(name, v) for v in value]
            lengths[name] = len(value)
        else:
            out[name] = param.parse(name, value)
    return out, lengths


def _check_list_lengths(lengths: Mapping[str, int]) -> None:
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{n} has {k}" for n, k in lengths.items())
        raise RobustConfigError(
            f"list arguments must have the same length ({described}); they are zipped into "
            "one test per position. Use pytest.mark.parametrize for a product"
        )


def _check_threat_model(
    members: tuple[str, ...], attacks: Mapping[str, AttackSchema], kwargs: Mapping[str, Any]
) -> None:
    """eps= and norm= belong to eps-ball attacks; the others (transform, noise) have their
    own parameters, and the two kinds cannot be combined into one worst case."""
    ball = [m for m in members if attacks[m].eps_ball]
    other = [m for m in members if not attacks[m].eps_ball]
    if ball and other:
        raise RobustConfigError(
            f"attack={list(members)!r}: {', '.join(other)} is not an eps-ball attack, so it "
            f"cannot share a worst case with {', '.join(ball)}; give it its own test"
        )
    if other:
        if kwargs.get("check") == "masking":
            raise RobustConfigError(
                f"check='masking' diagnoses gradient attacks in an eps-ball; attack "
                f"{other[0]!r} is not one. Drop check= (or run it on an eps-ball attack)"
            )
        for name in ("eps", "norm"):
            if name in kwargs:
                raise RobustConfigError(
                    f"{name}= does not apply to attack {other[0]!r}: its threat model is not "
                    f"an eps-ball but its own parameters (see docs/invariance.md); drop {name}="
                )


def _validate_gradient_check(kwargs: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"attack": ()}  # no attack, so no eps: the result's eps is None
    for name, value in kwargs.items():
        _refuse_per_run_setting(name, where)
        if name not in GRADIENT_CHECK_ARGS:
            raise RobustConfigError(
                f"{name}= does not apply to check='gradients', which measures input gradients "
                "at the clean inputs without attacking; its arguments are "
                f"{', '.join(GRADIENT_CHECK_ARGS)}. For the masking diagnosis of an attack use "
                "check='masking' with attack= and eps="
            )
        param = COMMON_PARAMS[name]
        if is_list_value(name, value, param):
            raise RobustConfigError(
                f"{name}={value!r}: check='gradients' takes no list arguments (one "
                "measurement per test)"
            )
        out[name] = param.parse(name, value)
    return out


def _validate_certify_check(kwargs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """check="certify": a budget, a method and accuracy thresholds; no attack settings.
    List arguments (eps=[...], min_acc=[...]) expand into one test each, as for attacks."""
    out: dict[str, Any] = {"attack": ()}  # no attack runs
    known = {**COMMON_PARAMS, **CERTIFY_PARAMS}
    for name in kwargs:
        _refuse_per_run_setting(name, where)
        if name in CERTIFY_CHECK_ARGS:
            continue
        reason = CERTIFY_REFUSED.get(name) or (
            f"it is not an argument of check='certify', which takes "
            f"{', '.join(a for a in CERTIFY_CHECK_ARGS if a != 'check')}"
        )
        raise RobustConfigError(f"{name}= does not apply to check='certify': {reason}")
    for name in ("method", "eps"):
        if name not in kwargs:
            raise RobustConfigError(
                f"{name} is missing: check='certify' needs method= (one of "
                f"{', '.join(map(repr, CERTIFY_METHODS))}) and eps= (the radius to prove), "
                "e.g. check='certify', method='ibp', eps=0.05"
            )
    parsed, lengths = _parse_values((), kwargs, known)
    out.update(parsed)
    if out["method"] is None or isinstance(out["method"], list):
        raise RobustConfigError(
            f"method={kwargs['method']!r}: name one method, one of "
            f"{', '.join(map(repr, CERTIFY_METHODS))} (a list of methods: one test each)"
        )
    _check_list_lengths(lengths)
    if out["method"] == "smoothing":
        _check_smoothing(kwargs, out, max(lengths.values(), default=1))
    else:
        for name in kwargs:
            if name in IBP_REFUSED:
                raise RobustConfigError(
                    f"{name}= does not apply to method={out['method']!r}: {IBP_REFUSED[name]}"
                )
    return out


def _check_smoothing(kwargs: Mapping[str, Any], out: dict[str, Any], cases: int) -> None:
    """method="smoothing": sigma given and > 0, an L2 ball, alpha in (0, 0.5), and each eps
    within the largest radius that n draws can certify."""
    if "sigma" not in kwargs:
        raise RobustConfigError(
            "sigma is missing: method='smoothing' needs the noise level, e.g. sigma=0.25 "
            "(the base model should be trained with that noise: defenses.gaussian_noise_training)"
        )
    out.setdefault("norm", "l2")
    for i in range(cases):
        case = {k: v[i] if isinstance(v, list) else v for k, v in out.items()}
        if case["norm"] != "l2":
            raise RobustConfigError(
                f"norm={case['norm']!r}: Gaussian smoothing certifies L2 balls; use norm='l2' "
                "(or method='ibp' for an L-inf box)"
            )
        if case["sigma"] is None or case["sigma"] <= 0:
            raise RobustConfigError(f"sigma={case['sigma']!r}: the noise level must be > 0")
        alpha = case.get("alpha", CERTIFY_PARAMS["alpha"].default)
        if not 0 < alpha < 0.5:
            raise RobustConfigError(
                f"alpha={alpha!r}: the probability that a certificate is wrong must be in "
                "(0, 0.5), e.g. alpha=0.001"
            )
        n = case.get("n", CERTIFY_PARAMS["n"].default)
        most = largest_radius(case["sigma"], n, alpha)
        if case["eps"] > most:
            raise RobustConfigError(
                f"eps={case['eps']:g} > {most:.3g}, the largest radius that n={n}, "
                f"alpha={alpha:g}, sigma={case['sigma']:g} can certify (every draw agreeing); "
                "raise n or sigma"
            )


def largest_radius(sigma: float, n: int, alpha: float) -> float:
    """sigma * PhiInverse(alpha ** (1 / n)): the radius when all n draws agree (the same
    formula as checks/smoothing.py, kept here so that validation needs no torch)."""
    p = alpha ** (1 / n)
    return sigma * NormalDist().inv_cdf(p) if p > 0.5 else 0.0


def _fixed_setting(attack: str, preset: Preset, name: str, kwargs: Mapping[str, Any]) -> str:
    """Why a member parameter is refused by a fixed preset, and the fix."""
    version = preset_version(preset, attack, kwargs)
    members = preset.configured(version)
    settings = "; ".join(
        f"{m} " + ", ".join(f"{k}={v!r}" for k, v in config.items()) for m, config in members
    )
    return (
        f"{name}= is not an argument of attack={attack!r}: it runs its members with fixed "
        f"settings (version={version!r}: {settings}), so that its numbers mean what the "
        f"reference's mean. For other settings, list the members instead: "
        f"attack={[m for m, _ in members]!r}, {name}=..."
    )


def _default_norm(
    members: tuple[str, ...],
    attacks: Mapping[str, AttackSchema],
    kwargs: Mapping[str, Any],
    out: dict[str, Any],
) -> None:
    """With no norm= given, an attack (or combination) that supports one norm only, not
    the default, runs in that norm: attack='cw' means L2 (issue 11). A norm the user gave
    is never replaced; an impossible one stays an error (_check_members)."""
    if "norm" in kwargs or not all(attacks[m].eps_ball for m in members):
        return
    common: set[str] | None = None
    for member in members:
        delegate = delegate_of(attacks[member], out, attacks)
        norms = set(attacks[delegate if delegate is not None else member].norms)
        common = norms if common is None else common & norms
    default = COMMON_PARAMS["norm"].default
    if common is not None and default not in common and len(common) == 1:
        (out["norm"],) = common


def _check_members(
    members: tuple[str, ...], attacks: Mapping[str, AttackSchema], out: Mapping[str, Any]
) -> None:
    for member in members:
        schema = attacks[member]
        delegate = delegate_of(schema, out, attacks)
        effective = attacks[delegate] if delegate is not None else schema
        if out.get("target") is not None and not effective.targetable:
            targetable = sorted(a for a, s in attacks.items() if s.targetable)
            raise RobustConfigError(
                f"target=: attack {member!r} cannot be targeted (it would silently run "
                f"untargeted); attacks that take target=: {', '.join(targetable)}"
            )
        norms = out.get("norm", COMMON_PARAMS["norm"].default)
        for norm in norms if isinstance(norms, list) else [norms]:
            if norm not in effective.norms:
                raise RobustConfigError(
                    f"norm={norm!r}: attack {member!r} supports {', '.join(effective.norms)}"
                )
