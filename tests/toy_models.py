"""Small models with known answers, shared by the unit tests (import as `toy_models`)."""

from __future__ import annotations

import torch


class LogisticRegression(torch.nn.Module):
    """Binary logistic regression written as 2-class logits [0, w.x + b]."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(len(w), 1)
        with torch.no_grad():
            self.linear.weight.copy_(w.reshape(1, -1))
            self.linear.bias.fill_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.linear(x.flatten(1))
        return torch.cat([torch.zeros_like(score), score], dim=1)


class Scaled(torch.nn.Module):
    """The logits times `factor`: what a distilled model (T = factor) is when deployed at
    T = 1. Same predictions, same robustness, a saturated softmax."""

    def __init__(self, inner: torch.nn.Module, factor: float) -> None:
        super().__init__()
        self.inner = inner
        self.factor = factor
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.factor


class TinyNet(torch.nn.Module):
    """A random small net over any input shape (flattened): tanh(x W1) W2, W1 of width 16,
    seeded, its first layer's weights times `scale`."""

    def __init__(self, features: int, classes: int, seed: int, scale: float = 1.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(features, 16, generator=g) * scale)
        self.w2 = torch.nn.Parameter(torch.randn(16, classes, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.flatten(1) @ self.w1) @ self.w2


def linear_problem(
    seed: int, n: int, d: int = 20
) -> tuple[LogisticRegression, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random logistic regression and `n` points in the middle of [0, 1]^d, labelled by
    its own decision: (model, x, y, w, score), with score = w.x + b the closed form."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    b = float(torch.randn(1, generator=g))
    x = torch.rand(n, d, generator=g) * 0.6 + 0.2
    score = x @ w + b
    return LogisticRegression(w, b), x, (score > 0).long(), w, score
