"""Trained models shared by the workers of one pytest-xdist run (import as `trained_once`).

Under `-n 2` every session or module fixture runs once per worker that needs it, so each
trained model would be trained twice (1-5 s of CPU each). The first worker to need a model
trains it and pickles it into the run's shared temporary folder, under a lock; the others
wait and load that copy, which is bit-identical to what they would have trained. Serially
this is `build()`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import torch
from filelock import FileLock

M = TypeVar("M", bound=torch.nn.Module)


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder every process of this run shares, and only this run: under
    xdist the workers' base folders are siblings in the run's own, fresh folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def trained_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[], M]) -> M:
    """`build()`, run by one worker of an xdist run and loaded by the others; `name` must
    say everything `build` depends on (the seed, the epochs...)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build()
    path = run_folder(tmp_path_factory) / f"trained-{name}.pt"
    with FileLock(f"{path}.lock"):
        if path.is_file():
            model: M = torch.load(path, weights_only=False)  # our own pickle, this run's
            return model
        model = build()
        torch.save(model, path)
        return model
