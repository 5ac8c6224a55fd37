"""pytest_robust.defenses: each recipe trains the digits MLP in about a second and does what
its paper says, measured against the undefended model trained by the same loop."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust import RobustConfigError
from pytest_robust import defenses
from pytest_robust import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "defenses"))
import defended_models as dm

RECIPES: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "standard": (defenses.standard_training, {}),
    "adversarial": (defenses.adversarial_training, {"eps": 0.1, "steps": 3}),
    "fgsm_regularized": (defenses.fgsm_regularized, {"eps": 0.1}),
    "input_gradient": (defenses.input_gradient_regularized, {"lam": 1.0}),
    "distillation": (defenses.defensive_distillation, {"temperature": 100.0}),
}


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each sample's cross-entropy input gradient, flattened."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad.flatten(1)


def pgd_robust_acc(model: nn.Module, eps: float = 0.1) -> float:
    return evaluate(model, dm.held_out_data(), "pgd", eps, steps=20, device="cpu").robust_acc


def test_adversarial_training_gives_real_pgd_robustness() -> None:
    standard, trained = pgd_robust_acc(dm.standard_model()), pgd_robust_acc(dm.adversarial_model())
    assert trained > standard + 0.25, (standard, trained)  # measured: 0.42 -> 0.78
    # ... also under the logit-space attack (no masking involved).
    dlr = evaluate(dm.adversarial_model(), dm.held_out_data(), "apgd-dlr", 0.1, device="cpu")
    assert dlr.robust_acc > standard + 0.25
    assert dlr.clean_acc > 0.93


def test_distillation_masks_the_cross_entropy_gradient_without_robustness() -> None:
    x, y = dm.held_out_data()
    standard, distilled = dm.standard_model(), dm.distilled_model()
    with torch.no_grad():
        correct = (distilled(x).argmax(1) == y) & (standard(x).argmax(1) == y)
        clean_acc = float((distilled(x).argmax(1) == y).float().mean())
    assert clean_acc > 0.93
    g_std = per_sample_gradients(standard, x[correct], y[correct]).abs().mean(dim=1)
    g_dist = per_sample_gradients(distilled, x[correct], y[correct]).abs().mean(dim=1)
    # Papernot's observation: most samples' gradients collapse, many to exactly 0 in
    # float32 (the softmax saturates). The *mean* is not smaller: the few unsaturated
    # samples have gradients about T times larger, so compare medians.
    assert float(g_dist.median()) < 1e-4 * float(g_std.median())
    assert float((g_dist == 0).float().mean()) > 0.5
    assert float((g_std == 0).float().mean()) == 0.0
    # Raw logits are about T times larger than the standard model's.
    with torch.no_grad():
        ratio = distilled(x).abs().mean() / standard(x).abs().mean()
    assert float(ratio) > 10


def test_input_gradient_regularization_shrinks_input_gradients() -> None:
    x, y = dm.held_out_data()
    regularized = defenses.input_gradient_regularized(dm.mlp(), dm.train_loader(), lam=1.0)
    sq_std = per_sample_gradients(dm.standard_model(), x, y).pow(2).sum(dim=1)
    sq_reg = per_sample_gradients(regularized, x, y).pow(2).sum(dim=1)
    assert float(sq_reg.mean()) < 0.5 * float(sq_std.mean())  # measured: 0.79 vs 3.9
    assert float(sq_reg.max()) < 0.5 * float(sq_std.max())
    assert pgd_robust_acc(regularized) > pgd_robust_acc(dm.standard_model()) + 0.1


def test_fgsm_regularization_raises_fgsm_and_pgd_robustness() -> None:
    trained = defenses.fgsm_regularized(dm.mlp(), dm.train_loader(), eps=0.1)
    fgsm = evaluate(trained, dm.held_out_data(), "fgsm", 0.1, device="cpu")
    fgsm_std = evaluate(dm.standard_model(), dm.held_out_data(), "fgsm", 0.1, device="cpu")
    assert fgsm.clean_acc > 0.93
    assert fgsm.robust_acc > fgsm_std.robust_acc + 0.2  # measured: 0.48 -> 0.78
    assert pgd_robust_acc(trained) > pgd_robust_acc(dm.standard_model()) + 0.2


def dropout_mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10)
        )


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_is_deterministic_leaves_global_rng_alone_and_returns_eval_mode(name: str) -> None:
    recipe, kwargs = RECIPES[name]
    state = torch.get_rng_state()
    first = recipe(dropout_mlp(), dm.train_loader(), epochs=1, seed=3, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    second = recipe(dropout_mlp(), dm.train_loader(), epochs=1, seed=3, **kwargs)
    other_seed = recipe(dropout_mlp(), dm.train_loader(), epochs=1, seed=4, **kwargs)
    assert not first.training and not any(m.training for m in first.modules())
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not all(
        torch.equal(a, b) for a, b in zip(first.parameters(), other_seed.parameters(), strict=True)
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: defenses.standard_training(dm.mlp(), [], epochs=0), "epochs=0"),
        (lambda: defenses.standard_training(dm.mlp(), [], lr=0.0), "lr=0.0"),
        (lambda: defenses.adversarial_training(dm.mlp(), [], eps=0.0), "eps=0.0"),
        (lambda: defenses.adversarial_training(dm.mlp(), [], eps=0.1, norm="l1"), "norm='l1'"),
        (lambda: defenses.fgsm_regularized(dm.mlp(), [], eps=0.1, alpha=2.0), "alpha=2.0"),
        (lambda: defenses.input_gradient_regularized(dm.mlp(), [], lam=-1.0), "lam=-1.0"),
        (lambda: defenses.defensive_distillation(dm.mlp(), [], temperature=0.0), "temperature"),
    ],
)
def test_bad_arguments_name_the_argument(call: Callable[[], Any], match: str) -> None:
    with pytest.raises(RobustConfigError, match=match):
        call()
