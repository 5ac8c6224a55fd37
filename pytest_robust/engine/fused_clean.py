"""The clean pass fused with the first attack's first forward (issue 16).

An attack that starts at the clean input (FGSM, BIM, MI-FGSM, PGD without a random start:
`Attack.fuses_clean_pass`) makes, as its first forward, exactly the forward the clean pass
would make. When a check's clean logits are not in the session cache, the engine then runs
no clean pass of its own: the first member gets every sample of a batch, hands over the
logits of that first forward (`AttackBatch.clean`) and goes on with the clean-correct rows
only; the other rows get no further work (no re-verification, no later member). Those
logits are the clean logits: checked as the clean pass checks them, then used for clean
accuracy, the sanity flags and the session cache. The numbers are those of a separate
clean pass (tests/unit/test_fused_clean.py): the same float32 forward of the same batch.

Not fused (a separate clean pass first, as before): a random start, eot > 1 or a randomised
model's seeded draws, amp on CUDA (the attack's forward is float16), targets (chosen from
the clean logits before the attack), decide_early (its looks are after batches of attacked
samples), torch.distributed (the ranks check the gathered clean logits together), and
checks that attack nothing (gradients, certify).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from pytest_robust.engine.backoff import AMP_DTYPES
from pytest_robust.engine.backoff import BackOff
from pytest_robust.engine.clean_pass import CacheKey
from pytest_robust.engine.clean_pass import refuse_bad_logits
from pytest_robust.engine.data import Samples
from pytest_robust.engine.forward import forward_logits
from pytest_robust.engine.forward import input_keyword
from pytest_robust.engine.members import is_preset
from pytest_robust.engine.prepare import Prepared
from pytest_robust.engine.stochastic import Randomness
from pytest_robust.errors import RobustConfigError

Forward = Callable[[torch.Tensor], torch.Tensor]


def fuses_clean_pass(run: Prepared, key: CacheKey | None, randomness: Randomness) -> bool:
    """Whether this check takes its clean logits from the first member's first forward."""
    spec = run.spec
    if spec.check in ("gradients", "certify") or not run.members:
        return False
    first = run.members[0][1]
    return (
        first.fuses_clean_pass()
        and not first.targeted
        and spec.target is None
        and not randomness.active
        and not (spec.amp and run.device.type in AMP_DTYPES)
        and not spec.decide_early
        and run.world_size == 1
        and not is_preset(spec)  # its members are fitted to the class count first
        and (key is None or run.cache.clean_logits(key) is None)
    )


class FusedClean:
    """The clean logits of a check, filled batch by batch from the first member's first
    forward (or, for a batch where that member was skipped, a plain forward)."""

    def __init__(self, run: Prepared, dtype: torch.dtype, backoff: BackOff) -> None:
        self.samples: Samples = run.samples
        self.labels = run.samples.y.cpu()
        self.device, self.dtype, self.backoff = run.device, dtype, backoff
        # The clean pass's forward: a failure there is about the inputs' shapes and types.
        keyword = input_keyword(run.model, run.spec.inputs)  # model(pixel_values=x)
        self.forward: Forward = functools.partial(
            forward_logits, run.model, output=run.spec.output, keyword=keyword
        )
        n = len(self.samples)
        self.logits: torch.Tensor | None = None  # (n, classes) from the first batch on
        self.known = torch.zeros(n, dtype=torch.bool)
        self.attacked = torch.zeros(n, dtype=torch.bool)  # clean-correct, so attacked

    def sink(self, ids: torch.Tensor, forward: Forward, name: str) -> CleanSink:
        """What one attempt of the first member (`name`) on the samples `ids` hands its
        first forward's logits to; `forward` is the attack's forward after that."""
        return CleanSink(self, ids, forward, name)

    def record(self, ids: torch.Tensor, logits: torch.Tensor, correct: torch.Tensor) -> None:
        if self.logits is None:
            self.logits = torch.zeros((len(self.samples), logits.shape[1]))
        self.logits[ids] = logits
        self.known[ids] = True
        self.attacked[ids] = correct

    def check(self, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The clean pass's checks on a batch's clean logits (float32, CPU); its
        clean-correct rows."""
        refuse_bad_logits(logits, self.labels, ids)
        return logits.argmax(dim=1) == self.labels[ids]

    def fill(self, ids: torch.Tensor) -> None:
        """A plain clean forward for the samples of `ids` without clean logits yet (the
        first member was skipped: no gradient path, and a black-box member follows)."""
        missing = ids[~self.known[ids]]
        if len(missing) == 0:
            return

        def logits_of(piece: torch.Tensor) -> None:
            x = self.samples.inputs(piece, self.device, self.dtype)
            with torch.no_grad():
                logits = self.forward(x).float().cpu()
            self.record(piece, logits, self.check(logits, piece))

        self.backoff.map(logits_of, missing)

    def complete(self) -> torch.Tensor:
        """The clean logits of every sample, once every batch went through."""
        if self.logits is None or not bool(self.known.all()):
            raise RuntimeError("fused clean pass: some samples got no clean logits")
        return self.logits


class CleanSink:
    """`AttackBatch.clean` for one attempt of the first member on one batch, and the
    forward it attacks through: the first call of that forward is the batch's clean pass."""

    def __init__(self, owner: FusedClean, ids: torch.Tensor, forward: Forward, name: str):
        self.owner, self.ids, self.after, self.name = owner, ids, forward, name
        self.first = True
        self.logits: torch.Tensor | None = None
        self.correct = torch.zeros(0, dtype=torch.bool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.first:
            return self.after(x)
        self.first = False
        try:
            return self.owner.forward(x)
        except RobustConfigError:
            # As unfused: the clean pass's own message when a plain forward fails too,
            # else the failure is about inputs that require gradients (the message of
            # a failure after the clean pass).
            with torch.no_grad():
                self.owner.forward(x.detach())
            return self.after(x)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.logits is not None:
            raise RuntimeError(f"attack {self.name!r} handed over clean logits twice")
        cpu = logits.detach().float().cpu()
        self.correct = self.owner.check(cpu, self.ids)
        self.logits = cpu
        return self.correct.to(logits.device)

    def commit(self) -> torch.Tensor:
        """Record the batch's clean logits (the attempt completed); its clean-correct rows."""
        if self.logits is None:
            raise RuntimeError(
                f"attack {self.name!r} says it fuses the clean pass but never handed over "
                "the logits of its first forward"
            )
        self.owner.record(self.ids, self.logits, self.correct)
        return self.correct
