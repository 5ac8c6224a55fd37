"""APGD (apgd, apgd-ce, apgd-dlr) on the digits CNN, and the DLR loss by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_wrappers import CountingModel
from per_sample import bits

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.attacks.apgd import checkpoints
from pytest_robust.attacks.apgd import dlr_loss


class ScaledLogits(torch.nn.Module):
    """The same classifier with logits times `scale`: softmax saturates, CE's gradient
    underflows to zero, and the decisions do not change."""

    def __init__(self, inner: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.inner = inner
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.inner(x)


@pytest.mark.parametrize("attack", ["apgd-ce", "apgd-dlr"])
def test_apgd_breaks_the_undefended_cnn_and_drops_broken_samples(attack, digits_cnn, digits_data):
    model = CountingModel(digits_cnn)
    result = evaluate(model, digits_data, attack=attack, eps=0.2, steps=100)
    assert result.clean_acc > 0.95 and result.robust_acc < 0.05
    # Minus the clean and re-verification passes; without early stopping every attacked
    # sample would go through all 101 forward passes.
    attack_work = model.samples - result.n - result.n_clean_correct
    assert 0 < attack_work < 0.2 * 101 * result.n_clean_correct


# On this net DLR is weaker than CE at eps 0.07-0.1 (so is the reference implementation):
# each is compared with PGD at an eps where it should match it.
@pytest.mark.parametrize(("attack", "eps"), [("apgd-ce", 0.1), ("apgd-dlr", 0.05)])
def test_apgd_is_at_least_as_strong_as_pgd(attack, eps, digits_cnn, digits_data):
    pgd = evaluate(digits_cnn, digits_data, attack="pgd", eps=eps, steps=20)
    apgd = evaluate(digits_cnn, digits_data, attack=attack, eps=eps, steps=20)
    assert 0.3 < pgd.robust_acc < 0.95  # a budget where the attack matters
    assert apgd.robust_acc <= pgd.robust_acc + 0.01


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_nothing_breaks_at_eps_zero(loss, digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack="apgd", loss=loss, eps=0.0, steps=5)
    assert result.robust_acc == result.clean_acc and result.n_success == 0


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_targeted_apgd_reaches_the_target(loss, digits_cnn, digits_data):
    result = evaluate(
        digits_cnn,
        digits_data,
        attack="apgd",
        loss=loss,
        eps=0.3,
        steps=30,
        target=3,
        keep_adversarial=True,
    )
    with torch.no_grad():
        pred = digits_cnn(result.adversarial).argmax(1)
    hit = bits(result.success)
    assert result.targeted and result.success_rate > 0.9
    assert torch.equal(hit, bits(result.attacked) & (pred == 3))


def test_dlr_ignores_the_scale_of_the_logits_and_ce_does_not(digits_cnn, digits_data):
    scaled = ScaledLogits(digits_cnn, 1000.0)
    plain = evaluate(digits_cnn, digits_data, attack="apgd-dlr", eps=0.1, steps=20)
    dlr = evaluate(scaled, digits_data, attack="apgd-dlr", eps=0.1, steps=20)
    pgd = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, steps=20)
    pgd_scaled = evaluate(scaled, digits_data, attack="pgd", eps=0.1, steps=20)
    assert dlr.clean_acc == plain.clean_acc
    assert abs(dlr.robust_acc - plain.robust_acc) <= 1 / len(digits_data[1])
    # CE's gradient vanishes on saturated logits: PGD loses most of its strength.
    assert pgd_scaled.robust_acc > pgd.robust_acc + 0.3
    assert dlr.robust_acc < pgd_scaled.robust_acc - 0.3


def test_dlr_loss_by_hand():
    z = torch.tensor([[4.0, 1.0, 3.0, 0.0], [4.0, 1.0, 3.0, 0.0], [0.0, 2.0, 2.0, 5.0]])
    labels = torch.tensor([0, 1, 3])
    # -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)
    expected = torch.tensor([-(4 - 3) / (4 - 1), -(1 - 4) / (4 - 1), -(5 - 2) / (5 - 2)])
    torch.testing.assert_close(dlr_loss(z, labels), expected)
    # Targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    targets = torch.tensor([3, 2, 0])
    expected = torch.tensor([-(4 - 0) / (4 - 0.5), -(1 - 3) / (4 - 0.5), -(5 - 0) / (5 - 1)])
    torch.testing.assert_close(dlr_loss(z, labels, targets), expected)
    # Shift- and scale-invariant.
    torch.testing.assert_close(dlr_loss(7 * z - 3, labels), dlr_loss(z, labels))


def test_checkpoints_follow_the_paper():
    assert sorted(checkpoints(100)) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(3) <= {1, 2, 3}


class ThreeClasses(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3] * torch.tensor([3.0, 1.0, 0.0])


def test_dlr_needs_enough_classes():
    x, y = torch.rand(4, 5), torch.zeros(4, dtype=torch.long)
    x[:, 0] = 1.0
    evaluate(ThreeClasses(), (x, y), attack="apgd-dlr", eps=0.1, steps=2)  # untargeted: 3 do
    with pytest.raises(RobustConfigError, match="targeted DLR loss needs at least 4 classes"):
        evaluate(ThreeClasses(), (x, y), attack="apgd-dlr", eps=0.1, steps=2, target=1)
    with pytest.raises(RobustConfigError, match="loss='cw'"):
        evaluate(ThreeClasses(), (x, y), attack="apgd", loss="cw", eps=0.1)


def test_l2_apgd_stays_in_the_ball_and_breaks_the_cnn(digits_cnn, digits_data):
    x, _ = digits_data
    big = evaluate(
        digits_cnn, digits_data, attack="apgd", eps=1.5, norm="l2", keep_adversarial=True
    )
    assert big.robust_acc < 0.05
    distance = (big.adversarial - x).flatten(1).norm(dim=1)
    assert float(distance.max()) <= 1.5 + 1e-5
    assert float(big.adversarial.min()) >= 0.0 and float(big.adversarial.max()) <= 1.0
    pgd = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.5, norm="l2", steps=20)
    apgd = evaluate(digits_cnn, digits_data, attack="apgd-ce", eps=0.5, norm="l2", steps=20)
    assert apgd.robust_acc <= pgd.robust_acc + 0.01 and apgd.robust_acc < 0.9


def test_reproducible_independent_of_batch_size_and_rng_free(digits_cnn, digits_data):
    state = torch.random.get_rng_state()
    kwargs: dict[str, Any] = {
        "attack": "apgd",
        "loss": "dlr",
        "eps": 0.08,
        "steps": 10,
        "restarts": 2,
    }
    a = evaluate(digits_cnn, digits_data, seed=3, batch_size=450, **kwargs)
    b = evaluate(digits_cnn, digits_data, seed=3, batch_size=450, **kwargs)
    c = evaluate(digits_cnn, digits_data, seed=3, batch_size=37, **kwargs)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.robust == b.robust
    # Starts are keyed by sample index; only float rounding in batched ops can differ.
    assert sum(p != q for p, q in zip(a.robust, c.robust, strict=True)) <= 2


class Bump(torch.nn.Module):
    """Class 0 always wins; class 1's logit (so the CE loss) peaks at x = 0.6 in every
    coordinate, inside the ball, or rises linearly along `w` when `linear`."""

    def __init__(self, linear: bool = False) -> None:
        super().__init__()
        self.linear = linear
        self.w = torch.tensor([1.0, -1.0, 2.0, -0.5], dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        second = x @ self.w if self.linear else -10 * ((x - 0.6) ** 2).sum(1)
        return torch.stack([torch.full_like(second, 5.0), second], dim=1)


def bump_data() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((6, 4), 0.5, dtype=torch.float64), torch.zeros(6, dtype=torch.long)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_step_size_halves_until_an_interior_maximum_is_found(norm):
    # Steps of 2 * eps overshoot the peak forever; only the halving lets APGD settle on it.
    result = evaluate(
        Bump(), bump_data(), attack="apgd", eps=0.3, norm=norm, steps=100, keep_adversarial=True
    )
    assert result.robust_acc == 1.0
    assert float((result.adversarial - 0.6).abs().max()) < 0.005


def test_the_first_step_crosses_the_ball():
    # From anywhere in the ball, one step of 2 * eps reaches the best vertex of a linear loss.
    x, y = bump_data()
    model = Bump(linear=True)
    result = evaluate(model, (x, y), attack="apgd", eps=0.1, steps=1, keep_adversarial=True)
    torch.testing.assert_close(result.adversarial, x + 0.1 * model.w.sign())
