"""User-registered attacks: the base class, not the attack, enforces the threat model."""

from __future__ import annotations

import pytest
import torch

from pytest_robust import Attack
from pytest_robust import AttackBatch
from pytest_robust import evaluate
from pytest_robust import register_attack
from pytest_robust import registered_attacks
from pytest_robust.params import Param


class Overshoot(Attack):
    """Proposes a point far outside the ball and the bounds; the base must project it."""

    name = "test-overshoot"
    params = {"scale": Param(float, 10.0, doc="how far to overshoot")}

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        return batch.x + float(self.config["scale"]) * torch.sign(torch.randn_like(batch.x))


@pytest.fixture(autouse=True)
def registered():
    register_attack(Overshoot)
    yield
    from pytest_robust.attacks import registry

    registry._REGISTRY.pop(Overshoot.name, None)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_proposal_outside_the_threat_model_is_projected(digits_cnn, digits_data, norm):
    result = evaluate(
        digits_cnn,
        digits_data,
        attack="test-overshoot",
        eps=0.1,
        norm=norm,
        scale=5.0,
        keep_adversarial=True,
    )
    x = digits_data[0]
    delta = (result.adversarial - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= 0.1 + 1e-5
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0


def test_registered_attack_parameters_are_validated(digits_cnn, digits_data):
    assert "test-overshoot" in registered_attacks()
    with pytest.raises(ValueError, match="scale='far'"):
        evaluate(digits_cnn, digits_data, attack="test-overshoot", eps=0.1, scale="far")


def test_a_name_cannot_be_taken_twice():
    class Other(Overshoot):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_attack(Other)


def test_attacks_do_not_touch_the_global_rng(digits_cnn, digits_data):
    state = torch.random.get_rng_state()
    evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, steps=3, restarts=2)
    assert torch.equal(state, torch.random.get_rng_state())
