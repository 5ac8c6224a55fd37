"""The statistics of a check, pure (no torch, no pytest): the Wilson interval and how many
samples a threshold needs. Every interval in results, reports and the decided-early gate
comes from here."""

from __future__ import annotations

import math

# z for a two-sided 95% interval.
Z95 = 1.959963984540054

# The largest sample count samples_needed() searches; beyond it a result is "undecidable".
SAMPLES_CAP = 10_000_000


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    low, high = wilson_real(successes, n, z)
    return (max(0.0, low), min(1.0, high))


def wilson_real(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson interval without clipping to [0, 1], for a (possibly fractional) count."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / denom
    return (centre - half, centre + half)


def samples_needed(proportion: float, threshold: float, cap: int = SAMPLES_CAP) -> int | None:
    """About how many samples would decide `proportion` against `threshold` at 95%.

    Assumes the measured proportion stays as it is: the smallest n whose Wilson interval
    of `proportion * n` successes lies wholly on the proportion's side of the threshold
    (lower bound >= threshold when above it, upper bound <= threshold when below).
    None when it cannot be decided (the proportion equals the threshold) or needs more
    than `cap` samples. The bound moves monotonically towards the proportion as n grows,
    so a bisection finds the smallest n.
    """
    if proportion == threshold:
        return None

    def decided(n: int) -> bool:
        low, high = wilson_real(proportion * n, n)
        return low >= threshold if proportion > threshold else high <= threshold

    if not decided(cap):
        return None
    low, high = 1, cap
    while low < high:
        middle = (low + high) // 2
        if decided(middle):
            high = middle
        else:
            low = middle + 1
    return low


def min_samples(threshold: float, upper: bool = False) -> int | None:
    """The fewest samples for which a perfect result would clear `threshold` at 95%.

    For a lower threshold (min_acc) a perfect result is every sample robust: the Wilson
    lower bound of n successes in n is n / (n + z^2), so n >= t z^2 / (1 - t). For an upper
    threshold (max_success) it is no success: upper bound z^2 / (n + z^2) <= t. None for
    a threshold of 1 (or 0 for an upper one): an exact requirement, not a statistical one.
    """
    z2 = Z95**2
    target = 1 - threshold if upper else threshold
    if target >= 1 or target <= 0:
        return None
    return math.ceil(target * z2 / (1 - target) - 1e-9)
