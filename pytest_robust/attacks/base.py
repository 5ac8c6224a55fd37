"""The attack protocol, the threat model and the registry.

Attacks propose; this module projects and judges. `Attack.run` projects whatever an
attack proposes onto the eps-ball and the bounds, and `GradientAttack` (the loop shared by
FGSM, BIM, PGD, ILLC and MI-FGSM) projects after every step, judges success from the logits
the step already computed, keeps each sample's first adversarial point and stops working on
a sample once it is broken. With a `judge` (set by the transfer attack: the judge is the
target model) it instead spends every step on the model it attacks, keeps the final point,
and asks the judge once per restart which samples need no more work. The engine re-verifies
every final point with a fresh forward pass, so no attack can overshoot eps or mis-report a
success.
"""

from __future__ import annotations

import math
from abc import ABC
from abc import abstractmethod
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from typing import ClassVar

import torch
import torch.nn.functional as F

from pytest_robust.attacks import sampling
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param
from pytest_robust.params import suggest


@dataclass(frozen=True)
class ThreatModel:
    """Where adversarial inputs may lie: within `eps` of the clean input in `norm`, and
    inside `bounds`."""

    eps: float
    norm: str  # "linf" or "l2"
    bounds: tuple[float, float]

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The nearest-in-norm point of the ball, then clipped to the bounds.

        Clipping moves each coordinate towards x (x is inside the bounds), so it never
        leaves the ball.
        """
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            scale = (self.eps / norms).clamp(max=1.0)
            delta = delta * scale.view(-1, *([1] * (delta.dim() - 1)))
        return (x + delta).clamp(*self.bounds)

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-sample distance in this threat model's norm."""
        delta = (x_adv - x).flatten(1)
        return delta.abs().amax(dim=1) if self.norm == "linf" else delta.norm(dim=1)

    def tolerance(self) -> float:
        """Float slack allowed when checking membership (rounding of x + delta)."""
        eps = self.eps if math.isfinite(self.eps) else 0.0  # bounds-only: slack from bounds
        return 1e-5 * max(1.0, abs(self.bounds[0]), abs(self.bounds[1]), eps)

    @classmethod
    def bounds_only(cls, bounds: tuple[float, float]) -> ThreatModel:
        """The threat model of an attack that is not an eps-ball attack (eps_ball=False):
        any input inside the bounds. eps is infinite, so projecting only clips to the
        bounds and the engine's guard checks only the bounds, the shape and finiteness."""
        return cls(math.inf, "linf", bounds)

    def random_point(
        self, x: torch.Tensor, seed: int, sample_ids: torch.Tensor, stream: int
    ) -> torch.Tensor:
        """A uniform point of the ball around each sample (then clipped to the bounds)."""
        if self.norm == "linf":
            u = sampling.uniform(seed, sample_ids, x.shape, stream, x.dtype)
            delta = (2 * u - 1) * self.eps
        else:
            direction = sampling.normal(seed, sample_ids, x.shape, stream, x.dtype)
            direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(
                -1, *([1] * (x.dim() - 1))
            )
            # Radius u**(1/d) makes the point uniform in the d-dimensional ball.
            d = x[0].numel()
            u = sampling.uniform(seed, sample_ids, torch.Size([len(x), 1]), stream + 7919, x.dtype)
            radius = self.eps * u.pow(1.0 / d).view(-1, *([1] * (x.dim() - 1)))
            delta = direction * radius
        return (x + delta).clamp(*self.bounds)


Judge = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""judge(x, rows) -> per-row success of the points x (rows: their indices in the batch)."""


@dataclass(frozen=True)
class AttackBatch:
    """One batch handed to an attack: clean inputs (all clean-correct), their labels,
    targets for a targeted attack, and each sample's index in the data (for seeding)."""

    model: Callable[[torch.Tensor], torch.Tensor]
    x: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor | None
    sample_ids: torch.Tensor
    seed: int


class Attack(ABC):
    """Base class of every attack. Subclass, set `name` and `params`, implement `propose`,
    and register with `@register_attack`.

    `params` declares the attack's own arguments (with defaults); the marker validates
    them before anything runs. `propose` returns candidate adversarial inputs; the base
    class projects them onto the threat model, and the engine judges them.
    """

    name: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Param]] = {}
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    targeted: ClassVar[bool] = False  # always targeted, choosing its own targets (ILLC)
    targetable: ClassVar[bool] = False  # accepts target= (success = reaching the target)
    delegate: ClassVar[str | None] = None  # a parameter naming another attack to run
    reference: ClassVar[str] = ""
    # False for attacks whose threat model is not an eps-ball (transformations, noise of a
    # given sigma): eps= and norm= are then rejected, the engine gives the attack
    # ThreatModel.bounds_only(bounds), and the result's eps is None.
    eps_ball: ClassVar[bool] = True
    # True for a score-based search built to work where gradients are masked (Square): it
    # never looks at the model's gradients, so in attack=[...] its result stands when the
    # gradient members' evidence is masked (docs/masking.md, "Black-box members").
    black_box: ClassVar[bool] = False

    # A success also needs this probability for the predicted class (checked by the engine).
    min_confidence: float = 0.0

    # Who decides that a sample needs no more work. None: the model attacked (batch.model),
    # at every step, and the first point that fools it is kept. A judge instead: every step
    # of every run is spent on batch.model, the run's own point is kept (the final iterate,
    # or the highest-loss point for APGD), and only the judge stops a sample, once per
    # restart. Transfer sets it, so that nothing stops on the surrogate. Attacks that honour
    # it say so with supports_judge (transfer accepts only those as via=).
    supports_judge: ClassVar[bool] = False
    judge: Judge | None = None

    def __init__(self, threat: ThreatModel, **config: Any) -> None:
        self.threat = threat
        self.config = config

    @classmethod
    def finalize(cls, config: dict[str, Any], threat: ThreatModel) -> dict[str, Any]:
        """Fill in defaults that depend on the threat model (e.g. a step size from eps)."""
        return config

    def option(self, name: str) -> Any:
        """A parameter's value, or its declared default (for attacks built directly)."""
        return self.config.get(name, self.params[name].default)

    def gradient_loss(self) -> str | None:
        """The loss whose input gradient drives this attack on the model under test: 'ce'
        (softmax cross-entropy, blinded by a saturated softmax), 'logits' (a loss on logit
        differences), or None (no gradients of the model under test). The sanity checks
        look at the gradients this loss gives."""
        return None

    def choose_targets(
        self, clean_logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | None:
        """Targets of an always-targeted attack (from the clean logits); None otherwise."""
        return None

    def details(self) -> dict[str, Any]:
        """Attack-specific measurements for the result (JSON-safe), gathered over batches."""
        return {}

    def recall(self, remembered: Mapping[int, Any]) -> None:
        """Counterexamples an earlier run stored for this check (sample index -> what
        `remember` returned for it), to try first. Default: ignored."""
        return None

    def remember(self) -> dict[int, Any] | None:
        """JSON-safe counterexamples to store for the next run (sample index -> value);
        None (the default) stores nothing."""
        return None

    def is_success(
        self, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-sample success: the target reached, or (untargeted) any wrong class."""
        pred = logits.argmax(dim=1)
        return pred == targets if targets is not None else pred != labels

    @abstractmethod
    def propose(self, batch: AttackBatch) -> torch.Tensor:
        """Candidate adversarial inputs for `batch` (same shape as batch.x)."""

    def run(self, batch: AttackBatch) -> torch.Tensor:
        """Adversarial inputs for the batch, guaranteed inside the threat model."""
        return self.threat.project(self.propose(batch).detach(), batch.x)


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
        if self.threat.norm == "linf":
            return grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        return torch.div(grad, norms.view(-1, *([1] * (grad.dim() - 1))))

    def schedule(self) -> tuple[int, float, int, bool]:
        """(steps, alpha, restarts, random_start) for this run."""
        return (
            int(self.config.get("steps", self.default_steps)),
            float(self.config["alpha"]),
            int(self.config.get("restarts", 1)),
            bool(self.config.get("random_start", self.default_random_start)),
        )

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        steps, alpha, restarts, random_start = self.schedule()
        threat = self.threat
        judge = self.judge

        best = batch.x.clone()
        done = torch.zeros(len(batch.x), dtype=torch.bool, device=batch.x.device)
        for restart in range(restarts):
            # Only samples not broken by an earlier restart are attacked again.
            active = (~done).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            final = restart == restarts - 1
            x0 = batch.x[active]
            labels = batch.labels[active]
            targets = batch.targets[active] if batch.targets is not None else None
            ids = batch.sample_ids[active]
            x = threat.random_point(x0, batch.seed, ids, restart) if random_start else x0
            state = self.initial_state(x0)
            for step in range(steps + 1):
                if step == steps and (final or judge is not None):
                    # The engine's re-verification forward judges the last point: no
                    # forward here (it would be the same pass twice). A judge sees each
                    # earlier restart's final point, to spare the samples it broke.
                    best.index_copy_(0, active, x)
                    if judge is not None and not final:
                        done.index_copy_(0, active, judge(x, active))
                    break
                x = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = batch.model(x)
                    broken = self.is_success(logits.detach(), labels, targets)
                    if step < steps:
                        grad = input_gradient(self.loss(logits, labels, targets), x)
                x = x.detach()
                if judge is not None:
                    # Nothing stops on the model attacked: every step is taken.
                    unit, state = self.step_direction(grad, state)
                    x = self._advance(x, alpha, unit, x0)
                    continue
                # First adversarial point found is kept; the rest keep their latest point.
                keep = broken if step < steps else torch.ones_like(broken)
                best.index_copy_(0, active, torch.where(_rows(keep, x), x, best[active]))
                done.index_copy_(0, active, done[active] | broken)
                if step == steps:
                    break
                # One host sync per step: how many samples are still unbroken.
                alive = (~broken).nonzero().squeeze(1)
                if alive.numel() == 0:
                    break
                unit, state = self.step_direction(grad, state)
                x = self._advance(x, alpha, unit, x0)
                if alive.numel() < len(broken):  # drop the broken samples' rows
                    state = state[alive] if state is not None else None
                    x, x0, labels, ids, active = (
                        x[alive],
                        x0[alive],
                        labels[alive],
                        ids[alive],
                        active[alive],
                    )
                    targets = targets[alive] if targets is not None else None
        return best

    def _advance(
        self, x: torch.Tensor, alpha: float, unit: torch.Tensor, x0: torch.Tensor
    ) -> torch.Tensor:
        """x + alpha * unit, projected onto the threat model around x0 (in place for L-inf)."""
        if self.threat.norm != "linf":
            return self.threat.project(x + alpha * unit, x0)
        low, high = self.threat.bounds
        # x may share memory with x0 (no random start), so the first op makes a new tensor;
        # then clamp the step to the ball and the point to the bounds, as project() does.
        delta = torch.add(x, unit, alpha=alpha).sub_(x0).clamp_(-self.threat.eps, self.threat.eps)
        return delta.add_(x0).clamp_(low, high)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample mask shaped to broadcast over `like`."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


class NoGradientPath(RobustConfigError):
    """The model's output does not depend on its input through autograd, so a gradient
    attack cannot run. In attack=[...] with a black-box member the engine skips the
    gradient member (with a flag) instead of raising."""


NO_GRADIENT_PATH = (
    "model output does not depend on its input through autograd (does forward() detach "
    "the input, run under torch.no_grad(), or round-trip through numpy?); {who} needs input "
    "gradients. Make forward() differentiable in x, or use a black-box attack "
    "(attack='square', or attack='strong', which includes it)"
)


def input_gradient(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not loss.requires_grad:
        raise NoGradientPath(NO_GRADIENT_PATH.format(who="a gradient attack"))
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return grad if grad is not None else torch.zeros_like(x)


# --- registry -------------------------------------------------------------------------

_REGISTRY: dict[str, type[Attack]] = {}


def register_attack(cls: type[Attack], *, replace: bool = False) -> type[Attack]:
    """Register an Attack subclass under `cls.name`; usable as a class decorator."""
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise TypeError(f"register_attack needs an Attack subclass, got {cls!r}")
    if not cls.name or not isinstance(cls.name, str):
        raise TypeError(f"{cls.__qualname__} needs a class attribute name = '...'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls and not replace:
        raise ValueError(
            f"an attack named {cls.name!r} is already registered "
            f"({_REGISTRY[cls.name].__qualname__}); pass replace=True to override it"
        )
    for norm in cls.norms:
        if norm not in ("linf", "l2"):
            raise TypeError(f"{cls.__qualname__}.norms: unknown norm {norm!r}")
    _REGISTRY[cls.name] = cls
    return cls


def get_attack(name: str) -> type[Attack]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RobustConfigError(
            f"attack={name!r} is not a registered attack{suggest(name, _REGISTRY)}; "
            f"known attacks: {', '.join(sorted(_REGISTRY))}"
        ) from None


def registered_attacks() -> dict[str, type[Attack]]:
    return dict(_REGISTRY)


def steps_param(default: int) -> Param:
    return Param(int, default, minimum=1, doc="number of gradient steps")


ALPHA = Param(float, None, minimum=0.0, optional=True, doc="step size; default 2.5 * eps / steps")
