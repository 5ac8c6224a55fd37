"""APGD-T (Croce & Hein 2020): APGD on the targeted DLR loss towards each of the k most
likely other classes, AutoAttack's second member; its k targets run as rows of one batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from pytest_robust.attacks.apgd import APGD
from pytest_robust.attacks.apgd import STREAM_BASE
from pytest_robust.attacks.apgd import Run
from pytest_robust.attacks.apgd import checkpoints
from pytest_robust.attacks.apgd import keep_highest_loss
from pytest_robust.attacks.apgd import keep_most_fooled
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.eot import EOT
from pytest_robust.attacks.eot import model_draws
from pytest_robust.attacks.gradient import keep_rows
from pytest_robust.attacks.gradient import steps_param
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param

# APGD-T's random starts: a block of streams of their own, one per (target rank, restart).
TARGETED_STREAM_BASE = STREAM_BASE + (1 << 16)


@register_attack
class APGDT(APGD):
    """APGD-T: APGD on the targeted DLR loss towards each of the k most likely other classes
    in turn, each run only on the samples still unbroken; success is any misclassification.

    Not `targeted` (that would make the engine count only reaching a target, as for illc)
    and not `targetable`: like AutoAttack, it picks its own targets to find *a* wrong class,
    so the check stays untargeted and combines with other attacks in attack=[...].
    """

    name = "apgd-t"
    params = {
        "steps": steps_param(100),
        "restarts": Param(int, 1, minimum=1, doc="random restarts per target class"),
        "n_target_classes": Param(
            int,
            9,
            minimum=1,
            doc="target classes tried, most likely first (capped at the number of classes - 1)",
        ),
        "eot": EOT,
    }
    targetable = False
    supports_judge = False  # its runs towards different targets have no common loss to keep
    fixed_loss = "dlr"

    def classes_needed(self, targeted: bool) -> int:
        return 4  # its own targets, always: the targeted DLR loss

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        super().__init__(threat, **config)
        self._broken_by_rank: list[int] = []
        self._classes: int | None = None

    def is_success(
        self, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        # The targets steer the loss only: any wrong class is a success, as in AutoAttack.
        return logits.argmax(dim=1) != labels

    def _stream(self, restart: int, rank: int) -> int:
        return TARGETED_STREAM_BASE + rank * int(self.config["restarts"]) + restart

    def _ranked_targets(self, batch: AttackBatch) -> torch.Tensor:
        """Each sample's other classes, most likely first on the clean input, (B, k)."""
        with torch.no_grad():
            # With eot > 1: the targets are ranked by the mean logits of the draws.
            logits = model_draws(batch, batch.x, self.eot).mean(dim=0)
        classes = logits.shape[1]
        if classes < 4:
            raise RobustConfigError(
                f"apgd-t: the targeted DLR loss needs at least 4 classes (it divides by "
                f"z_pi1 - (z_pi3 + z_pi4) / 2), but the model has {classes}; use "
                "attack='apgd-ce' (or 'apgd-dlr' with 3 classes)"
            )
        self._classes = classes
        k = min(int(self.option("n_target_classes")), classes - 1)
        is_label = F.one_hot(batch.labels, classes).bool()
        others = logits.masked_fill(is_label, -math.inf)
        return others.sort(dim=1, descending=True).indices[:, :k]

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        """The runs towards all k targets are rows of one batch (row = (rank, sample)),
        each doing what the reference's run towards that target does; a sample broken by
        any of its rows leaves with all its rows. A sample is broken exactly when one of its
        runs breaks it, as in the reference's loop over targets (which attacks a target only
        on the samples earlier ones left robust), with one pass of the step loop instead of
        k: on small models the per-step cost hardly grows with the rows."""
        ranked = self._ranked_targets(batch)
        ranks = ranked.shape[1]
        while len(self._broken_by_rank) < ranks:
            self._broken_by_rank.append(0)
        out = batch.x.clone()
        best_loss = torch.full_like(batch.labels, -math.inf, dtype=batch.x.dtype)
        done = torch.zeros(len(batch.x), dtype=torch.bool, device=batch.x.device)
        best_fooled = self._best_fooled(batch)
        steps, restarts = int(self.config["steps"]), int(self.config["restarts"])
        marks = checkpoints(steps)
        for restart in range(restarts):
            active = (~done).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            run, broken = self._start_rows(batch, ranked, active, restart)
            last_check = 0
            for i in range(steps + 1):
                if i > 0:
                    broken = self._move(batch, run, i, steps)
                if i in marks and i < steps:
                    self._checkpoint(run, i - last_check)
                    last_check = i
                # One host sync per step: which rows broke their sample.
                hits = broken.nonzero().squeeze(1)
                if hits.numel() == 0:
                    continue
                self._keep_first_breaks(run, hits, out, done)
                alive = (~done[run.active]).nonzero().squeeze(1)
                run = keep_rows(run, alive)
                if alive.numel() == 0:
                    break
            # Unbroken samples keep their best point over the ranks, the lower rank first
            # on ties, as the reference's loop over targets would.
            assert run.rank is not None
            for rank in range(ranks):
                of_rank = (run.rank == rank).nonzero().squeeze(1)
                if of_rank.numel() == 0:
                    continue
                part = keep_rows(run, of_rank)
                if best_fooled is not None:
                    keep_most_fooled(out, best_fooled, best_loss, part)
                else:
                    keep_highest_loss(out, best_loss, part)
        return out

    def _start_rows(
        self, batch: AttackBatch, ranked: torch.Tensor, active: torch.Tensor, restart: int
    ) -> tuple[Run, torch.Tensor]:
        """One row per (target rank, sample in `active`), in that order, each from its
        random start (keyed by seed, sample, rank and restart, as a run per target would
        draw it)."""
        ranks, n = ranked.shape[1], len(active)
        owner = active.repeat(ranks)
        rank = torch.arange(ranks, device=active.device).repeat_interleave(n)
        x0 = batch.x[owner]
        ids = batch.sample_ids[active]
        starts = [
            self.threat.random_point(batch.x[active], batch.seed, ids, self._stream(restart, r))
            for r in range(ranks)
        ]
        targets, labels = ranked[owner, rank], batch.labels[owner]
        run, broken = self._launch(batch, owner, x0, labels, targets, torch.cat(starts))
        run.rank = rank
        return run, broken

    def _keep_first_breaks(
        self, run: Run, hits: torch.Tensor, out: torch.Tensor, done: torch.Tensor
    ) -> None:
        """The samples of the rows `hits` (broken at this step) keep the point of their
        lowest-rank broken row and are done."""
        assert run.rank is not None
        owners = run.active[hits]
        # Rows are in (rank, sample) order, so a sample's first row has its lowest rank.
        first = torch.full_like(done, len(run.active), dtype=torch.long)
        first = first.scatter_reduce(0, owners, hits, "amin")
        samples = (first < len(run.active)).nonzero().squeeze(1)
        rows = first[samples]
        out[samples] = run.x[rows]
        done[samples] = True
        counts = torch.bincount(run.rank[rows], minlength=len(self._broken_by_rank))
        for r, count in enumerate(counts.tolist()):
            self._broken_by_rank[r] += int(count)

    def details(self) -> dict[str, Any]:
        asked = int(self.option("n_target_classes"))
        used = min(asked, self._classes - 1) if self._classes is not None else asked
        details: dict[str, Any] = {
            "n_target_classes": used,
            # As the attack saw it on the model attacked; the engine's re-verification decides.
            "broken_by_target_rank": list(self._broken_by_rank),
        }
        if used < asked:
            details["note"] = (
                f"n_target_classes={asked} reduced to {used}: the model has {self._classes} classes"
            )
        return details
