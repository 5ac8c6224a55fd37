"""FAB, the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020, "Minimally distorted
adversarial examples with a fast adaptive boundary attack"): a minimum-norm attack.

Each iteration linearises the model at the current point x and picks the nearest
linearised decision boundary: for class k, with f_k = z_k - z_y and w_k = grad f_k, the one
with the smallest |f_k| / ||w_k||_q (q the dual norm). It then projects both x and the
clean input x0 onto that hyperplane inside the box (attacks/fab_projections.py), giving
moves d1 and d2, and steps to

    x <- clip((1 - alpha) (x + eta d1) + alpha (x0 + eta d2)),
    alpha = min(||d1|| / (||d1|| + ||d2||), alpha_max),

biased towards x0 so that the point found stays close to it (eta overshoots the boundary a
little). When the new point is misclassified, its distance to x0 is a candidate minimum
and the iterate steps back towards x0: x <- x0 + beta (x - x0).

- `fab`: the nearest boundary among all classes (one backward pass per class and
  iteration); with target=, the boundary of the target only and success = the target reached.
- `fab-t`: AutoAttack's FAB-T, one run towards each of the `n_target_classes` classes with
  the highest clean logits (one backward pass per iteration and run); success is any
  misclassification, as in AutoAttack.

The runs of all target classes and restarts are stacked as rows of one batch (row = sample,
target, restart); every row does exactly what the reference's sequential run would do.
Each sample keeps its smallest norm over its rows. A sample whose smallest norm is above
eps gets its clean input back (never a point outside the ball that projecting would turn
into a different, unjudged point), so every success is a point the attack found within eps.
The norms found are reported in details()["minimum_norm"], as for cw and deepfool; with
`stop_at_eps` a sample stops at its first point within eps (AutoAttack's verdict with less
work; the norms reported then only say "within eps").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from typing import ClassVar

import torch

from pytest_robust.attacks import sampling
from pytest_robust.attacks.base import NO_GRADIENT_PATH
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.base import NoGradientPath
from pytest_robust.attacks.fab_projections import project_onto_hyperplane
from pytest_robust.attacks.minimum_norm import MinimumNormAttack
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import per_sample
from pytest_robust.params import Param

# Random restarts draw from streams of their own (apart from APGD's and PGD's).
STREAM_BASE = 3 << 20
# Where ||d|| is 0 (x already on the hyperplane), alpha stays defined (the reference's 1e-8).
_TINY = 1e-8

_PARAMS = {
    "steps": Param(int, 100, minimum=1, doc="iterations per run"),
    "restarts": Param(
        int,
        1,
        minimum=1,
        doc="runs per target; the first from the clean input, the others "
        "from a random point at 0.5 eps",
    ),
    "alpha_max": Param(float, 0.1, minimum=0.0, maximum=1.0, doc="largest bias towards x0"),
    "eta": Param(float, 1.05, minimum=1.0, doc="overshoot of the projection step"),
    "beta": Param(float, 0.9, minimum=0.0, maximum=1.0, doc="step back towards x0 on success"),
    "stop_at_eps": Param(
        bool,
        False,
        doc="stop a sample at its first adversarial point within eps (AutoAttack's "
        "verdict with less work) instead of shrinking its norm for all steps",
    ),
}


@dataclass
class _Rows:
    """The rows still running: one per (sample, target rank, restart)."""

    owner: torch.Tensor  # the sample (index into the batch) of each row
    rank: torch.Tensor  # target rank of the row (0 for untargeted fab)
    x0: torch.Tensor
    labels: torch.Tensor
    towards: torch.Tensor | None  # the class whose boundary the row aims for (None: nearest)
    goal: torch.Tensor | None  # the class that counts as success (None: any wrong one)
    x: torch.Tensor
    best: torch.Tensor
    best_norm: torch.Tensor

    def keep(self, rows: torch.Tensor) -> _Rows:
        def pick(v: torch.Tensor | None) -> torch.Tensor | None:
            return None if v is None else v[rows]

        return _Rows(
            self.owner[rows], self.rank[rows], self.x0[rows], self.labels[rows],
            pick(self.towards), pick(self.goal), self.x[rows], self.best[rows],
            self.best_norm[rows],
        )  # fmt: skip


@register_attack
class FAB(MinimumNormAttack):
    name = "fab"
    params = dict(_PARAMS)
    norms = ("linf", "l2")
    targetable = True
    reference = (
        "Croce, Hein 2020, Minimally distorted adversarial examples with a fast adaptive "
        "boundary attack (ICML)"
    )
    # fab-t: the targets steer the hyperplane only; success is any wrong class.
    multi_targeted: ClassVar[bool] = False

    def __init__(self, threat: Any, **config: Any) -> None:
        super().__init__(threat, **config)
        self._broken_by_rank: list[int] = []
        self._classes: int | None = None

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        x0 = batch.x
        n = len(x0)
        ranked = self._ranked_targets(batch) if self.multi_targeted else None
        ranks = ranked.shape[1] if ranked is not None else 1
        restarts = int(self.option("restarts"))
        # Rows in order (rank, restart, sample): row r belongs to sample r % n.
        copies = ranks * restarts
        owner = torch.arange(n, device=x0.device).repeat(copies)
        rank = torch.arange(ranks, device=x0.device).repeat_interleave(restarts * n)
        restart = torch.arange(restarts, device=x0.device).repeat_interleave(n).repeat(ranks)
        x_rows = x0.repeat(copies, *([1] * (x0.dim() - 1)))
        if ranked is not None:
            # ranked[i, r] for row (r, restart, i)
            towards: torch.Tensor | None = (
                ranked.T[:, None, :].expand(ranks, restarts, n).reshape(-1)
            )
            goal = None
        else:
            towards = goal = None if batch.targets is None else batch.targets[owner]
        start = self._starts(batch, x_rows, owner, rank, restart)
        rows = _Rows(
            owner, rank, x_rows, batch.labels[owner], towards, goal, start, x_rows.clone(),
            torch.full((len(owner),), math.inf, dtype=torch.float64, device=x0.device),
        )  # fmt: skip
        best_norm, best, best_rank = self._run(batch, rows, n)
        self._found.append(best_norm[torch.isfinite(best_norm)].cpu())
        within = best_norm <= self.threat.eps
        if ranked is not None:
            counts = torch.bincount(best_rank[within], minlength=ranks).tolist()
            while len(self._broken_by_rank) < ranks:
                self._broken_by_rank.append(0)
            for r, count in enumerate(counts):
                self._broken_by_rank[r] += int(count)
        # Never hand the engine a point beyond eps: projecting it would make a different,
        # unjudged point. Those samples get their clean input back.
        return torch.where(per_sample(within, x0), best, x0)

    def _starts(
        self,
        batch: AttackBatch,
        x_rows: torch.Tensor,
        owner: torch.Tensor,
        rank: torch.Tensor,
        restart: torch.Tensor,
    ) -> torch.Tensor:
        """The clean input for each row's first restart; for the others a random point at
        distance 0.5 eps (the reference's start), keyed by (seed, sample, rank, restart)."""
        later = (restart > 0).nonzero().squeeze(1)
        if later.numel() == 0:
            return x_rows.clone()
        start = x_rows.clone()
        ids = batch.sample_ids[owner[later]]
        eps, shape = self.threat.eps, x_rows[later].shape
        streams = STREAM_BASE + rank[later] * int(self.option("restarts")) + restart[later]
        for stream in sorted(set(streams.tolist())):
            pick = (streams == stream).nonzero().squeeze(1)
            part = torch.Size([len(pick), *shape[1:]])
            if self.threat.norm == "linf":
                u = sampling.uniform(batch.seed, ids[pick], part, stream, x_rows.dtype)
                t = 2 * u - 1
                size = t.flatten(1).abs().amax(dim=1)
            else:
                t = sampling.normal(batch.seed, ids[pick], part, stream, x_rows.dtype)
                size = t.flatten(1).norm(dim=1)
            delta = 0.5 * eps * t / per_sample(size.clamp_min(1e-12), t)
            start[later[pick]] = x_rows[later[pick]] + delta
        return start.clamp(*self.threat.bounds)

    def _ranked_targets(self, batch: AttackBatch) -> torch.Tensor:
        """Each sample's other classes, highest clean logit first, (B, k)."""
        with torch.no_grad():
            logits = batch.model(batch.x)
        classes = logits.shape[1]
        self._classes = classes
        k = min(int(self.option("n_target_classes")), classes - 1)
        others = logits.float().scatter(1, batch.labels[:, None], -math.inf)
        return others.sort(dim=1, descending=True).indices[:, :k]

    def _run(
        self, batch: AttackBatch, rows: _Rows, n: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All iterations of all rows; per sample, the smallest norm found (inf if none),
        its point (x0 if none) and the target rank of the row that found it."""
        steps = int(self.option("steps"))
        alpha_max, eta = float(self.option("alpha_max")), float(self.option("eta"))
        beta, stop = float(self.option("beta")), bool(self.option("stop_at_eps"))
        eps, bounds = self.threat.eps, self.threat.bounds
        x0_all = batch.x
        best_norm = torch.full((n,), math.inf, dtype=torch.float64, device=x0_all.device)
        best = x0_all.clone()
        best_rank = torch.zeros(n, dtype=torch.long, device=x0_all.device)
        for _ in range(steps):
            w, f = self._hyperplane(batch, rows)
            flat_x, flat_x0 = rows.x.flatten(1), rows.x0.flatten(1)
            offset = (w * flat_x).sum(dim=1) - f  # the hyperplane <w, u> = offset
            both = project_onto_hyperplane(
                torch.cat([flat_x, flat_x0]), torch.cat([w, w]), torch.cat([offset, offset]),
                self.threat.norm, bounds,
            )  # fmt: skip
            d1, d2 = both[: len(w)], both[len(w) :]
            a1, a2 = self._size(d1).clamp_min(_TINY), self._size(d2).clamp_min(_TINY)
            alpha = (a1 / (a1 + a2)).clamp(0.0, alpha_max)[:, None]
            moved = (1 - alpha) * (flat_x + eta * d1) + alpha * (flat_x0 + eta * d2)
            x = moved.clamp(*bounds).view_as(rows.x)
            with torch.no_grad():
                hit = self._hit(batch.model(x), rows)
            size = self.threat.distance(x, rows.x0).double()
            better = hit & (size < rows.best_norm)
            rows.best = torch.where(per_sample(better, x), x, rows.best)
            rows.best_norm = torch.where(better, size, rows.best_norm)
            # On success, step back towards x0 to look for a closer point.
            rows.x = torch.where(per_sample(hit, x), rows.x0 + beta * (x - rows.x0), x)
            if stop:
                _fold(rows, best_norm, best, best_rank)
                done = (best_norm <= eps)[rows.owner]
                if bool(done.any()):
                    rows = rows.keep((~done).nonzero().squeeze(1))
                    if len(rows.owner) == 0:
                        break
        _fold(rows, best_norm, best, best_rank)
        return best_norm, best, best_rank

    def _size(self, d: torch.Tensor) -> torch.Tensor:
        return d.abs().amax(dim=1) if self.threat.norm == "linf" else d.norm(dim=1)

    def _hit(self, logits: torch.Tensor, rows: _Rows) -> torch.Tensor:
        if rows.goal is not None:
            return logits.argmax(dim=1) == rows.goal
        return logits.argmax(dim=1) != rows.labels

    def _hyperplane(self, batch: AttackBatch, rows: _Rows) -> tuple[torch.Tensor, torch.Tensor]:
        """The linearised boundary each row aims for: (w, f) with f + <w, u - x> = 0 the
        boundary near x, w flattened; the nearest one over all classes unless the row has a
        class to aim for."""
        x = rows.x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = batch.model(x)
            if not logits.requires_grad:
                raise NoGradientPath(NO_GRADIENT_PATH.format(who=f"attack={self.name!r}"))
            true = logits.gather(1, rows.labels[:, None]).squeeze(1)
            if rows.towards is not None:
                gap = logits.gather(1, rows.towards[:, None]).squeeze(1) - true
                (grad,) = torch.autograd.grad(gap.sum(), x)
                return _finite(grad.flatten(1)), _finite(gap.detach())
            return self._nearest(logits, true, x, rows.labels)

    def _nearest(
        self, logits: torch.Tensor, true: torch.Tensor, x: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Over the classes other than each row's label, in index order: the boundary with
        the smallest |f_k| / ||w_k||_q, one backward pass per class. Only the best gradient
        so far is kept, so memory does not grow with the number of classes."""
        classes = logits.shape[1]
        others = torch.arange(classes - 1, device=labels.device)[None, :].expand(len(labels), -1)
        others = others + (others >= labels[:, None]).long()  # skip each row's own label
        best_w: torch.Tensor | None = None
        best_f = torch.zeros_like(true)
        best_dist = torch.full_like(true, math.inf, dtype=torch.float64)
        for j in range(classes - 1):
            gap = logits.gather(1, others[:, j : j + 1]).squeeze(1) - true
            (grad,) = torch.autograd.grad(gap.sum(), x, retain_graph=j < classes - 2)
            w, f = _finite(grad.flatten(1)), _finite(gap.detach())
            dual = w.abs().sum(dim=1) if self.threat.norm == "linf" else w.norm(dim=1)
            dist = f.abs().double() / (dual.double() + 1e-12)
            closer = dist < best_dist
            if best_w is None:
                best_w, best_f, best_dist = w, f, torch.where(closer, dist, best_dist)
                continue
            best_w = torch.where(closer[:, None], w, best_w)
            best_f = torch.where(closer, f, best_f)
            best_dist = torch.where(closer, dist, best_dist)
        assert best_w is not None
        return best_w, best_f


def _fold(
    rows: _Rows, best_norm: torch.Tensor, best: torch.Tensor, best_rank: torch.Tensor
) -> None:
    """Merge the rows' best points into their samples' in place: the smallest norm wins,
    on ties the earliest row (the lowest target rank, then the first restart)."""
    found = torch.full_like(best_norm, math.inf)
    found = found.scatter_reduce(0, rows.owner, rows.best_norm, "amin")
    improves = found < best_norm
    winners = (improves[rows.owner] & (rows.best_norm == found[rows.owner])).nonzero().squeeze(1)
    if winners.numel() == 0:
        return
    first = torch.full_like(best_rank, len(rows.owner))
    first = first.scatter_reduce(0, rows.owner[winners], winners, "amin")
    samples = improves.nonzero().squeeze(1)
    row = first[samples]
    best_norm[samples] = found[samples]
    best[samples] = rows.best[row]
    best_rank[samples] = rows.rank[row]


def _finite(v: torch.Tensor) -> torch.Tensor:
    """A non-finite gradient or logit gives no step rather than a NaN input."""
    return torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)


@register_attack
class FABT(FAB):
    """FAB-T: FAB towards each of the most likely other classes (by clean logits), the runs
    stacked as rows of one batch; success is any misclassification, as in AutoAttack.

    Not `targeted` (that would make the engine count only reaching a target) and not
    `targetable`: like AutoAttack's FAB-T (and apgd-t) it picks its own targets to find *a*
    wrong class, so the check stays untargeted and combines with other attacks.
    """

    name = "fab-t"
    params = {
        **_PARAMS,
        "n_target_classes": Param(
            int,
            9,
            minimum=1,
            doc="target classes tried, most likely first (capped at the number of classes - 1)",
        ),
    }
    targetable = False
    multi_targeted = True

    def details(self) -> dict[str, Any]:
        asked = int(self.option("n_target_classes"))
        used = min(asked, self._classes - 1) if self._classes is not None else asked
        details = super().details()
        details["n_target_classes"] = used
        # As the attack saw it on the model attacked; the engine's re-verification decides.
        details["broken_by_target_rank"] = list(self._broken_by_rank)
        if used < asked:
            details["note"] = (
                f"n_target_classes={asked} reduced to {used}: the model has {self._classes} classes"
            )
        return details
