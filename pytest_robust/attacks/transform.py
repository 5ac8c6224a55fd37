"""The worst case over natural transformations, per sample (invariance testing).

Not an eps-ball attack: the threat model is the box of transformation parameters the
marker allows (rotate=15 means any angle in [-15, 15] degrees, ...; see
pytest_robust.attacks.transform_ops for what each does), and the engine's guard checks the bounds.

The search, per sample, stops at the first transformation that breaks it:

- replay first: the counterexample an earlier run stored for this sample (if it is still
  inside the box) is tried before anything else, so a regression shows up on try one;
- grid (search="auto" when the grid has at most `budget` points): every combination of
  evenly spaced values, smallest first, so the first break is the smallest on the grid
  (Engstrom et al. 2019 found a grid the strongest spatial attack);
- random: `budget` seeded draws per sample (dense points of the box, one parameter alone,
  corners), then shrinking: drop each parameter that is not needed, then bisect the
  remaining transformation towards the identity;
- grad: `steps` signed-gradient steps on the parameters from a seeded random start
  (the first-order spatial attack of Engstrom et al.), then the same shrinking.

A seeded search rather than Hypothesis inside the engine: Hypothesis explores one example
at a time, while this evaluates hundreds of samples times many transformations per
forward pass, and its draws would depend on Hypothesis's database and settings rather than
on the seed. Hypothesis strategies for the same transformations are in
pytest_robust.strategies, for hand-written @given tests.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

import pytest_robust.attacks.transform_ops as T
from pytest_robust.attacks import sampling
from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.gradient import input_gradient
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param

RANGES = ("rotate", "translate", "scale", "brightness", "contrast", "blur", "noise")
SEARCHES = ("auto", "grid", "random", "grad")
SHRINK_STEPS = 10  # bisection steps towards the identity: 2**-10 of the found size
RANDOM_STREAM, GRAD_STREAM = 7001, 9001


@register_attack
class Transform(Attack):
    name = "transform"
    eps_ball = False
    params = {
        "rotate": Param(float, 0.0, 0.0, 180.0, doc="largest rotation, degrees either way"),
        "translate": Param(float, 0.0, minimum=0.0, doc="largest shift in x and in y, pixels"),
        "scale": Param(float, 0.0, 0.0, 0.9, doc="zoom by a factor in [1 - scale, 1 + scale]"),
        "brightness": Param(float, 0.0, minimum=0.0, doc="largest value added to every pixel"),
        "contrast": Param(float, 0.0, 0.0, 1.0, doc="contrast factor in [1 - c, 1 + c]"),
        "blur": Param(float, 0.0, minimum=0.0, doc="largest Gaussian blur sigma, pixels"),
        "noise": Param(
            float, 0.0, minimum=0.0, doc="largest sigma of a seeded Gaussian noise pattern"
        ),
        "search": Param(str, "auto", choices=SEARCHES, doc="'auto', 'grid', 'random', 'grad'"),
        "budget": Param(
            int, 200, minimum=1, doc="random draws per sample; auto uses the grid up to this size"
        ),
        "grid": Param(int, 5, minimum=2, doc="grid values per parameter range"),
        "steps": Param(int, 20, minimum=1, doc="gradient steps (search='grad')"),
    }
    reference = (
        "Engstrom et al. 2019, Exploring the Landscape of Spatial Robustness; "
        "Carlini et al. 2019, On Evaluating Adversarial Robustness"
    )

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        super().__init__(threat, **config)
        self.top = T.maxima({k: float(self.option(k)) for k in RANGES})
        self.mode = str(self.option("search"))
        self._grid: torch.Tensor | None = None
        if self.mode in ("auto", "grid"):
            self._grid = T.grid(self.top, int(self.option("grid")))
            if self.mode == "auto":
                self.mode = "grid" if len(self._grid) <= int(self.option("budget")) else "random"
        self._recalled: dict[int, Any] = {}
        self._found: dict[int, list[float]] = {}
        self._tries: list[int] = []
        self._replayed = 0

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        if not any(config.get(name) for name in RANGES):
            raise RobustConfigError(
                "attack='transform' needs at least one transformation range: "
                f"{'=, '.join(RANGES)}=, e.g. rotate=15, translate=2"
            )
        search = config.get("search", "auto")
        if search == "auto":  # resolved here, so the report says which search ran
            top = T.maxima({k: float(config.get(k) or 0.0) for k in RANGES})
            size = len(T.grid(top, int(config.get("grid", 5))))
            search = "grid" if size <= int(config.get("budget", 200)) else "random"
        # Ranges not in use and settings of the other searches are left out, so the report
        # names only what was searched and how.
        unused = {k for k in RANGES if not config.get(k)}
        unused |= {"grid": {"budget", "steps"}, "random": {"grid", "steps"}}.get(
            search, {"grid", "budget"}
        )
        return {**{k: v for k, v in config.items() if k not in unused}, "search": search}

    def gradient_loss(self) -> str | None:
        # Only the gradient search follows the model's (cross-entropy) gradients.
        return "ce" if self.mode == "grad" else None

    # --- memory ---------------------------------------------------------------------

    def recall(self, remembered: Mapping[int, Any]) -> None:
        self._recalled = dict(remembered)

    def remember(self) -> dict[int, Any]:
        """Sample index -> the parameters of its counterexample that are not zero."""
        return {i: T.describe(row, digits=None) for i, row in sorted(self._found.items())}

    def _replayable(self, entry: Any) -> list[float] | None:
        if not isinstance(entry, dict) or not set(entry) <= set(T.PARAMS):
            return None
        if not all(isinstance(v, (int, float)) for v in entry.values()):
            return None
        row = [float(entry.get(name, 0.0)) for name in T.PARAMS]
        # Only inside today's ranges: a narrower marker must not replay a wider transform.
        return row if bool(T.inside(torch.tensor(row), self.top)) else None

    # --- results --------------------------------------------------------------------

    def details(self) -> dict[str, Any]:
        found = {str(i): T.describe(row) for i, row in sorted(self._found.items())}
        details: dict[str, Any] = {
            "search": self.mode,
            "replayed": self._replayed,
            "tries": {
                "mean": statistics.fmean(self._tries),
                "median": float(statistics.median(self._tries)),
            }
            if self._tries
            else None,
            "counterexamples": found,
        }
        if self._found:
            rows = torch.tensor(list(self._found.values()), dtype=torch.float64)
            smallest = int(torch.argmin(T.sizes(rows, self.top)))
            sample = list(self._found)[smallest]
            shown = ", ".join(f"{k}={v:g}" for k, v in found[str(sample)].items())
            replayed = f", {self._replayed} by last run's" if self._replayed else ""
            details["counterexample"] = (
                f"smallest breaking transformation: sample {sample}: {shown} "
                f"({len(found)} broken{replayed}; each one in details['counterexamples'])"
            )
        return details

    # --- search ---------------------------------------------------------------------

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        x = batch.x
        if x.dim() != 4 and bool((self.top[T.SPATIAL] > 0).any()):
            raise RobustConfigError(
                "attack='transform': rotate=, translate=, scale= and blur= need image inputs "
                f"of shape (N, C, H, W); the data's inputs have shape {tuple(x.shape)}"
            )
        n = len(x)
        found = T.identity(n, x.dtype, str(x.device))
        broken = torch.zeros(n, dtype=torch.bool, device=x.device)
        tries = torch.zeros(n, dtype=torch.long, device=x.device)
        replayed = self._replay(batch, found, broken, tries)
        ids = batch.sample_ids.tolist()
        if self.mode == "grid":
            assert self._grid is not None
            grid = self._grid.to(dtype=x.dtype, device=x.device)
            self._scan(batch, found, broken, tries, len(grid), lambda k, rows: grid[k])
        else:
            before = broken.clone()
            if self.mode == "random":
                budget = int(self.option("budget"))
                draw = lambda k, rows: self._draw(batch, k, rows)  # noqa: E731
                self._scan(batch, found, broken, tries, budget, draw)
            else:
                self._gradient(batch, found, broken, tries)
            self._shrink(batch, found, broken & ~before)
        best = x.clone()
        rows = broken.nonzero().squeeze(1)
        if len(rows):
            best[rows] = self._images(batch, rows, found[rows])
            # Judge the final points as the engine will (the same batch in one pass).
            with torch.no_grad():
                still = self.is_success(batch.model(best), batch.labels, None)
            broken &= still
            best[~broken] = x[~broken]
        for i in broken.nonzero().squeeze(1).tolist():
            self._found[ids[i]] = found[i].tolist()
        self._replayed += int((replayed & broken).sum())
        self._tries.extend(tries.tolist())
        return best

    def _images(self, batch: AttackBatch, rows: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        bounds = self.threat.bounds
        return T.apply(batch.x[rows], params, bounds, batch.seed, batch.sample_ids[rows])

    def _breaks(self, batch: AttackBatch, rows: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Per row: does transforming sample rows[i] by params[i] break it? One forward
        pass per len(batch.x) images."""
        chunk = max(1, len(batch.x))
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), chunk):
                r, p = rows[start : start + chunk], params[start : start + chunk]
                logits = batch.model(self._images(batch, r, p))
                out.append(self.is_success(logits, batch.labels[r], None))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)

    def _replay(
        self, batch: AttackBatch, found: torch.Tensor, broken: torch.Tensor, tries: torch.Tensor
    ) -> torch.Tensor:
        """Try each sample's remembered counterexample (inside today's ranges) first; the
        samples it still breaks, as a mask."""
        hits = torch.zeros_like(broken)
        rows, params = [], []
        for i, sample in enumerate(batch.sample_ids.tolist()):
            row = self._replayable(self._recalled.get(sample))
            if row is not None:
                rows.append(i)
                params.append(row)
        if not rows:
            return hits
        index = torch.tensor(rows, device=batch.x.device)
        candidate = torch.tensor(params, dtype=found.dtype, device=found.device)
        hit = self._breaks(batch, index, candidate)
        tries[index] = 1
        found[index[hit]] = candidate[hit]
        broken[index[hit]] = True
        hits[index[hit]] = True
        return hits

    def _scan(
        self,
        batch: AttackBatch,
        found: torch.Tensor,
        broken: torch.Tensor,
        tries: torch.Tensor,
        total: int,
        candidates: Callable[[int, torch.Tensor], torch.Tensor],
    ) -> None:
        """Try candidates 0..total-1 on every unbroken sample, in order; keep each
        sample's first break. `candidates(k, rows)` gives try k's parameters for `rows`
        (one row, broadcast, or one per sample). Several tries share a forward pass."""
        active = (~broken).nonzero().squeeze(1)
        k = 0
        while k < total and len(active):
            per_pass = max(1, len(batch.x) // len(active))
            ks = list(range(k, min(total, k + per_pass)))
            params = torch.cat([candidates(j, active).expand(len(active), -1) for j in ks])
            hit = self._breaks(batch, active.repeat(len(ks)), params).view(len(ks), -1)
            first = hit.int().argmax(dim=0)  # the first try that broke each sample
            done = hit.any(dim=0)
            tries[active] += torch.where(done, first + 1, len(ks))
            params = params.view(len(ks), len(active), -1)
            rows = active[done]
            found[rows] = params[first[done], done.nonzero().squeeze(1)]
            broken[rows] = True
            active = active[~done]
            k += len(ks)

    def _draw(self, batch: AttackBatch, k: int, rows: torch.Tensor) -> torch.Tensor:
        """Random try k for `rows`: a dense point of the box, one parameter alone, or a
        corner (k mod 3), keyed by (seed, sample index, k)."""
        ids = batch.sample_ids[rows]
        shape = torch.Size([len(ids), len(T.PARAMS) + 1])
        u = sampling.uniform(batch.seed, ids, shape, RANDOM_STREAM + k, batch.x.dtype)
        return self._to_box(u[:, :-1], u[:, -1], kind=k % 3)

    def _to_box(self, u: torch.Tensor, pick: torch.Tensor, kind: int) -> torch.Tensor:
        top = self.top.to(u)
        signed = 2 * u - 1
        if kind == 2:
            signed = torch.where(signed >= 0, 1.0, -1.0).to(u)
        for j in T.ONE_SIDED:
            signed[:, j] = u[:, j] if kind != 2 else 1.0
        params = signed * top
        used = (top > 0).nonzero().squeeze(1)
        # kind 1 keeps one parameter in use, chosen by `pick`. No parameter in use (ranges
        # that underflow to 0 in the input dtype) leaves only the identity.
        if kind == 1 and len(used):
            choice = used[(pick * len(used)).long().clamp(max=len(used) - 1)]
            mask = F.one_hot(choice, len(T.PARAMS)).to(u)
            params = params * mask
        return params

    def _gradient(
        self, batch: AttackBatch, found: torch.Tensor, broken: torch.Tensor, tries: torch.Tensor
    ) -> None:
        """Signed-gradient ascent of the loss over the parameters, projected onto the box;
        each sample keeps the first parameters that broke it."""
        steps = int(self.option("steps"))
        active = (~broken).nonzero().squeeze(1)
        if not len(active):
            return
        top = self.top.to(found)
        low = -top.clone()
        for j in T.ONE_SIDED:
            low[j] = 0.0
        shape = torch.Size([len(active), len(T.PARAMS) + 1])
        u = sampling.uniform(batch.seed, batch.sample_ids[active], shape, GRAD_STREAM, found.dtype)
        params = self._to_box(u[:, :-1], u[:, -1], kind=0) / 2  # start near the identity
        step = 2.5 * top / steps
        for k in range(steps + 1):
            params = params.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = batch.model(self._images(batch, active, params))
                hit = self.is_success(logits.detach(), batch.labels[active], None)
                if k < steps:
                    loss = F.cross_entropy(logits, batch.labels[active], reduction="sum")
                    grad = input_gradient(loss, params)
            params = params.detach()
            tries[active] += 1
            found[active[hit]] = params[hit]
            broken[active[hit]] = True
            if k == steps or bool(hit.all()):
                break
            params = torch.maximum(torch.minimum(params + step * grad.sign(), top), low)
            params, active = params[~hit], active[~hit]

    def _shrink(self, batch: AttackBatch, found: torch.Tensor, rows_mask: torch.Tensor) -> None:
        """Move each found transformation towards the identity while it still breaks its
        sample: drop each parameter that is not needed, then bisect the scale of the rest."""
        rows = rows_mask.nonzero().squeeze(1)
        if not len(rows):
            return
        params = found[rows]
        for j in (self.top > 0).nonzero().squeeze(1).tolist():
            trial = params.clone()
            trial[:, j] = 0
            needed = trial.ne(0).any(dim=1)  # the identity never breaks a clean-correct sample
            keep = needed & self._breaks(batch, rows, trial)
            params[keep] = trial[keep]
        low = torch.zeros(len(rows), dtype=params.dtype, device=params.device)
        high = torch.ones_like(low)
        for _ in range(SHRINK_STEPS):
            mid = (low + high) / 2
            hit = self._breaks(batch, rows, params * mid[:, None])
            high, low = torch.where(hit, mid, high), torch.where(hit, low, mid)
        found[rows] = params * high[:, None]
