"""FAB's projection onto a hyperplane inside the box, against brute force and the reference."""

from __future__ import annotations

import pytest
import torch

from pytest_robust.attacks.fab_projections import project_onto_hyperplane

D = 16


def random_rows(
    seed: int, n: int = 200, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows with points on the bounds, zero weights, and offsets far enough that some
    hyperplanes miss the box."""
    g = torch.Generator().manual_seed(seed)
    low, high = bounds
    t = torch.rand(n, D, generator=g, dtype=torch.float64)
    t = torch.where(t < 0.15, 0.0, torch.where(t > 0.85, 1.0, t))  # on the bounds
    t = low + (high - low) * t
    w = torch.randn(n, D, generator=g, dtype=torch.float64)
    w[torch.rand(n, D, generator=g) < 0.2] = 0.0
    w[0] = 0.0  # no weight at all
    b = (w * t).sum(1) + torch.randn(n, generator=g, dtype=torch.float64) * 3 * (high - low)
    b[1] = (w[1] * t[1]).sum()  # already on the hyperplane
    return t, w, b


def corner(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor, bounds: tuple[float, float]):
    """The move to the box corner that gets <w, .> closest to b (the answer for a
    hyperplane that misses the box)."""
    low, high = bounds
    toward_low = ((w * t).sum(1) - b >= 0)[:, None] == (w > 0)
    return torch.where(toward_low, low - t, high - t) * (w != 0)


def feasible(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor, bounds: tuple[float, float]):
    low, high = bounds
    lo = (torch.minimum(w * low, w * high)).sum(1)
    hi = (torch.maximum(w * low, w * high)).sum(1)
    return (lo <= b) & (b <= hi)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.5)])
def test_linf_projection_is_the_linear_programs_optimum(bounds):
    """min lam s.t. <w, t + d> = b, |d_i| <= lam, low <= t + d <= high, by scipy's LP."""
    linprog = pytest.importorskip("scipy.optimize").linprog
    t, w, b = random_rows(0, n=120, bounds=bounds)
    d = project_onto_hyperplane(t, w, b, "linf", bounds)
    ok = feasible(t, w, b, bounds)
    assert ok.sum() > 50 and (~ok).sum() > 5  # both kinds are exercised
    low, high = bounds
    for i in range(len(t)):
        assert bool(((t[i] + d[i]) >= low - 1e-12).all() and ((t[i] + d[i]) <= high + 1e-12).all())
        if not ok[i]:
            assert torch.allclose(d[i], corner(t[i : i + 1], w[i : i + 1], b[i : i + 1], bounds)[0])
            continue
        assert float((w[i] * (t[i] + d[i])).sum()) == pytest.approx(float(b[i]), abs=1e-9)
        # variables (d_1..d_D, lam): minimise lam
        cost = [0.0] * D + [1.0]
        a_ub, b_ub = [], []
        for j in range(D):
            row = [0.0] * (D + 1)
            row[j], row[D] = 1.0, -1.0
            a_ub.append(row)
            b_ub.append(0.0)
            row = [0.0] * (D + 1)
            row[j], row[D] = -1.0, -1.0
            a_ub.append(row)
            b_ub.append(0.0)
        a_eq = [[*w[i].tolist(), 0.0]]
        b_eq = [float(b[i] - (w[i] * t[i]).sum())]
        box = [(low - float(t[i, j]), high - float(t[i, j])) for j in range(D)] + [(0, None)]
        lp = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=box)
        assert lp.status == 0
        assert float(d[i].abs().max()) == pytest.approx(lp.fun, abs=1e-7)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.5)])
def test_l2_projection_matches_a_bisection_on_the_multiplier(bounds):
    """The L2 optimum is d(lam) = clip(-lam w, low - t, high - t) for the lam >= 0 (on the
    side that lowers |<w, .> - b|) that puts t + d on the hyperplane; lam found by 200 steps
    of float64 bisection. Unique, so the moves themselves must agree."""
    t, w, b = random_rows(1, bounds=bounds)
    d = project_onto_hyperplane(t, w, b, "l2", bounds)
    low, high = bounds
    ok = feasible(t, w, b, bounds)
    assert ok.sum() > 50 and (~ok).sum() > 5
    side = torch.where((w * t).sum(1) - b >= 0, 1.0, -1.0).double()[:, None]

    def move(lam: torch.Tensor) -> torch.Tensor:
        return torch.clamp(-lam[:, None] * side * w, low - t, high - t)

    gap = ((w * t).sum(1) - b).abs()
    lo, hi = torch.zeros(len(t), dtype=torch.float64), torch.full((len(t),), 1e6).double()
    for _ in range(200):
        mid = (lo + hi) / 2
        short = (side[:, 0] * (w * move(mid)).sum(1)).neg() < gap
        lo, hi = torch.where(short, mid, lo), torch.where(short, hi, mid)
    expected = torch.where(ok[:, None], move(hi), corner(t, w, b, bounds))
    assert torch.allclose(d, expected, atol=1e-9)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_matches_torchattacks(norm):
    """The reference's projection functions (AutoAttack's, copied by torchattacks) on the same
    rows, in float32 as they run: the same moves up to float32 rounding."""
    fab = pytest.importorskip("torchattacks.attacks.fab")
    reference = fab.projection_linf if norm == "linf" else fab.projection_l2
    t, w, b = (v.float() for v in random_rows(2))
    ours = project_onto_hyperplane(t, w, b, norm)
    theirs = reference(t.clone(), w.clone(), b.clone())
    assert torch.allclose(ours, theirs, atol=5e-5)
    assert not torch.isnan(ours).any()
