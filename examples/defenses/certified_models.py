"""Models for the certified-robustness examples (test_certified.py), trained with the
recipes of `pytest_robust.defenses` on scikit-learn's digits, deterministically and once
per process (cached):

- `ibp_mlp()`: the examples' MLP trained with IBP at L-inf eps 0.1 (Gowal et al. 2018):
  its certified accuracy at eps 0.05 is a real gate;
- `noise_cnn()`: a small CNN trained on Gaussian noise (sigma 0.25), the base model that
  randomized smoothing (method="smoothing", pytest_robust.Smoothed) needs;
- `ensemble_mlp()`: the MLP after ensemble adversarial training (Tramer et al. 2018) on
  FGSM examples of three static surrogates, and `held_out_mlp()`, a standard MLP never
  used in training, from which the transfer attacks come.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch
from torch import nn

from pytest_robust import defenses

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defended_models import mlp
from defended_models import train_loader

IBP_TRAIN_EPS = 0.1  # Gowal et al. train at a larger eps than they certify (0.05 here)
SIGMA = 0.25  # the smoothing noise of noise_cnn()
ENSEMBLE_EPS = 0.1  # the FGSM budget of ensemble adversarial training


def small_cnn(seed: int = 0) -> nn.Sequential:
    """conv16 - conv32 (stride 2) - fc64 - 10 on 8x8 digits; initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )


@functools.cache
def ibp_mlp() -> nn.Module:
    return defenses.ibp_training(mlp(), train_loader(), eps=IBP_TRAIN_EPS, epochs=60)


@functools.cache
def noise_cnn() -> nn.Module:
    return defenses.gaussian_noise_training(small_cnn(), train_loader(), sigma=SIGMA, epochs=30)


@functools.cache
def held_out_mlp() -> nn.Module:
    """A standard MLP from another seed: the transfer attacks' source, unseen in training."""
    return defenses.standard_training(mlp(seed=7), train_loader(), epochs=20, seed=7)


@functools.cache
def ensemble_mlp() -> nn.Module:
    surrogates = [
        defenses.standard_training(mlp(seed=s), train_loader(), epochs=20, seed=s)
        for s in (1, 2, 3)
    ]
    return defenses.ensemble_adversarial_training(
        mlp(), train_loader(), surrogates=surrogates, eps=ENSEMBLE_EPS, epochs=30
    )
