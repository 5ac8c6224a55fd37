"""FAB's projection: the smallest move onto a hyperplane that stays inside the box.

For each row, `project_onto_hyperplane(t, w, b, norm, bounds)` solves

    min ||d||_p  subject to  <w, t + d> = b  and  low <= t + d <= high

for p = inf or 2 (Croce & Hein 2020, section 3.1). The reference code (fab_projections.py
of AutoAttack, copied by torchattacks) finds the solution with a bisection over sorted
partial sums and 1e12 sentinels for zero weights, in [0, 1] only; this is the same solution
in a closed sort-and-cumsum form, for any bounds, with zero weights masked before any
division.

Why it works. Orient w so that c = <w, t> - b >= 0: the move must lower <w, .> by c.
Coordinate i helps by moving towards its bound (low where w_i > 0, high where w_i < 0);
its full move m_i reaches that bound. For a radius lam >= 0 the optimal move is
|d_i| = min(lam, |m_i|) (L-inf) or min(lam |w_i|, |m_i|) (L2), so the decrease it gives,
g(lam) = sum_i min(lam * s_i, v_i) with s_i = |w_i| (L-inf) or w_i^2 (L2) and
v_i = |w_i| |m_i|, is continuous, piecewise linear and non-decreasing, with a kink where
coordinate i saturates, at r_i = v_i / s_i. Sorting the kinks, g at each kink is a cumulative
sum; the segment where g crosses c gives lam in closed form. If even g(inf) = sum_i v_i < c
the hyperplane misses the box, and the answer is the box corner nearest to it (d = m), as
in the reference. Coordinates with w_i = 0 never move.
"""

from __future__ import annotations

import torch


def _work_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps the cumulative sums exact enough over 10^5 coordinates; MPS has none.
    return torch.float32 if device.type == "mps" else torch.float64


def project_onto_hyperplane(
    t: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    norm: str,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """The minimum-`norm` move d (rows of t: points, w: normals, b: offsets, shapes (n, D),
    (n, D), (n,)) with <w, t + d> = b and t + d inside `bounds`; where the hyperplane misses
    the box, the move to the box's corner nearest to it. t must lie inside the bounds."""
    low, high = bounds
    dtype = _work_dtype(t.device)
    t64, w64, b64 = t.to(dtype), w.to(dtype), b.to(dtype)
    c = (w64 * t64).sum(dim=1) - b64
    w64 = torch.where((c < 0)[:, None], -w64, w64)  # now c >= 0: lower <w, .> by c
    c = c.abs()
    moves = w64 != 0
    full = torch.where(w64 > 0, low - t64, high - t64) * moves  # m: to the helpful bound
    abs_w, abs_m = w64.abs(), full.abs()
    value = abs_w * abs_m  # v_i: what coordinate i gives when saturated
    slope = abs_w if norm == "linf" else w64 * w64  # s_i
    kink = torch.where(moves, value / torch.where(moves, slope, 1.0), torch.inf)
    kink_sorted, order = kink.sort(dim=1)
    value_sorted, slope_sorted = value.gather(1, order), slope.gather(1, order)
    saturated = value_sorted.cumsum(dim=1) - value_sorted  # sum of v_j over kinks before k
    free = slope_sorted.flip(1).cumsum(dim=1).flip(1)  # sum of s_j over kinks from k on
    # g at each kink; never reached at the infinite kinks of zero weights.
    reach = torch.where(
        torch.isinf(kink_sorted), torch.inf, saturated + kink_sorted.nan_to_num(posinf=0.0) * free
    )
    k = (reach < c[:, None]).sum(dim=1).clamp(max=t.shape[1] - 1)[:, None]
    slope_left = free.gather(1, k).squeeze(1)
    lam = (c - saturated.gather(1, k).squeeze(1)) / torch.where(slope_left > 0, slope_left, 1.0)
    lam = torch.where(slope_left > 0, lam.clamp_min(0.0), 0.0)
    feasible = value.sum(dim=1) >= c
    radius = lam[:, None] if norm == "linf" else lam[:, None] * abs_w
    size = torch.where(feasible[:, None], torch.minimum(radius, abs_m), abs_m)
    d = torch.where(moves, -torch.sign(w64) * size, 0.0)
    return d.to(t.dtype)
