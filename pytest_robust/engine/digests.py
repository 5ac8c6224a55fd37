"""Content digests that need no walk over objects: a tensor's bytes, a code object, the
module tree's names and classes, and the plugin's own source (engine/fingerprint.py builds
the model identity from them)."""

from __future__ import annotations

import functools
import hashlib
import sys
import types
from typing import Any

import torch


class Unidentifiable(Exception):
    """A value whose content cannot be established: whatever depends on it is not reused."""


def tensor_bytes(tensor: torch.Tensor) -> tuple[str, Any]:
    t = tensor.detach()
    head = f"{tuple(t.shape)}|{t.dtype}|"
    if t.is_quantized:
        head += f"{t.qscheme()}|"
        t = t.int_repr()
    if t.layout != torch.strided or t.device.type == "meta":
        raise Unidentifiable(f"a {t.layout} tensor on {t.device}")
    t = t.to("cpu").contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        t = t.view(torch.int16)
    try:
        return head, t.numpy()  # the buffer itself: same digest as .tobytes(), no copy
    except (TypeError, RuntimeError) as error:
        raise Unidentifiable(f"a tensor numpy cannot read ({t.dtype})") from error


def _update(digest: Any, tensor: torch.Tensor) -> None:
    head, data = tensor_bytes(tensor)
    digest.update(head.encode())
    digest.update(data)


def tensors_fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        _update(digest, tensor)
    return digest.hexdigest()


# Code objects are immutable: their digest is computed once (kept alive with it).
_CODE_DIGESTS: dict[int, tuple[types.CodeType, str]] = {}


def code_digest(code: types.CodeType) -> str:
    hit = _CODE_DIGESTS.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    digest = hashlib.blake2b(digest_size=16)
    parts: list[Any] = [
        code.co_code, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
        code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags,
        getattr(code, "co_exceptiontable", b""),
    ]  # fmt: skip
    for part in parts:
        digest.update(repr(part).encode() + b"\x00")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            digest.update(b"code:" + code_digest(const).encode())
        elif isinstance(const, frozenset):  # iteration order varies with the hash seed
            digest.update(repr(sorted(repr(c) for c in const)).encode())
        else:
            digest.update(f"{type(const).__name__}:{const!r}".encode())
        digest.update(b"\x00")
    _CODE_DIGESTS[id(code)] = (code, digest.hexdigest())
    return _CODE_DIGESTS[id(code)][1]


def code_version() -> str:
    """A digest of pytest-robust's own source files (read once per process): a result
    stored by other code of the plugin (an edited checkout) is not reused."""
    return _package_digest()


@functools.lru_cache(maxsize=1)
def _package_digest() -> str:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\x00")
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def structure_digest(model: torch.nn.Module) -> str:
    """The module tree: every submodule's name and class (module and qualified name).
    Stable across processes (no attribute values, so no counters a forward updates): with
    the weights' fingerprint it tells two models apart that share weights but differ in a
    parameter-free layer (ReLU vs Tanh), for pairing results in reports."""
    digest = hashlib.blake2b(digest_size=16)
    for name, module in model.named_modules():
        kind = type(module)
        digest.update(f"{name}\x00{kind.__module__}.{kind.__qualname__}\x00".encode())
    return digest.hexdigest()
