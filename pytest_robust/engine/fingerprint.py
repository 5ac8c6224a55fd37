"""Stable content fingerprints of models and data (hex digests, same on every run)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch


def _update(digest: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach()
    digest.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
    t = t.to("cpu").contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        t = t.view(torch.int16)
    digest.update(t.numpy())  # the buffer itself: same digest as .tobytes(), no copy


def tensors_fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        _update(digest, tensor)
    return digest.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """Digest of the class name and every parameter and buffer, by name."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(model).__qualname__.encode())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode())
        _update(digest, tensor)
    return digest.hexdigest()
