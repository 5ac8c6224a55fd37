"""A randomised model's own randomness, driven from the check's seed (issue 14, EOT).

When a check draws the model more than once per point (an attack with eot > 1, or a
re-verification over draws > 1), every forward pass is seeded: the check forks torch's
global generators once (engine/borrow.py gives the user's state back, also on error) and,
before each forward, seeds the forked CPU generator (and the evaluation device's CUDA
generator) from a key of (the check's seed, the stream, the call number). A stream is one
purpose on one batch: the clean pass, the sanity probes, a member's attack, the
re-verification of its points (never the attack's: an attacker must not know the noise it
is judged with). So a seeded run is reproducible for the same seed, batch size and device;
the noise of a row depends on the batch it shares (a model draws `randn_like(x)` for the
whole batch), which is why batch_size is part of that promise.

N draws of a batch of B points are stacked into one forward of N * B rows, unless the probe
finds that the model draws its randomness once per call (a random resize of the whole
batch: stacking would give one draw N times); then each draw is its own call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

import torch

from pytest_robust.checks.flags import MASKING
from pytest_robust.checks.flags import WARNING
from pytest_robust.checks.flags import Flag

Forward = Callable[[torch.Tensor], torch.Tensor]

# What the probe finds about the model's randomness.
DETERMINISTIC = "deterministic"
PER_ROW = "per_row"  # stacked draws are independent draws
PER_CALL = "per_call"  # one draw per forward call: stacking would repeat it
UNCONTROLLED = "uncontrolled"  # two forwards with the same seed differ

# draws= when not given: one judging pass for a single-draw attack, else enough that a
# point fooling a draw with probability p is caught with probability 1 - (1 - p)**10.
DEFAULT_DRAWS = 10


def default_draws(eot: int) -> int:
    return 1 if eot == 1 else DEFAULT_DRAWS


def _key(seed: int, parts: tuple[object, ...]) -> int:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@dataclass
class Randomness:
    """How one check drives the model's randomness. Inactive (a single draw everywhere):
    nothing is seeded and the model draws from the (forked) global generators as usual."""

    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    eot: int = 1  # the most draws any member averages over
    draws: int = 1  # draws per judged point (re-verification and the clean pass)
    kind: str = PER_ROW  # set by probe()

    @property
    def active(self) -> bool:
        return self.eot > 1 or self.draws > 1

    def seed_for(self, parts: tuple[object, ...]) -> None:
        """Seed the forked generators for the forward pass named by `parts`."""
        if not self.active:
            return
        key = _key(self.seed, parts)
        torch.default_generator.manual_seed(key)
        if self.device.type == "cuda":
            index = torch.cuda.current_device() if self.device.index is None else self.device.index
            torch.cuda.default_generators[index].manual_seed(key)

    def stream(self, forward: Forward, *parts: object) -> Seeded:
        return Seeded(forward, self, parts)

    def probe(self, forward: Forward, x: torch.Tensor) -> str:
        """Find how the model draws its randomness, with a few forwards on x."""
        if not self.active:
            return self.kind
        with torch.no_grad():
            first = self.stream(forward, "probe")
            a = first(x)
            self.seed_for(("probe", 0))
            b = forward(x)
            if not _same(a, b):
                self.kind = UNCONTROLLED
            elif _same(a, first(x)):
                self.kind = DETERMINISTIC
            else:
                self.seed_for(("probe", 0))
                twice = forward(torch.cat([x, x]))
                self.kind = PER_CALL if _same(twice[: len(x)], twice[len(x) :]) else PER_ROW
        return self.kind

    def flags(self, fallback: list[Flag]) -> list[Flag]:
        """The `nondeterministic` flag of an active check, from the probe; `fallback` (the
        inactive check's two-forward comparison) where EOT does not apply."""
        if not self.active or self.kind == DETERMINISTIC:
            return fallback if not self.active else []
        if self.kind == UNCONTROLLED:
            return [
                Flag(
                    "nondeterministic",
                    MASKING,
                    "two forward passes with the same seed gave different logits: the model "
                    "draws randomness the check's seed cannot drive (numpy, Python's random, "
                    "a torch.Generator of its own, or state kept between calls), so the "
                    "attack's draws and the judging draws are not the ones seeded and the "
                    "numbers cannot be reproduced",
                    "draw the model's noise from torch's global generator (torch.randn_like, "
                    "torch.rand), or make the model deterministic for evaluation",
                )
            ]
        if self.eot == 1:
            return [
                Flag(
                    "nondeterministic",
                    MASKING,
                    "forward passes with different seeds gave different logits: the model is "
                    f"randomised and the attack used a single draw per gradient (judged over "
                    f"draws={self.draws})",
                    "attack the expectation over the randomness: eot=10 (docs/attacks.md#eot)",
                )
            ]
        how = (
            "one call per draw (the model draws its randomness once per call)"
            if self.kind == PER_CALL
            else "draws stacked in one batch"
        )
        return [
            Flag(
                "nondeterministic",
                WARNING,
                f"the model is randomised: gradients were averaged over eot={self.eot} "
                f"seeded draws ({how}) and every point was judged over draws={self.draws} "
                "draws (robust only if correct on every draw)",
                "nothing to fix; raise eot if more steps or draws still lower the number "
                "(docs/attacks.md#eot)",
            )
        ]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = a.abs().amax().clamp_min(1.0) if a.numel() else 1.0
    return a.shape == b.shape and bool(((a.float() - b.float()).abs() <= 1e-4 * scale).all())


class Seeded:
    """A forward pass whose every call is seeded from (seed, stream, call number); also
    the n-draw forward `draws(x, n)` attacks use for EOT."""

    def __init__(self, forward: Forward, randomness: Randomness, parts: tuple[object, ...]):
        self.forward, self.randomness, self.parts = forward, randomness, parts
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.randomness.seed_for((*self.parts, self.calls))
        self.calls += 1
        return self.forward(x)

    def draws(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Logits of n draws at x, shape (n, len(x), classes), differentiable in x."""
        if n == 1:
            return self(x)[None]
        if self.randomness.kind == PER_CALL:
            return torch.stack([self(x) for _ in range(n)])
        # Autograd sums the copies' gradients: the gradient of a mean over draws is the
        # mean of the per-draw gradients.
        stacked = x.expand(n, *x.shape).reshape(n * len(x), *x.shape[1:])
        return self(stacked).view(n, len(x), -1)
