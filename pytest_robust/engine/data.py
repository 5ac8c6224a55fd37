"""Any user data -> one (x, y) pair of tensors with a stable fingerprint.

Accepted: an (x, y) pair of tensors or arrays, a map-style Dataset (TensorDataset included)
whose items are (input, label), or a DataLoader yielding (inputs, labels) batches. The data
is read once (up to max_samples) and kept in the order read, so sample i is the same sample
in every test of a session.
"""

from __future__ import annotations

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
        raise RobustConfigError(
            f"data: inputs have dtype {x.dtype}; they must be floating point in the bounds "
            "(for 8-bit images: x.float() / 255 with the default bounds=(0, 1))"
        )
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


def check_bounds(samples: Samples, bounds: tuple[float, float]) -> None:
    """Inputs outside the bounds mean eps is in the wrong units: say so and how to fix it."""
    low, high = bounds
    tol = 1e-6 * max(1.0, abs(low), abs(high))
    lo, hi = float(samples.x.min()), float(samples.x.max())
    if lo < low - tol or hi > high + tol:
        raise RobustConfigError(
            f"data: inputs range over [{lo:.4g}, {hi:.4g}] but bounds={bounds}; "
            f"attacks keep inputs inside the bounds and eps is in input units. "
            f"If your inputs really live in that range, pass bounds=({lo:.4g}, {hi:.4g}); "
            "if they are normalised (e.g. mean/std), feed raw inputs and put the "
            "normalisation inside the model: nn.Sequential(pytest_robust.Normalize(mean, std), "
            "model)"
        )
