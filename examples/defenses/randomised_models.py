"""Two defences of the digits CNN (examples/digits) that defeat a plain gradient attack
without being as robust as it says:

- **noisy**: Gaussian noise in the forward pass, x + 0.2 * randn_like(x), also at inference,
  on a CNN trained with the same noise as augmentation. Every forward pass is a different
  function: one gradient is one random sample of the gradient, and a single judging pass is
  a lucky draw. EOT (`eot=`) attacks the expectation over the noise; `draws=` judges every
  point over several seeded draws.
- **quantised**: round(4x)/4 before the CNN (four grey levels). Its gradient is zero almost
  everywhere; `pytest_robust.BPDA` keeps the forward pass and differentiates it as the
  identity, so a gradient attack sees the CNN behind the step.

Trained once per process (cached), deterministically, the global RNG left untouched.
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path

import torch
from torch import nn

from pytest_robust import BPDA

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "digits"))
from digits import DigitsCNN
from digits import digits_split
from digits import train
from digits import trained_cnn

SIGMA = 0.2  # the noise defence's standard deviation, in input units ([0, 1])
LEVELS = 4  # the quantisation defence's grey levels: round(4x)/4


class GaussianNoise(nn.Module):
    """x + sigma * N(0, 1) noise, in train and eval mode alike (the defence)."""

    def __init__(self, sigma: float = SIGMA) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)


class Quantise(nn.Module):
    """round(LEVELS * x) / LEVELS: a step function, gradient zero almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(LEVELS * x) / LEVELS


@functools.cache
def noisy_cnn() -> nn.Module:
    """The digits CNN trained with sigma-0.2 noise augmentation, noise kept at inference."""
    x_train, y_train, _, _ = digits_split()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(GaussianNoise(SIGMA), DigitsCNN())
        train(model, x_train, y_train, epochs=15, seed=0)
    return model.eval()


@functools.cache
def _digits_cnn() -> nn.Module:
    return trained_cnn(seed=0)


def digits_cnn() -> nn.Module:
    """The plainly trained digits CNN itself (a copy of the one trained once per process)."""
    return copy.deepcopy(_digits_cnn())


def quantised_cnn() -> nn.Module:
    """round(4x)/4 in front of the (plainly trained) digits CNN."""
    return nn.Sequential(Quantise(), copy.deepcopy(_digits_cnn())).eval()


def quantised_cnn_bpda() -> nn.Module:
    """The same model with the step wrapped in BPDA: the forward pass is unchanged."""
    return nn.Sequential(BPDA(Quantise()), copy.deepcopy(_digits_cnn())).eval()
