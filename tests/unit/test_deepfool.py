"""DeepFool against closed forms on linear models, and on the digits CNN."""

from __future__ import annotations

import pytest
import torch
from toy_models import LogisticRegression
from toy_models import linear_problem

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import get_attack

WIDE = (-1.0, 2.0)  # bounds that never clip the small perturbations below


N = 50  # points per linear problem


def at_distance(w: torch.Tensor, dist: torch.Tensor, seed: int = 0):
    """Points whose L2 distance to the boundary w.x = 0 is exactly `dist`, on both sides."""
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(len(dist), len(w), generator=g) * 0.6 + 0.2
    on_boundary = q - (q @ w)[:, None] * w / w.dot(w)
    side = torch.where(torch.arange(len(dist)) % 2 == 0, 1.0, -1.0)
    x = on_boundary + (side * dist)[:, None] * w / w.norm()
    return x, (side > 0).long()


def norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("seed", range(2))
def test_one_step_to_the_closed_form_boundary(norm: str, seed: int) -> None:
    """For a linear binary model the nearest boundary point is at |w.x + b| / ||w||_2 (L2)
    along w, or |w.x + b| / ||w||_1 (L-inf) along sign(w); DeepFool lands there in one
    step, times (1 + overshoot), plus its 1e-4 logit margin."""
    model, x, y, w, score = linear_problem(seed, N)
    dual = w.abs().sum() if norm == "linf" else w.norm()
    direction = (w.sign() if norm == "linf" else w / w.norm())[None, :]
    toward = torch.where(y == 1, -1.0, 1.0)[:, None]
    size = 1.02 * (score.abs() + 1e-4) / dual
    result = evaluate(
        model, (x, y), attack="deepfool", eps=100.0, norm=norm, bounds=WIDE, keep_adversarial=True
    )
    assert result.success_rate == 1.0
    expected = x + toward * size[:, None] * direction
    assert torch.allclose(result.adversarial, expected, atol=1e-5)
    found = result.details["minimum_norm"]
    assert found["count"] == len(x)
    assert found["median"] == pytest.approx(float(size.median()), rel=1e-4)
    assert found["mean"] == pytest.approx(float(size.mean()), rel=1e-4)

    # One step: the attack forwards every sample twice (start, then the broken point).
    seen = []

    def counting(inputs: torch.Tensor) -> torch.Tensor:
        seen.append(len(inputs))
        return model(inputs)

    threat = ThreatModel(100.0, norm, WIDE)
    attack = get_attack("deepfool")(threat, steps=50, overshoot=0.02, candidates=10)
    attack.run(AttackBatch(counting, x, y, None, torch.arange(len(x)), 0))
    assert seen == [len(x), len(x)]


def three_class_model() -> torch.nn.Module:
    """At x = 0 the logits are [0, -1, -2]: class 1 is the runner-up, but the boundary of
    class 2 (z_2 = 10 x_2 - 2) is nearer, at 0.2, than that of class 1 (z_1 = x_1 - 1), at 1.
    """
    model = torch.nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 10.0]]))
        model.bias.copy_(torch.tensor([0.0, -1.0, -2.0]))
    return model


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize(
    ("candidates", "cls", "gap", "dual"), [(10, 2, 2.0, 10.0), (2, 1, 1.0, 1.0)]
)
def test_steps_to_the_nearest_boundary_among_the_candidates(
    norm: str, candidates: int, cls: int, gap: float, dual: float
) -> None:
    """With every class a candidate the nearest boundary wins; with candidates=2 only the
    runner-up is considered."""
    model = three_class_model()
    x, y = torch.zeros(1, 2), torch.tensor([0])
    result = evaluate(
        model,
        (x, y),
        attack="deepfool",
        eps=10.0,
        norm=norm,
        bounds=(-5, 5),
        candidates=candidates,
        keep_adversarial=True,
    )
    with torch.no_grad():
        assert int(model(result.adversarial).argmax(1)) == cls
    expected = 1.02 * (gap + 1e-4) / dual
    assert result.details["minimum_norm"]["median"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_eps_just_below_the_boundary_breaks_nothing_just_above_breaks_all(norm: str) -> None:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(20, generator=g)
    dist = torch.full((20,), 0.5)
    x, y = at_distance(w, dist)
    if norm == "linf":  # the same points, measured in L-inf
        dist = dist * w.norm() / w.abs().sum()
    d = float(dist[0])
    model = LogisticRegression(w)
    below = evaluate(model, (x, y), attack="deepfool", eps=0.99 * d, norm=norm, bounds=WIDE)
    above = evaluate(model, (x, y), attack="deepfool", eps=1.03 * d, norm=norm, bounds=WIDE)
    assert below.clean_acc == above.clean_acc == 1.0
    assert below.n_success == 0 and below.robust_acc == 1.0
    assert above.success_rate == 1.0
    # The minimum found is the same either way: eps only decides what counts.
    assert below.details["minimum_norm"] == above.details["minimum_norm"]
    assert below.details["minimum_norm"]["median"] == pytest.approx(1.02 * d, rel=1e-3)


def test_success_is_exactly_distance_below_eps_on_a_linear_model() -> None:
    """The point found lies along w, so its projection onto a smaller ball is adversarial
    exactly when eps exceeds the distance to the boundary."""
    g = torch.Generator().manual_seed(4)
    w = torch.randn(10, generator=g)
    dist = torch.linspace(0.1, 0.9, 41)
    x, y = at_distance(w, dist, seed=4)
    model = LogisticRegression(w)
    result = evaluate(model, (x, y), attack="deepfool", eps=0.505, norm="l2", bounds=(-3, 4))
    expected = "".join("1" if d < 0.505 else "0" for d in dist.tolist())
    assert result.success == expected


@pytest.fixture(scope="module")
def digits_l2(digits_cnn, digits_data):
    return evaluate(digits_cnn, digits_data, attack="deepfool", eps=2.0, norm="l2", max_samples=100)


def test_breaks_the_undefended_cnn_and_reports_the_norms(digits_l2):
    assert digits_l2.clean_acc > 0.95 and digits_l2.robust_acc < 0.02
    found = digits_l2.details["minimum_norm"]
    # Every success is a point found before projection, and at eps=2 none was projected:
    # the engine's own measurement of the final points agrees with the attack's.
    assert found["count"] >= digits_l2.n_success
    assert found == pytest.approx(digits_l2.details["perturbation"], rel=1e-5)
    assert 0.1 < found["median"] < 1.5


def test_nothing_breaks_at_eps_zero(digits_cnn, digits_data):
    for norm in ("l2", "linf"):
        result = evaluate(
            digits_cnn, digits_data, attack="deepfool", eps=0.0, norm=norm, max_samples=30
        )
        assert result.n_success == 0 and result.robust_acc == result.clean_acc
        assert result.details["perturbation"] is None
        assert result.details["minimum_norm"]["count"] > 25  # found, but outside eps


def test_linf_breaks_the_cnn_with_linf_sized_perturbations(digits_cnn, digits_data):
    result = evaluate(
        digits_cnn, digits_data, attack="deepfool", eps=0.3, norm="linf", max_samples=60
    )
    assert result.robust_acc < 0.05
    found = result.details["minimum_norm"]
    assert found == pytest.approx(result.details["perturbation"], rel=1e-5)
    assert found["median"] < 0.3  # an L2 norm of these points would be several times this


def test_broken_samples_leave_the_batch(digits_cnn, digits_data):
    x, y = digits_data[0][:60], digits_data[1][:60]
    seen = []

    def counting(inputs: torch.Tensor) -> torch.Tensor:
        seen.append(len(inputs))
        return digits_cnn(inputs)

    attack = get_attack("deepfool")(ThreatModel(2.0, "l2", (0.0, 1.0)), steps=50)
    attack.run(AttackBatch(counting, x, y, None, torch.arange(60), 0))
    assert seen[0] == 60 and seen == sorted(seen, reverse=True)
    assert seen[-1] < 60 and sum(seen) < 0.6 * 60 * len(seen)


def test_more_candidates_find_no_larger_perturbations(digits_cnn, digits_data):
    results = [
        evaluate(
            digits_cnn,
            digits_data,
            attack="deepfool",
            eps=2.0,
            norm="l2",
            max_samples=40,
            candidates=k,
        ).details["minimum_norm"]
        for k in (2, 10)
    ]
    assert results[1]["count"] >= results[0]["count"]
    assert results[1]["median"] <= results[0]["median"]


def test_deterministic_and_independent_of_the_batch_size(digits_cnn, digits_data):
    runs = [
        evaluate(
            digits_cnn,
            digits_data,
            attack="deepfool",
            eps=0.6,
            norm="l2",
            max_samples=30,
            batch_size=size,
            keep_adversarial=True,
        )
        for size in (30, 30, 7)
    ]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert runs[0].success == runs[1].success == runs[2].success
    assert torch.allclose(runs[0].adversarial, runs[2].adversarial, atol=1e-4)


def test_untargeted_only(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="cannot be targeted"):
        evaluate(digits_cnn, digits_data, attack="deepfool", eps=1.0, norm="l2", target=3)
