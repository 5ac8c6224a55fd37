"""A tiny classifier whose adversarial answers are known exactly, for the self-test.

Four classes on a line: the model scores s(x) = v . (x - 0.5) and predicts the class whose
centre mu_k in (-3, -1, 1, 3) is nearest to s (logits scale * (mu_k * s - mu_k**2 / 2)), so
the class boundaries are s = -2, 0, 2. Every sample sits at a known distance m_i in
[M_LOW, M_HIGH] from its nearest boundary and at least 2 - M_HIGH from any other. Within an
eps-ball the score moves by at most eps * ||v||_1 (L-inf) or eps * ||v||_2 (L2), the dual
norms, and exactly that far in the direction sign(v) or v / ||v||_2; the inputs are placed
far enough inside [0, 1] that the bounds do not clip that move at up to 1.1 * M_HIGH (at
twice that they may clip a little, which the slack absorbs; `check` verifies both). Hence,
with reach(eps) = eps * dual norm:

- reach < M_LOW: no input of the ball changes any prediction (provably robust);
- reach > M_HIGH: every sample has an adversarial input in the ball, across its nearest
  boundary, into a known class (its target for the targeted check).

None of this uses the engine's own distance or projection code, so a bug there that lets an
attack overshoot eps shows up as a broken provably-robust sample.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

CENTRES = (-3.0, -1.0, 1.0, 3.0)
M_LOW, M_HIGH = 0.2, 0.4  # every sample's distance (in s) to its nearest boundary
SCALE = 5.0  # logit scale: margins of 2 to 4 logits, confident like a trained model
SHAPE = (1, 4, 4)  # image-shaped, so patch-based attacks (square) apply
N = 32
L1_NORM = 8.0  # ||v||_1: an L-inf budget of 0.1 moves the score by 0.8 = 2 * M_HIGH


class LineClassifier(torch.nn.Module):
    """Nearest centre on the score s(x) = v . (x - 0.5): a linear 4-class model."""

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        mu = torch.tensor(CENTRES)
        self.linear = torch.nn.Linear(v.numel(), len(CENTRES))
        with torch.no_grad():
            self.linear.weight.copy_(SCALE * mu[:, None] * v[None, :])
            self.linear.bias.copy_(SCALE * (-mu * float(v.sum()) * 0.5 - mu**2 / 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.linear(x.flatten(1))
        return logits


@dataclass(frozen=True)
class KnownAnswers:
    model: LineClassifier
    x: torch.Tensor
    y: torch.Tensor
    across: torch.Tensor  # the class across each sample's nearest boundary
    dual_norms: dict[str, float]  # norm -> the dual norm of v (L1 for linf, L2 for l2)

    def eps_for_reach(self, reach: float, norm: str) -> float:
        """The budget whose largest possible move of the score is `reach`."""
        return reach / self.dual_norms[norm]


def build(seed: int = 0) -> KnownAnswers:
    """The model and N samples, deterministic for `seed` (the global RNG is not used)."""
    generator = torch.Generator().manual_seed(seed)
    d = SHAPE[0] * SHAPE[1] * SHAPE[2]
    # Mixed signs and magnitudes, so the L-inf and L2 optima differ.
    magnitude = 0.6 + 0.8 * torch.rand(d, generator=generator, dtype=torch.float64)
    sign = torch.where(torch.rand(d, generator=generator) < 0.5, -1.0, 1.0).double()
    v = sign * magnitude
    v = v * (L1_NORM / v.abs().sum())
    # Each sample: a boundary b, a side, a margin; s = b + side * m.
    index = torch.arange(N)
    boundary = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64)[index % 3]
    side = torch.where((index // 3) % 2 == 0, -1.0, 1.0).double()
    margin = M_LOW + (M_HIGH - M_LOW) * torch.rand(N, generator=generator, dtype=torch.float64)
    margin = margin.clamp(M_LOW + 0.01, M_HIGH - 0.01)  # strictly inside: float32 slack
    s = boundary + side * margin
    # x = 0.5 + u, with u a small pattern corrected along v so that v . u = s exactly.
    u = (torch.rand(N, d, generator=generator, dtype=torch.float64) - 0.5) * 0.04
    u = u + (s - u @ v)[:, None] * v[None, :] / float(v @ v)
    x = (0.5 + u).float().reshape(N, *SHAPE)
    mu = torch.tensor(CENTRES, dtype=torch.float64)
    y = (s[:, None] - mu[None, :]).abs().argmin(dim=1)
    across = (boundary[:, None] - side[:, None] * 0.5 - mu[None, :]).abs().argmin(dim=1)
    model = LineClassifier(v.float()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return KnownAnswers(
        model=model,
        x=x,
        y=y,
        across=across,
        dual_norms={"linf": float(v.abs().sum()), "l2": float(v.norm())},
    )


def witness(answers: KnownAnswers, eps: float, norm: str) -> torch.Tensor:
    """For each sample, the point of the eps-ball (clipped to [0, 1]) that moves the score
    furthest across its nearest boundary: the adversarial example a correct attack must be
    able to find. Built without the engine's projection code."""
    v = answers.model.linear.weight[1] - answers.model.linear.weight[0]  # SCALE * 2 * v
    mu = torch.tensor(CENTRES)
    towards = torch.sign(mu[answers.across] - mu[answers.y])  # +1: increase s
    step = eps * torch.sign(v) if norm == "linf" else eps * v / v.norm()
    move = towards[:, None] * step[None, :]
    return (answers.x.flatten(1) + move).clamp(0.0, 1.0).reshape(answers.x.shape)


def check(answers: KnownAnswers, slacks: tuple[float, ...] = (1.1, 2.0)) -> None:
    """The self-test's own sanity check: at reach = slack * M_HIGH the witness of every sample,
    in each norm, lies in the ball and the bounds and is classified as the class across the
    boundary. Raises RuntimeError if not (a bug in the self-test, not in an attack)."""
    for (norm, dual), slack in itertools.product(answers.dual_norms.items(), slacks):
        eps = slack * M_HIGH / dual
        points = witness(answers, eps, norm)
        delta = (points - answers.x).flatten(1)
        size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
        with torch.no_grad():
            predicted = answers.model(points).argmax(dim=1)
        wrong = not torch.equal(predicted, answers.across) or bool((predicted == answers.y).any())
        if bool((size > eps * (1 + 1e-5)).any()) or wrong:
            raise RuntimeError(f"self-test: the known adversarial examples ({norm}) are wrong")
