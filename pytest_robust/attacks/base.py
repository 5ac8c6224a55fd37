"""The attack protocol: what an attack is given (`AttackBatch`) and what it must do
(`Attack`).

Attacks propose; the base class projects. `Attack.run` projects whatever an attack
proposes onto the threat model (attacks/threat.py), so no attack can leave the eps-ball or
the bounds, and the engine re-verifies every final point with a fresh forward pass, so no
attack can mis-report a success. The shared gradient loop is in attacks/gradient.py, the
names in attacks/registry.py.
"""

from __future__ import annotations

from abc import ABC
from abc import abstractmethod
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from typing import Any
from typing import ClassVar

import torch

from pytest_robust.attacks.eot import MeanOfDraws
from pytest_robust.attacks.threat import ThreatModel
from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param

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
    # draws(x, n): logits of n seeded forward passes at x, shape (n, len(x), classes),
    # stacked in one batch where the model's randomness allows (the engine sets it; None:
    # n plain calls). Only attacks with eot > 1 use it (attacks/eot.py).
    draws: Callable[[torch.Tensor, int], torch.Tensor] | None = None
    # Set by the engine, for an attack whose fuses_clean_pass() is True, when this batch's
    # clean logits are not known yet: the attack hands it the logits of its first forward,
    # made at x (every row: the batch's clean pass), and gets back the rows to attack (the
    # clean-correct ones); the others need no further work and are returned as x.
    clean: Callable[[torch.Tensor], torch.Tensor] | None = None


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
    # True for attacks whose loop handles eot > 1 itself (per-draw losses, a point judged by
    # the fraction of draws it fools); the others see the mean logits of the draws.
    native_eot: ClassVar[bool] = False

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

    @property
    def eot(self) -> int:
        """Forward passes averaged per gradient (1 unless the attack takes eot=)."""
        return int(self.config.get("eot", 1))

    def option(self, name: str) -> Any:
        """A parameter's value, or its declared default (for attacks built directly)."""
        return self.config.get(name, self.params[name].default)

    def gradient_loss(self) -> str | None:
        """The loss whose input gradient drives this attack on the model under test: 'ce'
        (softmax cross-entropy, blinded by a saturated softmax), 'logits' (a loss on logit
        differences), or None (no gradients of the model under test). The sanity checks
        look at the gradients this loss gives."""
        return None

    def classes_needed(self, targeted: bool) -> int:
        """The fewest classes this attack's loss works with (a DLR loss divides by gaps
        between the top logits). A preset (attack='strong', 'autoattack') leaves out a
        member that needs more classes than the model has, with a note in the result."""
        return 2

    def fuses_clean_pass(self) -> bool:
        """True when propose() makes its first forward at the clean input x, through
        batch.model, and hands its logits to batch.clean when that is set: the engine then
        takes the clean pass from it instead of a forward of its own (issue 16)."""
        return False

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
        if self.eot > 1 and not self.native_eot:
            batch = replace(batch, model=MeanOfDraws(batch, self.eot))
        return self.threat.project(self.propose(batch).detach(), batch.x)


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
