"""Fixtures for the digits robustness suite: the model under test and the evaluation data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from digits import digits_split
from digits import trained_cnn


@pytest.fixture(scope="session")
def robust_model() -> torch.nn.Module:
    return trained_cnn(seed=0)  # ~3 s on a CPU, deterministic


@pytest.fixture(scope="session")
def robust_data() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x_test, y_test = digits_split()
    return x_test, y_test  # 450 held-out digits, inputs in [0, 1]
