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
from pytest_robust.engine import tensor_memo
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

    def versions(self) -> tuple[Any, ...]:
        """What torch tracks about the tensors the user handed over, with three reductions of
        their content (engine/tensor_memo.py): an in-place change bumps it, and a write
        through .data or a numpy view (no version bump) changes the reductions."""
        if isinstance(self.source, InMemory):
            return (tensor_memo.content_state(self.source.x), tensor_memo.content_state(self.y))
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
    given = x
    x, y = _checked(x[:limit], y[:limit], "")
    if x.shape[0] == 0:
        raise RobustConfigError("data: no samples")
    y = y.to(device=x.device)
    # Each row's digest and the value range: read once per tensor while it is unchanged.
    digests, low, high = tensor_memo.derived(given, ("rows", limit), lambda _: _scanned(x))
    fingerprint = lazy_data.data_fingerprint(digests, tuple(x.shape[1:]), x.dtype, y)
    return Samples(y, fingerprint, InMemory(x), tuple(x.shape[1:]), x.dtype, (low, high))


def _scanned(x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Each row's digest and the inputs' smallest and largest value."""
    low, high = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
    return lazy_data.row_digests(x), low, high


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
