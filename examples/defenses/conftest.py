"""Fixtures for the defences example: one data set, three models (pick one per test with
`@robust(model=...)`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defended_models import adversarial_model
from defended_models import distilled_model
from defended_models import held_out_data
from defended_models import standard_model


@pytest.fixture(scope="session")
def robust_data() -> tuple[torch.Tensor, torch.Tensor]:
    return held_out_data()


@pytest.fixture(scope="session")
def standard() -> torch.nn.Module:
    """Undefended: plain cross-entropy training."""
    return standard_model()


@pytest.fixture(scope="session")
def adversarially_trained() -> torch.nn.Module:
    """Madry-style PGD adversarial training at L-inf eps 0.1."""
    return adversarial_model()


@pytest.fixture(scope="session")
def distilled() -> torch.nn.Module:
    """Defensive distillation at T = 100, deployed at T = 1: gradients masked, not robust."""
    return distilled_model()


# --- randomised and non-differentiable defences of the digits CNN (randomised_models.py) --


@pytest.fixture(scope="session")
def noisy_cnn() -> torch.nn.Module:
    """Gaussian noise (sigma 0.2) in forward, at inference too; trained with that noise."""
    from randomised_models import noisy_cnn

    return noisy_cnn()


@pytest.fixture(scope="session")
def quantised_cnn() -> torch.nn.Module:
    """round(4x)/4 before the digits CNN: zero gradients almost everywhere."""
    from randomised_models import quantised_cnn

    return quantised_cnn()


@pytest.fixture(scope="session")
def quantised_cnn_bpda() -> torch.nn.Module:
    """The same model, the rounding wrapped in pytest_robust.BPDA (forward unchanged)."""
    from randomised_models import quantised_cnn_bpda

    return quantised_cnn_bpda()
