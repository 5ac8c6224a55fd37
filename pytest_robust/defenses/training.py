"""The training loop every recipe shares, and plain cross-entropy training.

Deterministic for a given seed: the whole run happens inside `torch.random.fork_rng`
seeded with `seed`, so shuffling, dropout and random starts repeat exactly, and the
caller's global RNG state is restored afterwards (left untouched).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust.engine.device import resolve_device
from pytest_robust.errors import RobustConfigError

# loss(model, x, y) -> scalar loss for one batch, on the training device.
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def fit(
    model: nn.Module,
    loader: Iterable[Any],
    batch_loss: BatchLoss,
    *,
    epochs: int,
    lr: float,
    seed: int,
    device: str | torch.device,
) -> nn.Module:
    """Adam on `batch_loss` over `loader` for `epochs`; returns the model in eval mode on
    `device`. `loader` yields (x, y) batches (a DataLoader, or any re-iterable)."""
    if epochs < 1:
        raise RobustConfigError(f"epochs={epochs}: train for at least 1 epoch")
    if lr <= 0:
        raise RobustConfigError(f"lr={lr}: the learning rate must be positive")
    target = resolve_device(device)
    cuda = [target] if target.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        model.to(target)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(epochs):
            for batch in loader:
                x, y = batch[0].to(target), batch[1].to(target)
                model.train()
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(batch_loss(model, x, y))
                optimizer.step()
    return model.eval()


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def standard_training(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    epochs: int = 20,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Plain cross-entropy training: the undefended baseline the other recipes are compared
    with (same loop, same optimiser)."""
    return fit(model, loader, cross_entropy, epochs=epochs, lr=lr, seed=seed, device=device)


def input_grad(
    loss: torch.Tensor, x: torch.Tensor, *, create_graph: bool = False, retain_graph: bool = False
) -> torch.Tensor:
    """d loss / d x without touching the parameters' .grad."""
    (grad,) = torch.autograd.grad(
        loss, x, create_graph=create_graph, retain_graph=retain_graph or create_graph
    )
    return grad
