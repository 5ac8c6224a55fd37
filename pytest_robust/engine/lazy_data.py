"""Data read batch by batch: a map-style Dataset read lazily by index, an unshuffled
DataLoader read in order (its workers, collate_fn and pinning stay the user's).

A first scan reads every sample once, in chunks, and keeps only what is small: the labels,
a 16-byte digest of each sample's input, the value range; the data's fingerprint is made of
them. Every later pass reads the inputs again as it needs them, and checks each sample
against its digest: data that changes between two reads (random augmentation, a Dataset
changed in place) is refused rather than evaluated inconsistently. Memory grows with the
batch, not with the data set (benchmarks/bench_memory.py).

Under torch.distributed each rank scans and reads only its own shard of a Dataset; the
labels, digests and range are then all-gathered, so every rank has the same fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset

from pytest_robust.errors import RobustConfigError

CHUNK = 256  # samples per read of a Dataset during the scan

# (inputs, labels) of one chunk, checked (engine/data.py's rules); where: for messages.
Check = Callable[[Any, Any, str], tuple[torch.Tensor, torch.Tensor]]


def row_digests(x: torch.Tensor) -> torch.Tensor:
    """A 16-byte blake2b digest of each sample (row) of x, as an (N, 16) uint8 tensor."""
    t = x.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        t = t.view(torch.int16)
    rows = t.numpy().reshape(len(t), -1)
    out = torch.empty((len(t), 16), dtype=torch.uint8)
    view = out.numpy()
    for i, row in enumerate(rows):  # each row hashed in place: no copy of its bytes
        view[i] = memoryview(hashlib.blake2b(row.data, digest_size=16).digest())
    return out


def data_fingerprint(
    digests: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype, y: torch.Tensor
) -> str:
    """The data's fingerprint, from each sample's digest, the inputs' shape and dtype and
    the labels: the same for every form of the same data, and on every rank."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{len(digests)}|{shape}|{dtype}|".encode())
    digest.update(digests.contiguous().numpy().tobytes())
    digest.update(y.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


class Scan:
    """What the first scan keeps: labels, digests and value range of the rows read."""

    def __init__(self) -> None:
        self.ys: list[torch.Tensor] = []
        self.digests: list[torch.Tensor] = []
        self.low, self.high = float("inf"), float("-inf")
        self.shape: tuple[int, ...] | None = None
        self.dtype: torch.dtype | None = None
        self.count = 0

    def add(self, x: torch.Tensor, y: torch.Tensor, where: str) -> None:
        if self.shape is None:
            self.shape, self.dtype = tuple(x.shape[1:]), x.dtype
        elif tuple(x.shape[1:]) != self.shape or x.dtype != self.dtype:
            raise RobustConfigError(
                f"data: {where} has inputs of shape {tuple(x.shape[1:])} and dtype {x.dtype}, "
                f"but the first ones have {self.shape} and {self.dtype}; every sample must "
                "have the same shape and dtype"
            )
        self.ys.append(y.to("cpu", torch.int64))
        self.digests.append(row_digests(x))
        if x.numel():
            self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))
        self.count += len(x)


class LazyDataset:
    """Inputs of a map-style Dataset, read by index when asked for."""

    def __init__(
        self,
        dataset: Dataset[Any],
        check: Check,
        digests: torch.Tensor,
        keys: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.dataset, self.check, self.digests, self.keys = dataset, check, digests, keys

    def read(self, ids: torch.Tensor) -> torch.Tensor:
        x, _ = read_items(self.dataset, [int(i) for i in ids], self.check, keys=self.keys)
        verify(x, ids, self.digests)
        return x


def read_items(
    dataset: Dataset[Any],
    indices: list[int],
    check: Check,
    out: torch.Tensor | None = None,
    keys: tuple[str | None, str | None] = (None, None),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The items `indices` of the Dataset, stacked (into `out` when they fit: the scan
    reuses one buffer, so that no chunk-sized block is allocated per chunk) and checked."""
    from pytest_robust.engine.data import as_tensor
    from pytest_robust.engine.data import pair

    items = [pair(dataset[i], f"item {i} of the Dataset", keys) for i in indices]
    xs = [as_tensor(x, f"input of item {i}") for i, (x, _) in zip(indices, items, strict=True)]
    ys = [as_tensor(y, f"label of item {i}") for i, (_, y) in zip(indices, items, strict=True)]
    where = f"items {indices[0]}..{indices[-1]} of the Dataset"
    fits = out is not None and len(xs) <= len(out)
    if (
        out is not None
        and fits
        and all(x.shape == out.shape[1:] and x.dtype == out.dtype for x in xs)
    ):
        stacked = torch.stack(xs, out=out[: len(xs)])
    else:
        stacked = torch.stack(xs)
    return check(stacked, torch.stack(ys).reshape(-1), where)


def verify(x: torch.Tensor, ids: torch.Tensor, digests: torch.Tensor) -> None:
    """Refuse inputs that differ from what the first scan read."""
    changed = (row_digests(x) != digests[ids.cpu()]).any(dim=1)
    if bool(changed.any()):
        first = int(ids.cpu()[changed][0])
        raise RobustConfigError(
            f"data: sample {first} read again is not the sample read first ({int(changed.sum())} "
            f"of {len(ids)} samples differ): the data is read batch by batch, once per pass, and "
            "must give the same inputs every time. Drop random transforms (augmentation) from "
            "evaluation data, do not change it during a check, or pass an (x, y) pair of tensors"
        )


class LazyLoader:
    """Inputs of an unshuffled DataLoader, read in order; a request for samples before
    those at hand starts the loader again. Only a window of rows is kept: from the first
    sample of the latest request to the end of the last batch read."""

    def __init__(
        self,
        loader: DataLoader[Any],
        check: Check,
        digests: torch.Tensor,
        keys: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.loader, self.check, self.digests, self.keys = loader, check, digests, keys
        self.batches: Iterator[Any] | None = None
        # The rows at hand are samples [start, end) of the data.
        self.start = self.end = 0
        self.window: torch.Tensor | None = None
        self.passes = 0  # how many times the loader was started

    def read(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.cpu()
        low, high = int(ids.min()), int(ids.max()) + 1
        if self.batches is None or low < self.start:
            self.batches, self.start, self.end, self.window = iter(self.loader), 0, 0, None
            self.passes += 1
        while self.end < high:
            x = self._next_batch()
            if self.window is None:
                self.window, self.start = x, self.end
            else:
                self.window = torch.cat([self.window, x])
            self.end += len(x)
            cut = min(max(0, low - self.start), len(self.window))  # rows no longer needed
            self.window, self.start = self.window[cut:], self.start + cut
        assert self.window is not None
        return self.window[ids - self.start]

    def _next_batch(self) -> torch.Tensor:
        """The next batch's inputs (rows end, end+1, ...), checked against the scan."""
        from pytest_robust.engine.data import as_tensor
        from pytest_robust.engine.data import pair

        assert self.batches is not None
        try:
            batch = next(self.batches)
        except StopIteration:
            raise RobustConfigError(
                f"data: the DataLoader yielded fewer samples ({self.end}) on a second pass "
                "than on the first; evaluation data must give the same samples every pass"
            ) from None
        x, y = pair(batch, "a batch of the DataLoader", self.keys)
        x, _ = self.check(as_tensor(x, "a batch's inputs"), as_tensor(y, "a batch's labels"), "")
        x = x[: len(self.digests) - self.end]
        verify(x, torch.arange(self.end, self.end + len(x)), self.digests)
        return x
