"""Random numbers keyed by (seed, sample index, stream), not drawn from a shared stream.

A sample's random start therefore depends only on the seed and the sample's index in the
data, never on the batch size, the order of batches or the device: results are the same
however the work is split. The generator is a counter-based hash (murmur3's 32-bit
finaliser), computed with int64 tensor arithmetic that cannot overflow.
"""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF


def _mul32(h: torch.Tensor, c: int) -> torch.Tensor:
    # (h * c) mod 2**32 in two 16-bit halves so no int64 product overflows.
    return (h * (c & 0xFFFF) + (((h * (c >> 16)) & 0xFFFF) << 16)) & _MASK


def _mix(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _hash(seed: int, sample_ids: torch.Tensor, stream: int, numel: int) -> torch.Tensor:
    """(len(sample_ids), numel) uint32 values as int64."""
    streams = torch.tensor([stream & _MASK], device=sample_ids.device, dtype=torch.int64)
    return _hash_streams(seed, sample_ids, streams, numel)[:, 0]


def _hash_streams(
    seed: int, sample_ids: torch.Tensor, streams: torch.Tensor, numel: int
) -> torch.Tensor:
    """(len(sample_ids), len(streams), numel) uint32 values as int64: _hash of each stream."""
    device = sample_ids.device
    key = torch.full_like(sample_ids, (seed ^ 0x9E3779B9) & _MASK, dtype=torch.int64)
    key = _mix(_mix(key) ^ _mix(sample_ids.to(torch.int64) & _MASK))
    # (stream * c) mod 2**32 from stream mod 2**32: the product stays below 2**63.
    key = _mix(key[:, None] ^ (((streams & _MASK) * 0x632BE5AB + 0x2545F491) & _MASK)[None, :])
    counter = _mix(torch.arange(numel, device=device, dtype=torch.int64) * 2 + 1)
    return _mix(key[:, :, None] ^ counter[None, None, :])


def uniform(
    seed: int, sample_ids: torch.Tensor, shape: torch.Size, stream: int, dtype: torch.dtype
) -> torch.Tensor:
    """U[0, 1) numbers of shape (len(sample_ids), *shape[1:]), one row per sample."""
    numel = math.prod(shape[1:])
    bits = _hash(seed, sample_ids, stream, numel) >> 8  # 24 bits: exact in float32
    return (bits.to(dtype) / float(1 << 24)).reshape(len(sample_ids), *shape[1:])


def uniform_streams(
    seed: int,
    sample_ids: torch.Tensor,
    streams: torch.Tensor,
    shape: tuple[int, ...],
    dtype: torch.dtype,
) -> torch.Tensor:
    """uniform() of several streams in one call: (len(sample_ids), len(streams), *shape),
    where [:, s] equals uniform(seed, sample_ids, (n, *shape), streams[s], dtype)."""
    bits = _hash_streams(seed, sample_ids, streams, math.prod(shape)) >> 8
    return (bits.to(dtype) / float(1 << 24)).reshape(len(sample_ids), len(streams), *shape)


def normal(
    seed: int, sample_ids: torch.Tensor, shape: torch.Size, stream: int, dtype: torch.dtype
) -> torch.Tensor:
    """Standard normal numbers (Box-Muller over two uniform streams)."""
    u1 = uniform(seed, sample_ids, shape, 2 * stream, torch.float64)
    u2 = uniform(seed, sample_ids, shape, 2 * stream + 1, torch.float64)
    radius = torch.sqrt(-2.0 * torch.log1p(-u1))  # 1 - u1 is in (0, 1]: no log(0)
    return (radius * torch.cos(2 * math.pi * u2)).to(dtype)
