"""Any user data -> one (x, y) pair of tensors with a stable fingerprint.

Accepted: an (x, y) pair of tensors or arrays, a map-style Dataset (TensorDataset included)
whose items are (input, label), or a DataLoader yielding (inputs, labels) batches. The data
is read once (up to max_samples) and kept in the order read, so sample i is the same sample
in every test of a session.
"""

from __future__ import annotations

import decimal
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset
from torch.utils.data import RandomSampler
from torch.utils.data import TensorDataset

from pytest_robust.engine.fingerprint import tensors_fingerprint
from pytest_robust.errors import RobustConfigError
from pytest_robust.errors import ShuffledDataWarning

ACCEPTED = "an (x, y) pair of tensors, a torch Dataset of (input, label) items, or a DataLoader"


@dataclass(frozen=True)
class Samples:
    x: torch.Tensor  # inputs, on the device the user gave them
    y: torch.Tensor  # int64 labels, same device as x
    fingerprint: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def inputs(self, ids: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The inputs of the samples `ids` (indices into the data), on the evaluation
        device in the dtype the model's weights have."""
        return self.x[ids.to(self.x.device)].to(device=device, dtype=dtype)


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise RobustConfigError(
            f"data: {what} is a {type(value).__name__}, not a tensor; data must be {ACCEPTED}"
        ) from None


def _pair(item: Any, where: str) -> tuple[Any, Any]:
    if isinstance(item, dict):
        raise RobustConfigError(
            f"data: {where} is a dict with keys {sorted(item)}; it must be an (input, label) "
            "pair. Wrap the dataset so that it returns (x, y)"
        )
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise RobustConfigError(
            f"data: {where} is a {type(item).__name__}"
            f"{f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''}; "
            "it must be an (input, label) pair"
        )
    return item[0], item[1]


def _read_batches(batches: Iterable[Any], limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, count = [], [], 0
    for i, batch in enumerate(batches):
        x, y = _pair(batch, f"batch {i} of the DataLoader")
        xs.append(_as_tensor(x, "a batch's inputs"))
        ys.append(_as_tensor(y, "a batch's labels"))
        count += int(xs[-1].shape[0]) if xs[-1].dim() else 1
        if limit is not None and count >= limit:
            break
    if not xs:
        raise RobustConfigError("data: the DataLoader yielded no batches")
    return torch.cat(xs), torch.cat(ys)


def _read(data: Any, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            warnings.warn(
                "data: the DataLoader shuffles (shuffle=True), so sample i is a different "
                "sample on every run and per-sample results are not reproducible; "
                "use shuffle=False for evaluation data",
                ShuffledDataWarning,
                stacklevel=4,
            )
        return _read_batches(data, limit)
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise RobustConfigError(
                f"data: the TensorDataset holds {len(data.tensors)} tensors; it must hold "
                "exactly two, inputs and labels"
            )
        x, y = data.tensors
        return x[:limit], y[:limit]
    if isinstance(data, Dataset):
        try:
            size = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise RobustConfigError(
                "data: the Dataset has no len(); wrap an iterable dataset in a DataLoader"
            ) from None
        size = size if limit is None else min(size, limit)
        items = [_pair(data[i], f"item {i} of the Dataset") for i in range(size)]
        if not items:
            raise RobustConfigError("data: the Dataset is empty")
        xs = [_as_tensor(x, f"input of item {i}") for i, (x, _) in enumerate(items)]
        ys = [_as_tensor(y, f"label of item {i}") for i, (_, y) in enumerate(items)]
        return torch.stack(xs), torch.stack(ys).reshape(-1)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x = _as_tensor(data[0], "the first element (inputs)")
        y = _as_tensor(data[1], "the second element (labels)")
        return x[:limit], y[:limit]
    raise RobustConfigError(f"data is a {type(data).__name__}; it must be {ACCEPTED}")


def load_samples(data: Any, max_samples: int | None = None) -> Samples:
    """Read `data` (at most `max_samples` samples) and check its shapes and types."""
    x, y = _read(data, max_samples)
    if max_samples is not None:
        x, y = x[:max_samples], y[:max_samples]
    if not x.is_floating_point():
        raise RobustConfigError(_not_float(x))
    if x.dim() < 2:
        raise RobustConfigError(
            f"data: inputs have shape {tuple(x.shape)}; they need a batch dimension first, "
            "(N, features...)"
        )
    if y.is_floating_point() or y.dtype == torch.bool:
        raise RobustConfigError(
            f"data: labels have dtype {y.dtype}; they must be integer class indices "
            "(for one-hot labels use y.argmax(1))"
        )
    if y.dim() != 1:
        raise RobustConfigError(
            f"data: labels have shape {tuple(y.shape)}; they must be one class index per "
            "sample, shape (N,) (for one-hot labels use y.argmax(1))"
        )
    if x.shape[0] != y.shape[0]:
        raise RobustConfigError(
            f"data: {x.shape[0]} inputs but {y.shape[0]} labels; they must match"
        )
    if x.shape[0] == 0:
        raise RobustConfigError("data: no samples")
    y = y.to(device=x.device, dtype=torch.int64)
    return Samples(x, y, tensors_fingerprint(x, y))


def _not_float(x: torch.Tensor) -> str:
    """What to do with inputs that are not floating point: 8-bit images scale, token ids
    (integers indexing a vocabulary) have no continuous neighbourhood to attack."""
    need = (
        f"data: inputs have dtype {x.dtype}; the attacks move inputs continuously inside "
        "the bounds, so they need floating-point inputs in a continuous input space"
    )
    images = "for 8-bit images, x.float() / 255 with the default bounds=(0, 1)"
    tokens = (
        "for token ids (a text model), attack its embeddings instead: give the check a model "
        "that takes embeddings and the embedded inputs, as in 'Text models: attack the "
        "embedding space' in docs/attacks.md"
    )
    if x.dtype == torch.uint8:
        return f"{need}: {images} ({tokens})"
    return f"{need}: {tokens}; {images}"


def check_bounds(samples: Samples, bounds: tuple[float, float]) -> None:
    """Inputs outside the bounds mean eps is in the wrong units: say so and how to fix it."""
    low, high = bounds
    tol = 1e-6 * max(1.0, abs(low), abs(high))
    x = samples.x
    lo, hi = float(x.min()), float(x.max())
    if lo >= low - tol and hi <= high + tol:
        return
    below, above = int((x < low - tol).sum()), int((x > high + tol).sum())
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
        f"{below + above} of {x.numel()} input values lie outside, {' and '.join(sides)}. "
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
