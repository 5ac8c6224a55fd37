"""Shared fixtures for pytest-robust's own tests.

torch is imported here, before any test runs, so that pytester's in-process runs find it
already in sys.modules (a torch first imported inside an in-process run is evicted when
the run ends, and importing it again crashes).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from pytest_robust.plugin.workers import cpu_threads

HERE = Path(__file__).resolve().parent

# Under xdist each worker takes its share of the cores, as the plugin gives a user's workers
# (workers.cpu_threads), and so do the processes its tests start (pytester subprocesses,
# torchrun): two workers with torch's whole pool each oversubscribe CI's 2 cores, and
# OpenMP's spinning waits then cost up to 10x the CPU (tests/unit/test_square.py, two copies
# at once: 180 s of CPU with 2 threads each, 17 s with 1). Tests of the thread choice itself
# remove the variable for their children.
_WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
if _WORKERS and not any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
    os.environ["OMP_NUM_THREADS"] = str(cpu_threads(os.cpu_count() or 1, int(_WORKERS)))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
# tests/ for the shared toy models, examples/digits for the example's model and data.
sys.path[:0] = [str(HERE), str(HERE.parent / "examples" / "digits")]
from digits import digits_split  # noqa: E402
from digits import train  # noqa: E402
from digits import trained_cnn  # noqa: E402
from toy_models import LogisticRegression  # noqa: E402,F401  (re-exported for older imports)
from trained_once import trained_once  # noqa: E402


@pytest.fixture(scope="session")
def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits test split: 450 real 8x8 handwritten digits in [0, 1]."""
    _, _, x_test, y_test = digits_split()
    return x_test, y_test


@pytest.fixture(scope="session")
def digits_cnn(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    """The example's undefended CNN (~3 s to train, deterministic; once per xdist run)."""
    return trained_once(tmp_path_factory, "digits-cnn-seed0", lambda: trained_cnn(seed=0))


@pytest.fixture(scope="session")
def digits_mlp(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Sequential:
    """A small MLP (64-32-10) trained on the digits for the certificate tests (about a
    second on one core, deterministic; once per xdist run); evaluations borrow it and give
    it back unchanged."""

    def build() -> torch.nn.Sequential:
        x_train, y_train, _, _ = digits_split()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = torch.nn.Sequential(
                torch.nn.Flatten(),
                torch.nn.Linear(64, 32),
                torch.nn.ReLU(),
                torch.nn.Linear(32, 10),
            )
        train(model, x_train, y_train, epochs=10)
        return model.eval()

    return trained_once(tmp_path_factory, "digits-mlp-64-32-10-seed0", build)
