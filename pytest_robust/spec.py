"""What one robustness check runs: validation, list expansion and precedence.

Pure functions, no torch and no pytest: the marker, the plugin and `evaluate()` all go
through here, so a value is checked the same way wherever it comes from.

Precedence is marker > command line > ini > default. `max_samples` from the command line
or ini is a cap that a marker can lower but not raise; `device` is chosen per run
(command line, ini, or the `robust_device` fixture), never per marker.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param
from pytest_robust.params import is_list_value
from pytest_robust.params import suggest

THRESHOLDS = ("min_acc", "max_success", "max_drop", "max_confidence", "max_zero_frac", "min_median")
# Thresholds of check="gradients" (the others belong to attacks).
GRADIENT_THRESHOLDS = ("max_zero_frac", "min_median")
CHECKS = ("gradients", "masking")
SANITY_LEVELS = ("off", "cheap", "full")

# Arguments every attack takes. Attack-specific ones (steps, alpha, ...) are declared by
# each attack class in its `params` mapping.
COMMON_PARAMS: dict[str, Param] = {
    "attack": Param(str, doc="name of a registered attack, e.g. 'fgsm', 'pgd'"),
    "eps": Param(float, minimum=0.0, doc="perturbation budget, in the units of the inputs"),
    "norm": Param("norm", "linf", doc="'linf' or 'l2': the norm of the eps-ball"),
    "bounds": Param("bounds", (0.0, 1.0), doc="(low, high): the valid input range"),
    "min_acc": Param(float, None, 0.0, 1.0, optional=True, doc="fail if robust_acc < this"),
    "max_success": Param(float, None, 0.0, 1.0, optional=True, doc="fail if success_rate > this"),
    "max_drop": Param(
        float, None, 0.0, 1.0, optional=True, doc="fail if clean_acc - robust_acc > this"
    ),
    "max_confidence": Param(
        float,
        None,
        0.0,
        1.0,
        optional=True,
        doc="fail if any successful adversarial input is classified with more confidence",
    ),
    "max_zero_frac": Param(
        float,
        None,
        0.0,
        1.0,
        optional=True,
        doc="check='gradients': fail if more samples than this have an exactly zero gradient",
    ),
    "min_median": Param(
        float,
        None,
        minimum=0.0,
        optional=True,
        doc="check='gradients': fail if the median mean |input gradient| is below this",
    ),
    "check": Param(
        str,
        None,
        optional=True,
        choices=CHECKS,
        doc="'gradients' (input-gradient magnitudes, no attack) or 'masking' (the attack "
        "with the full gradient-masking diagnosis)",
    ),
    "allow_masking": Param(
        bool, False, doc="report masking flags without failing a passing threshold"
    ),
    "sanity": Param(
        str,
        "cheap",
        choices=SANITY_LEVELS,
        doc="'cheap' flags with every check, 'full' diagnosis, or 'off'",
    ),
    "strict": Param(
        bool,
        False,
        doc="a threshold passes only when the 95% interval clears it, not just the measured "
        "value (also --robust-strict, ini robust_strict)",
    ),
    "batch_size": Param(int, 256, minimum=1, doc="samples per forward/backward pass"),
    "max_samples": Param(int, None, minimum=1, optional=True, doc="evaluate the first N"),
    "seed": Param(int, 0, minimum=0, doc="seed for the attack's random numbers"),
    "device": Param(str, "auto", doc="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    "target": Param(
        "target", None, optional=True, doc="targeted mode: class, 'least_likely', 'random', ..."
    ),
    "output": Param(
        "output", None, optional=True, doc="how to get logits from a tuple/dict model output"
    ),
    "model": Param(str, "robust_model", doc="name of the fixture that gives the model"),
    "amp": Param(
        bool,
        False,
        doc="CUDA mixed precision for the attack; float32 re-verification of every result",
    ),
    "decide_early": Param(
        bool,
        False,
        doc="stop once the 95% Wilson interval of the samples so far settles every threshold",
    ),
    "data": Param(str, "robust_data", doc="name of the fixture that gives the data"),
}

# Named combinations of attacks (worst case per sample), filled in by attacks/__init__.py
# from the names it registers; documented in docs/attacks.md.
PRESETS: dict[str, tuple[str, ...]] = {}

# Settings that also have a command-line option and an ini key.
RUN_SETTINGS = ("device", "seed", "max_samples", "batch_size", "sanity")
NOT_ON_MARKER = {
    "device": "the device is chosen per run: use --robust-device, the robust_device ini key, "
    "or override the robust_device fixture",
}


class AttackSchema(Protocol):
    """What validation needs to know of an attack (Attack classes satisfy this)."""

    params: Mapping[str, Param]
    norms: tuple[str, ...]
    targetable: bool
    delegate: str | None
    eps_ball: bool


@dataclass(frozen=True)
class Case:
    """One expanded case of a marker: scalar arguments and a readable id."""

    kwargs: Mapping[str, Any]
    id: str


@dataclass(frozen=True)
class Spec:
    """A fully resolved check: every value known, and where each came from."""

    attack: str | tuple[str, ...]  # a tuple: worst case per sample; () for check="gradients"
    eps: float | None  # None for attacks that are not eps-ball attacks (eps_ball=False)
    norm: str
    bounds: tuple[float, float]
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

    @property
    def thresholds(self) -> dict[str, float]:
        return {name: value for name in THRESHOLDS if (value := getattr(self, name)) is not None}


def validate(
    kwargs: Mapping[str, Any],
    attacks: Mapping[str, AttackSchema],
    where: str = "marker",
) -> dict[str, Any]:
    """Check marker-style arguments (lists allowed) and return them normalised.

    `attacks` maps each registered attack name to its schema (its own parameters and
    the norms it supports). Raises
    RobustConfigError naming the argument and the fix.
    """
    if COMMON_PARAMS["check"].parse("check", kwargs.get("check")) == "gradients":
        return _validate_gradient_check(kwargs, where)
    if "attack" not in kwargs:
        raise RobustConfigError(
            f"attack is missing: name one of {', '.join(sorted(attacks))}, for example "
            "attack='pgd' (or check='gradients' to measure input gradients without an attack)"
        )
    members = attack_members(kwargs["attack"], attacks)
    attack = "+".join(members)
    for name in GRADIENT_THRESHOLDS:
        if name in kwargs:
            raise RobustConfigError(
                f"{name}= is a threshold of check='gradients'; an attack is gated with "
                "min_acc, max_success, max_drop or max_confidence"
            )
    known = {**COMMON_PARAMS, **attack_params(members, attacks, kwargs)}
    for name in kwargs:
        if name in NOT_ON_MARKER and where == "marker":
            raise RobustConfigError(f"{name} cannot be set on the marker: {NOT_ON_MARKER[name]}")
        if name not in known:
            others = [a for a, schema in attacks.items() if name in schema.params]
            hint = f"; it is a parameter of {', '.join(sorted(others))}" if others else ""
            raise RobustConfigError(
                f"{name}= is not an argument of attack {attack!r}{suggest(name, known)}{hint}"
            )
    _check_threat_model(members, attacks, kwargs)
    if "eps" not in kwargs and attacks[members[0]].eps_ball:
        raise RobustConfigError(
            "eps is missing: give the perturbation budget in input units, e.g. eps=0.1 "
            "(for inputs in [0, 1]), or a list eps=[0.05, 0.1] for one test per value"
        )

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
    _default_norm(members, attacks, kwargs, out)
    _check_members(members, attacks, out)
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{n} has {k}" for n, k in lengths.items())
        raise RobustConfigError(
            f"list arguments must have the same length ({described}); they are zipped into "
            "one test per position. Use pytest.mark.parametrize for a product"
        )
    return out


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


# What check="gradients" takes: it runs no attack, so no budget and no attack thresholds.
GRADIENT_CHECK_ARGS = (
    "check",
    *GRADIENT_THRESHOLDS,
    "allow_masking",
    "output",
    "bounds",
    "batch_size",
    "max_samples",
    "seed",
    "device",
    "model",
    "data",
)


def _validate_gradient_check(kwargs: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"attack": ()}  # no attack, so no eps: the result's eps is None
    for name, value in kwargs.items():
        if name in NOT_ON_MARKER and where == "marker":
            raise RobustConfigError(f"{name} cannot be set on the marker: {NOT_ON_MARKER[name]}")
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


def attack_members(attack: Any, attacks: Mapping[str, AttackSchema]) -> tuple[str, ...]:
    """The attack names a marker's `attack=` stands for: one name, a list of names (worst
    case per sample over all of them), or a preset name."""
    if isinstance(attack, str) and attack in PRESETS:
        return PRESETS[attack]
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
    as transfer, also those of the attack it delegates to)."""
    names = members if isinstance(members, tuple) else attack_members(members, attacks)
    params: dict[str, Param] = {}
    for name in names:
        schema = attacks[name]
        params.update({k: v for k, v in schema.params.items() if k not in params})
        delegate = _delegate(schema, kwargs, attacks)
        if delegate is not None:
            params.update({k: v for k, v in attacks[delegate].params.items() if k not in params})
    return params


def _delegate(
    schema: AttackSchema, kwargs: Mapping[str, Any], attacks: Mapping[str, AttackSchema]
) -> str | None:
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
        delegate = _delegate(attacks[member], out, attacks)
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
        delegate = _delegate(schema, out, attacks)
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


def _attack_id(attack: Any) -> str:
    if isinstance(attack, tuple):
        return "+".join(attack) or "gradients"  # () is check="gradients"
    return str(attack)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expand(kwargs: Mapping[str, Any]) -> list[Case]:
    """Zip list-valued arguments into cases. No list argument gives one case, id ''."""
    lists = {n: v for n, v in kwargs.items() if isinstance(v, list) and n != "attack"}
    if not lists:
        return [Case(dict(kwargs), "")]
    (length,) = {len(v) for v in lists.values()}
    shown = [n for n in lists if n not in THRESHOLDS] or list(lists)
    cases = []
    for i in range(length):
        case = {n: (v[i] if n in lists else v) for n, v in kwargs.items()}
        parts = [_attack_id(kwargs["attack"])] + [f"{n}={_format_value(case[n])}" for n in shown]
        cases.append(Case(case, "-".join(parts)))
    return cases


def resolve(
    case: Mapping[str, Any],
    attack_params: Mapping[str, Param],
    cli: Mapping[str, Any] | None = None,
    ini: Mapping[str, Any] | None = None,
    case_where: str = "marker",
) -> Spec:
    """Resolve one case into a Spec: marker > command line > ini > default.

    `cli` and `ini` hold the run settings (RUN_SETTINGS) that were given, as raw values;
    each is parsed here so that an error says where the bad value came from.
    """
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    ini = {k: v for k, v in (ini or {}).items() if v not in (None, "")}
    values: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    known = {**COMMON_PARAMS, **attack_params}
    for name, param in known.items():
        if name == "attack":  # already checked by validate(); may be a tuple of names
            values[name], provenance[name] = case[name], case_where
        elif name in case:
            values[name], provenance[name] = param.parse(name, case[name]), case_where
        elif name in cli:
            where = f"--robust-{name.replace('_', '-')}"
            values[name], provenance[name] = param.parse(name, cli[name], where, text=True), where
        elif name in ini:
            where = f"ini robust_{name}"
            values[name], provenance[name] = param.parse(name, ini[name], where, text=True), where
        else:
            values[name], provenance[name] = param.default, "default"
    # A run-wide sample cap can lower a marker's max_samples, never raise it.
    for source, where in ((cli, "--robust-max-samples"), (ini, "ini robust_max_samples")):
        if "max_samples" in source and provenance["max_samples"] == case_where:
            cap = COMMON_PARAMS["max_samples"].parse(
                "max_samples", source["max_samples"], where, text=True
            )
            if cap is not None and cap < values["max_samples"]:
                values["max_samples"], provenance["max_samples"] = cap, where
            break
    return Spec(
        attack=values.pop("attack"),
        eps=values.pop("eps"),
        norm=values.pop("norm"),
        bounds=values.pop("bounds"),
        target=values.pop("target"),
        output=values.pop("output"),
        min_acc=values.pop("min_acc"),
        max_success=values.pop("max_success"),
        max_drop=values.pop("max_drop"),
        max_confidence=values.pop("max_confidence"),
        max_zero_frac=values.pop("max_zero_frac"),
        min_median=values.pop("min_median"),
        check=values.pop("check"),
        allow_masking=values.pop("allow_masking"),
        sanity=values.pop("sanity"),
        batch_size=values.pop("batch_size"),
        max_samples=values.pop("max_samples"),
        seed=values.pop("seed"),
        device=values.pop("device"),
        model=values.pop("model"),
        data=values.pop("data"),
        strict=values.pop("strict"),
        decide_early=values.pop("decide_early"),
        amp=values.pop("amp"),
        attack_params=values,
        provenance=provenance,
    )


def derive_seed(base: int, key: str) -> int:
    """A per-test seed from the run's base seed and the test's id (order-independent)."""
    return (base + zlib.crc32(key.encode())) % (2**31)
