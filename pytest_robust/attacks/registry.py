"""Attack names: the registry behind `attack=` and the named presets.

`register_attack` is how every attack, built-in or the user's, becomes usable by name.
The built-in families register themselves when `pytest_robust.attacks` imports them (one
import line each in attacks/__init__.py). A preset is a name for a worst-case combination
of registered attacks; the spec expands it (`spec.PRESETS`), this module declares it.
"""

from __future__ import annotations

from typing import Any

from pytest_robust import registrars
from pytest_robust.attacks.base import Attack
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import suggest
from pytest_robust.spec import PRESETS
from pytest_robust.spec import Preset

_REGISTRY: dict[str, type[Attack]] = {}


def register_attack(cls: type[Attack], *, replace: bool = False) -> type[Attack]:
    """Register an Attack subclass under `cls.name`; usable as a class decorator."""
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise TypeError(f"register_attack needs an Attack subclass, got {cls!r}")
    if not cls.name or not isinstance(cls.name, str):
        raise TypeError(f"{cls.__qualname__} needs a class attribute name = '...'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls and not replace:
        raise ValueError(
            f"an attack named {cls.name!r} is already registered "
            f"({_REGISTRY[cls.name].__qualname__}); pass replace=True to override it"
        )
    for norm in cls.norms:
        if norm not in ("linf", "l2"):
            raise TypeError(f"{cls.__qualname__}.norms: unknown norm {norm!r}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_attack(name: str) -> None:
    """Remove the attack registered under `name` (no-op when there is none)."""
    _REGISTRY.pop(name, None)


def _run_deferred() -> None:
    """Registrations queued by plugins (registrars.py): run before any name is looked up."""
    for registrar in registrars.take():
        registrar(register_attack)


def get_attack(name: str) -> type[Attack]:
    _run_deferred()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RobustConfigError(
            f"attack={name!r} is not a registered attack{suggest(name, _REGISTRY)}; "
            f"known attacks: {', '.join(sorted(_REGISTRY))}"
        ) from None


def registered_attacks() -> dict[str, type[Attack]]:
    _run_deferred()
    return dict(_REGISTRY)


# attack="strong": the worst case per sample over these three with the user's parameters
# (docs/attacks.md says exactly what runs; it is the cheaper preset, not AutoAttack).
PRESETS["strong"] = Preset({"": (("apgd-ce", {}), ("apgd-dlr", {}), ("square", {}))})

# attack="autoattack": AutoAttack's members with the reference's settings (Croce & Hein
# 2020; fra31/auto-attack, run_standard_evaluation), each only on the samples still robust.
# Square counts its initial query, so 5001 queries are the reference's 5000 iterations.
AUTOATTACK_STANDARD: tuple[tuple[str, dict[str, Any]], ...] = (
    ("apgd-ce", {"steps": 100, "restarts": 1}),
    ("apgd-t", {"steps": 100, "restarts": 1, "n_target_classes": 9}),
    (
        "fab-t",
        {
            "steps": 100,
            "restarts": 1,
            "n_target_classes": 9,
            "alpha_max": 0.1,
            "eta": 1.05,
            "beta": 0.9,
            # A sample stops at its first point within eps: the verdict the reference's
            # FAB-T reaches, without shrinking the norm further.
            "stop_at_eps": True,
        },
    ),
    ("square", {"queries": 5001, "p_init": 0.8, "rescale_schedule": False}),
)
# version="rand", for randomised defences: APGD-CE and APGD-DLR, 100 steps, each gradient
# averaged over 20 draws of the model's randomness (EOT). The user's eot= reaches the
# members of either version (a standard run with eot is legal, as in the reference).
AUTOATTACK_RAND: tuple[tuple[str, dict[str, Any]], ...] = (
    ("apgd-ce", {"steps": 100, "restarts": 1, "eot": 20}),
    ("apgd-dlr", {"steps": 100, "restarts": 1, "eot": 20}),
)
PRESETS["autoattack"] = Preset(
    {"standard": AUTOATTACK_STANDARD, "rand": AUTOATTACK_RAND},
    default="standard",
    passes=("eot",),
    black_box_check=0.002,
)
