"""Each tensor's content digest, remembered while the tensor provably has not changed.

The model identity (engine/fingerprint.py) reads every weight: one pass over the model's
bytes per check, plus a copy to the host from a GPU. Here a tensor's digest is reused for
the same tensor object as long as everything torch tracks about its content is unchanged:

- its version counter, which every in-place operation autograd knows of bumps (an
  optimizer step, load_state_dict, copy_, `w.mul_(2)` under no_grad);
- its storage (the same storage object: `w.data = other` swaps it), data pointer, offset,
  shape, strides, dtype and device;
- reductions of its content: the wrapping sum of its 8-byte words (exact) and its L2 norm
  see writes that bypass the version counter (through `w.data`, a numpy view, a custom
  kernel); values moved between positions keep both, so a third sees order: for a
  floating weight its dot product with a fixed pseudo-random vector (channels permuted
  through `w.data`), for the data handed over (`derived`, `content_state`) and for weights
  that are not floating point the words weighted by a pseudo-random weight of their
  position (rows shuffled in place with `np.random.shuffle(x.numpy())`).

A module's own tensors are read again together when one of them changed: the batch-norm
kernel updates a BatchNorm's running statistics without a version bump, but the module
bumps num_batches_tracked with them. Not seen: a write that bypasses the version counter
and leaves every reduction exactly as it was (a contrived edit, or chance: about 2**-64 for
the exact sums); docs/scaling.md says so. Inference tensors (made under
torch.inference_mode) have no version counter, quantized tensors carry parameters outside
it, and tensor subclasses may define their own storage: these are read every time.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import TypeVar
from typing import cast

import torch

# id(tensor) -> (the tensor, its storage, its tracked state, its digest); weak references,
# so a forgotten model's entries go with it.
_MEMO: dict[int, tuple[weakref.ref[torch.Tensor], weakref.ref[Any], tuple[Any, ...], str]] = {}


Tracked = tuple[Any, tuple[Any, ...]] | None
T = TypeVar("T")


class Reading:
    """One walk over a model: each tensor's tracked state (with its reductions, a pass
    over its content) is computed once per walk, however often the walk asks about it.
    `prime` computes many at once: the reductions of a whole model in a few torch calls and
    one transfer of the results, not several calls and host syncs per tensor."""

    def __init__(self) -> None:
        self.states: dict[int, tuple[torch.Tensor, Tracked]] = {}

    def prime(self, tensors: Iterable[torch.Tensor]) -> None:
        todo = list({id(t): t for t in tensors if not self._known(t)}.values())
        for tensor, tracked in zip(todo, _tracked_all(todo), strict=True):
            self.states[id(tensor)] = (tensor, tracked)

    def tracked(self, tensor: torch.Tensor) -> Tracked:
        if not self._known(tensor):
            self.prime([tensor])
        return self.states[id(tensor)][1]

    def _known(self, tensor: torch.Tensor) -> bool:
        known = self.states.get(id(tensor))
        return known is not None and known[0] is tensor


def remembered(
    tensor: torch.Tensor,
    read: Callable[[torch.Tensor], tuple[str, Any]],
    reading: Reading | None = None,
) -> str:
    """The tensor's digest: its description and a hash of its bytes, both given by
    read(tensor); without reading it again when the tensor has not changed."""
    reading = reading if reading is not None else Reading()
    tracked = reading.tracked(tensor)
    if tracked is None:
        return _digest(read, tensor)
    storage, state = tracked
    key = id(tensor)
    if _unchanged(tensor, tracked):
        return _MEMO[key][3]
    digest = _digest(read, tensor)

    def forget(ref: weakref.ref[torch.Tensor]) -> None:
        entry = _MEMO.get(key)
        if entry is not None and entry[0] is ref:
            del _MEMO[key]

    _MEMO[key] = (weakref.ref(tensor, forget), weakref.ref(storage), state, digest)
    return digest


# (id(tensor), what) -> (the tensor, its storage, its tracked state, the value derived).
Checksum = tuple[float, ...]  # exact word sums (Python ints), a norm, a projection
_Entry = tuple[weakref.ref[torch.Tensor], weakref.ref[Any], Any, Any]
_DERIVED: dict[tuple[int, object], _Entry] = {}


def derived(tensor: torch.Tensor, what: object, compute: Callable[[torch.Tensor], T]) -> T:
    """compute(tensor), `what` naming the computation, reused for the same tensor object
    while it provably has not changed (the same tracked state as the digests above: a data
    set handed over again as the same tensor is not hashed again)."""
    tracked = _tracked(tensor, ordered=True)
    if tracked is None:
        return compute(tensor)
    storage, state = tracked
    key = (id(tensor), what)
    hit = _DERIVED.get(key)
    if hit is not None and hit[0]() is tensor and hit[1]() is storage and hit[2] == state:
        return cast(T, hit[3])
    value = compute(tensor)

    def forget(ref: weakref.ref[torch.Tensor]) -> None:
        entry = _DERIVED.get(key)
        if entry is not None and entry[0] is ref:
            del _DERIVED[key]

    _DERIVED[key] = (weakref.ref(tensor, forget), weakref.ref(storage), state, value)
    return value


def content_state(tensor: torch.Tensor) -> Any:
    """What torch tracks about the tensor with three reductions of its content (the
    position-weighted one too): equal for an unchanged tensor; for one whose content is
    not tracked, a value equal to nothing."""
    tracked = _tracked(tensor, ordered=True)
    return tracked[1] if tracked is not None else object()


def forget_unless_unchanged(tensors: list[Any], reading: Reading | None = None) -> None:
    """Forget the tensors' digests unless every one of them is unchanged: the tensors of
    one module are read again together. A BatchNorm's running statistics are updated by
    its kernel without a version bump, but its num_batches_tracked is bumped with them."""
    reading = reading if reading is not None else Reading()
    group = [tensor for tensor in tensors if isinstance(tensor, torch.Tensor)]
    if all(_unchanged(tensor, reading.tracked(tensor)) for tensor in group):
        return
    for tensor in group:
        _MEMO.pop(id(tensor), None)


def _unchanged(tensor: torch.Tensor, tracked: Tracked) -> bool:
    hit = _MEMO.get(id(tensor))
    if tracked is None or hit is None:
        return tracked is None  # read every time anyway, or not read yet
    storage, state = tracked
    return hit[0]() is tensor and hit[1]() is storage and hit[2] == state


def _checksums(tensors: list[torch.Tensor], ordered: bool = False) -> list[Checksum | None]:
    """Reductions of each tensor's content: the sum of its bytes read as 64-bit integers
    (wrapping: exact, so any change confined to one 8-byte word changes it), the same words
    weighted by position with `ordered` or for a tensor that is not floating point (values
    moved between positions: 5x the cost of the plain sum), its L2 norm in its own dtype,
    and for a floating weight (not `ordered`) a projection that sees order too; None for a
    tensor without them (complex, say: read every time instead). A pass each and no copy:
    cheap next to hashing the bytes, and they see the writes the version counter misses
    (`w.data.mul_(2)`, pruning or a permutation through `w.data`, a numpy view). NaN never
    equals itself, so a tensor holding NaN is read every time. Batched: the norms of each
    dtype in one foreach call, every result in one transfer."""
    words: list[torch.Tensor | None] = []
    with torch.no_grad():
        for tensor in tensors:
            try:
                # Order is seen by the word sums for the data and for a weight that is not
                # floating point (small buffers: counts, masks), by a projection otherwise.
                by_position = ordered or not tensor.is_floating_point()
                words.append(None if tensor.is_complex() else _word_sum(tensor, by_position))
            except (RuntimeError, NotImplementedError, TypeError):
                words.append(None)
        norms: dict[int, float | None] = {}
        projections: dict[int, float | None] = {}
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, tensor in enumerate(tensors):
            if words[i] is not None and tensor.is_floating_point():
                groups.setdefault((tensor.device, tensor.dtype), []).append(i)
        for group in groups.values():
            norms.update(zip(group, _norms([tensors[i] for i in group]), strict=True))
            if not ordered:  # (the data's position-weighted word sum already sees order)
                found_p = _projections([tensors[i] for i in group])
                projections.update(zip(group, found_p, strict=True))
        sums: dict[torch.device, list[int]] = {}
        for i, word in enumerate(words):
            if word is not None:
                sums.setdefault(word.device, []).append(i)
        exact: dict[int, list[int]] = {}
        for rows in sums.values():  # one transfer per device
            stacked = torch.stack([cast(torch.Tensor, words[i]) for i in rows])
            exact.update(zip(rows, stacked.tolist(), strict=True))
        found: list[Checksum | None] = []
        for i in range(len(words)):
            norm = norms.get(i, 0.0)  # 0.0: not floating point, no norm
            projection = projections.get(i, 0.0)  # 0.0: ordered word sums instead
            if i in exact and norm is not None and projection is not None:
                found.append((*exact[i], norm, projection))
            else:
                found.append(None)
        return found


def _word_sum(tensor: torch.Tensor, ordered: bool = False) -> torch.Tensor:
    """The content's 8-byte words (plus its trailing bytes) as wrapping sums: [plain, each
    word times a pseudo-random weight of its position] with `ordered`, else [plain, 0]."""
    flat = tensor.reshape(-1)
    size = flat.element_size()
    if (flat.numel() * size) % 8 == 0 and (flat.storage_offset() * size) % 8 == 0:
        words = flat.view(torch.int64)  # the common case: whole, aligned words
    else:
        raw = flat.view(torch.uint8)
        whole = raw.numel() // 8 * 8
        head = raw[:whole] if raw.storage_offset() % 8 == 0 else raw[:whole].clone()
        words = torch.cat([head.view(torch.int64), raw[whole:].to(torch.int64)])
    if ordered:
        return _position_sum(words)
    return torch.stack([words.sum(), torch.zeros((), dtype=torch.int64, device=words.device)])


# Weights of the position-weighted sum, in chunks (a weight per word would double the
# memory of the largest tensor): word i of chunk c weighs _WEIGHTS[i] + _WEIGHTS[-1 - c].
# Drawn once from a private generator (the global RNG is the user's), the same every run.
_CHUNK = 1 << 18
_WEIGHTS: dict[torch.device, torch.Tensor] = {}


def _weights(device: torch.device) -> torch.Tensor:
    if device not in _WEIGHTS:
        drawn = torch.randint(
            -(2**63), 2**63 - 1, (_CHUNK,), generator=torch.Generator().manual_seed(0x5EED)
        )
        _WEIGHTS[device] = drawn.to(device)
    return _WEIGHTS[device]


def _position_sum(words: torch.Tensor) -> torch.Tensor:
    """[sum of the words, sum of word x weight of its position], both wrapping (exact
    modulo 2**64). The plain sum sees any change confined to one word; the weighted one
    also sees values moved between positions (rows shuffled in place, a permutation of a
    weight's entries), which leave the plain sum and the L2 norm exactly as they were."""
    weights = _weights(words.device)
    plain = words.sum()
    if words.numel() <= _CHUNK:  # most tensors: one chunk, fewer torch calls
        return torch.stack([plain, (words * weights[: words.numel()]).sum() + plain * weights[-1]])
    weighted = torch.zeros((), dtype=torch.int64, device=words.device)
    for chunk, start in enumerate(range(0, words.numel(), _CHUNK)):
        part = words[start : start + _CHUNK]
        weighted += (part * weights[: part.numel()]).sum() + part.sum() * weights[-1 - chunk]
    return torch.stack([plain, weighted])


# A fixed pseudo-random vector per (device, dtype) for `_projections`, in chunks of this
# many values (chunk c weighted by c + 1, so values moved between chunks count too).
_PROJECTION_CHUNK = 1 << 20
_PROJECTION: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _projections(group: list[torch.Tensor]) -> list[float | None]:
    """Each floating tensor's dot product with a fixed pseudo-random vector: values moved
    between positions (a weight's channels permuted through `w.data`) keep the word sum
    and the norm exactly but not this; a BLAS pass like the norm (resnet18: 3.6 against
    1.8 ms for the norms). In float32 at least: a float16 dot rounds to 11 bits. None for
    a tensor torch cannot reduce (then it is read every time)."""
    found: list[torch.Tensor | None] = []
    for tensor in group:
        try:
            found.append(_projection(tensor))
        except (RuntimeError, NotImplementedError, TypeError):
            found.append(None)
    present = [value for value in found if value is not None]
    values = iter(torch.stack(present).tolist() if present else [])  # one transfer
    return [None if value is None else float(next(values)) for value in found]


def _projection(tensor: torch.Tensor) -> torch.Tensor:
    flat = tensor.detach().reshape(-1)
    dtype = torch.float64 if flat.dtype == torch.float64 else torch.float32
    key = (flat.device, dtype)
    if key not in _PROJECTION:
        drawn = torch.randn(
            _PROJECTION_CHUNK, generator=torch.Generator().manual_seed(0x5EED), dtype=dtype
        )
        _PROJECTION[key] = drawn.to(flat.device)
    vector = _PROJECTION[key]
    flat = flat.to(dtype)
    if flat.numel() <= _PROJECTION_CHUNK:  # most tensors: one chunk, one call
        return torch.dot(flat, vector[: flat.numel()])
    parts = [
        torch.dot(
            flat[start : start + _PROJECTION_CHUNK],
            vector[: min(_PROJECTION_CHUNK, flat.numel() - start)],
        )
        * (chunk + 1)
        for chunk, start in enumerate(range(0, flat.numel(), _PROJECTION_CHUNK))
    ]
    return torch.stack(parts).sum()


def _norms(group: list[torch.Tensor]) -> list[float | None]:
    """L2 norms of tensors of one dtype and device, in one call where torch has one; None
    for a tensor torch cannot reduce (then it is read every time)."""
    try:
        found: Sequence[torch.Tensor] = torch._foreach_norm(group)
        return [float(n) for n in torch.stack([n.reshape(()) for n in found]).tolist()]
    except (RuntimeError, NotImplementedError, TypeError):
        return [_norm(t) for t in group]


def _norm(tensor: torch.Tensor) -> float | None:
    try:
        return float(torch.linalg.vector_norm(tensor.reshape(-1)))
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def _digest(read: Callable[[torch.Tensor], tuple[str, Any]], tensor: torch.Tensor) -> str:
    head, data = read(tensor)
    return head + hashlib.blake2b(data, digest_size=16).hexdigest()


def forget_all() -> None:
    """Drop every remembered digest (tests measure the full cost with it)."""
    _MEMO.clear()
    _DERIVED.clear()


def _tracked(tensor: torch.Tensor, ordered: bool = False) -> Tracked:
    """The tensor's storage and tracked state, or None when its content is not tracked."""
    return _tracked_all([tensor], ordered)[0]


def _tracked_all(tensors: list[torch.Tensor], ordered: bool = False) -> list[Tracked]:
    """_tracked of each tensor, the reductions of all of them batched (_checksums)."""
    found = [_plain_state(tensor) for tensor in tensors]
    watched = [t for t, state in zip(tensors, found, strict=True) if state is not None]
    sums = iter(_checksums(watched, ordered))
    tracked: list[Tracked] = []
    for state in found:
        checksum = next(sums) if state is not None else None
        # Without its reductions (a complex tensor, say) nothing is trusted: read every time.
        if state is None or checksum is None:
            tracked.append(None)
        else:
            tracked.append((state[0], (*state[1], *checksum)))
    return tracked


def _plain_state(tensor: torch.Tensor) -> tuple[Any, tuple[Any, ...]] | None:
    """The storage and what torch tracks about the tensor, or None when its content is not
    tracked: a subclass (may define its own storage), not strided, quantized (parameters
    outside the version counter), meta, an inference tensor (no version counter)."""
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        return None
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type == "meta":
        return None
    if tensor.is_inference():
        return None
    try:
        storage = tensor.untyped_storage()
        state = (
            tensor._version,
            tensor.data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
            tensor.device,
        )
    except (RuntimeError, NotImplementedError, TypeError):
        return None  # no plain storage (a wrapper, say)
    return storage, state
