"""Random noise: the baseline that every gradient attack has to beat."""

from __future__ import annotations

from typing import cast

import pytest
import torch

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import get_attack
from pytest_robust.attacks.noise import RandomNoise


class ExactMatch(torch.nn.Module):
    """Class 0 for an input equal to one of `clean`, class 1 for anything else (class 2
    never): every perturbation, however small, breaks it."""

    clean: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, clean: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("clean", clean.flatten(1).clone())
        self.samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += len(x)
        known = (x.flatten(1)[:, None, :] == self.clean[None]).all(dim=2).any(dim=1)
        return torch.stack(
            [4.0 * known.float(), 4.0 * (~known).float(), torch.zeros(len(x))], dim=1
        )


def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    x = 0.25 + 0.5 * torch.rand(30, 3, 5, generator=torch.Generator().manual_seed(0))
    return x, torch.zeros(30, dtype=torch.long)


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_any_perturbation_breaks_a_model_that_only_knows_its_clean_inputs(distribution, norm):
    x, y = toy_data()
    model = ExactMatch(x)
    result = evaluate(
        model,
        (x, y),
        attack="random_noise",
        eps=0.01,
        norm=norm,
        distribution=distribution,
        sanity="off",  # counts the attack's queries only (no determinism forward)
    )
    assert result.clean_acc == 1.0 and result.robust_acc == 0.0
    # The first draw breaks each sample, and a broken sample gets no second draw.
    assert result.details["draws"] == {"mean": 1.0, "median": 1.0}
    assert model.samples == 30 + 30 + 30  # clean pass, one draw each, re-verification


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_nothing_breaks_at_eps_zero(distribution, digits_cnn, digits_data):
    result = evaluate(
        digits_cnn,
        digits_data,
        attack="random_noise",
        eps=0.0,
        samples=5,
        distribution=distribution,
    )
    assert result.robust_acc == result.clean_acc
    assert result.n_success == 0
    assert result.details["draws"] == {"mean": 5.0, "median": 5.0}


def test_targeted_success_means_reaching_the_target():
    x, y = toy_data()
    reachable = evaluate(ExactMatch(x), (x, y), attack="random_noise", eps=0.01, target=1)
    assert reachable.targeted and reachable.success_rate == 1.0
    # Every draw breaks the sample (class 1) but none reaches class 2: all draws are spent.
    unreachable = evaluate(
        ExactMatch(x), (x, y), attack="random_noise", eps=0.01, samples=7, target=2
    )
    assert unreachable.success_rate == 0.0
    assert unreachable.details["draws"] == {"mean": 7.0, "median": 7.0}


def test_is_weaker_than_pgd_on_the_cnn(digits_cnn, digits_data):
    noise = evaluate(digits_cnn, digits_data, attack="random_noise", eps=0.1, samples=20)
    pgd = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, steps=10)
    assert noise.robust_acc >= pgd.robust_acc
    assert noise.n_success > 0  # but it is not doing nothing


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_gaussian_noise_scale(norm):
    """sigma = eps / 2 (L-inf): ~4.6% of coordinates clipped to the faces. sigma = eps /
    sqrt(d) (L2): norms concentrate at eps, so about half land on the sphere."""
    d, eps = 400, 0.1
    threat = ThreatModel(eps, norm, (0.0, 1.0))
    attack = cast(
        RandomNoise, get_attack("random_noise")(threat, samples=1, distribution="gaussian")
    )
    x = torch.full((500, d), 0.5)
    batch = AttackBatch(
        lambda t: t, x, torch.zeros(500, dtype=torch.long), None, torch.arange(500), 0
    )
    delta = attack.draw(x, batch, batch.sample_ids, 0) - x
    if norm == "linf":
        on_face = (delta.abs() >= eps - 1e-6).float().mean()
        assert float(on_face) == pytest.approx(2 * (1 - 0.9772), abs=0.005)
    else:
        on_sphere = (delta.norm(dim=1) >= eps - 1e-6).float().mean()
        assert 0.4 < float(on_sphere) < 0.6
        assert float(delta.norm(dim=1).min()) > 0.8 * eps  # not spread through the ball


def test_unknown_distribution_is_a_config_error(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="distribution='laplace'"):
        evaluate(digits_cnn, digits_data, attack="random_noise", eps=0.1, distribution="laplace")
