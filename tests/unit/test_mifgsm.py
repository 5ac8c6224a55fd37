"""MI-FGSM (momentum iterative FGSM) on the digits CNN, and its closed relation to BIM."""

from __future__ import annotations

from typing import Any
from typing import cast

import pytest
import torch
from per_sample import bits

from pytest_robust import evaluate
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import get_attack
from pytest_robust.attacks.momentum import MIFGSM


def test_breaks_the_undefended_cnn(digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack="mifgsm", eps=0.2)
    assert result.clean_acc > 0.95
    assert result.robust_acc < 0.1  # measured: 0.04
    # The paper's default step: steps * alpha = eps.
    assert result.params["alpha"] == pytest.approx(0.2 / 10)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_nothing_breaks_at_eps_zero(norm, digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack="mifgsm", eps=0.0, norm=norm)
    assert result.robust_acc == result.clean_acc
    assert result.n_success == 0


def test_a_fixed_target_is_reached_exactly_where_success_says(digits_cnn, digits_data):
    result = evaluate(
        digits_cnn, digits_data, attack="mifgsm", eps=0.3, steps=20, target=3, keep_adversarial=True
    )
    assert result.targeted
    with torch.no_grad():
        pred = digits_cnn(result.adversarial).argmax(1)
    hit = bits(result.success)
    assert torch.equal(hit, bits(result.attacked) & (pred == 3))
    assert result.success_rate > 0.9  # measured: 0.97


def test_without_momentum_it_is_bim(digits_cnn, digits_data):
    """decay=0 leaves g = grad / ||grad||_1, whose sign is sign(grad): BIM's step."""
    common: dict[str, Any] = {"eps": 0.1, "steps": 5, "alpha": 0.03, "keep_adversarial": True}
    bim = evaluate(digits_cnn, digits_data, attack="bim", **common)
    plain = evaluate(digits_cnn, digits_data, attack="mifgsm", decay=0.0, **common)
    assert plain.robust == bim.robust
    assert torch.equal(plain.adversarial, bim.adversarial)
    # With momentum the walk differs: the velocity really is carried across steps.
    momentum = evaluate(digits_cnn, digits_data, attack="mifgsm", decay=1.0, **common)
    assert not torch.equal(momentum.adversarial, bim.adversarial)


def test_l2_steps_stay_in_the_ball_and_break_the_cnn(digits_cnn, digits_data):
    result = evaluate(
        digits_cnn, digits_data, attack="mifgsm", eps=2.0, norm="l2", keep_adversarial=True
    )
    x = digits_data[0]
    assert float((result.adversarial - x).flatten(1).norm(dim=1).max()) <= 2.0 + 1e-5
    assert result.robust_acc < 0.2


def test_velocity_accumulates_l1_normalised_gradients():
    attack = cast(
        MIFGSM, get_attack("mifgsm")(ThreatModel(0.1, "l2", (0.0, 1.0)), steps=10, decay=0.5)
    )
    g1 = torch.tensor([[3.0, -1.0], [0.0, 2.0]])
    g2 = torch.tensor([[0.0, 4.0], [-1.0, -1.0]])
    state = attack.initial_state(torch.zeros(2, 2))
    _, state = attack.step_direction(g1, state)
    unit, state = attack.step_direction(g2, state)
    # Per sample: 0.5 * g1 / ||g1||_1 + g2 / ||g2||_1, and the L2 step is its unit vector.
    expected = 0.5 * g1 / torch.tensor([[4.0], [2.0]]) + g2 / torch.tensor([[4.0], [2.0]])
    assert torch.allclose(state, expected)
    assert torch.allclose(unit, expected / expected.norm(dim=1, keepdim=True))
