"""Three models of the same small MLP on scikit-learn's digits, trained with the recipes of
`pytest_robust.defenses`: undefended, adversarially trained (PGD, eps 0.1) and
defensively distilled (T = 100, deployed at T = 1).

Each takes one to three seconds on a CPU, is deterministic (seeded, global RNG untouched)
and is trained once per process (cached), so the example's fixtures and pytest-robust's own
tests share them.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import TensorDataset

from pytest_robust import defenses

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "digits"))
from digits import digits_split

TRAIN_EPS = 0.1  # the adversarially trained model's L-inf budget
TEMPERATURE = 100.0  # the distilled model's training temperature


def mlp(seed: int = 0) -> nn.Sequential:
    """64 -> 128 -> 10, logits out; initialised from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def train_loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    """The digits training split (1347 images), shuffled in batches of 64."""
    x_train, y_train, _, _ = digits_split()
    return DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True)


def held_out_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The 450 held-out digits, inputs in [0, 1]."""
    _, _, x_test, y_test = digits_split()
    return x_test, y_test


@functools.cache
def standard_model() -> nn.Module:
    return defenses.standard_training(mlp(), train_loader(), epochs=20)


@functools.cache
def adversarial_model() -> nn.Module:
    return defenses.adversarial_training(mlp(), train_loader(), eps=TRAIN_EPS, steps=7, epochs=20)


@functools.cache
def distilled_model() -> nn.Module:
    return defenses.defensive_distillation(
        mlp(), train_loader(), temperature=TEMPERATURE, epochs=30, lr=3e-2
    )
