"""The input domain of a check: the data inside its bounds (one range, or per feature),
and the features a mask freezes, validated against one sample's shape with the fix."""

from __future__ import annotations

import decimal
from typing import Any

import torch

from pytest_robust.engine.data import Samples
from pytest_robust.errors import RobustConfigError


def check_bounds(
    samples: Samples,
    bounds: tuple[float, float],
    per_feature: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Inputs outside the bounds mean eps is in the wrong units: say so and how to fix it.
    `bounds`: the range; `per_feature`: the bounds of each feature, inside that range."""
    if per_feature is not None:
        _check_feature_bounds(samples, per_feature)
    low, high = bounds
    tol = 1e-6 * max(1.0, abs(low), abs(high))
    lo, hi = samples.value_range
    if lo >= low - tol and hi <= high + tol:
        return
    below = above = values = 0
    for _, x in samples.chunks():  # read again: only a data set in error pays it
        below, above = below + int((x < low - tol).sum()), above + int((x > high + tol).sum())
        values += x.numel()
    sides = []
    if below:
        sides.append(f"{below} below {low:g} (by up to {_shown(low - lo, 0.0)})")
    if above:
        sides.append(f"{above} above {high:g} (by up to {_shown(hi - high, 0.0)})")
    # Digits enough that the printed extremes differ from the bounds they break.
    shown_lo, shown_hi = _shown(lo, low), _shown(hi, high)
    # Suggested bounds are rounded outwards, so they do contain every input.
    wide_lo, wide_hi = _outward(min(lo, low), up=False), _outward(max(hi, high), up=True)
    slight = max(low - lo, hi - high) <= 1e-3 * (high - low)
    fixes = (
        f"if that is rounding (e.g. from a resize or a normalisation undone), clip the data: "
        f"x.clamp({low:g}, {high:g}); if the inputs really live in that range, pass "
        f"bounds=({wide_lo}, {wide_hi})"
        if slight
        else f"if your inputs really live in that range, pass bounds=({wide_lo}, {wide_hi}); "
        "if they are normalised (e.g. mean/std), feed raw inputs and put the normalisation "
        "inside the model: nn.Sequential(pytest_robust.Normalize(mean, std), model)"
    )
    raise RobustConfigError(
        f"data: inputs range over [{shown_lo}, {shown_hi}] but bounds=({low:g}, {high:g}): "
        f"{below + above} of {values} input values lie outside, {' and '.join(sides)}. "
        f"Attacks keep inputs inside the bounds and eps is in input units; {fixes}"
    )


def _shown(value: float, differ_from: float) -> str:
    """`value` with at least 4 significant digits and enough that it reads differently
    from `differ_from` (1.0001 is not shown as 1 next to a bound of 1)."""
    if value == differ_from:
        return f"{value:g}"
    for digits in range(4, 18):
        text = f"{value:.{digits}g}"
        if float(text) != differ_from:
            return text
    return repr(value)


def _outward(value: float, up: bool) -> str:
    """`value` rounded away from the data to 5 significant digits (a bound that holds it)."""
    rounding = decimal.ROUND_CEILING if up else decimal.ROUND_FLOOR
    rounded = decimal.Context(prec=5, rounding=rounding).create_decimal(value)
    return f"{float(rounded):g}"


def frozen_features(mask: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """mask= as a boolean tensor that broadcasts over one sample's `shape`: True where a
    feature may not be perturbed. Refused: values other than 0/1, a shape that does not
    broadcast, and a mask that freezes everything (most likely the opposite convention)."""
    tensor = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(mask)
    tensor = tensor.detach().to("cpu")
    example = "e.g. mask=torch.tensor([False, True, False]) for three columns, the second frozen"
    if tensor.dtype != torch.bool:
        if tensor.is_complex() or not bool(((tensor == 0) | (tensor == 1)).all()):
            raise RobustConfigError(
                f"mask= holds values other than 0 and 1 (dtype {tensor.dtype}); it must be "
                f"boolean, True where a feature may not be perturbed: {example}"
            )
        tensor = tensor == 1
    if not _broadcasts(tuple(tensor.shape), shape):
        raise RobustConfigError(
            f"mask= has shape {tuple(tensor.shape)}, which does not broadcast to one sample's "
            f"shape {shape}; give one value per feature (shape {shape}) or a shape that "
            f"broadcasts to it (per channel of an image: (C, 1, 1)); {example}"
        )
    if bool(tensor.all()):
        raise RobustConfigError(
            "mask= freezes every feature, so no input may be perturbed. True marks the "
            "features that may NOT change (unlike ART's mask, where 1 marks those to "
            "perturb): pass the inverse, mask=~mask"
        )
    return tensor


def feature_bounds(
    bounds: tuple[Any, Any], shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature bounds= (tensors, arrays or a number for one side) as two float64
    tensors that broadcast over one sample's `shape`, low <= high everywhere."""
    example = (
        "e.g. bounds=(torch.tensor([0.0, 0.0, -1.0]), torch.tensor([1.0, 100.0, 1.0])) for "
        "three columns"
    )
    low, high = (
        (b if isinstance(b, torch.Tensor) else torch.as_tensor(b)).detach().to("cpu", torch.float64)
        for b in bounds
    )
    for side, tensor in (("low", low), ("high", high)):
        given = tuple(tensor.shape)
        if not _broadcasts(given, shape):
            raise RobustConfigError(
                f"bounds=: the {side} bound has shape {given}, which does not broadcast to one "
                f"sample's shape {shape}; give one value per feature (shape {shape}) or a "
                f"shape that broadcasts to it (per channel of an image: (C, 1, 1)); {example}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise RobustConfigError(
                f"bounds=: the {side} bound holds a value that is not finite; every feature "
                f"needs a finite range (eps is in its units); {example}"
            )
    wrong = (low > high).expand(shape) if (low > high).dim() else (low > high)
    if bool(wrong.any()):
        first = [int(i) for i in wrong.nonzero()[0]]
        raise RobustConfigError(
            f"bounds=: low > high for {int(wrong.sum())} feature(s), the first at index "
            f"{first}; each feature needs low <= high; {example}"
        )
    if bool((low == high).all()):
        raise RobustConfigError(
            "bounds=: low == high for every feature, so no input may be perturbed; " + example
        )
    return low, high


def _check_feature_bounds(samples: Samples, bounds: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Every input value inside its feature's bounds, else where and by how much."""
    low, high = bounds
    tol = 1e-6 * max(1.0, float(low.abs().max()), float(high.abs().max()))
    outside: torch.Tensor | None = None
    lowest: torch.Tensor | None = None
    highest: torch.Tensor | None = None
    for _, x in samples.chunks():
        x = x.detach().to("cpu", torch.float64)
        count = ((x < low - tol) | (x > high + tol)).sum(0)
        outside = count if outside is None else outside + count
        lowest = x.amin(0) if lowest is None else torch.minimum(lowest, x.amin(0))
        highest = x.amax(0) if highest is None else torch.maximum(highest, x.amax(0))
    if outside is None or lowest is None or highest is None or not bool(outside.any()):
        return
    where = outside.nonzero()
    shown = []
    for index in where[:3]:
        i = tuple(int(v) for v in index)
        lo, hi = low.expand(outside.shape)[i], high.expand(outside.shape)[i]
        shown.append(
            f"feature {list(i)}: inputs in [{float(lowest[i]):.6g}, {float(highest[i]):.6g}], "
            f"bounds ({float(lo):.6g}, {float(hi):.6g})"
        )
    raise RobustConfigError(
        f"data: {int(outside.sum())} input values lie outside their feature's bounds, in "
        f"{len(where)} feature(s) ({'; '.join(shown)}{'; ...' if len(where) > 3 else ''}). "
        "Attacks keep every feature inside its bounds and eps is in input units: pass bounds "
        "that contain the data (e.g. the per-feature range of the data itself: "
        "bounds=(x.amin(0), x.amax(0)) of the whole population), or clip the data to them"
    )


def _broadcasts(given: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a tensor of shape `given` broadcasts to one sample's `shape`."""
    return len(given) <= len(shape) and all(
        g in (1, s) for g, s in zip(given[::-1], shape[::-1], strict=False)
    )
