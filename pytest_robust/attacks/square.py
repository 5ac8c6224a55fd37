"""Square Attack: score-based random search, no gradients (Andriushchenko et al. 2020).

Each query changes one random square window of the current perturbation and keeps the
change if it lowers the loss (the margin z_y - max_{i != y} z_i untargeted, cross-entropy
to the target when targeted). The window covers a fraction p of the image, halved at the
paper's iteration fractions (10, 50, 200, ... of 10000) rescaled to the query budget, or at
those iterations as they are (rescale_schedule=False, as in AutoAttack's standard version).

- L-inf: starts from vertical stripes of +-eps; a window gets one new sign per channel.
- L2: starts from a grid of +-bumps; a window gets a new bump plus its old content, and
  the mass of a second window is moved into it, keeping the total norm at eps.

Inputs of any shape are viewed as (channels, height, width): the last two dimensions are
spatial, a 1-D input is one row. All randomness is keyed by (seed, sample id, stream), so
a sample's search does not depend on the batch it is in; a broken sample leaves the batch.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch
import torch.nn.functional as F

from pytest_robust.attacks import sampling
from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.attacks.threat import per_sample
from pytest_robust.params import Param

HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10000 iterations
RETRIES = 8  # L-inf sign draws per query: the first one that changes the window is used
CHUNK = 50  # iterations whose random numbers are drawn together


@register_attack
class Square(Attack):
    name = "square"
    params = {
        "queries": Param(int, 1000, minimum=1, doc="model queries per sample, the init included"),
        "p_init": Param(
            float, 0.8, minimum=1e-6, maximum=1.0, doc="initial fraction of pixels per window"
        ),
        "rescale_schedule": Param(
            bool,
            True,
            doc="halve the window at the iterations 10, 50, 200, ... of 10000 rescaled to the "
            "budget (True) or at those iterations as they are (False: AutoAttack's choice)",
        ),
    }
    targetable = True
    black_box = True
    reference = (
        "Andriushchenko et al. 2020, Square Attack: a query-efficient black-box adversarial "
        "attack via random search"
    )

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        super().__init__(threat, **config)
        self._queries: list[int] = []

    def details(self) -> dict[str, Any]:
        if not self._queries:
            return {"queries": None}
        mean, median = statistics.fmean(self._queries), statistics.median(self._queries)
        return {"queries": {"mean": mean, "median": float(median)}}

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-sample loss to minimise."""
        if targets is not None:
            return F.cross_entropy(logits, targets, reduction="none")
        true = logits.gather(1, labels[:, None]).squeeze(1)
        return true - logits.scatter(1, labels[:, None], -math.inf).amax(dim=1)

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        with torch.no_grad():
            return self._search(batch)

    def _search(self, batch: AttackBatch) -> torch.Tensor:
        budget = int(self.option("queries"))
        p_init = float(self.option("p_init"))
        rescale = bool(self.option("rescale_schedule"))
        shape, seed, ids = batch.x.shape, batch.seed, batch.sample_ids
        x0 = batch.x.reshape(_as_image(shape))
        best = (
            self._init_l2(x0, seed, ids)
            if self.threat.norm == "l2"
            else self._init_linf(x0, seed, ids)
        )

        def query(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = batch.model(x.reshape(-1, *shape[1:]))
            targets = batch.targets[rows] if batch.targets is not None else None
            labels = batch.labels[rows]
            return self.loss(logits, labels, targets), self.is_success(logits, labels, targets)

        everyone = torch.arange(len(best), device=best.device)
        loss_min, done = query(best, everyone)
        spent = torch.ones(len(best), dtype=torch.long, device=best.device)
        active = everyone[~done]
        l2 = self.threat.norm == "l2"
        n, c, h, w = x0.shape
        eps, bounds = self.threat.eps, self.threat.bounds
        up, down = (x0 + eps).clamp(*bounds), (x0 - eps).clamp(*bounds)
        # With eps = 0 the ball is one point: no candidate can differ, so nothing to search.
        iterations = budget - 1 if eps > 0 else 0
        # A chunk's windows are laid out at once: at most 2**24 mask entries per chunk.
        chunk = max(1, min(CHUNK, 2**24 // max(n * h * w, 1)))
        for first in range(0, iterations, chunk):
            if active.numel() == 0:
                break
            # The random numbers of a chunk of iterations, drawn in one call per kind; the
            # same as drawing them one iteration at a time (each has its own streams).
            its = range(first, min(first + chunk, iterations))
            fractions = [window_fraction(i, budget, p_init, rescale) for i in its]
            streams = 1 + 16 * torch.tensor(list(its), device=best.device)
            draw_ids = ids[active]
            windows = sampling.uniform_streams(seed, draw_ids, streams, (2,), torch.float64)
            seconds = (
                sampling.uniform_streams(seed, draw_ids, streams + 1, (2,), torch.float64)
                if l2
                else windows
            )
            signs = sampling.uniform_streams(
                seed, draw_ids, streams + 2, (c + 1,) if l2 else (RETRIES, c), x0.dtype
            )
            if not l2:
                sizes = [_side(p, h, w, odd=False) for p in fractions]
                masks = _windows(windows, sizes, h, w)[0]
            at = torch.arange(len(active), device=best.device)  # each row's place in the draws
            for k in range(len(its)):
                if active.numel() == 0:
                    break
                current = best[active]
                if l2:
                    cand = self._step_l2(
                        current, x0[active], windows[at, k], seconds[at, k], signs[at, k],
                        fractions[k],
                    )  # fmt: skip
                else:
                    cand = self._step_linf(
                        current, up[active], down[active], masks[at, k], signs[at, k]
                    )
                # A candidate equal to the current point would waste a query: skip it.
                # (Almost every candidate changes, and almost no query breaks a sample:
                # the common case costs two host syncs and no boolean indexing, which is
                # most of an iteration's cost on a small model.)
                changed = (cand != current).flatten(1).any(dim=1)
                rows = active
                if not bool(changed.all()):
                    rows, cand, current = active[changed], cand[changed], current[changed]
                    if rows.numel() == 0:
                        continue
                loss, hit = query(cand, rows)
                spent.index_add_(0, rows, torch.ones_like(rows))
                kept_loss = loss_min[rows]
                better = (loss < kept_loss) | hit
                best.index_copy_(0, rows, torch.where(per_sample(better, cand), cand, current))
                loss_min.index_copy_(0, rows, torch.where(better, loss, kept_loss))
                if bool(hit.any()):
                    done[rows[hit]] = True
                    still = ~done[active]
                    active, at = active[still], at[still]
        self._queries.extend(spent.tolist())
        return best.reshape(shape)

    def _init_linf(self, x0: torch.Tensor, seed: int, ids: torch.Tensor) -> torch.Tensor:
        n, c, _, w = x0.shape
        u = sampling.uniform(seed, ids, torch.Size([n, c, 1, w]), 0, x0.dtype)
        return (x0 + _signs(u) * self.threat.eps).clamp(*self.threat.bounds)

    def _step_linf(
        self,
        best: torch.Tensor,
        up: torch.Tensor,
        down: torch.Tensor,
        window: torch.Tensor,
        u_signs: torch.Tensor,
    ) -> torch.Tensor:
        """One candidate per row: `window` (n, 1, h, w) is the mask of the window to change,
        up and down the points at +eps and -eps (clipped), u_signs (n, RETRIES, c) the
        sign draws."""
        n = len(best)
        # Does +eps (or -eps) in a channel change any pixel of the window?
        moves_up = ((up != best) & window).flatten(2).any(dim=2)[:, None]
        moves_down = ((down != best) & window).flatten(2).any(dim=2)[:, None]
        # The paper redraws the signs until the window changes; RETRIES draws at once, and
        # the first that changes something is taken (argmax finds the first True).
        plus = _signs(u_signs) > 0
        changes = torch.where(plus, moves_up, moves_down).any(dim=2)
        chosen = plus[torch.arange(n, device=best.device), changes.float().argmax(dim=1)]
        return torch.where(window, torch.where(chosen[:, :, None, None], up, down), best)

    def _init_l2(self, x0: torch.Tensor, seed: int, ids: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x0.shape
        sh, sw = max(h // 5, 1), max(w // 5, 1)
        cells = [
            (top, left)
            for top in range(max((h - 5 * sh) // 2, 0), h - sh + 1, sh)
            for left in range(max((w - 5 * sw) // 2, 0), w - sw + 1, sw)
        ]
        u = sampling.uniform(seed, ids, torch.Size([n, len(cells), c + 1]), 0, x0.dtype)
        bumps = torch.stack([_bump(sh, sw, False), _bump(sh, sw, True)]).to(x0)
        delta = torch.zeros_like(x0)
        for k, (top, left) in enumerate(cells):
            bump = bumps[(u[:, k, c] < 0.5).long()][:, None]  # a random orientation each
            signs = _signs(u[:, k, :c])[:, :, None, None]
            delta[:, :, top : top + sh, left : left + sw] += bump * signs
        return (x0 + _rescale(delta, self.threat.eps)).clamp(*self.threat.bounds)

    def _step_l2(
        self,
        best: torch.Tensor,
        x0: torch.Tensor,
        u_first: torch.Tensor,
        u_second: torch.Tensor,
        u_signs: torch.Tensor,
        p: float,
    ) -> torch.Tensor:
        """One candidate per row: u_first and u_second (n, 2) place the two windows, u_signs
        (n, c + 1) are the channel signs and the bump's orientation."""
        c, h, w = x0.shape[1:]
        eps, delta = self.threat.eps, best - x0
        sh, sw = _side(p, h, w, odd=True)
        first, rows, cols = (t[:, 0] for t in _windows(u_first[:, None], [(sh, sw)], h, w))
        second = _windows(u_second[:, None], [(sh, sw)], h, w)[0][:, 0]
        bumps = torch.stack([_bump(sh, sw, False), _bump(sh, sw, True)]).to(x0)
        # Lay each sample's bump into its own window (indices clamped; masked outside it).
        turned = (u_signs[:, c] < 0.5).long()
        placed = bumps[turned[:, None, None], rows[:, :, None], cols[:, None, :]]
        new = placed[:, None] * _signs(u_signs[:, :c])[:, :, None, None] * first
        old = delta * first
        new = new + old / (1e-10 + _norm(old, (2, 3)))
        # Budget per channel: what the image has left, plus the mass of both windows.
        spare = (eps**2 - _norm(delta, (1, 2, 3)) ** 2).clamp_min(0) / c
        mass = _norm(delta * (first | second), (2, 3)) ** 2
        new = new / _norm(new, (2, 3)).clamp_min(1e-12) * (spare + mass).sqrt()
        delta = torch.where(first, new, torch.where(second, 0.0, delta))
        return (x0 + _rescale(delta, eps)).clamp(*self.threat.bounds)


def window_fraction(i: int, budget: int, p_init: float, rescale: bool) -> float:
    """The fraction of the image a window covers at iteration i (from 0) of a search with
    `budget` queries: p_init halved after each of HALVINGS, counted in iterations of 10000
    rescaled to the budget, or (rescale=False, AutoAttack's standard setting) as they are."""
    it = int(i / budget * 10000) if rescale else i
    return p_init / 2.0 ** sum(it > h for h in HALVINGS)


def _as_image(shape: torch.Size) -> tuple[int, int, int, int]:
    """(n, channels, height, width) view: last two dims spatial, the rest channels."""
    dims = list(shape[1:])
    if len(dims) == 1:
        return (shape[0], 1, 1, dims[0])
    return (shape[0], math.prod(dims[:-2]), dims[-2], dims[-1])


def _side(p: float, h: int, w: int, odd: bool) -> tuple[int, int]:
    """Window size covering a fraction p of the pixels: a square where the image allows."""
    s = max(round(math.sqrt(p * h * w)), 1)
    if odd:  # the L2 bumps are centred: the paper uses odd sides of at least 3
        s = max(s, 3) | 1
    sh = min(s, h)
    return sh, min(w, max(round(s * s / sh), 1))


def _windows(
    u: torch.Tensor, sizes: list[tuple[int, int]], h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random window per sample and iteration, placed by u (n, k, 2) in [0, 1), of size
    sizes[j] at iteration j: its (n, k, 1, h, w) mask and, per pixel row and column, the
    clamped offset inside the window ((n, k, h) and (n, k, w))."""
    offsets, inside = [], []
    for d, full in enumerate((h, w)):
        side = torch.tensor([size[d] for size in sizes], device=u.device)
        start = torch.minimum((u[:, :, d] * (full - side + 1)).long(), full - side)
        offset = torch.arange(full, device=u.device) - start[:, :, None]
        inside.append((offset >= 0) & (offset < side[:, None]))
        offsets.append(torch.minimum(offset.clamp_min(0), side[:, None] - 1))
    mask = (inside[0][:, :, :, None] & inside[1][:, :, None, :])[:, :, None]
    return mask, offsets[0], offsets[1]


def _rings(a: int, b: int) -> torch.Tensor:
    """The paper's pseudo-Gaussian: nested centred rectangles weighted 1 / (k + 1)^2."""
    d = torch.zeros(a, b, dtype=torch.float64)
    for k in range(max(a, b) // 2 + 1):
        d[max(a // 2 - k, 0) : a // 2 + k + 1, max(b // 2 - k, 0) : b // 2 + k + 1] += (
            1 / (k + 1) ** 2
        )
    return torch.div(d, d.norm().clamp_min(1e-12))


def _bump(a: int, b: int, transpose: bool) -> torch.Tensor:
    """An (a, b) unit-norm bump: two halves of opposite sign, split across rows or columns."""
    if transpose:
        return _bump(b, a, False).T
    d = torch.cat([_rings(a // 2, b), -_rings(a - a // 2, b)])
    return torch.div(d, d.norm())


def _signs(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u < 0.5, -1.0, 1.0).to(u.dtype)


def _norm(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return t.pow(2).sum(dim=dims, keepdim=True).sqrt()


def _rescale(delta: torch.Tensor, eps: float) -> torch.Tensor:
    return delta / _norm(delta, (1, 2, 3)).clamp_min(1e-12) * eps
