"""Invariance tests through pytest: the failing transformation is reported, remembered in
the pytest cache, and tried first on the next run."""

from __future__ import annotations

import json
from typing import Any

import pytest

# Class 1 iff pixel (4, 4) is lit. The ten class-1 images have a lit 5x5 window around it
# except at (4, 2), so of all shifts up to 2 pixels only translate_x=+2 breaks them, late
# on the grid; the ten class-0 images are black around (4, 4) and never break.
WORLD = """
import pytest
import torch


class OnePixel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.images = 0  # inputs seen, over every forward pass

    def forward(self, x):
        self.images += len(x)
        p = x[:, 0, 4, 4] - 0.5
        return torch.stack([-p, p], dim=1) * 10


@pytest.fixture(scope="session")
def robust_model():
    return OnePixel()


@pytest.fixture(scope="session")
def robust_data():
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[..., 2:7, 2:7] = 0.0
    x[:10, 0, 2:7, 2:7] = 1.0
    x[:10, 0, 4, 2] = 0.0
    return x, torch.tensor([1] * 10 + [0] * 10)
"""

SUITE = """
import json
from pathlib import Path

from pytest_robust import robust


@robust(attack="transform", translate=2, batch_size=4, min_acc=0.9)
def test_shift_invariance(robustness, robust_model):
    runs = Path("runs.jsonl")
    record = {"details": robustness.details, "images": robust_model.images}
    runs.write_text((runs.read_text() if runs.exists() else "") + json.dumps(record) + "\\n")
"""

EXAMPLE = "smallest breaking transformation: sample 0: translate_x=2"


def runs(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (pytester.path / "runs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_second_run_finds_the_same_counterexample_first(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(WORLD)
    pytester.makepyfile(test_inv=SUITE)
    for _ in range(2):
        result = pytester.runpytest()
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"*robust_acc 0.500 < min_acc 0.900*{EXAMPLE}*"])
    first, second = runs(pytester)
    assert first["details"]["counterexamples"] == second["details"]["counterexamples"]
    assert set(map(str, second["details"]["counterexamples"].values())) == {"{'translate_x': 2.0}"}
    assert first["details"]["replayed"] == 0 and second["details"]["replayed"] == 10
    # The class-1 samples were broken by their first try, so the model saw fewer inputs.
    assert second["images"] < first["images"]
    # The terminal row has no eps for an attack that has none.
    result.stdout.fnmatch_lines(["*test_inv.py::test_shift_invariance*transform*-*20*fail*"])


def test_without_the_cache_nothing_is_replayed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(WORLD)
    pytester.makepyfile(test_inv=SUITE)
    for _ in range(2):
        pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)
    first, second = runs(pytester)
    assert first["details"]["replayed"] == second["details"]["replayed"] == 0
    assert first["images"] == second["images"]


def test_cache_clear_forgets_the_counterexamples(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(WORLD)
    pytester.makepyfile(test_inv=SUITE)
    pytester.runpytest().assert_outcomes(failed=1)
    pytester.runpytest("--cache-clear").assert_outcomes(failed=1)
    first, second = runs(pytester)
    assert second["details"]["replayed"] == 0 and second["images"] == first["images"]
