"""FGSM against the closed form on linear models (nothing here comes from our attack code)."""

from __future__ import annotations

import math

import pytest
import torch
from toy_models import LogisticRegression

from pytest_robust import evaluate


# The linear example from the FGSM slides (Goodfellow et al.): score w.x = -3, p = 0.0474;
# x + 0.5 * sign(w) moves the score by 0.5 * ||w||_1 = 5 to 2, p = 0.88.
def score(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[:, 1]


X = torch.tensor([[2.0, -1, 3, -2, 2, 2, 1, -4, 5, 1]])
W = torch.tensor([-1.0, -1, 1, -1, 1, -1, 1, 1, -1, 1])


def test_slides_linear_example() -> None:
    model = LogisticRegression(W)
    p_clean = torch.sigmoid(score(model, X)[0])
    assert float(score(model, X)[0]) == -3.0
    assert float(p_clean) == pytest.approx(0.0474, abs=5e-5)

    result = evaluate(
        model,
        (X, torch.tensor([0])),
        attack="fgsm",
        eps=0.5,
        bounds=(-10, 10),
        keep_adversarial=True,
    )
    x_adv = result.adversarial
    assert torch.equal(x_adv, X + 0.5 * W.sign())
    assert float(score(model, x_adv)[0]) == pytest.approx(2.0)
    assert float(torch.sigmoid(score(model, x_adv)[0])) == pytest.approx(0.8808, abs=5e-5)
    assert result.success == "1" and result.robust == "0"


@pytest.mark.parametrize("seed", range(3))
def test_fgsm_on_logistic_regression_matches_closed_form(seed: int) -> None:
    """For CE loss on logistic regression, grad_x = (p - y) * w, so the L-inf step is
    eps * sign(w) * sign(p - y): towards the other class, by eps in every coordinate."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(20, generator=g)
    b = float(torch.randn(1, generator=g))
    x = torch.rand(200, 20, generator=g) * 0.6 + 0.2  # away from the bounds: no clipping
    model = LogisticRegression(w, b)
    y = (score(model, x) > 0).long()  # labels the model gets right: every sample is attacked
    eps = 0.1
    result = evaluate(model, (x, y), attack="fgsm", eps=eps, keep_adversarial=True)

    direction = torch.where(y == 1, -1.0, 1.0)[:, None] * w.sign()[None, :]
    expected = x + eps * direction
    assert torch.allclose(result.adversarial, expected, atol=1e-6)
    # The score moves by exactly eps * ||w||_1 towards the boundary: broken iff it crosses.
    clean = score(model, x)
    moved = clean - torch.where(y == 1, 1.0, -1.0) * eps * w.abs().sum()
    crossed = (moved > 0).long() != y
    assert result.success == "".join("1" if c else "0" for c in crossed.tolist())
    assert result.clean_acc == 1.0


def test_fgsm_l2_step_is_eps_along_the_gradient() -> None:
    """L2 FGM: x + eps * grad / ||grad||_2, which for a linear model is eps * w / ||w||."""
    w = torch.tensor([3.0, -4.0])  # ||w|| = 5
    model = LogisticRegression(w)
    x = torch.tensor([[0.5, 0.5]])  # score -0.5: class 0
    result = evaluate(
        model, (x, torch.tensor([0])), attack="fgsm", eps=0.2, norm="l2", keep_adversarial=True
    )
    expected = x + 0.2 * w / 5
    assert torch.allclose(result.adversarial, expected, atol=1e-7)
    delta = (result.adversarial - x).norm()
    assert math.isclose(float(delta), 0.2, rel_tol=1e-6)
