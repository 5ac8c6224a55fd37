"""Decided-early gating: stop attacking once the thresholds' outcome is settled.

After each batch, the samples processed so far (a prefix of the data, in data order) give
a count for each proportion a threshold bounds. When the 95% Wilson interval of every
such proportion lies entirely on its passing side, or one lies entirely on its failing
side, more samples would not change the verdict (at that confidence) and the evaluation
stops. `max_confidence` can only be decided early as a failure: one success above it
fails the gate whatever follows.
"""

from __future__ import annotations

import torch

from pytest_robust.engine.stats import wilson


def early_verdict(
    thresholds: dict[str, float],
    clean_correct: torch.Tensor,
    robust: torch.Tensor,
    success: torch.Tensor,
    attacked: torch.Tensor,
    max_confidence_reached: float,
) -> str | None:
    """'pass' or 'fail' when the prefix (flags of the processed samples) settles every
    threshold; None when more samples are needed."""
    n = len(clean_correct)
    if n == 0:
        return None
    # (count, total, threshold, True when a high proportion passes)
    checks: list[tuple[int, int, float, bool]] = []
    if "min_acc" in thresholds:
        checks.append((int(robust.sum()), n, thresholds["min_acc"], True))
    if "max_success" in thresholds:
        checks.append((int(success.sum()), int(attacked.sum()), thresholds["max_success"], False))
    if "max_drop" in thresholds:
        dropped = int((clean_correct & ~robust).sum())
        checks.append((dropped, n, thresholds["max_drop"], False))
    if "max_confidence" in thresholds and max_confidence_reached > thresholds["max_confidence"]:
        return "fail"
    settled = "max_confidence" not in thresholds
    for count, total, threshold, high_passes in checks:
        if total == 0:
            settled = False
            continue
        lo, hi = wilson(count, total)
        if (hi < threshold) if high_passes else (lo > threshold):
            return "fail"
        if not ((lo > threshold) if high_passes else (hi < threshold)):
            settled = False
    return "pass" if settled else None
