"""BPDA: the forward pass is the wrapped step's, bit for bit; the backward pass is the
identity or the given approximation's gradient; on a quantised CNN it turns a masked
gradient attack into one that measures what the black-box Square attack measures."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from model_snapshot import assert_unchanged
from model_snapshot import snapshot

from pytest_robust import BPDA
from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.engine.fingerprint import model_identity


class Quantise(torch.nn.Module):
    """round(4x)/4: four grey levels, a zero gradient almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(4 * x) / 4


def quantised(cnn: torch.nn.Module, *, bpda: bool) -> torch.nn.Module:
    step = BPDA(Quantise()) if bpda else Quantise()
    return torch.nn.Sequential(step, cnn).eval()


def test_forward_is_the_wrapped_step_bit_for_bit(digits_cnn, digits_data):
    x = digits_data[0][:100]
    plain, wrapped = quantised(digits_cnn, bpda=False), quantised(digits_cnn, bpda=True)
    with torch.no_grad():
        assert torch.equal(wrapped(x), plain(x))
    # Also on the path an attack takes: grad enabled and an input that requires it.
    xr = x.clone().requires_grad_(True)
    assert torch.equal(wrapped(xr).detach(), plain(x).detach())
    assert torch.equal(BPDA(Quantise())(xr).detach(), Quantise()(x))


def test_identity_backward_passes_the_output_gradient_through():
    x = torch.rand(4, 3, requires_grad=True)
    weights = torch.randn(4, 3)
    (BPDA(Quantise())(x) * weights).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, weights)
    # Without BPDA the same step has no gradient at all: what BPDA is for.
    x2 = x.detach().clone().requires_grad_(True)
    (Quantise()(x2) * weights).sum().backward()
    assert x2.grad is not None and torch.count_nonzero(x2.grad) == 0


def test_approximate_backward_is_the_gradient_of_the_approximation():
    def approx(v: torch.Tensor) -> torch.Tensor:
        return torch.tanh(3 * v) ** 2

    x = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, 2, dtype=torch.float64)
    out = BPDA(Quantise(), backward=approx)(x)
    assert torch.equal(out.detach(), Quantise()(x.detach()))
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    (expected,) = torch.autograd.grad((approx(x) * weights).sum(), x)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)
    # An approximation that ignores its input gives a zero gradient, not an error.
    (flat,) = torch.autograd.grad(BPDA(Quantise(), backward=lambda v: torch.ones(5, 2))(x).sum(), x)
    assert torch.count_nonzero(flat) == 0


def test_a_step_that_changes_the_shape_needs_an_approximation():
    pool = torch.nn.AvgPool2d(2)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    with pytest.raises(RobustConfigError, match="backward="):
        BPDA(pool)(x)
    with pytest.raises(RobustConfigError, match="shape"):
        BPDA(pool, backward=lambda v: v)(x).sum().backward()
    # With a fitting approximation it works, and the forward is the module's.
    out = BPDA(pool, backward=pool)(x)
    out.sum().backward()
    assert torch.equal(out.detach(), pool(x.detach()))
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.25))


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="module"):
        BPDA(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backward"):
        BPDA(Quantise(), backward="identity")  # type: ignore[arg-type]


def test_bpda_with_a_plain_callable_has_a_model_identity():
    model = torch.nn.Sequential(BPDA(lambda v: torch.round(4 * v) / 4), torch.nn.Linear(3, 2))
    assert model_identity(model) is not None


EPS = 0.1  # digits pixels are multiples of 1/16; at eps 0.15 everything breaks (vacuous)


def test_bpda_measures_the_quantised_cnn_like_square(digits_cnn, digits_data):
    x, y = digits_data[0][:100], digits_data[1][:100]
    cnn = copy.deepcopy(digits_cnn)
    before = snapshot(cnn)
    gate: dict[str, Any] = {"attack": "pgd", "eps": EPS, "steps": 50, "min_acc": 0.5}
    naive = evaluate(quantised(cnn, bpda=False), (x, y), **gate)
    assert [flag["name"] for flag in naive.flags] == ["zero_gradients"]
    assert naive.status == "fail"
    assert "pytest_robust.BPDA" in naive.flags[0]["fix"]

    wrapped = quantised(cnn, bpda=True)
    wrapped_before = snapshot(wrapped)
    measured = evaluate(wrapped, (x, y), **gate)
    assert measured.flags == []
    assert measured.status == "pass"
    assert measured.clean_acc == naive.clean_acc  # same model in the forward pass
    # Square never reads gradients, and every sample it breaks is re-verified: its robust
    # accuracy is an upper bound, and one with fewer queries is a larger (still valid) one.
    # Square with 5000 queries measures 0.81 here too (docs/masking.md#bpda); 300 queries
    # keep the test small.
    square = evaluate(quantised(cnn, bpda=False), (x, y), attack="square", eps=EPS, queries=300)
    assert measured.robust_acc <= square.robust_acc + 0.05
    assert abs(measured.robust_acc - square.robust_acc) <= 0.05
    # The naive attack was blind: BPDA finds far more.
    assert measured.robust_acc < naive.robust_acc - 0.1
    assert_unchanged(before, cnn)
    assert_unchanged(wrapped_before, wrapped)
