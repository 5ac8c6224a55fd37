"""Any user data -> Samples: labels, a stable fingerprint, and inputs read batch by batch.

Accepted: an (x, y) pair of tensors or arrays, a map-style Dataset (TensorDataset included)
whose items are (input, label), or a DataLoader yielding (inputs, labels) batches. Items,
batches or the data itself may instead be dicts (Hugging Face style), read by the keys
`Keys` names (the marker's inputs= and labels=); a dict with no keys named is an error
that lists the keys it has. Tensors
handed over are used as they are; a Dataset is read lazily by index and an unshuffled
DataLoader in order, batch by batch (engine/lazy_data.py), so memory grows with the batch,
not with the data. A shuffling DataLoader is read once and kept (up to max_samples).
"""

from __future__ import annotations

import decimal
import warnings
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any
from typing import Protocol

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset
from torch.utils.data import IterableDataset
from torch.utils.data import RandomSampler
from torch.utils.data import SequentialSampler
from torch.utils.data import TensorDataset

from pytest_robust.engine import lazy_data
from pytest_robust.engine.distributed import gather_range
from pytest_robust.engine.distributed import gather_rows
from pytest_robust.engine.distributed import shard
from pytest_robust.engine.distributed import world
from pytest_robust.errors import RobustConfigError
from pytest_robust.errors import ShuffledDataWarning

ACCEPTED = "an (x, y) pair of tensors, a torch Dataset of (input, label) items, or a DataLoader"

# (inputs key, labels key) of dict items/batches, as the marker's inputs= and labels= give
# them; (None, None): items and batches are (input, label) pairs.
Keys = tuple[str | None, str | None]
PAIRS: Keys = (None, None)


class Source(Protocol):
    def read(self, ids: torch.Tensor) -> torch.Tensor:
        """The inputs of the samples `ids` (ascending indices into the data)."""
        ...


class InMemory:
    """Inputs the user handed over as one tensor (an (x, y) pair, a TensorDataset)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def read(self, ids: torch.Tensor) -> torch.Tensor:
        return self.x[ids.to(self.x.device)]


class Samples:
    """The evaluation data: labels, fingerprint and value range at hand, inputs read from
    their source batch by batch (engine/lazy_data.py), in the order read, so sample i is
    the same sample in every test of a session."""

    def __init__(
        self,
        y: torch.Tensor,
        fingerprint: str,
        source: Source,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        value_range: tuple[float, float],
    ) -> None:
        self.y = y  # int64 labels
        self.fingerprint = fingerprint
        self.source = source
        self.shape = shape  # of one sample's input
        self.dtype = dtype
        self.value_range = value_range

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def inputs(self, ids: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The inputs of the samples `ids` (indices into the data), on the evaluation
        device in the dtype the model's weights have."""
        return self.source.read(ids).to(device=device, dtype=dtype)

    def chunks(self, size: int = lazy_data.CHUNK) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(ids, inputs) of every sample, `size` at a time, as the source gives them."""
        for start in range(0, len(self), size):
            ids = torch.arange(start, min(start + size, len(self)))
            yield ids, self.source.read(ids)

    @property
    def x(self) -> torch.Tensor:
        """Every input in one tensor: read in full, unless handed over as one."""
        if isinstance(self.source, InMemory):
            return self.source.x
        return torch.cat([inputs for _, inputs in self.chunks()])

    def versions(self) -> tuple[int, ...]:
        """Version counters of tensors the user handed over (an in-place change bumps them)."""
        if isinstance(self.source, InMemory):
            return (self.source.x._version, self.y._version)
        return ()


def as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise RobustConfigError(
            f"data: {what} is a {type(value).__name__}, not a tensor; data must be {ACCEPTED}"
        ) from None


def pair(item: Any, where: str, keys: Keys = PAIRS) -> tuple[Any, Any]:
    """(input, label) of one item or batch: a pair, or a dict read by `keys`."""
    if isinstance(item, Mapping):
        return _by_keys(item, where, keys)
    if keys != PAIRS:
        given = ", ".join(
            f"{name}={key!r}" for name, key in zip(("inputs", "labels"), keys, strict=True) if key
        )
        raise RobustConfigError(
            f"data: {given} name the keys of dict batches, but {where} is a "
            f"{type(item).__name__}, not a dict; drop {given.split('=')[0]}= (and labels=) "
            "for data of (input, label) pairs"
        )
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise RobustConfigError(
            f"data: {where} is a {type(item).__name__}"
            f"{f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''}; "
            "it must be an (input, label) pair"
        )
    return item[0], item[1]


def _by_keys(item: Mapping[Any, Any], where: str, keys: Keys) -> tuple[Any, Any]:
    """A dict item or batch read by the keys the marker names; without them, an error that
    lists the keys it has and says how to name them (the engine never guesses)."""
    seen = sorted(map(str, item))
    inputs, labels = keys
    if inputs is None or labels is None:
        label_key = next((k for k in seen if "label" in k.lower()), "labels")
        # The suggestion: a key holding floating-point values (the inputs are continuous).
        floats = [k for k in item if torch.is_tensor(item[k]) and item[k].is_floating_point()]
        input_key = str(floats[0]) if floats else next((k for k in seen if k != label_key), "x")
        missing = " and ".join(
            f"{n}=" for n, k in (("inputs", inputs), ("labels", labels)) if not k
        )
        raise RobustConfigError(
            f"data: {where} is a dict with keys {seen}, and {missing} not given: say which "
            f"keys hold the inputs and the labels. Pass inputs={inputs or input_key!r}, "
            f"labels={labels or label_key!r} (on the marker or to evaluate())"
        )
    for name, key in (("inputs", inputs), ("labels", labels)):
        if key not in item:
            raise RobustConfigError(
                f"data: {name}={key!r} is not a key of {where}; its keys are {seen}. "
                f"Pass {name}= one of them"
            )
    return item[inputs], item[labels]


def _read_batches(
    batches: Iterable[Any], limit: int | None, keys: Keys
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, count = [], [], 0
    for i, batch in enumerate(batches):
        x, y = pair(batch, f"batch {i} of the DataLoader", keys)
        xs.append(as_tensor(x, "a batch's inputs"))
        ys.append(as_tensor(y, "a batch's labels"))
        count += int(xs[-1].shape[0]) if xs[-1].dim() else 1
        if limit is not None and count >= limit:
            break
    if not xs:
        raise RobustConfigError("data: the DataLoader yielded no batches")
    return torch.cat(xs), torch.cat(ys)


def load_samples(data: Any, max_samples: int | None = None, keys: Keys = PAIRS) -> Samples:
    """Scan `data` (at most `max_samples` samples) and check its shapes and types; the
    inputs of a Dataset or an unshuffled DataLoader are read again batch by batch. `keys`
    name the inputs and labels of dict items or batches."""
    if isinstance(data, DataLoader):
        if _in_order(data):
            return _lazy_loader(data, max_samples, keys)
        if isinstance(data.sampler, RandomSampler):
            warnings.warn(
                "data: the DataLoader shuffles (shuffle=True), so sample i is a different "
                "sample on every run and per-sample results are not reproducible; "
                "use shuffle=False for evaluation data",
                ShuffledDataWarning,
                stacklevel=4,
            )
        # Read once and kept: its order is not the same on a second pass.
        return _in_memory(*_read_batches(data, max_samples, keys), max_samples)
    if isinstance(data, Mapping):  # one dict batch: {"pixel_values": x, "labels": y}
        x, y = pair(data, "the data", keys)
        return _in_memory(as_tensor(x, "the inputs"), as_tensor(y, "the labels"), max_samples)
    if keys != PAIRS and isinstance(data, (tuple, list, TensorDataset)):
        pair(data, "the data", keys)  # raises: inputs=/labels= name keys of dicts
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise RobustConfigError(
                f"data: the TensorDataset holds {len(data.tensors)} tensors; it must hold "
                "exactly two, inputs and labels"
            )
        return _in_memory(*data.tensors, max_samples)
    if isinstance(data, Dataset):
        return _lazy_dataset(data, max_samples, keys)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x = as_tensor(data[0], "the first element (inputs)")
        y = as_tensor(data[1], "the second element (labels)")
        return _in_memory(x, y, max_samples)
    raise RobustConfigError(f"data is a {type(data).__name__}; it must be {ACCEPTED}")


def _in_order(loader: DataLoader[Any]) -> bool:
    """A loader that gives the same samples in the same order on every pass (unless its
    dataset changes): sequential sampling or an iterable dataset."""
    return isinstance(loader.sampler, SequentialSampler) or isinstance(
        loader.dataset, IterableDataset
    )


def _in_memory(x: torch.Tensor, y: torch.Tensor, limit: int | None) -> Samples:
    x, y = _checked(x[:limit], y[:limit], "")
    if x.shape[0] == 0:
        raise RobustConfigError("data: no samples")
    y = y.to(device=x.device)
    low, high = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    fingerprint = lazy_data.data_fingerprint(
        lazy_data.row_digests(x), tuple(x.shape[1:]), x.dtype, y
    )
    return Samples(y, fingerprint, InMemory(x), tuple(x.shape[1:]), x.dtype, (low, high))


def _lazy_dataset(data: Dataset[Any], limit: int | None, keys: Keys) -> Samples:
    try:
        size = len(data)  # type: ignore[arg-type]
    except TypeError:
        raise RobustConfigError(
            "data: the Dataset has no len(); wrap an iterable dataset in a DataLoader"
        ) from None
    size = size if limit is None else min(size, limit)
    if size <= 0:
        raise RobustConfigError("data: the Dataset is empty")
    rank, world_size = world()
    first, stop = shard(size, rank, world_size)
    scan, buffer = lazy_data.Scan(), None
    for start in range(first, stop, lazy_data.CHUNK):
        indices = list(range(start, min(start + lazy_data.CHUNK, stop)))
        x, y = lazy_data.read_items(data, indices, _checked, buffer, keys)
        scan.add(x, y, f"items {indices[0]}..{indices[-1]} of the Dataset")
        buffer = x if buffer is None else buffer
    if scan.shape is None:  # an empty shard: item 0 tells the shape and dtype
        x, _ = lazy_data.read_items(data, [0], _checked, keys=keys)
        scan.shape, scan.dtype = tuple(x.shape[1:]), x.dtype
    assert scan.dtype is not None
    y = _gathered(scan.ys, size, first, torch.int64)
    digests = _gathered(scan.digests, size, first, torch.uint8, (16,))
    low, high = gather_range(scan.low, scan.high) if world_size > 1 else (scan.low, scan.high)
    fingerprint = lazy_data.data_fingerprint(digests, scan.shape, scan.dtype, y)
    source = lazy_data.LazyDataset(data, _checked, digests, keys)
    return Samples(y, fingerprint, source, scan.shape, scan.dtype, (low, high))


def _gathered(
    parts: list[torch.Tensor], size: int, first: int, dtype: torch.dtype, row: tuple[int, ...] = ()
) -> torch.Tensor:
    """This rank's rows (from `first`) in a tensor of all `size` rows; under
    torch.distributed, the other ranks' rows filled in."""
    full = torch.zeros((size, *row), dtype=dtype)
    mine = torch.cat(parts) if parts else full[:0]
    full[first : first + len(mine)] = mine
    return gather_rows(full) if world()[1] > 1 else full


def _lazy_loader(loader: DataLoader[Any], limit: int | None, keys: Keys) -> Samples:
    scan = lazy_data.Scan()
    for i, batch in enumerate(loader):
        x, y = pair(batch, f"batch {i} of the DataLoader", keys)
        x, y = _checked(as_tensor(x, "a batch's inputs"), as_tensor(y, "a batch's labels"), "")
        if limit is not None:
            x, y = x[: limit - scan.count], y[: limit - scan.count]
        scan.add(x, y, f"batch {i} of the DataLoader")
        if limit is not None and scan.count >= limit:
            break
    if scan.shape is None:
        raise RobustConfigError("data: the DataLoader yielded no batches")
    if scan.count == 0:
        raise RobustConfigError("data: no samples")
    assert scan.dtype is not None
    y, digests = torch.cat(scan.ys), torch.cat(scan.digests)
    fingerprint = lazy_data.data_fingerprint(digests, scan.shape, scan.dtype, y)
    source = lazy_data.LazyLoader(loader, _checked, digests, keys)
    return Samples(y, fingerprint, source, scan.shape, scan.dtype, (scan.low, scan.high))


def _checked(x: torch.Tensor, y: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and int64 labels, after checking their shapes and types."""
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
            f"data: {x.shape[0]} inputs but {y.shape[0]} labels{f' in {where}' if where else ''}"
            "; they must match"
        )
    return x, y.to(dtype=torch.int64)


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
    given = tuple(tensor.shape)
    fits = len(given) <= len(shape) and all(
        g in (1, s) for g, s in zip(given[::-1], shape[::-1], strict=False)
    )
    if not fits:
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
        fits = len(given) <= len(shape) and all(
            g in (1, s) for g, s in zip(given[::-1], shape[::-1], strict=False)
        )
        if not fits:
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
