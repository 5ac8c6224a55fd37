"""The user's model is borrowed and given back bit-for-bit: weights, buffers, mode,
requires_grad, .grad and device; after a passing, a failing and a raising run."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from model_snapshot import assert_unchanged
from model_snapshot import snapshot

from pytest_robust import evaluate
from pytest_robust import registered_attacks


class ExplodingModel(torch.nn.Module):
    """Works for the clean pass, then raises during the attack."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 2:
            raise RuntimeError("boom")
        return self.inner(x)


def mixed_flags(model: torch.nn.Module) -> torch.nn.Module:
    """Train mode on, some parameters frozen, some with a .grad: a model mid-training."""
    model.train()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[-1].grad = torch.ones_like(params[-1])
    return model


@pytest.mark.parametrize("thresholds", [{}, {"min_acc": 1.0}], ids=["passing", "failing"])
def test_model_is_unchanged_after_a_run(digits_cnn, digits_data, thresholds):
    model = mixed_flags(copy.deepcopy(digits_cnn))
    before = snapshot(model)
    result = evaluate(model, digits_data, attack="pgd", eps=0.1, steps=5, **thresholds)
    assert result.status == ("fail" if thresholds else "measured")
    assert_unchanged(before, model)


def test_model_is_unchanged_when_the_attack_raises(digits_cnn, digits_data):
    model = mixed_flags(ExplodingModel(copy.deepcopy(digits_cnn)))
    before = snapshot(model)
    with pytest.raises(Exception, match="boom"):
        evaluate(model, digits_data, attack="pgd", eps=0.1, steps=5, batch_size=500)
    assert_unchanged(before, model)


def test_data_is_unchanged(digits_cnn, digits_data):
    x, y = digits_data
    x0, y0 = x.clone(), y.clone()
    evaluate(digits_cnn, digits_data, attack="pgd", eps=0.2, steps=5)
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_resnet18_in_train_mode_keeps_batchnorm_statistics():
    """BatchNorm in train mode would update running stats on every forward; the guard puts
    the model in eval mode for the attack and back into train mode afterwards."""
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None, num_classes=10)
        x = torch.rand(8, 3, 32, 32)
    model.train()
    with torch.no_grad():
        y = model.eval()(x).argmax(1)  # labels it gets right, so the attack really runs
    model.train()
    before = snapshot(model)
    result = evaluate(model, (x, y), attack="pgd", eps=0.03, steps=2, max_success=0.0)
    assert result.n_clean_correct == 8
    assert_unchanged(before, model)
    assert all(m.training for m in model.modules())


QUICK: dict[str, Any] = {"steps": 2, "queries": 10, "samples": 2, "search_steps": 1}


@pytest.mark.parametrize("attack", sorted(registered_attacks()))
def test_every_attack_gives_the_model_back_unchanged(attack, digits_cnn, digits_data):
    schema = registered_attacks()[attack]
    model = mixed_flags(copy.deepcopy(digits_cnn))
    x, y = digits_data
    kwargs: dict[str, Any] = {k: v for k, v in QUICK.items() if k in schema.params}
    if schema.delegate is not None:
        kwargs.update(surrogate=model, steps=2)
    if schema.eps_ball:
        kwargs.update(eps=1.0 if attack == "fooling" else 0.1, norm=schema.norms[0])
    else:  # not an eps-ball attack: its own ranges
        own: dict[str, dict[str, Any]] = {
            "transform": {"rotate": 10, "translate": 1, "search": "grad"},
            "noise": {"sigma": 0.1},
        }
        kwargs.update(own[attack])
    before = snapshot(model)
    evaluate(model, (x[:20], y[:20]), attack=attack, **kwargs)
    assert_unchanged(before, model)
