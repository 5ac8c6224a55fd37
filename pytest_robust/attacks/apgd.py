"""APGD: PGD that tunes its own step size (Croce & Hein 2020, the AutoAttack paper).

Starting from a random point of the ball, each step moves by eta along sign(grad) (L-inf)
or grad / ||grad|| (L2), mixed with the previous step (momentum 0.75). At checkpoints
w_j = ceil(p_j * steps), with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} -
0.03, 0.06), a sample's step size is halved and it restarts from its best point when
(1) the loss rose in fewer than rho = 75% of the steps since the last checkpoint, or
(2) neither its step size nor its best loss changed since the last checkpoint.

The loss is cross-entropy or DLR, the Difference of Logits Ratio, which is invariant to
shifting and scaling the logits and so does not suffer from a saturated softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from typing import ClassVar

import torch
import torch.nn.functional as F

from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.eot import EOT
from pytest_robust.attacks.eot import model_draws
from pytest_robust.attacks.eot import repeat_rows
from pytest_robust.attacks.gradient import input_gradient
from pytest_robust.attacks.gradient import keep_rows
from pytest_robust.attacks.gradient import steps_param
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.attacks.threat import per_sample
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75
RHO = 0.75
# Random starts use their own streams, so that a worst-case combination with PGD (or of
# APGD-CE with APGD-DLR) does not start every attack from the same points.
STREAM_BASE = 1 << 20


def dlr_loss(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample DLR loss; targeted (towards `targets`) when targets are given."""
    ranked = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, labels[:, None]).squeeze(1)
    if targets is None:
        is_label = F.one_hot(labels, logits.shape[1]).bool()
        other = logits.masked_fill(is_label, -math.inf).amax(dim=1)
        return -(true - other) / (ranked[:, 0] - ranked[:, 2] + 1e-12)
    target = logits.gather(1, targets[:, None]).squeeze(1)
    return -(true - target) / (ranked[:, 0] - (ranked[:, 2] + ranked[:, 3]) / 2 + 1e-12)


def checkpoints(steps: int) -> set[int]:
    """The iterations at which step sizes are reconsidered."""
    points, p_prev, p = set(), 0.0, 0.22
    while p <= 1.0:
        points.add(max(1, math.ceil(p * steps - 1e-9)))  # 1e-9: 0.41 * 100 is 41.000...01
        p_prev, p = p, p + max(p - p_prev - 0.03, 0.06)
    return points


@dataclass
class Run:
    """Per-sample tensors of the samples still attacked in one run (first dim: sample)."""

    active: torch.Tensor  # index into the batch
    x0: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor | None
    x: torch.Tensor
    x_prev: torch.Tensor
    grad: torch.Tensor
    loss: torch.Tensor
    x_max: torch.Tensor  # best (highest-loss) point so far, its gradient and loss
    grad_max: torch.Tensor
    loss_max: torch.Tensor
    eta: torch.Tensor  # step size
    rises: torch.Tensor  # steps since the last checkpoint where the loss rose
    loss_max_at_check: torch.Tensor
    halved_at_check: torch.Tensor
    # eot > 1 only: the fraction of draws the current point fools, and the point that
    # fooled the most so far (ties: the higher loss) with its fraction and loss.
    fooled: torch.Tensor | None = None
    x_fooled: torch.Tensor | None = None
    fooled_max: torch.Tensor | None = None
    loss_fooled: torch.Tensor | None = None
    # APGD-T only: the target rank of each row (its rows are (rank, sample) pairs).
    rank: torch.Tensor | None = None


@register_attack
class APGD(Attack):
    name = "apgd"
    params = {
        "loss": Param(
            str,
            "ce",
            choices=("ce", "dlr"),
            doc="'ce' (cross-entropy) or 'dlr' (difference of logits ratio)",
        ),
        "steps": steps_param(100),
        "restarts": Param(int, 1, minimum=1, doc="random restarts, each on unbroken samples"),
        "eot": EOT,
    }
    norms = ("linf", "l2")
    targetable = True
    supports_judge = True  # with a judge: every step runs, the highest-loss point is kept
    native_eot = True
    reference = (
        "Croce, Hein 2020, Reliable Evaluation of Adversarial Robustness with an Ensemble of "
        "Diverse Parameter-Free Attacks"
    )
    fixed_loss: ClassVar[str | None] = None

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        loss = config.get("loss", "ce")
        if cls.fixed_loss is None and loss not in LOSSES:
            raise RobustConfigError(
                f"loss={loss!r}: APGD's loss must be 'ce' (cross-entropy) or 'dlr' "
                "(difference of logits ratio)"
            )
        return config

    @property
    def loss_name(self) -> str:
        return self.fixed_loss or str(self.config.get("loss", "ce"))

    def gradient_loss(self) -> str | None:
        return "ce" if self.loss_name == "ce" else "logits"

    def objective(
        self, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-sample loss to ascend."""
        if self.loss_name == "dlr":
            return dlr_loss(logits, labels, targets)
        if targets is not None:
            return -F.cross_entropy(logits, targets, reduction="none")
        return F.cross_entropy(logits, labels, reduction="none")

    def classes_needed(self, targeted: bool) -> int:
        if self.loss_name != "dlr":
            return 2
        return 4 if targeted else 3

    def _check_classes(self, classes: int, targeted: bool) -> None:
        needed = self.classes_needed(targeted)
        if classes < needed:
            mode = "targeted" if targeted else "untargeted"
            raise RobustConfigError(
                f"{self.name}: the {mode} DLR loss needs at least {needed} classes (it divides "
                f"by a gap between the top logits), but the model has {classes}; use loss='ce'"
            )

    def _evaluate(
        self,
        batch: AttackBatch,
        x: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None,
        need_grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fraction of the eot draws fooled, per-sample loss (mean over the draws), input
        gradient or zeros) at x. With eot = 1 the fraction is 0 or 1."""
        n = self.eot
        x = x.detach().requires_grad_(need_grad)
        with torch.enable_grad() if need_grad else torch.no_grad():
            logits = model_draws(batch, x, n)
            flat = logits.reshape(-1, logits.shape[-1])
            self._check_classes(flat.shape[1], targets is not None)
            labels_n, targets_n = repeat_rows(labels, n), repeat_rows(targets, n)
            assert labels_n is not None
            loss = self.objective(flat, labels_n, targets_n).view(n, -1).mean(dim=0)
            # Summed, so a sample's gradient does not depend on the batch it is in.
            grad = input_gradient(loss.sum(), x) if need_grad else torch.zeros_like(x)
        # DLR's denominator can be ~0 (tied top logits); a NaN step would poison the point.
        grad = torch.nan_to_num(grad, nan=0.0)
        fooled = self.is_success(flat.detach(), labels_n, targets_n).view(n, -1).float().mean(0)
        return fooled, loss.detach(), grad

    def _step(self, run: Run, momentum: float) -> torch.Tensor:
        unit = self.threat.unit_step(run.grad)
        z = self.threat.project(run.x + per_sample(run.eta, run.x) * unit, run.x0)
        moved = run.x + momentum * (z - run.x) + (1 - momentum) * (run.x - run.x_prev)
        return self.threat.project(moved, run.x0)

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        out = batch.x.clone()
        best_loss = torch.full_like(batch.labels, -math.inf, dtype=batch.x.dtype)
        done = torch.zeros(len(batch.x), dtype=torch.bool, device=batch.x.device)
        self._restarts(batch, batch.targets, out, best_loss, done, 0, self._best_fooled(batch))
        return out

    def _best_fooled(self, batch: AttackBatch) -> torch.Tensor | None:
        """With eot > 1: per sample, the fraction of draws its kept point fools (-1: none
        kept yet); None with eot = 1."""
        return torch.full((len(batch.x),), -1.0, device=batch.x.device) if self.eot > 1 else None

    def _stream(self, restart: int, rank: int) -> int:
        """The random-start stream of one restart (rank: APGD-T's target rank)."""
        return STREAM_BASE + 2 * restart + LOSSES.index(self.loss_name)

    def _restarts(
        self,
        batch: AttackBatch,
        targets: torch.Tensor | None,
        out: torch.Tensor,
        best_loss: torch.Tensor,
        done: torch.Tensor,
        rank: int,
        best_fooled: torch.Tensor | None = None,
    ) -> None:
        """All restarts on the samples not `done`, with the loss towards `targets` (None:
        untargeted); updates out, best_loss and done in place (and best_fooled, with eot >
        1: a sample is done only when every draw is fooled, and otherwise keeps the point
        that fooled the most draws, ties broken by the higher loss)."""
        steps, restarts = int(self.config["steps"]), int(self.config["restarts"])
        marks = checkpoints(steps)
        for restart in range(restarts):
            active = (~done).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            run, broken = self._start(batch, targets, active, self._stream(restart, rank))
            last_check = 0
            for i in range(steps + 1):
                if i > 0:
                    broken = self._move(batch, run, i, steps)
                if self.judge is None:
                    # Keep a sample's first adversarial point and stop working on it.
                    kept = torch.where(per_sample(broken, run.x), run.x, out[run.active])
                    out.index_copy_(0, run.active, kept)
                    done.index_copy_(0, run.active, done[run.active] | broken)
                if i in marks and i < steps:
                    self._checkpoint(run, i - last_check)
                    last_check = i
                if self.judge is not None:
                    continue  # nothing stops on the model attacked: every step is taken
                # One host sync per step: how many samples are still unbroken.
                alive = (~broken).nonzero().squeeze(1)
                if alive.numel() < len(broken):
                    run = keep_rows(run, alive)
                if alive.numel() == 0:
                    break
            if best_fooled is not None and self.judge is None:
                keep_most_fooled(out, best_fooled, best_loss, run)
            else:
                keep_highest_loss(out, best_loss, run)
            if self.judge is not None and restart < restarts - 1:
                # The judge spares the next restart the samples it sees broken.
                done.index_copy_(0, run.active, self.judge(out[run.active], run.active))

    def _start(
        self,
        batch: AttackBatch,
        all_targets: torch.Tensor | None,
        active: torch.Tensor,
        stream: int,
    ) -> tuple[Run, torch.Tensor]:
        """The run of the samples `active` from a random point of the ball (a stream of its
        own per restart and loss), and which samples that point already breaks."""
        x0, labels = batch.x[active], batch.labels[active]
        targets = all_targets[active] if all_targets is not None else None
        x = self.threat.random_point(x0, batch.seed, batch.sample_ids[active], stream)
        return self._launch(batch, active, x0, labels, targets, x)

    def _launch(
        self,
        batch: AttackBatch,
        active: torch.Tensor,
        x0: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor | None,
        x: torch.Tensor,
    ) -> tuple[Run, torch.Tensor]:
        """The run of the rows `active` (their samples' indices) from the points x, and
        which rows x already breaks."""
        fooled, loss, grad = self._evaluate(batch, x, labels, targets, True)
        broken = fooled >= 1.0
        eta = torch.full_like(loss, 2 * self.threat.eps)
        run = Run(
            active=active, x0=x0, labels=labels, targets=targets, x=x, x_prev=x,
            grad=grad, loss=loss, x_max=x, grad_max=grad, loss_max=loss, eta=eta,
            rises=torch.zeros_like(loss), loss_max_at_check=loss,
            halved_at_check=torch.zeros_like(broken),
        )  # fmt: skip
        if self.eot > 1:
            run.fooled, run.x_fooled, run.fooled_max, run.loss_fooled = fooled, x, fooled, loss
        return run, broken

    def _move(self, batch: AttackBatch, run: Run, i: int, steps: int) -> torch.Tensor:
        """Step i of the run (no gradient after the last), tracking each sample's
        highest-loss point; returns which samples the new point breaks."""
        # The first step has no previous step to carry momentum from.
        x = self._step(run, 1.0 if i == 1 else MOMENTUM)
        fooled, loss, grad = self._evaluate(batch, x, run.labels, run.targets, i < steps)
        broken = fooled >= 1.0
        if run.fooled_max is not None:
            assert run.x_fooled is not None and run.loss_fooled is not None
            more = (fooled > run.fooled_max) | (
                (fooled == run.fooled_max) & (loss > run.loss_fooled)
            )
            run.x_fooled = torch.where(per_sample(more, x), x, run.x_fooled)
            run.fooled_max = torch.where(more, fooled, run.fooled_max)
            run.loss_fooled = torch.where(more, loss, run.loss_fooled)
        run.rises = run.rises + (loss > run.loss)
        run.x_prev, run.x, run.loss, run.grad = run.x, x, loss, grad
        better = loss > run.loss_max
        run.x_max = torch.where(per_sample(better, x), x, run.x_max)
        run.grad_max = torch.where(per_sample(better, x), grad, run.grad_max)
        run.loss_max = torch.where(better, loss, run.loss_max)
        return broken

    def _checkpoint(self, run: Run, interval: int) -> None:
        """Halve the step size and go back to the best point where progress stalled."""
        oscillating = run.rises < RHO * interval
        stuck = ~run.halved_at_check & (run.loss_max <= run.loss_max_at_check)
        halve = oscillating | stuck
        run.eta = torch.where(halve, run.eta / 2, run.eta)
        rows = per_sample(halve, run.x)
        # Momentum restarts too: the previous point is the best point itself.
        run.x = torch.where(rows, run.x_max, run.x)
        run.x_prev = torch.where(rows, run.x_max, run.x_prev)
        run.grad = torch.where(rows, run.grad_max, run.grad)
        run.loss = torch.where(halve, run.loss_max, run.loss)
        run.rises = torch.zeros_like(run.rises)
        run.halved_at_check, run.loss_max_at_check = halve, run.loss_max


def keep_highest_loss(out: torch.Tensor, best_loss: torch.Tensor, run: Run) -> None:
    """Unbroken samples keep their highest-loss point over all restarts."""
    better = run.loss_max > best_loss[run.active]
    kept = torch.where(per_sample(better, run.x_max), run.x_max, out[run.active])
    out.index_copy_(0, run.active, kept)
    kept_loss = torch.where(better, run.loss_max, best_loss[run.active])
    best_loss.index_copy_(0, run.active, kept_loss)


def keep_most_fooled(
    out: torch.Tensor, best_fooled: torch.Tensor, best_loss: torch.Tensor, run: Run
) -> None:
    """eot > 1: unbroken samples keep the point that fooled the largest fraction of draws
    over all restarts (ties: the higher mean loss)."""
    assert run.x_fooled is not None and run.fooled_max is not None
    assert run.loss_fooled is not None
    was, was_loss = best_fooled[run.active], best_loss[run.active]
    more = (run.fooled_max > was) | ((run.fooled_max == was) & (run.loss_fooled > was_loss))
    kept = torch.where(per_sample(more, run.x_fooled), run.x_fooled, out[run.active])
    out.index_copy_(0, run.active, kept)
    best_fooled.index_copy_(0, run.active, torch.where(more, run.fooled_max, was))
    best_loss.index_copy_(0, run.active, torch.where(more, run.loss_fooled, was_loss))


@register_attack
class APGDCE(APGD):
    """APGD on the cross-entropy loss."""

    name = "apgd-ce"
    params = {key: value for key, value in APGD.params.items() if key != "loss"}
    fixed_loss = "ce"


@register_attack
class APGDDLR(APGD):
    """APGD on the DLR loss: unaffected by the scale of the logits."""

    name = "apgd-dlr"
    params = {key: value for key, value in APGD.params.items() if key != "loss"}
    fixed_loss = "dlr"
