"""check="certify", method="smoothing": randomized smoothing (Cohen, Rosenfeld & Kolter,
*Certified Adversarial Robustness via Randomized Smoothing*, ICML 2019).

The smoothed classifier g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c) is a *different*
classifier from the base model f. CERTIFY (their Algorithm 1) guesses g's class from n0
noisy copies of x, counts how often f says that class on n fresh copies, takes the
one-sided Clopper-Pearson lower bound pA of that probability at level 1 - alpha and, if
pA > 1/2, certifies that g is constant on the L2 ball of radius sigma * PhiInverse(pA)
(else it abstains). Each certificate is wrong with probability at most alpha over the noise.
PREDICT (their Algorithm 2) is g's deployable prediction rule: the top class if a two-sided
binomial test of the top two counts rejects a tie at level alpha, else abstain.

Noise is drawn in chunks of CHUNK rows from a torch.Generator seeded by (seed, the
sample's key, phase, chunk): a sample's noise depends neither on the batch size nor on the
other samples, and the selection (n0) and estimation (n) draws are independent. The rows
of several samples share one forward batch when n0 or n is small (packing).

The statistics come from scipy (an optional dependency: pip install 'pytest-robust[certify]');
the largest certifiable radius needs only the standard library.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import torch
from torch import nn

from pytest_robust.errors import RobustConfigError
from pytest_robust.spec.validate import largest_radius

__all__ = ["ABSTAIN", "Smoothed", "certify", "largest_radius", "predict"]

ABSTAIN = -1  # the label of an abstention (Cohen et al.'s "abstain")
CHUNK = 100  # noise rows per generator seed: fixed, so results do not depend on batch_size
# Seed streams: the selection draws (n0), the estimation draws (n), PREDICT's draws.
SELECT, ESTIMATE, PREDICT = 0, 1, 2
INSTALL = "pip install 'pytest-robust[certify]'"

Forward = Callable[[torch.Tensor], torch.Tensor]


def scipy_stats() -> Any:
    """scipy.stats, or a RobustConfigError that says how to install it."""
    try:
        from scipy import stats
    except ModuleNotFoundError:
        raise RobustConfigError(
            "randomized smoothing (check='certify', method='smoothing', and "
            "pytest_robust.Smoothed) needs scipy for its Clopper-Pearson and binomial "
            f"statistics: {INSTALL}"
        ) from None
    return stats


def lower_confidence_bound(n_a: torch.Tensor, n: int, alpha: float) -> torch.Tensor:
    """One-sided (1 - alpha) Clopper-Pearson lower bounds of n_a successes in n draws
    (float64; 0 where n_a is 0). Cohen et al.'s proportion_confint(..., alpha=2 * alpha,
    method="beta")[0]."""
    beta = scipy_stats().beta
    counts = n_a.detach().cpu().double()
    bounds = beta.ppf(alpha, counts.clamp(min=1).numpy(), (n - counts + 1).numpy())
    return torch.where(counts > 0, torch.as_tensor(bounds, dtype=torch.float64), 0.0)


def noise_seed(seed: int, key: int, phase: int, chunk: int) -> int:
    return zlib.crc32(f"{seed}:{key}:{phase}:{chunk}".encode())


def class_counts(
    forward: Forward,
    x: torch.Tensor,
    keys: list[int],
    phase: int,
    num: int,
    sigma: float,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """(B, K) counts of the base model's classes over `num` noisy copies of each row of x.

    Row i's noise is the stream of (seed, keys[i], phase) in chunks of CHUNK; rows of
    consecutive samples are packed into forward batches of batch_size."""
    shape, device = x.shape[1:], x.device
    counts: torch.Tensor | None = None
    inputs: list[torch.Tensor] = []
    owners: list[torch.Tensor] = []
    pending = 0

    def flush(rows: int) -> None:
        nonlocal counts, inputs, owners, pending
        batch, owner = torch.cat(inputs), torch.cat(owners)
        inputs, owners, pending = [batch[rows:]], [owner[rows:]], pending - rows
        with torch.no_grad():
            logits = forward(batch[:rows])
        if counts is None:
            counts = torch.zeros((len(x), logits.shape[1]), dtype=torch.long, device=device)
        counts.index_put_(
            (owner[:rows], logits.argmax(dim=1)),
            torch.ones((), dtype=torch.long, device=device),
            accumulate=True,
        )

    for row in range(len(x)):
        for chunk in range(math.ceil(num / CHUNK)):
            take = min(CHUNK, num - chunk * CHUNK)
            generator = torch.Generator(device=device)
            generator.manual_seed(noise_seed(seed, keys[row], phase, chunk))
            noise = torch.randn((CHUNK, *shape), generator=generator, device=device)
            inputs.append(x[row] + sigma * noise[:take].to(x.dtype))
            owners.append(torch.full((take,), row, device=device))
            pending += take
            while pending >= batch_size:
                flush(batch_size)
    if pending:
        flush(pending)
    assert counts is not None  # num >= 1 and len(x) >= 1: at least one forward batch
    return counts.cpu()


def certify(
    forward: Forward,
    x: torch.Tensor,
    keys: list[int],
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    seed: int,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CERTIFY for every row of x: (labels with ABSTAIN, radii (0 where abstained), the
    count n_A of the guessed class among the n estimation draws)."""

    def counts(phase: int, num: int) -> torch.Tensor:
        return class_counts(forward, x, keys, phase, num, sigma, seed, batch_size)

    guess = counts(SELECT, n0).argmax(dim=1)
    n_a = counts(ESTIMATE, n).gather(1, guess[:, None])[:, 0]
    p_a = lower_confidence_bound(n_a, n, alpha)
    certain = p_a > 0.5
    ppf = NormalDist().inv_cdf
    radii = torch.tensor(
        [sigma * ppf(float(p)) if c else 0.0 for p, c in zip(p_a, certain, strict=True)]
    )
    labels = torch.where(certain, guess, torch.full_like(guess, ABSTAIN))
    return labels, radii.double(), n_a


def predict(
    forward: Forward,
    x: torch.Tensor,
    keys: list[int],
    *,
    sigma: float,
    n: int,
    alpha: float,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """PREDICT for every row of x: the top class where a two-sided binomial test of the
    top two counts rejects a tie at level alpha, else ABSTAIN."""
    counts = class_counts(forward, x, keys, PREDICT, n, sigma, seed, batch_size)
    top = counts.topk(2, dim=1)
    binomtest = scipy_stats().binomtest
    labels = []
    for (n_a, n_b), label in zip(top.values.tolist(), top.indices[:, 0].tolist(), strict=True):
        clear = binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha
        labels.append(label if clear else ABSTAIN)
    return torch.tensor(labels, dtype=torch.long)


def check_settings(sigma: float, n: int, alpha: float, n0: int = 1) -> None:
    """The checks the marker's schema makes, for Smoothed's own arguments."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise RobustConfigError(f"sigma={sigma!r}: the noise level must be a number > 0")
    for name, value in (("n", n), ("n0", n0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RobustConfigError(f"{name}={value!r}: the number of draws must be an int >= 1")
    if not (isinstance(alpha, float) and 0 < alpha < 0.5):
        raise RobustConfigError(f"alpha={alpha!r}: the error probability must be in (0, 0.5)")


class Smoothed(nn.Module):
    """The smoothed classifier of `model` as a deployable module: ``forward(x)`` returns
    PREDICT's labels (a LongTensor of shape (batch,)), ``Smoothed.ABSTAIN`` (-1) where the
    n noisy votes do not separate the top two classes at level alpha.

    It returns labels, not logits: it is the classifier that check="certify",
    method="smoothing" certifies, not a model to attack with gradients. The noise of each
    input row is seeded by `seed` and the row's bytes: the same input always gets the same
    answer, whatever else is in the batch. Run the base model in eval mode (``.eval()``).
    """

    ABSTAIN = ABSTAIN
    sigma: torch.Tensor
    n: torch.Tensor
    alpha: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        sigma: float,
        n: int = 10000,
        alpha: float = 0.001,
        *,
        batch_size: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_settings(sigma, n, alpha)
        if batch_size < 1 or seed < 0:
            raise RobustConfigError(f"batch_size={batch_size}, seed={seed}: need >= 1 and >= 0")
        scipy_stats()  # fail on construction, not on the first prediction
        self.base = model
        # Buffers, so that the model's fingerprint (and state_dict) tells sigmas apart.
        self.register_buffer("sigma", torch.tensor(float(sigma), dtype=torch.float64))
        self.register_buffer("n", torch.tensor(n))
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float64))
        self.batch_size, self.seed = batch_size, seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """PREDICT's labels for the rows of x (ABSTAIN = -1)."""
        return predict(
            self.base,
            x,
            self._keys(x),
            sigma=float(self.sigma),
            n=int(self.n),
            alpha=float(self.alpha),
            seed=self.seed,
            batch_size=self.batch_size,
        )

    def certify(
        self, x: torch.Tensor, n0: int = 100, n: int | None = None, alpha: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CERTIFY for the rows of x: (labels, certified L2 radii); ABSTAIN and radius 0
        where it abstains. n and alpha default to the module's."""
        n = int(self.n) if n is None else n
        alpha = float(self.alpha) if alpha is None else alpha
        check_settings(float(self.sigma), n, alpha, n0)
        labels, radii, _ = certify(
            self.base,
            x,
            self._keys(x),
            sigma=float(self.sigma),
            n0=n0,
            n=n,
            alpha=alpha,
            seed=self.seed,
            batch_size=self.batch_size,
        )
        return labels, radii

    def _keys(self, x: torch.Tensor) -> list[int]:
        """Each row's noise key: its bytes, so an input's answer does not depend on the batch."""
        rows = x.detach().cpu().contiguous().reshape(len(x), -1)
        return [zlib.crc32(row.numpy().tobytes()) for row in rows]
