"""The gradient step loop shared by FGSM, BIM, PGD, ILLC and MI-FGSM.

`GradientAttack.propose` reads as its steps (Foolbox's `gradient_descent_base.run` is the
model): start each restart from the clean input or a random point of the ball, evaluate
(forward, success, input gradient), keep each sample's first adversarial point, step along
the unit direction of the threat model's norm and project, and drop the samples already
broken. With a `judge` (set by the transfer attack: the judge is the target model) every
step is spent on the model attacked, the final point is kept, and the judge says once per
restart which samples need no more work. With eot > 1 (a randomised model: attacks/eot.py)
each gradient is the mean over the draws, a sample stops only when every draw is fooled, and
otherwise keeps the point that fooled the most draws. Subclasses change the parameters, the
loss, the targets or the direction (momentum), not the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar
from typing import TypeVar

import torch
import torch.nn.functional as F

from pytest_robust.attacks.base import NO_GRADIENT_PATH
from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.base import NoGradientPath
from pytest_robust.attacks.eot import model_draws
from pytest_robust.attacks.eot import repeat_rows
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.attacks.threat import per_sample
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def steps_param(default: int) -> Param:
    return Param(int, default, minimum=1, doc="number of gradient steps")


ALPHA = Param(float, None, minimum=0.0, optional=True, doc="step size; default 2.5 * eps / steps")


def input_gradient(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d loss / d x; zeros where x does not reach the loss, NoGradientPath where nothing
    does."""
    if not loss.requires_grad:
        raise NoGradientPath(NO_GRADIENT_PATH.format(who="a gradient attack"))
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return grad if grad is not None else torch.zeros_like(x)


_Rows = TypeVar("_Rows", bound="DataclassInstance")


def keep_rows(walk: _Rows, rows: torch.Tensor) -> _Rows:
    """A copy of a dataclass of per-sample tensors (first dim: sample) with only `rows`
    (None fields stay None): how a loop drops the samples it has broken."""
    kept = {f.name: getattr(walk, f.name) for f in fields(walk)}
    return replace(walk, **{k: v[rows] if v is not None else None for k, v in kept.items()})


@dataclass
class _Walk:
    """The samples one restart still walks (first dim: sample), and where they are."""

    active: torch.Tensor  # index into the batch
    x0: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor | None
    ids: torch.Tensor
    x: torch.Tensor
    state: torch.Tensor | None  # e.g. MI-FGSM's velocity


class GradientAttack(Attack):
    """Iterated gradient steps from the clean input or a random start, with restarts.

    Targeted when the batch carries targets: it then descends cross-entropy to the target.

    Each step ascends the loss by `alpha` along sign(grad) (L-inf) or grad / ||grad||
    (L2) and is projected back onto the threat model. Subclasses differ only in their
    parameters and targets.
    """

    default_steps: ClassVar[int] = 20
    default_random_start: ClassVar[bool] = False
    targetable = True
    supports_judge = True
    native_eot = True

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        steps = config.get("steps", cls.default_steps)
        if config.get("restarts", 1) > 1 and not config.get(
            "random_start", cls.default_random_start
        ):
            raise RobustConfigError(
                f"restarts={config['restarts']} with random_start=False repeats the same "
                "deterministic run; set random_start=True or drop restarts"
            )
        if config.get("alpha") is None:
            # Madry et al.'s rule: 2.5 * eps / steps lets the walk cross the ball and back.
            config["alpha"] = 2.5 * threat.eps / steps
        return config

    def gradient_loss(self) -> str | None:
        return "ce"

    def fuses_clean_pass(self) -> bool:
        # The first forward is at the clean input only without a random start; with eot > 1
        # or a judge (transfer) it is not the plain forward the clean pass would make.
        return not self.schedule()[3] and self.eot == 1 and self.judge is None

    # --- the overridable pieces -----------------------------------------------------

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        """The objective to ascend. Summed, so a sample's gradient is independent of the
        batch it is in."""
        if targets is not None:
            return -F.cross_entropy(logits, targets, reduction="sum")
        return F.cross_entropy(logits, labels, reduction="sum")

    def initial_state(self, x0: torch.Tensor) -> torch.Tensor | None:
        """Per-sample state carried across steps (e.g. momentum); None for stateless attacks.
        Its first dimension is the batch: rows of broken samples are dropped with them."""
        return None

    def step_direction(
        self, grad: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The unit step for this gradient (and the updated state)."""
        return self.direction(grad), state

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """The unit step along `grad` (documented as overridable in docs/reference.md)."""
        return self.threat.unit_step(grad)

    def schedule(self) -> tuple[int, float, int, bool]:
        """(steps, alpha, restarts, random_start) for this run."""
        return (
            int(self.config.get("steps", self.default_steps)),
            float(self.config["alpha"]),
            int(self.config.get("restarts", 1)),
            bool(self.config.get("random_start", self.default_random_start)),
        )

    # --- the loop -------------------------------------------------------------------

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        steps, alpha, restarts, random_start = self.schedule()
        best = batch.x.clone()
        done = torch.zeros(len(batch.x), dtype=torch.bool, device=batch.x.device)
        # With eot > 1: each sample's best point so far, by the fraction of draws it fools
        # (ties: the higher mean loss), over all restarts.
        score = _Score.empty(batch.x) if self.eot > 1 else None
        for restart in range(restarts):
            # Only samples not broken by an earlier restart are attacked again.
            active = (~done).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            walk = self._start(batch, active, restart if random_start else None)
            final = restart == restarts - 1
            if self.judge is None and score is not None:
                self._walk_eot(batch, walk, steps, alpha, best, done, score)
                continue
            if self.judge is None:
                clean = batch.clean if restart == 0 and self.fuses_clean_pass() else None
                self._walk_until_broken(batch, walk, steps, alpha, final, best, done, clean)
                continue
            walk = self._walk_every_step(batch, walk, steps, alpha)
            best.index_copy_(0, walk.active, walk.x)
            if not final:
                # The judge sees each earlier restart's final point, to spare the samples
                # it broke (the engine judges the last restart's).
                done.index_copy_(0, walk.active, self.judge(walk.x, walk.active))
        return best

    def _start(self, batch: AttackBatch, active: torch.Tensor, stream: int | None) -> _Walk:
        """The walk of the samples `active`, at the clean input or (with a stream) at a
        random point of the ball."""
        x0, ids = batch.x[active], batch.sample_ids[active]
        targets = batch.targets[active] if batch.targets is not None else None
        x = self.threat.random_point(x0, batch.seed, ids, stream) if stream is not None else x0
        return _Walk(active, x0, batch.labels[active], targets, ids, x, self.initial_state(x0))

    def _walk_until_broken(
        self,
        batch: AttackBatch,
        walk: _Walk,
        steps: int,
        alpha: float,
        final: bool,
        best: torch.Tensor,
        done: torch.Tensor,
        clean: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Step, keeping each sample's first adversarial point in `best` and dropping it
        from the walk; the survivors' last point is kept too. With `clean` (batch.clean) the
        first forward is the batch's clean pass: the rows it does not return are dropped
        like broken ones, at x."""
        for step in range(steps):
            broken, grad = self._evaluate(batch, walk, True, clean if step == 0 else None)
            # One host sync per step: how many samples are still unbroken.
            alive = (~broken).nonzero().squeeze(1)
            if alive.numel() < len(broken):  # (with none broken there is nothing to keep)
                _keep_where(best, done, walk, broken)
            if alive.numel() == 0:
                return
            self._step(walk, grad, alpha)
            if alive.numel() < len(broken):
                walk = keep_rows(walk, alive)
        if final:
            # The engine's re-verification forward judges the last point: no forward here
            # (it would be the same pass twice).
            best.index_copy_(0, walk.active, walk.x)
            return
        broken, _ = self._evaluate(batch, walk, need_grad=False)
        _keep_where(best, done, walk, torch.ones_like(broken), broken)

    def _walk_every_step(self, batch: AttackBatch, walk: _Walk, steps: int, alpha: float) -> _Walk:
        """All `steps` steps for every sample: nothing stops on the model attacked."""
        for _ in range(steps):
            _, grad = self._evaluate(batch, walk, need_grad=True)
            self._step(walk, grad, alpha)
        return walk

    def _walk_eot(
        self,
        batch: AttackBatch,
        walk: _Walk,
        steps: int,
        alpha: float,
        best: torch.Tensor,
        done: torch.Tensor,
        score: _Score,
    ) -> None:
        """The walk with eot > 1 draws per point: a sample stops only when every draw at
        its point is fooled; otherwise `best` keeps its point that fooled the largest
        fraction of draws (ties: the highest mean loss). Every point is evaluated, the last
        one too, so a longer run (same alpha) only adds points to choose from."""
        for step in range(steps + 1):
            last = step == steps
            fooled, loss, grad = self._evaluate_draws(batch, walk, need_grad=not last)
            score.keep_better(best, walk.active, walk.x, fooled, loss)
            broken = fooled >= 1.0
            done.index_copy_(0, walk.active, done[walk.active] | broken)
            alive = (~broken).nonzero().squeeze(1)
            if last or alive.numel() == 0:
                return
            self._step(walk, grad, alpha)
            if alive.numel() < len(broken):
                walk = keep_rows(walk, alive)

    def _evaluate(
        self,
        batch: AttackBatch,
        walk: _Walk,
        need_grad: bool,
        clean: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-sample success, input gradient of the loss) at the walk's points; the
        gradient is zeros when not needed. With eot > 1 the gradient is the mean over the
        draws and success means every draw fooled. `clean`: see _evaluate_draws."""
        hits, _, grad = self._forward_backward(batch, walk, need_grad, clean)
        return hits.all(dim=0), grad

    def _evaluate_draws(
        self,
        batch: AttackBatch,
        walk: _Walk,
        need_grad: bool,
        clean: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fraction of the eot draws each point fools, its mean per-draw loss (eot > 1
        only, else zeros), input gradient of the mean loss or zeros). With `clean` (the
        first forward, at the clean input, one draw) its logits go to clean() before the
        backward pass, and the rows clean() does not return count as fooled (dropped)."""
        hits, flat, grad = self._forward_backward(batch, walk, need_grad, clean)
        fooled = hits.float().mean(dim=0)
        per_sample_loss = torch.zeros_like(fooled)
        n = self.eot
        if n > 1:
            labels, targets = repeat_rows(walk.labels, n), repeat_rows(walk.targets, n)
            assert labels is not None
            per_sample_loss = _cross_entropy(flat, labels, targets).view(n, -1).mean(0)
        return fooled, per_sample_loss, grad

    def _forward_backward(
        self,
        batch: AttackBatch,
        walk: _Walk,
        need_grad: bool,
        clean: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-draw success (draws, B), the logits (draws * B, classes, detached), input
        gradient of the mean loss or zeros); moves walk.x off the graph. See
        _evaluate_draws."""
        n = self.eot
        x = walk.x.detach().requires_grad_(True)
        labels, targets = repeat_rows(walk.labels, n), repeat_rows(walk.targets, n)
        assert labels is not None
        with torch.enable_grad():
            logits = model_draws(batch, x, n)
            flat = logits.reshape(-1, logits.shape[-1])
            hits = self.is_success(flat.detach(), labels, targets).view(n, -1)
            if clean is not None:
                hits |= ~clean(flat.detach())
            # Summed over samples (a sample's gradient is independent of its batch), mean
            # over draws: the gradient is the mean of the per-draw gradients.
            loss = self.loss(flat, labels, targets) if need_grad else None
            if loss is not None and n > 1:
                loss = loss / n
            grad = input_gradient(loss, x) if loss is not None else torch.zeros_like(x)
        walk.x = x.detach()
        return hits, flat.detach(), grad

    def _step(self, walk: _Walk, grad: torch.Tensor, alpha: float) -> None:
        """Move the walk one step of size alpha along its direction, onto the threat model."""
        unit, walk.state = self.step_direction(grad, walk.state)
        walk.x = self._advance(walk.x, alpha, unit, walk.x0)

    def _advance(
        self, x: torch.Tensor, alpha: float, unit: torch.Tensor, x0: torch.Tensor
    ) -> torch.Tensor:
        """x + alpha * unit, projected onto the threat model around x0 (in place for L-inf)."""
        threat = self.threat
        if threat.norm != "linf" or threat.frozen is not None or threat.per_feature is not None:
            return self.threat.project(x + alpha * unit, x0)
        low, high = self.threat.bounds
        # x may share memory with x0 (no random start), so the first op makes a new tensor;
        # then clamp the step to the ball and the point to the bounds, as project() does.
        delta = torch.add(x, unit, alpha=alpha).sub_(x0).clamp_(-self.threat.eps, self.threat.eps)
        return delta.add_(x0).clamp_(low, high)


def _cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
) -> torch.Tensor:
    """Per-row loss for ranking points: cross-entropy (to the target: its negative)."""
    if targets is not None:
        return -F.cross_entropy(logits.float(), targets, reduction="none")
    return F.cross_entropy(logits.float(), labels, reduction="none")


@dataclass
class _Score:
    """Per sample of a batch: the fraction of draws its best point fooled, and that
    point's mean loss (the tie-break)."""

    fooled: torch.Tensor
    loss: torch.Tensor

    @classmethod
    def empty(cls, x: torch.Tensor) -> _Score:
        fooled = torch.full((len(x),), -1.0, device=x.device)
        return cls(fooled, torch.full_like(fooled, -float("inf")))

    def keep_better(
        self,
        best: torch.Tensor,
        rows: torch.Tensor,
        x: torch.Tensor,
        fooled: torch.Tensor,
        loss: torch.Tensor,
    ) -> None:
        """Write x into best where it fools more draws (or as many, at a higher loss)."""
        was, was_loss = self.fooled[rows], self.loss[rows]
        better = (fooled > was) | ((fooled == was) & (loss > was_loss))
        best.index_copy_(0, rows, torch.where(per_sample(better, x), x, best[rows]))
        self.fooled.index_copy_(0, rows, torch.where(better, fooled, was))
        self.loss.index_copy_(0, rows, torch.where(better, loss, was_loss))


def _keep_where(
    best: torch.Tensor,
    done: torch.Tensor,
    walk: _Walk,
    keep: torch.Tensor,
    broken: torch.Tensor | None = None,
) -> None:
    """Write the walk's points where `keep` into `best`, and mark the samples `broken`
    (default: those kept) as done."""
    broken = keep if broken is None else broken
    best.index_copy_(
        0, walk.active, torch.where(per_sample(keep, walk.x), walk.x, best[walk.active])
    )
    done.index_copy_(0, walk.active, done[walk.active] | broken)
