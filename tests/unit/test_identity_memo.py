"""The model identity reads the weights once per tensor object: a second check on an
unchanged model hashes no weight, and every change torch tracks (version counter, storage
swap, new or replaced tensors, module tree, attributes) gives the identity a fresh
description equal to the one a first reading gives (engine/tensor_memo.py)."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import cast

import numpy as np
import pytest
import torch
from torch import nn

from pytest_robust import EvaluationCache
from pytest_robust import evaluate
from pytest_robust.engine import fingerprint
from pytest_robust.engine import tensor_memo
from pytest_robust.engine.fingerprint import identify


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the tensors whose bytes the fingerprint module reads."""
    count = [0]
    original = fingerprint.tensor_bytes

    def counted(tensor: torch.Tensor) -> tuple[str, Any]:
        count[0] += 1
        return original(tensor)

    monkeypatch.setattr(fingerprint, "tensor_bytes", counted)
    yield count


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 3))


def fresh(model: nn.Module) -> tuple[str, str | None]:
    """The identity as a first reading gives it (nothing remembered)."""
    tensor_memo.forget_all()
    return identify(model)


def test_the_second_identity_of_an_unchanged_model_reads_no_weight(reads):
    model = small_net()
    tensor_memo.forget_all()
    first = identify(model)
    tensors = len([*model.parameters(), *model.buffers()])
    assert reads[0] == tensors
    assert identify(model) == first
    assert reads[0] == tensors  # nothing read again
    assert fresh(model) == first


def _no_grad(change: Callable[[nn.Sequential], Any]) -> Callable[[nn.Sequential], None]:
    def run(model: nn.Sequential) -> None:
        with torch.no_grad():
            change(model)

    return run


def _optimizer_step(model: nn.Sequential) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.rand(2, 1, 8, 8)).sum().backward()
    optimizer.step()


def _train_forward(model: nn.Sequential) -> None:  # BatchNorm's running statistics move
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 1, 8, 8))
    model.eval()


# small_net's layers with their own types (indexing an nn.Sequential gives an nn.Module).
def _conv(model: nn.Sequential) -> nn.Conv2d:
    return cast(nn.Conv2d, model[0])


def _norm(model: nn.Sequential) -> nn.BatchNorm2d:
    return cast(nn.BatchNorm2d, model[1])


def _linear(model: nn.Sequential) -> nn.Linear:
    return cast(nn.Linear, model[3])


def _swap_storage(model: nn.Sequential) -> None:
    _linear(model).weight.data = _linear(model).weight.detach() * 2


def _load_state(model: nn.Sequential) -> None:
    state = {name: value * 0.5 for name, value in model.state_dict().items()}
    model.load_state_dict(state)


def _replace_buffer(model: nn.Sequential) -> None:
    _norm(model).running_var = torch.full((4,), 3.0)


def _new_parameter(model: nn.Sequential) -> None:
    model[3].extra = nn.Parameter(torch.zeros(1))


def _discard(_: object) -> None:
    """The in-place operations return their tensor; the changes return nothing."""


CHANGES: dict[str, Callable[[nn.Sequential], None]] = {
    "mul_ under no_grad": _no_grad(lambda m: _conv(m).weight.mul_(2)),
    "one element of a view": _no_grad(lambda m: _linear(m).weight[1, 7].fill_(9.0)),
    "copy_ into a bias": _no_grad(lambda m: _linear(m).bias.copy_(torch.ones(3))),
    "buffer changed in place": _no_grad(
        lambda m: cast(torch.Tensor, _norm(m).running_mean).add_(1.0)
    ),
    "optimizer step": _optimizer_step,
    "train-mode forward (BatchNorm statistics)": _train_forward,
    "storage swapped through .data =": _swap_storage,
    # .data has its own version counter: only the content checksum sees these.
    "mul_ through .data": lambda m: _discard(_conv(m).weight.data.mul_(2)),
    "pruning through .data": lambda m: _discard(_linear(m).weight.data[0].zero_()),
    "numpy view": lambda m: _linear(m).bias.detach().numpy().__setitem__(0, 7.0),
    "load_state_dict": _load_state,
    "buffer replaced": _replace_buffer,
    "parameter added": _new_parameter,
    "attribute changed": lambda m: setattr(m[0], "padding", (1, 1)),
    "module swapped": lambda m: m.__setitem__(2, nn.Flatten(1)),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_tracked_change_gives_the_identity_a_first_reading_gives(change):
    model = small_net()
    before = identify(model)
    assert identify(model) == before
    CHANGES[change](model)
    after = identify(model)
    if change != "module swapped":  # nn.Flatten(1) is the same module as nn.Flatten()
        assert after[1] != before[1]
    assert after == fresh(model)


def test_inference_tensors_are_read_every_time(reads):
    with torch.inference_mode():
        model = small_net()
    identify(model)
    first = reads[0]
    identify(model)
    assert reads[0] == 2 * first > 0


def test_a_second_check_on_the_same_model_reads_no_weight(reads, digits_cnn, digits_data):
    cache = EvaluationCache()
    gate: dict[str, Any] = {"attack": "fgsm", "eps": 0.05, "max_samples": 40}
    one = evaluate(digits_cnn, digits_data, cache=cache, **gate)
    read = reads[0]
    two = evaluate(digits_cnn, digits_data, cache=cache, **gate)
    assert reads[0] == read  # neither the weights nor the data read again
    assert (one.model_fingerprint, one.robust) == (two.model_fingerprint, two.robust)


def test_each_tensor_is_reduced_once_per_identity_in_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Catches the no-false-reuse reductions (word sum and norm: a pass over every weight)
    being computed several times per check (three passes over resnet18's 11M weights cost
    0.3 s a check on one CPU thread, more than the FGSM attack itself), or tensor by tensor
    with a host sync each instead of in one batch."""
    batches: list[list[int]] = []
    original = tensor_memo._checksums

    def counted(tensors: list[torch.Tensor], ordered: bool = False) -> list[Any]:
        batches.append([id(t) for t in tensors])
        return original(tensors, ordered)

    monkeypatch.setattr(tensor_memo, "_checksums", counted)
    model = small_net()
    tensors = [*model.parameters(), *model.buffers()]
    for _ in range(2):  # the first reading and a remembered one
        batches.clear()
        identify(model)
        assert len(batches) == 1
        assert sorted(batches[0]) == sorted(id(t) for t in tensors)


class MixedBuffers(nn.Module):
    """Weights of every kind the batched reductions group or special-case."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)
        self.register_buffer("wide", torch.rand(5, dtype=torch.float64))
        self.register_buffer("narrow", torch.rand(3, dtype=torch.float16))
        self.register_buffer("count", torch.arange(3))  # int64, no norm
        self.register_buffer("mask", torch.tensor([True, False, True]))  # 3 bytes: no word
        self.register_buffer("odd", torch.rand(7)[1:])  # 4-byte aligned only
        self.register_buffer("empty", torch.zeros(0))
        self.register_buffer("pairs", torch.ones(2, dtype=torch.complex64))


MIXED = ["linear.weight", "wide", "narrow", "count", "mask", "odd"]


@pytest.mark.parametrize("name", MIXED)
def test_a_write_through_data_is_seen_in_every_kind_of_weight(name: str) -> None:
    """Catches the batched reductions skipping or mis-grouping a dtype, a length that is
    not whole 8-byte words, or an unaligned start: a write through .data (no version bump)
    must change the identity, as a first reading sees it."""
    model = MixedBuffers()
    first = fresh(model)
    assert identify(model) == first
    tensor = model.get_parameter(name) if "." in name else model.get_buffer(name)
    target = tensor.data.view(-1)[-1:]
    target.copy_(target.logical_not() if tensor.dtype == torch.bool else target + 1)
    assert identify(model) == fresh(model) != first


@pytest.mark.parametrize("name", MIXED)
def test_a_permutation_through_data_is_seen_in_every_kind_of_weight(name: str) -> None:
    """Catches the weights' reductions being blind to order: a weight's values moved
    between positions behind the version counter (channels permuted through .data) keep
    its word sum and norm exactly; the identity must still change, as a first reading
    sees it."""
    model = MixedBuffers()
    first = fresh(model)
    assert identify(model) == first
    tensor = model.get_parameter(name) if "." in name else model.get_buffer(name)
    flat = tensor.data.view(-1)
    flat.copy_(flat.roll(1))
    assert not torch.equal(flat, flat.roll(-1))  # a real change
    assert identify(model) == fresh(model) != first


def test_values_moved_between_projection_chunks_are_seen(monkeypatch) -> None:
    """Catches the projection weighing every chunk alike: a value moved to the same offset
    of another chunk would then keep it."""
    monkeypatch.setattr(tensor_memo, "_PROJECTION_CHUNK", 4)
    monkeypatch.setattr(tensor_memo, "_PROJECTION", {})
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    swapped = weight[[4, 1, 2, 3, 0, 5, 6, 7]]  # offset 0 of chunk 0 and of chunk 1
    assert tensor_memo._projections([weight]) != tensor_memo._projections([swapped])


@pytest.mark.parametrize("name", MIXED)
def test_a_permutation_through_data_changes_the_content_state_of_every_kind(name: str) -> None:
    """Catches the data's content state being blind to order: values moved between
    positions behind the version counter keep the word sum and the norm exactly (rows
    shuffled in place); the state the session cache keys the data by must still change."""
    tensor = MixedBuffers().get_parameter(name) if "." in name else MixedBuffers().get_buffer(name)
    before = tensor_memo.content_state(tensor)
    assert tensor_memo.content_state(tensor) == before
    flat = tensor.data.view(-1)
    flat.copy_(flat.roll(1))
    assert not torch.equal(flat, flat.roll(-1))  # a real change
    assert tensor_memo.content_state(tensor) != before


def test_a_tensor_without_reductions_is_read_every_time(reads) -> None:
    model = MixedBuffers()
    identify(model)
    read = reads[0]
    identify(model)
    assert reads[0] == read + 1  # the complex buffer alone: its content is not tracked


def test_a_weight_at_an_odd_offset_of_a_shared_storage_is_watched_too() -> None:
    """Catches the word sum (8-byte words) failing on, or skipping, a weight that starts
    at an odd element of a storage it shares, and a write through .data going unseen."""
    base = torch.rand(12)
    model = nn.Linear(1, 1)
    model.weight = nn.Parameter(base[1:8].view(7, 1)[:1])  # offset 1, 4-byte aligned only
    model.bias = nn.Parameter(base[3:4])
    first = fresh(model)
    assert tensor_memo._tracked(model.weight) is not None
    assert identify(model) == first
    model.weight.data[0, 0] += 1.0  # no version bump on the parameter
    assert identify(model) == fresh(model) != first


def test_without_foreach_norms_each_weight_is_reduced_alone(monkeypatch, reads) -> None:
    """Catches the batched reductions failing a check (or trusting a tensor) when torch has
    no foreach norm for a group: each weight is then reduced alone, and one torch cannot
    reduce is read every time."""

    def missing(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError("no foreach norm here")

    monkeypatch.setattr(torch, "_foreach_norm", missing)
    model = small_net()
    first = fresh(model)
    read = reads[0]
    assert identify(model) == first and reads[0] == read  # reduced alone, still trusted
    _conv(model).weight.data.mul_(2)  # no version bump
    assert identify(model) != first
    original = torch.linalg.vector_norm

    def refuses_the_bias(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if tensor.numel() == 3:  # the linear layer's bias
            raise RuntimeError("cannot reduce")
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "vector_norm", refuses_the_bias)
    identify(model)
    read = reads[0]
    identify(model)
    assert reads[0] == read + 1  # the bias alone, every time


class _PartByPart(fingerprint._Walk):
    """The walk as it hashed before its parts were joined: one update per part."""

    def put(self, *parts: str) -> None:
        for part in parts:
            self.raw(part.encode() + b"\x00")


def test_joined_parts_hash_the_same_bytes_as_one_update_per_part() -> None:
    """Catches the joined hashing of the walk's parts changing what is hashed: a lost or
    reordered part, a separator missing, a raw write (numpy) put out of order."""
    import numpy as np

    model = MixedBuffers()
    model.__dict__["extra"] = {"table": np.arange(4), "words": ("a", 1, 2.5), "none": None}
    deep = nn.Sequential(*[nn.Linear(1, 1) for _ in range(150)])  # flushed mid-walk
    for value in (model, small_net(), [np.ones(2), "x", {"k": (1, 2)}], nn.Linear, deep):
        assert fingerprint._Walk().identity(value) == _PartByPart().identity(value)
        assert fingerprint._Walk().identity(value) is not None


# --- in-memory data: each row's digest read once per tensor while it is unchanged ---


@pytest.fixture
def hashed_rows(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the rows the data scan hashes."""
    from pytest_robust.engine import lazy_data

    count = [0]
    original = lazy_data.row_digests

    def counted(x: torch.Tensor) -> torch.Tensor:
        count[0] += len(x)
        return original(x)

    monkeypatch.setattr(lazy_data, "row_digests", counted)
    yield count


def _data_fingerprint(x: torch.Tensor, y: torch.Tensor, limit: int | None = None) -> str:
    from pytest_robust.engine.data import load_samples

    return load_samples((x, y), limit).fingerprint


DATA_CHANGES: dict[str, Callable[[torch.Tensor], Any]] = {
    "in place (version bump)": lambda x: x[3].mul_(0.5),
    "through .data (no version bump)": lambda x: x.data[3, 0].add_(0.25),
    "numpy view (no version bump)": lambda x: x.numpy().__setitem__((5, 0), 0.0),
}


@pytest.mark.parametrize("change", list(DATA_CHANGES))
def test_data_handed_over_again_is_hashed_once_and_every_change_is_seen(change, hashed_rows):
    """Catches the data scan's memo reusing the digests of a tensor changed in place,
    through .data or a numpy view (no version bump: only the content reductions see it),
    or hashing the same unchanged tensor again on every check."""
    torch.manual_seed(0)
    x, y = torch.rand(12, 5), torch.arange(12) % 3
    first = _data_fingerprint(x, y)
    assert hashed_rows[0] == 12
    assert _data_fingerprint(x, y) == first
    assert hashed_rows[0] == 12  # not hashed again
    assert _data_fingerprint(x, y, 6) != first  # another prefix: its own entry
    DATA_CHANGES[change](x)
    changed = _data_fingerprint(x, y)
    tensor_memo.forget_all()
    assert changed == _data_fingerprint(x.clone(), y) != first


def _flip_in_place(x: torch.Tensor, flipped: torch.Tensor) -> None:
    x[:20] = flipped


def _flip_through_data(x: torch.Tensor, flipped: torch.Tensor) -> None:
    x.data[:20] = flipped


def _flip_through_numpy(x: torch.Tensor, flipped: torch.Tensor) -> None:
    x.numpy()[:20] = flipped.numpy()


@pytest.mark.parametrize("flip", [_flip_in_place, _flip_through_data, _flip_through_numpy])
def test_a_session_sees_data_changed_between_two_checks(flip, digits_cnn, digits_data):
    """Catches the session cache's scanned samples (and so the clean logits stored under
    their fingerprint) being reused for tensors written through .data or a numpy view
    between two checks: no version bump, so only the content reductions see it."""
    x, y = digits_data[0][:40].clone(), digits_data[1][:40]
    data = (x, y)  # the same object in both checks, as a session fixture gives it
    cache = EvaluationCache()
    gate: dict[str, Any] = {"attack": "fgsm", "eps": 0.05, "sanity": "off"}
    first = evaluate(digits_cnn, data, cache=cache, **gate)
    flip(x, x[:20].flip(-1).clone())  # mirrored digits: some are misread
    again = evaluate(digits_cnn, data, cache=cache, **gate)
    alone = evaluate(digits_cnn, data, **gate)
    assert again.data_fingerprint == alone.data_fingerprint != first.data_fingerprint
    assert (again.clean_correct, again.robust) == (alone.clean_correct, alone.robust)
    assert again.clean_correct != first.clean_correct


def test_a_session_sees_rows_shuffled_in_place_between_two_checks(digits_cnn, digits_data):
    """Catches the session cache reusing the clean logits of data shuffled in place through
    numpy (`np.random.shuffle`-style: no version bump, and the same word sum and norm)."""
    x, y = digits_data[0][:40].clone(), digits_data[1][:40].clone()
    data = (x, y)
    cache = EvaluationCache()
    gate: dict[str, Any] = {"attack": "fgsm", "eps": 0.05, "sanity": "off"}
    first = evaluate(digits_cnn, data, cache=cache, **gate)
    order = np.random.default_rng(0).permutation(40)
    x.numpy()[:] = x.numpy()[order]
    y.numpy()[:] = y.numpy()[order]
    again = evaluate(digits_cnn, data, cache=cache, **gate)
    alone = evaluate(digits_cnn, data, **gate)
    assert again.data_fingerprint == alone.data_fingerprint != first.data_fingerprint
    assert (again.clean_correct, again.robust) == (alone.clean_correct, alone.robust)
    assert again.clean_correct != first.clean_correct
