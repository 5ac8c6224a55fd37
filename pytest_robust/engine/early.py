"""Decided-early gating: stop attacking once the thresholds' outcome is settled.

After each batch, the samples processed so far (a prefix of the data, in data order) give
a count for each proportion a threshold bounds. The evaluation looks after every batch,
so a fixed-sample interval (Wilson's) would cross a threshold by luck at some look far
more often than 5% of the time. Each look therefore uses an anytime-valid confidence
sequence: the uniform (beta-binomial) mixture of Robbins (1970), see Howard et al. (2021),
"Time-uniform, nonparametric, nonasymptotic confidence sequences". For a threshold p,

    M_t(p) = B(S + 1, t - S + 1) / (p^S (1 - p)^(t - S))

(S successes in t samples) is a nonnegative martingale with M_0 = 1 when the true rate is
p, so by Ville's inequality it ever reaches 1/alpha with probability at most alpha,
whatever the number of looks and wherever they fall. A threshold is settled when
M_t(threshold) >= k/alpha (k thresholds on proportions: a Bonferroni split), on the side
of the observed rate S/t. `max_confidence` can only be decided early as a failure: one
success above it fails the gate whatever follows.
"""

from __future__ import annotations

import math

import torch

# The stated level: an early verdict is wrong with probability at most 5%.
ALPHA = 0.05


def log_mixture(count: torch.Tensor, total: torch.Tensor, rate: float) -> torch.Tensor:
    """log M_t(rate) of the uniform mixture for `count` successes in `total` trials
    (element-wise; float64). +inf where the counts rule the rate out (e.g. a failure when
    rate is 1)."""
    s, t = count.double(), total.double()
    p = torch.tensor(rate, dtype=torch.float64)
    log_marginal = torch.lgamma(s + 1) + torch.lgamma(t - s + 1) - torch.lgamma(t + 2)
    return log_marginal - torch.xlogy(s, p) - torch.xlogy(t - s, 1 - p)


def settled_side(
    count: torch.Tensor, total: torch.Tensor, threshold: float, alpha: float = ALPHA
) -> torch.Tensor:
    """Element-wise: +1 where the confidence sequence lies above `threshold`, -1 below,
    0 where it still contains it (or no sample was counted)."""
    s, t = count.double(), total.double()
    excluded = (t > 0) & (log_mixture(s, t, threshold) >= math.log(1 / alpha))
    above = s > threshold * t
    side = torch.where(above, 1, -1)
    return torch.where(excluded, side, 0)


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
    alpha = ALPHA / max(len(checks), 1)  # Bonferroni: any one wrong look is a wrong verdict
    for count, total, threshold, high_passes in checks:
        side = int(settled_side(torch.tensor(count), torch.tensor(total), threshold, alpha))
        if side == 0:
            settled = False
        elif (side > 0) != high_passes:
            return "fail"
    return "pass" if settled else None
