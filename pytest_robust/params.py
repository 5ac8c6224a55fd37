"""Typed parameter declarations shared by the marker, the CLI/ini layer and the attacks.

Importable without torch or pytest: the marker validates its arguments with these before
any tensor exists.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_robust.errors import RobustConfigError

NORM_ALIASES = {
    "linf": "linf",
    "inf": "linf",
    "l_inf": "linf",
    "l2": "l2",
    "2": "l2",
}


@dataclass(frozen=True)
class Param:
    """One argument: its kind, default, allowed range and a one-line description."""

    # int, float, bool, str, or "norm" / "bounds" / "target" / "output" / "models" / "mask"
    kind: type | str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False  # None is an allowed value
    doc: str = ""
    choices: tuple[str, ...] = ()  # for str parameters: the allowed values

    def parse(self, name: str, value: Any, where: str = "", text: bool = False) -> Any:
        """Return `value` converted to this parameter's kind, or raise a clear error.

        With `text=True` (ini files and the command line, which give strings) strings are
        converted; a marker or evaluate() argument must have the parameter's own type.
        """
        src = f" ({where})" if where else ""
        if value is None:
            if self.optional:
                return None
            raise RobustConfigError(f"{name}=None{src}: {name} needs a value")
        if not text and isinstance(value, (str, bytes)) and self.kind in _TYPED_KINDS:
            raise RobustConfigError(self._string_problem(name, value, src))
        try:
            converted = self.convert(value)
        except (TypeError, ValueError) as exc:
            raise RobustConfigError(
                f"{name}={value!r}{src}: {self._expected()} ({exc})"
                if str(exc)
                else f"{name}={value!r}{src}: {self._expected()}"
            ) from None
        if self.choices and converted not in self.choices:
            raise RobustConfigError(
                f"{name}={value!r}{src}: must be one of {', '.join(map(repr, self.choices))}"
                f"{suggest(str(value), self.choices)}"
            )
        if isinstance(converted, float) and not math.isfinite(converted):
            raise RobustConfigError(f"{name}={value!r}{src}: must be a finite number")
        if self.minimum is not None and converted < self.minimum:
            raise RobustConfigError(f"{name}={value!r}{src}: must be >= {self.minimum:g}")
        if self.maximum is not None and converted > self.maximum:
            raise RobustConfigError(f"{name}={value!r}{src}: must be <= {self.maximum:g}")
        return converted

    def _string_problem(self, name: str, value: str | bytes, src: str) -> str:
        """'eps='0.1' is a str; pass a number: eps=0.1' (the fix, where the text parses)."""
        what = _TYPED_KINDS[self.kind]
        try:
            fixed = self.convert(value.decode() if isinstance(value, bytes) else value)
        except (TypeError, ValueError, UnicodeDecodeError):
            return f"{name}={value!r}{src} is a {type(value).__name__}; pass {what}"
        shown = f"{fixed:g}" if isinstance(fixed, float) else repr(fixed)
        if isinstance(fixed, tuple):
            shown = f"({fixed[0]:g}, {fixed[1]:g})"
        return f"{name}={value!r}{src} is a {type(value).__name__}; pass {what}: {name}={shown}"

    def _expected(self) -> str:
        return _EXPECTED.get(self.kind, str(self.kind))

    def convert(self, value: Any) -> Any:
        """`value` as this parameter's kind; TypeError/ValueError when it is not one
        (no range or choice check: parse() does those)."""
        converter = _CONVERTERS.get(self.kind)
        if converter is None:
            raise TypeError(f"unknown parameter kind {self.kind!r}")
        return converter(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise TypeError("")


def _to_int(value: Any) -> int:
    if isinstance(value, (bool, float)):
        raise TypeError("")
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("")
    return float(value)


def _to_str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("")
    return value


def _to_norm(value: Any) -> str:
    key = str(value).lower().replace("-", "_")
    if value == math.inf or key in ("inf", "infinity"):
        return "linf"
    if key not in NORM_ALIASES:
        raise ValueError("")
    return NORM_ALIASES[key]


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _to_target(value: Any) -> Any:
    if isinstance(value, str):
        if value not in ("least_likely", "random"):
            raise ValueError("")
        return value
    if _is_index(value) or callable(value) or hasattr(value, "dim"):  # a function or a tensor
        return value
    raise ValueError("")


def _to_models(value: Any) -> tuple[Any, ...]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all((isinstance(v, str) and v) or callable(v) for v in items):
        raise ValueError("")
    return tuple(items)


def _to_output(value: Any) -> Any:
    if _is_index(value) or (isinstance(value, str) and value) or callable(value):
        return value
    raise ValueError("")


def _number_or_array(value: Any) -> Any:
    return value if hasattr(value, "shape") else float(value)


def _to_mask(value: Any) -> Any:
    # A tensor or an array: its shape and values are checked against the data's samples
    # once they are read (engine/input_domain.py frozen_features). A list would expand into cases.
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise ValueError("")
    return value


def _to_bounds(value: Any) -> tuple[Any, Any]:
    if isinstance(value, str):
        value = value.replace("(", "").replace(")", "").split(",")
    low, high = value
    if hasattr(low, "shape") or hasattr(high, "shape"):
        # Per-feature bounds (tensors or arrays): checked against the samples' shape once
        # they are read (engine/input_domain.py feature_bounds).
        return (_number_or_array(low), _number_or_array(high))
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError("")
    return (low, high)


# Each kind's conversion, and what its error says a value must be.
_CONVERTERS: dict[type | str, Callable[[Any], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
    "norm": _to_norm,
    "target": _to_target,
    "models": _to_models,
    "output": _to_output,
    "bounds": _to_bounds,
    "mask": _to_mask,
}
_EXPECTED: dict[type | str, str] = {
    int: "must be an integer",
    float: "must be a number",
    bool: "must be True or False",
    str: "must be a string",
    "norm": "must be 'linf' or 'l2'",
    "bounds": "must be a pair (low, high) with low < high, for example bounds=(0, 1), or of "
    "tensors that broadcast to one sample's shape (per feature or per channel)",
    "mask": "must be a boolean tensor (or array) that broadcasts to one sample's shape, "
    "True where a feature may not be perturbed, e.g. mask=torch.tensor([False, True, False])",
    "target": "must be a class index, 'least_likely', 'random', a per-sample tensor of "
    "class indices, or a callable (logits, labels) -> targets",
    "models": "must name a fixture (or a list of fixtures, for an ensemble) that gives a "
    "model; in evaluate(), pass the model(s) themselves",
    "output": "must be a tuple index (output=0), a dict key or attribute name "
    "(output='logits'), or a callable taking the model's output and returning logits",
}


# Kinds whose values are numbers (or a pair of numbers): a string is never one of them
# except in ini files and on the command line.
_TYPED_KINDS: dict[type | str, str] = {
    int: "an integer",
    float: "a number",
    bool: "True or False",
    "bounds": "a (low, high) pair of numbers",
}


def suggest(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'min_acc'?)' for a near miss, else ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_list_value(name: str, value: Any, param: Param) -> bool:
    """True when `value` is a list that should expand into one case per element."""
    if param.kind == "models":
        return False  # a list of models is an ensemble, not one test per model
    if param.kind == "bounds":
        # bounds=(0, 1) is one value; bounds=[(0, 1), (-1, 1)] would be a list of values.
        return (
            isinstance(value, (list, tuple))
            and bool(value)
            and isinstance(value[0], Sequence)
            and not isinstance(value[0], str)
        )
    return isinstance(value, (list, tuple))
