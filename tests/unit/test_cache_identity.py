"""A cached value (clean logits, sanity flags) is reused only for the same model: twins that
share their weights but differ in a parameter-free module, a plain attribute, a buffer, a
submodule, their forward code, a hook or the output= adapter never share what was cached,
and a genuine hit still saves the forward passes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from pytest_robust import EvaluationCache
from pytest_robust import evaluate
# from pytest_robust.engine.fingerprint import model_identity
# from pytest_robust.engine.fingerprint import value_identity

GATE = {"attack": "pgd", "eps": 0.1, "steps": 5, "min_acc": 0.9, "max_samples": 60}


class Round4(nn.Module):
    """Quantises its input to quarters: zero gradients almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 4) / 4


class Temperature(nn.Module):
    """The inner model's logits divided by a plain float attribute."""

    def __init__(self, inner: nn.Module, t: float) -> None:
        super().__init__()
        self.inner, self.t = inner, t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) / self.t


@contextlib.contextmanager
def counting_linear(weight: torch.Tensor) -> Iterator[list[int]]:
    """Counts the samples that go through the linear layer with `weight`, from outside the
    model (a counter inside the model would change the model, and rightly miss the cache)."""
    seen = [0]
    original = torch.nn.functional.linear

    def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if w is weight:
            seen[0] += int(x.shape[0]) if x.dim() > 1 else 1
        return original(x, w, b)

    torch.nn.functional.linear = linear
    try:
        yield seen
    finally:
        torch.nn.functional.linear = original


def test_round4_twin_does_not_inherit_the_identity_twins_flags(digits_cnn, digits_data):
    cache = EvaluationCache()
    evaluate(nn.Sequential(nn.Identity(), digits_cnn), digits_data, cache=cache, **GATE)
    twin = evaluate(nn.Sequential(Round4(), digits_cnn), digits_data, cache=cache, **GATE)
    alone = evaluate(nn.Sequential(Round4(), digits_cnn), digits_data, **GATE)
    assert "zero_gradients" in [flag["name"] for flag in alone.flags]
    assert twin.flags == alone.flags
    assert twin.clean_correct == alone.clean_correct
    assert twin.status == alone.status == "fail"


def test_temperature_twin_does_not_inherit_the_first_temperatures_results(
    digits_cnn, digits_data
):
    cache = EvaluationCache()
    evaluate(Temperature(digits_cnn, 1.0), digits_data, cache=cache, **GATE)
    twin = evaluate(Temperature(digits_cnn, 1e-4), digits_data, cache=cache, **GATE)
    alone = evaluate(Temperature(digits_cnn, 1e-4), digits_data, **GATE)
    assert twin.flags == alone.flags
    assert twin.status == alone.status
