"""The recipes behind the certificates (pytest_robust.defenses): Gaussian-noise training,
IBP training and ensemble adversarial training each do what their paper says on the digits,
measured against the undefended model of the same loop; deterministic, borrowing what they
are given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust import RobustConfigError
from pytest_robust import defenses
from pytest_robust import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "defenses"))
import certified_models as cm
import defended_models as dm


def ibp_acc(model: nn.Module, eps: float) -> float:
    return evaluate(model, dm.held_out_data(), check="certify", method="ibp", eps=eps).robust_acc


def test_ibp_training_makes_the_certificate_a_real_gate() -> None:
    trained, standard = ibp_acc(cm.ibp_mlp(), 0.05), ibp_acc(dm.standard_model(), 0.05)
    assert trained >= 0.88, trained  # measured 0.913 (README), the example gates at 0.85
    assert standard < 0.5, standard
    clean = evaluate(cm.ibp_mlp(), dm.held_out_data(), check="certify", method="ibp", eps=0.0)
    assert clean.robust_acc > 0.95


def test_gaussian_noise_training_makes_the_smoothed_classifier_certifiable() -> None:
    x, y = dm.held_out_data()
    trained = defenses.gaussian_noise_training(dm.mlp(), dm.train_loader(), sigma=0.5, epochs=10)

    def smoothed(model: nn.Module) -> tuple[float, float]:
        result = evaluate(
            model, (x[:100], y[:100]), check="certify", method="smoothing", sigma=0.5,
            eps=0.5, n0=50, n=500,
        )  # fmt: skip
        return result.clean_acc, result.robust_acc

    (ours_clean, ours), (plain_clean, plain) = smoothed(trained), smoothed(dm.standard_model())
    # Measured: smoothed accuracy 0.78 vs 0.56, certified at radius 0.5: 0.26 vs 0.01.
    assert ours_clean > plain_clean + 0.1, (ours_clean, plain_clean)
    assert ours > plain + 0.15, (ours, plain)


def test_ensemble_adversarial_training_resists_transfer_far_better_than_white_box() -> None:
    data = dm.held_out_data()
    ensemble, standard = cm.ensemble_mlp(), dm.standard_model()

    def acc(model: nn.Module, **kwargs: Any) -> float:
        return evaluate(model, data, eps=cm.ENSEMBLE_EPS, max_samples=200, **kwargs).robust_acc

    transfer: dict[str, Any] = {"attack": "transfer", "surrogate": [cm.held_out_mlp()]}
    ours, theirs = acc(ensemble, **transfer), acc(standard, **transfer)
    white_box = acc(ensemble, attack="pgd")
    assert ours > theirs + 0.15, (ours, theirs)  # measured 0.89 vs 0.47 (README)
    assert ours > white_box + 0.1, (ours, white_box)


def test_the_recipes_are_deterministic_and_leave_what_they_borrow_as_it_was() -> None:
    surrogate = dm.mlp(seed=3).train()
    before = [p.clone() for p in surrogate.parameters()]
    loader = [next(iter(dm.train_loader()))] * 3  # (shuffling draws from the global RNG)
    state = torch.get_rng_state()

    def weights(recipe: str) -> list[torch.Tensor]:
        model = dm.mlp()
        if recipe == "ibp":
            defenses.ibp_training(model, loader, eps=0.1, epochs=3, warmup=0, ramp=1)
        elif recipe == "noise":
            defenses.gaussian_noise_training(model, loader, sigma=0.3, epochs=3)
        else:
            defenses.ensemble_adversarial_training(
                model, loader, surrogates=[surrogate], eps=0.1, epochs=3
            )
        return [p.detach().clone() for p in model.parameters()]

    for recipe in ("ibp", "noise", "ensemble"):
        first, second = weights(recipe), weights(recipe)
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True)), recipe
    assert torch.equal(torch.get_rng_state(), state)
    assert surrogate.training and all(p.requires_grad for p in surrogate.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, surrogate.parameters(), strict=True))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: defenses.ibp_training(
                nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 10)),
                dm.train_loader(),
                eps=0.1,
            ),
            "cannot train through BatchNorm1d",
        ),
        (
            lambda: defenses.ibp_training(dm.mlp(), (b for b in dm.train_loader()), eps=0.1),
            "needs the number of batches per epoch",
        ),
        (
            lambda: defenses.ibp_training(
                nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.GELU(), nn.Linear(8, 10)),
                dm.train_loader(),
                eps=0.1,
            ),
            r"cannot bound layer '2' \(GELU\)",
        ),
        (
            lambda: defenses.gaussian_noise_training(dm.mlp(), dm.train_loader(), sigma=0.0),
            "sigma=0.0: the noise level must be > 0",
        ),
        (
            lambda: defenses.ensemble_adversarial_training(
                dm.mlp(), dm.train_loader(), surrogates=[], eps=0.1
            ),
            "surrogates: give at least one pre-trained model",
        ),
    ],
)
def test_bad_recipe_arguments_are_refused(call: object, message: str) -> None:
    with pytest.raises(RobustConfigError, match=message):
        call()  # type: ignore[operator]
