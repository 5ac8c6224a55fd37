"""Profiles: named bundles of defaults for a whole run (--robust-profile, ini robust_profile).

A profile sits below everything the user wrote: marker > command line > ini > profile >
default (resolve.py). It may set the run settings in PROFILE_SETTINGS and attack parameters
(steps, restarts, queries, ...); an attack parameter reaches only the attacks that declare
it, so `steps=10` shortens pgd and leaves square (which counts `queries`) alone.

User-defined profiles are ini lines `NAME: key=value key=value`; every value is checked by
the same Param a marker's argument is, and an error names the profile and the key.
Pure: no torch, no pytest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from pytest_robust.errors import RobustConfigError
from pytest_robust.spec.schema import COMMON_PARAMS
from pytest_robust.spec.schema import AttackSchema

# Run settings a profile may set; the device belongs to the machine, not to a profile.
PROFILE_SETTINGS = ("max_samples", "batch_size", "sanity", "seed")

# Values as text, as in an ini file, so built-in and user profiles are read the same way.
BUILTIN_PROFILES: dict[str, dict[str, str]] = {
    # A pull-request gate: the first 200 samples, 10 gradient steps, 200 square queries.
    "quick": {"max_samples": "200", "steps": "10", "queries": "200"},
    # Today's behaviour, exactly: no value changed.
    "default": {},
    # A nightly gate: 3 random restarts, 5x the square queries, the full masking diagnosis.
    "thorough": {"restarts": "3", "queries": "5000", "sanity": "full"},
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Profile:
    """A chosen profile: its name and its settings (raw text, parsed by resolve())."""

    name: str
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Provenance of a value this profile gave, e.g. 'profile quick'."""
        return f"profile {self.name}"


def parse_profiles(lines: Iterable[str], where: str) -> dict[str, dict[str, str]]:
    """User profiles from ini lines `NAME: key=value key=value` (syntax only)."""
    profiles: dict[str, dict[str, str]] = {}
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        name, colon, rest = (part.strip() for part in line.partition(":"))
        if not colon or not _NAME.match(name):
            raise RobustConfigError(
                f"{where}: {line!r} is not a profile: write one per line as "
                "'NAME: key=value key=value', e.g. 'nightly: max_samples=2000 restarts=3'"
            )
        if name in BUILTIN_PROFILES or name in profiles:
            what = "a built-in profile" if name in BUILTIN_PROFILES else "defined twice"
            raise RobustConfigError(f"{where}: profile {name!r} is {what}; choose another name")
        settings: dict[str, str] = {}
        for item in rest.split():
            key, equals, value = item.partition("=")
            if not equals or not key or not value:
                raise RobustConfigError(
                    f"{where}: profile {name!r}: {item!r} is not key=value (no spaces around =)"
                )
            if key in settings:
                raise RobustConfigError(f"{where}: profile {name!r}: {key} is given twice")
            settings[key] = value
        profiles[name] = settings
    return profiles


def check_profile(
    name: str, settings: Mapping[str, str], attacks: Mapping[str, AttackSchema], where: str
) -> None:
    """Every key is a profile setting or a parameter of some attack, and every value passes
    that Param (each attack's, where several declare the key)."""
    label = f"{where}, profile {name!r}"
    tunable = _tunable(attacks)
    for key, value in settings.items():
        params = [schema.params[key] for schema in attacks.values() if key in schema.params]
        if key in PROFILE_SETTINGS:
            params = [COMMON_PARAMS[key]]
        elif key not in tunable:
            allowed = sorted(tunable)
            raise RobustConfigError(
                f"{label}: {key!r} cannot be set by a profile; a profile sets "
                f"{', '.join(PROFILE_SETTINGS)} or an attack parameter "
                f"({', '.join(allowed)})"
            )
        for param in params:
            param.parse(key, value, label, text=True)


def _tunable(attacks: Mapping[str, AttackSchema]) -> set[str]:
    """Attack parameters a profile may set: plain values. Not those that name other things
    (transfer's surrogate fixtures, the attack it runs `via`): they are the test's own."""
    delegates = {schema.delegate for schema in attacks.values()}
    return {
        key
        for schema in attacks.values()
        for key, param in schema.params.items()
        if param.kind in (int, float, bool, str) and key not in delegates | set(COMMON_PARAMS)
    }


def choose_profile(
    chosen: str | None,
    user: Mapping[str, Mapping[str, str]],
    attacks: Mapping[str, AttackSchema],
    where: str,
    chosen_where: str = "profile",
) -> Profile | None:
    """The profile named `chosen` (None: no profile; `chosen_where` says who named it),
    after checking every user profile."""
    for name, settings in user.items():
        check_profile(name, settings, attacks, where)
    if chosen is None:
        return None
    known = {**BUILTIN_PROFILES, **user}
    if chosen not in known:
        raise RobustConfigError(
            f"{chosen_where}: unknown profile {chosen!r}: the known profiles are {', '.join(known)}"
        )
    return Profile(chosen, dict(known[chosen]))
