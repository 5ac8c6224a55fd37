"""Per-sample bookkeeping of one check's attack passes, and the final threat-model check
(`check_inside`).

Each pass attacks a set of samples in batches; a fresh forward pass on the model under test
decides each sample's outcome. Several passes (attack=[...]) give the worst case per
sample: a later pass only gets the samples earlier ones left unbroken.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import torch

from pytest_robust.attacks import Attack
from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks.base import NoGradientPath
from pytest_robust.engine import progress
from pytest_robust.engine.backoff import BackOff
from pytest_robust.engine.data import Samples
from pytest_robust.engine.distributed import gather_rows
from pytest_robust.engine.distributed import sum_counts
from pytest_robust.engine.examples import Example
from pytest_robust.engine.examples import TopExamples
from pytest_robust.engine.fused_clean import FusedClean
from pytest_robust.engine.stochastic import Randomness


@dataclass(frozen=True)
class PassContext:
    """What every attack pass of one check shares."""

    attack_forward: Callable[[torch.Tensor], torch.Tensor]  # mixed precision when asked for
    forward: Callable[[torch.Tensor], torch.Tensor]  # float32, for the re-verification
    targets: torch.Tensor | None
    device: torch.device
    dtype: torch.dtype
    seed: int
    # A randomised model's draws: seeded per (member, batch); each final point judged over
    # randomness.draws draws (engine/stochastic.py). Inactive: one plain forward.
    randomness: Randomness = field(default_factory=Randomness)


class AttackPasses:
    """Per-sample bookkeeping over one or more attack passes, in data order."""

    def __init__(
        self,
        samples: Samples,
        context: PassContext,
        names: list[str],
        keep_adversarial: bool,
        backoff: BackOff,
        keep_examples: int = 0,
        clean: FusedClean | None = None,
    ) -> None:
        n = len(samples)
        # Set when the clean logits come from the first member's first forward: every
        # sample is then handed to the first member, and only clean-correct ones go on.
        self.clean = clean
        self.context = context
        self.backoff = backoff
        self.samples = samples
        self.success = torch.zeros(n, dtype=torch.bool)
        self.misclassified = torch.zeros(n, dtype=torch.bool)
        self.broken_by = dict.fromkeys(names, 0)
        # Gradient members skipped because the model has no gradient path (only when a
        # black-box member runs on every sample they would have had).
        self.skipped: list[str] = []
        # Per sample, NaN unless an attack succeeded: its perturbation size and confidence.
        self.sizes = torch.full((n,), float("nan"), dtype=torch.float64)
        self.confidences = torch.full((n,), float("nan"))
        self.adversarial = samples.x.detach().cpu().clone() if keep_adversarial else None
        # The most confidently fooled samples, for the HTML report (this rank's only); for
        # a targeted check also those pushed to a wrong class other than their target.
        self.examples = TopExamples(keep_examples)
        self.missed_targets = TopExamples(keep_examples if context.targets is not None else 0)

    def attack_in_order(
        self,
        members: list[tuple[str, Attack]],
        order: torch.Tensor,
        batch_size: int,
        decide: Callable[[int], str | None] | None = None,
    ) -> tuple[int, str] | None:
        """Attack the samples `order` (ascending indices) batch by batch, every member on a
        batch before the next batch (worst case per sample: a member gets only the samples
        none before it broke). With `decide`, after each batch: decide(m) for the prefix
        of the first m samples, all processed; (m, verdict) when it stopped there."""
        n = len(self.samples)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            last, rest, attacked = int(batch[-1]), members, batch
            if self.clean is not None:
                self._first_with_clean(members, batch)
                rest, attacked = members[1:], batch[self.clean.attacked[batch]]
            for name, attack in rest:
                if name not in self.skipped:
                    self.attempt(name, attack, attacked[~self.success[attacked]], members)
            # Every sample up to the batch's last one is processed (those in between were
            # not attacked).
            done = n if start + batch_size >= len(order) else last + 1
            progress.report("+".join(name for name, _ in members), start + len(batch), len(order))
            verdict = decide(done) if decide is not None and done < n else None
            if verdict is not None:
                return done, verdict
        return None

    def _first_with_clean(self, members: list[tuple[str, Attack]], batch: torch.Tensor) -> None:
        """The first member on every sample of `batch`, its first forward being the
        batch's clean pass (engine/fused_clean.py); a plain clean forward instead where it
        was skipped for want of a gradient path."""
        assert self.clean is not None
        name, attack = members[0]
        if name not in self.skipped:
            self.attempt(name, attack, batch, members, fused=True)
        self.clean.fill(batch)

    def attempt(
        self,
        name: str,
        attack: Attack,
        ids: torch.Tensor,
        members: list[tuple[str, Attack]],
        fused: bool = False,
    ) -> None:
        """run(), except that a gradient member finding no gradient path is skipped from
        now on when a black-box member is in the combination: that member still attacks
        every sample, so the worst case stays a valid upper bound (docs/masking.md)."""
        try:
            self.run(name, attack, ids, fused)
        except NoGradientPath:
            if not any(other.black_box for _, other in members):
                raise
            self.skipped.append(name)

    def run(self, name: str, attack: Attack, ids: torch.Tensor, fused: bool = False) -> None:
        """Attack the samples `ids` (one batch, indices into the data) and record what the
        float32 re-verification sees; in smaller pieces after an out-of-memory error.
        `fused`: the attack's first forward is the clean pass of `ids` (FusedClean)."""
        self.backoff.map(functools.partial(self._attack, name, attack, fused=fused), ids)

    def _attack(self, name: str, attack: Attack, ids: torch.Tensor, fused: bool = False) -> None:
        """One batch; nothing is recorded unless it completes (so it can be retried)."""
        context = self.context
        labels = self.samples.y.cpu()
        threat = attack.threat
        device, targets = context.device, context.targets
        x = self.samples.inputs(ids, device, context.dtype)
        y = labels[ids].to(device)
        t = targets[ids].to(device) if targets is not None else None
        # The attack's draws and the judging draws come from streams of their own.
        first = int(ids[0]) if len(ids) else -1
        forward, clean = context.attack_forward, None
        if fused and self.clean is not None:
            clean = self.clean.sink(ids, forward, name)
            forward = clean.forward  # its first call is the batch's clean pass
        attacking = context.randomness.stream(forward, "attack", name, first)
        batch = AttackBatch(
            attacking, x, y, t, ids.to(device), context.seed, draws=attacking.draws, clean=clean
        )
        x_adv = attack.run(batch)
        distances = check_inside(attack, x_adv, x, threat)
        if clean is not None:  # only the clean-correct rows were attacked, and are judged
            rows = clean.commit()
            if not bool(rows.any()):
                return  # every sample was clean-wrong: nothing to judge
            on_device = rows.to(device)
            ids, x_adv, x, y = ids[rows], x_adv[on_device], x[on_device], y[on_device]
            distances = distances[on_device]
            t = t[on_device] if t is not None else None
        judging = context.randomness.stream(context.forward, "verify", name, first)
        with torch.no_grad():
            logits = judging.draws(x_adv, context.randomness.draws)  # (draws, B, classes)
        # A non-finite output on an input inside the threat model counts as broken.
        preds = torch.where(torch.isfinite(logits).all(dim=2), logits.argmax(dim=2), -1).cpu()
        hits = preds == t.cpu() if t is not None else preds != labels[ids]
        # Non-finite outputs count as broken, with full confidence.
        confidences = logits.float().softmax(dim=2).amax(dim=2).nan_to_num(1.0).cpu()
        hits &= confidences >= attack.min_confidence
        # Success on any draw (robust only if correct on every draw); the first such draw
        # is the one reported.
        hit = hits.any(dim=0)
        shown = hits.int().argmax(dim=0)[None]
        pred = preds.gather(0, shown).squeeze(0)
        confidence = confidences.gather(0, shown).squeeze(0)
        self.confidences[ids[hit]] = confidence[hit]
        self.success[ids] |= hit
        self.misclassified[ids] |= (preds != labels[ids]).any(dim=0)
        self.sizes[ids[hit]] = distances.double().cpu()[hit]
        self.broken_by[name] += int(hit.sum())
        t_cpu = t.cpu() if t is not None else None
        self.examples.offer(ids, x, x_adv, labels[ids], pred, confidence, hit, t_cpu)
        if t_cpu is not None and self.missed_targets.k:
            self._offer_missed(ids, x, x_adv, preds, confidences, t_cpu, hit)
        if self.adversarial is not None:
            # Keep the breaking point; a sample nobody broke keeps its last point.
            keep = hit | ~self.success[ids]
            self.adversarial[ids[keep]] = x_adv.cpu().to(self.adversarial.dtype)[keep]

    def _offer_missed(
        self,
        ids: torch.Tensor,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        preds: torch.Tensor,
        confidences: torch.Tensor,
        targets: torch.Tensor,
        hit: torch.Tensor,
    ) -> None:
        """A targeted check's samples that no attack pushed to their target but one pushed
        to another wrong class (first such draw shown); a sample reached later is dropped."""
        labels = self.samples.y.cpu()[ids]
        wrong = (preds != labels) & (preds != targets) & (preds >= 0)  # (draws, B)
        missed = wrong.any(dim=0) & ~self.success[ids]
        shown = wrong.int().argmax(dim=0)[None]
        pred = preds.gather(0, shown).squeeze(0)
        confidence = confidences.gather(0, shown).squeeze(0)
        self.missed_targets.drop(ids[hit].tolist())
        self.missed_targets.offer(ids, x, x_adv, labels, pred, confidence, missed, targets, True)

    def pictured(self, clean_logits: torch.Tensor) -> list[Example]:
        """The samples for the report's picture: the most confident successes, then, for a
        targeted check that reached fewer than k targets, its most confident missed
        targets (labelled as such)."""
        reached = self.examples.with_clean(clean_logits)
        missed = self.missed_targets.with_clean(clean_logits)
        return reached + missed[: max(0, self.examples.k - len(reached))]

    def max_confidence(self, upto: int) -> float:
        found = self.confidences[:upto]
        return float(found.nan_to_num(0.0).max()) if len(found) else 0.0

    def share(self) -> None:
        """Across the ranks of a process group: every rank's shard, assembled on every rank
        (each rank attacked only its own shard)."""
        self.success = gather_rows(self.success)
        self.misclassified = gather_rows(self.misclassified)
        self.sizes = gather_rows(self.sizes)
        self.confidences = gather_rows(self.confidences)
        if self.adversarial is not None:
            self.adversarial = gather_rows(self.adversarial)
        names = list(self.broken_by)
        self.broken_by = dict(zip(names, sum_counts(list(self.broken_by.values())), strict=True))

    def details(self, members: list[tuple[str, Attack]], upto: int) -> dict[str, Any]:
        sizes, confidences = self.sizes[:upto], self.confidences[:upto]
        details = _perturbation_sizes(sizes[~sizes.isnan()])
        confidences = confidences[~confidences.isnan()]
        details["confidence"] = (
            {"max": float(confidences.max()), "mean": float(confidences.mean())}
            if confidences.numel()
            else None
        )
        if len(members) == 1:
            details.update(members[0][1].details())
        else:
            details["broken_by"] = dict(self.broken_by)
            details["attacks"] = {name: attack.details() for name, attack in members}
        if self.skipped:
            details["skipped"] = list(self.skipped)
        return details


def check_inside(
    attack: Attack, x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel
) -> torch.Tensor:
    """The final threat-model check: a point outside the eps-ball or the bounds is a bug in
    the attack. Returns each sample's distance in the threat model's norm."""
    tol = threat.tolerance()
    if x_adv.shape != x.shape:
        raise RuntimeError(
            f"attack {attack.name!r} returned shape {tuple(x_adv.shape)} for inputs of shape "
            f"{tuple(x.shape)}"
        )
    distances = threat.distance(x_adv, x)
    distance = float(distances.max()) if len(x) else 0.0
    outside = threat.outside(x_adv)
    if distance > threat.eps + tol or outside or not bool(torch.isfinite(x_adv).all()):
        raise RuntimeError(
            f"attack {attack.name!r} returned inputs outside the threat model "
            f"({threat.norm} distance {distance:.6g} vs eps {threat.eps:g}, "
            f"bounds {threat.bounds}{' per feature' if threat.per_feature else ''}); "
            "this is a bug in the attack, not in your model"
        )
    if threat.frozen is not None:
        moved = (x_adv != x) & threat.frozen.to(x.device)
        if bool(moved.any()):
            raise RuntimeError(
                f"attack {attack.name!r} changed {int(moved.sum())} input values that mask= "
                "freezes (features that may not be perturbed); this is a bug in the attack, "
                "not in your model"
            )
    return distances


def _perturbation_sizes(norms: torch.Tensor) -> dict[str, Any]:
    """Median and mean size of the successful perturbations, in the threat model's norm."""
    if norms.numel() == 0:
        return {"perturbation": None}
    return {
        "perturbation": {
            "median": float(norms.median()),
            "mean": float(norms.mean()),
            "count": int(norms.numel()),
        }
    }
