"""attack='noise': accuracy under random noise, checked against the normal distribution on a
linear model, where a sample flips exactly when w . noise < -margin."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.attacks import registered_attacks
from pytest_robust.spec import expand
from pytest_robust.spec import validate

N, D = 2000, 16
WIDE = (-50.0, 50.0)  # no clipping, so the closed form holds


class Linear(torch.nn.Module):
    """Logits [0, w . x] with w = 1/4 everywhere: ||w|| = 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.flatten(1).sum(dim=1, keepdim=True) / 4
        return torch.cat([torch.zeros_like(score), score], dim=1)


def margin_two() -> tuple[torch.Tensor, torch.Tensor]:
    """N samples of class 1, each with score exactly 2."""
    return torch.full((N, D), 0.5), torch.ones(N, dtype=torch.long)


def phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@pytest.mark.parametrize("distribution", ["gaussian", "uniform"])
@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_accuracy_under_noise_matches_the_normal_distribution(
    distribution: str, sigma: float
) -> None:
    # w . noise has standard deviation sigma (normal, or a sum of 16 uniforms: nearly so).
    result = evaluate(
        Linear(), margin_two(), attack="noise", sigma=sigma, distribution=distribution, bounds=WIDE
    )
    expected = 1 - phi(-2 / sigma)
    tolerance = 4 * math.sqrt(expected * (1 - expected) / N) + 0.005
    assert abs(result.robust_acc - expected) < tolerance
    assert result.eps is None and "sigma=" in result.describe_attack()


def test_worst_of_k_draws_is_the_k_th_power_and_contains_the_first_draw() -> None:
    one = evaluate(Linear(), margin_two(), attack="noise", sigma=2.0, bounds=WIDE)
    three = evaluate(Linear(), margin_two(), attack="noise", sigma=2.0, draws=3, bounds=WIDE)
    expected = (1 - phi(-1.0)) ** 3
    assert abs(three.robust_acc - expected) < 4 * math.sqrt(expected * (1 - expected) / N)
    # Draw 0 is the same in both: every sample robust to three draws is robust to one.
    assert all(a == "1" for a, b in zip(one.robust, three.robust, strict=True) if b == "1")


def test_no_noise_changes_nothing_and_batches_do_not_matter() -> None:
    x, y = margin_two()
    assert evaluate(Linear(), (x, y), attack="noise", sigma=0.0).robust_acc == 1.0
    whole = evaluate(Linear(), (x, y), attack="noise", sigma=1.0, bounds=WIDE, batch_size=2000)
    small = evaluate(Linear(), (x, y), attack="noise", sigma=1.0, bounds=WIDE, batch_size=7)
    assert whole.robust == small.robust


def test_noisy_inputs_are_clipped_to_the_bounds() -> None:
    x, y = torch.full((50, D), 0.9), torch.ones(50, dtype=torch.long)  # score 3.6
    result = evaluate(Linear(), (x, y), attack="noise", sigma=0.5, keep_adversarial=True)
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0
    assert not torch.equal(result.adversarial, x)


def test_a_sigma_list_expands_into_a_curve_without_eps_in_the_ids() -> None:
    kwargs = {"attack": "noise", "sigma": [0.05, 0.1], "min_acc": [0.9, 0.8]}
    cases = expand(validate(kwargs, registered_attacks()))
    assert [case.id for case in cases] == ["noise-sigma=0.05", "noise-sigma=0.1"]


def test_noise_needs_sigma_and_refuses_eps() -> None:
    with pytest.raises(RobustConfigError, match="needs sigma="):
        evaluate(Linear(), margin_two(), attack="noise")
    with pytest.raises(RobustConfigError, match="eps= does not apply to attack 'noise'"):
        evaluate(Linear(), margin_two(), attack="noise", eps=0.1, sigma=0.1)
    with pytest.raises(RobustConfigError, match="distribution="):
        evaluate(Linear(), margin_two(), attack="noise", sigma=0.1, distribution="laplace")
