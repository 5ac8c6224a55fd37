"""FAB and FAB-T: closed forms on linear models, never a success beyond eps, the peer."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from per_sample import bits
from toy_models import LogisticRegression
from toy_models import TinyNet
from toy_models import linear_problem

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks.fab import FAB
from pytest_robust.attacks.fab import FABT
from pytest_robust.known_answers.run import selftest

WIDE = (-1.0, 2.0)  # bounds that never clip the perturbations below
ETA = 1.05


def distances(adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    delta = (adv - x).flatten(1)
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["fab", "fab-t"])
def test_reaches_the_closed_form_minimum_on_a_linear_binary_model(norm, attack):
    """The nearest point of the other class is at |w.x + b| / ||w||_q (q = 1 for L-inf, 2
    for L2). FAB's first step overshoots it by eta, then it steps back and closes in: the
    norm it reports lies in [dist, eta * dist]."""
    model, x, y, w, score = linear_problem(0, 40)
    dual = w.abs().sum() if norm == "linf" else w.norm()
    dist = score.abs() / dual
    result = evaluate(
        model, (x, y), attack=attack, eps=100.0, norm=norm, bounds=WIDE, keep_adversarial=True
    )
    assert result.success_rate == 1.0
    found = distances(result.adversarial, x, norm)
    assert bool((found >= dist * (1 - 1e-4)).all())
    assert bool((found <= ETA * dist * (1 + 1e-4)).all())
    # Most samples get well inside the overshoot, towards the closed form.
    assert float((found / dist).median()) < 1.01
    assert result.details["minimum_norm"]["median"] == pytest.approx(float(found.median()))


def three_class_model() -> torch.nn.Module:
    """At x = 0 the logits are [0, -1, -2]: class 1 is the runner-up, but the boundary of
    class 2 (z_2 = 10 x_2 - 2) is nearer, at 0.2, than that of class 1 (z_1 = x_1 - 1), at 1,
    in both norms (each boundary is moved towards along one axis)."""
    model = torch.nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 10.0]]))
        model.bias.copy_(torch.tensor([0.0, -1.0, -2.0]))
    return model


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_nearest_boundary_target_and_ranked_targets(norm):
    model = three_class_model()
    x, y = torch.zeros(1, 2), torch.tensor([0])

    def run(attack: str, **params):
        result = evaluate(
            model, (x, y), attack=attack, eps=0.5, norm=norm, bounds=(-5, 5),
            keep_adversarial=True, **params,
        )  # fmt: skip
        with torch.no_grad():
            return result, int(model(result.adversarial).argmax(1))

    # Untargeted: the nearer boundary, class 2 at 0.2.
    result, cls = run("fab")
    assert cls == 2 and 0.2 <= result.details["minimum_norm"]["median"] <= 0.2 * ETA
    # target=1: that boundary only, at 1 > eps: found, reported, but not a success, and the
    # engine gets the clean point back (never one beyond eps).
    result, cls = run("fab", target=1)
    assert cls == 0 and result.n_success == 0
    assert 1.0 <= result.details["minimum_norm"]["median"] <= ETA
    assert torch.equal(result.adversarial, x)
    # FAB-T ranks class 1 first (clean logit -1 > -2); only its second target is within eps.
    result, cls = run("fab-t", n_target_classes=1)
    assert cls == 0 and result.n_success == 0
    assert result.details["broken_by_target_rank"] == [0]
    result, cls = run("fab-t")
    assert cls == 2 and result.n_success == 1
    assert result.details["broken_by_target_rank"] == [0, 1]
    assert result.details["n_target_classes"] == 2
    assert "reduced to 2" in result.details["note"]


def test_fab_t_refuses_target(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="target"):
        evaluate(digits_cnn, digits_data, attack="fab-t", eps=0.1, target=3, max_samples=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attack=st.sampled_from(["fab", "fab-t"]),
    norm=st.sampled_from(["linf", "l2"]),
    seed=st.integers(0, 2**16),
    classes=st.integers(2, 5),
    fraction=st.floats(0.0, 1.5),
)
def test_a_success_is_exactly_a_norm_found_within_eps(attack, norm, seed, classes, fraction):
    """The norms FAB finds do not depend on eps (no random start, no early stop), so a run
    with a huge eps gives each sample's norm; at any eps, the engine's verdict must then be
    success exactly where that norm is <= eps, and every returned point lies within eps."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(12, 6, generator=g)
    model = TinyNet(6, classes, seed)
    with torch.no_grad():
        y = model(x).argmax(1)
    common = {"attack": attack, "norm": norm, "steps": 8, "keep_adversarial": True}
    free = evaluate(model, (x, y), eps=100.0, **common)
    norms = distances(free.adversarial, x, norm)
    found = bits(free.success)
    norms[~found] = float("inf")
    eps = fraction * float(norms[found].median()) if bool(found.any()) else 0.1
    result = evaluate(model, (x, y), eps=eps, **common)
    assert result.success == "".join("1" if float(v) <= eps else "0" for v in norms)
    assert float(distances(result.adversarial, x, norm).max()) <= eps * (1 + 1e-6)
    assert result.details["minimum_norm"] == free.details["minimum_norm"]
    # Before the base class projects: what the attack proposes is already within eps (a
    # point beyond it would be projected into a different point that FAB never judged).
    cls = FABT if attack == "fab-t" else FAB
    proposer = cls(ThreatModel(eps, norm, (0.0, 1.0)), steps=8)
    proposed = proposer.propose(AttackBatch(model, x, y, None, torch.arange(len(x)), 0))
    assert float(distances(proposed, x, norm).max()) <= eps * (1 + 1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_minimum_norms_match_torchattacks_fab(digits_cnn, digits_data, norm):
    """Median minimum norm over the samples both broke, within 5% of torchattacks' FAB
    (untargeted, one run, no random start) on the same 100 digits. 20 steps keeps the test
    short; benchmarks/bench_fab.py measures 100."""
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_data[0][:100], digits_data[1][:100]
    ours = evaluate(
        digits_cnn, (x, y), attack="fab", eps=100.0, norm=norm, steps=20, keep_adversarial=True
    )
    model = copy.deepcopy(digits_cnn).eval()
    peer = torchattacks.FAB(
        model, norm="Linf" if norm == "linf" else "L2", steps=20, n_restarts=1, eps=100.0
    )
    adv = peer(x, y)
    with torch.no_grad():
        theirs_broke = (model(adv).argmax(1) != y) & (model(x).argmax(1) == y)
    ours_broke = bits(ours.success)
    both = ours_broke & theirs_broke
    assert int(both.sum()) >= 90
    mine = float(distances(ours.adversarial, x, norm)[both].median())
    theirs = float(distances(adv, x, norm)[both].median())
    assert mine <= 1.05 * theirs and mine >= 0.95 * theirs
    assert ours.details["minimum_norm"]["count"] >= int(both.sum())


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_fab_t_is_at_least_as_strong_as_torchattacks(digits_cnn, digits_data, norm, eps):
    """FAB-T at eps, against torchattacks' multi-targeted FAB (9 targets, AutoAttack's
    FAB-T), 20 steps, 100 digits: robust accuracy no higher than theirs plus one sample; with
    stop_at_eps the verdicts are the same (within one sample: the rows that stop change
    which rows share a batch, and with that the float rounding of the others)."""
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_data[0][:100], digits_data[1][:100]
    common = {"attack": "fab-t", "eps": eps, "norm": norm, "steps": 20}
    ours = evaluate(digits_cnn, (x, y), **common)
    stopped = evaluate(digits_cnn, (x, y), stop_at_eps=True, **common)
    model = copy.deepcopy(digits_cnn).eval()
    peer = torchattacks.FAB(
        model, norm="Linf" if norm == "linf" else "L2", steps=20, n_restarts=1, eps=eps,
        multi_targeted=True, n_classes=10,
    )  # fmt: skip
    adv = peer(x, y)
    with torch.no_grad():
        theirs = float((model(adv).argmax(1) == y).float().mean())
    assert ours.robust_acc <= theirs + 1 / len(y)
    assert abs(stopped.robust_acc - ours.robust_acc) <= 1 / len(y)
    assert ours.details["n_target_classes"] == 9
    assert sum(ours.details["broken_by_target_rank"]) >= ours.n_success


def test_stop_at_eps_stops_rows(digits_cnn, digits_data):
    """With stop_at_eps a sample leaves at its first point within eps: fewer rows forwarded."""
    x, y = digits_data[0][:30], digits_data[1][:30]
    seen: dict[bool, list[int]] = {False: [], True: []}
    for stop in (False, True):

        def counting(inputs: torch.Tensor, stop: bool = stop) -> torch.Tensor:
            seen[stop].append(len(inputs))
            return digits_cnn(inputs)

        attack = FABT(ThreatModel(0.1, "linf", (0.0, 1.0)), steps=10, stop_at_eps=stop)
        attack.run(AttackBatch(counting, x, y, None, torch.arange(30), 0))
    assert seen[False][1:] == [270] * 20  # 9 targets x 30 samples, 2 forwards per step
    assert seen[True][1] == 270 and seen[True][-1] < 270 and sum(seen[True]) < 0.75 * 270 * 20


def test_independent_of_the_batch_size(digits_cnn, digits_data):
    runs = [
        evaluate(
            digits_cnn, digits_data, attack="fab-t", eps=0.6, norm="l2", max_samples=24,
            steps=10, n_target_classes=3, batch_size=size, keep_adversarial=True,
        )
        for size in (24, 24, 5)
    ]  # fmt: skip
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert runs[0].success == runs[1].success == runs[2].success
    assert torch.allclose(runs[0].adversarial, runs[2].adversarial, atol=1e-4)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_start_at_half_eps_keyed_by_sample(norm):
    attack = FAB(ThreatModel(0.2, norm, (0.0, 1.0)), restarts=3)
    x = torch.full((4, 1, 3, 3), 0.5)
    batch = AttackBatch(lambda v: v.flatten(1), x, torch.zeros(4, dtype=torch.long), None,
                        torch.arange(10, 14), 7)  # fmt: skip
    rows = x.repeat(3, 1, 1, 1)
    owner = torch.arange(4).repeat(3)
    restart = torch.arange(3).repeat_interleave(4)
    start = attack._starts(batch, rows, owner, torch.zeros(12, dtype=torch.long), restart)
    size = distances(start, rows, norm)
    assert torch.equal(start[:4], x)  # the first run starts from the clean input
    assert torch.allclose(size[4:], torch.full((8,), 0.1))
    assert not torch.equal(start[4:8], start[8:])  # each restart its own draw
    alone = attack._starts(batch, rows[[5, 9]], owner[[5, 9]], torch.zeros(2, dtype=torch.long),
                           restart[[5, 9]])  # fmt: skip
    assert torch.equal(alone, start[[5, 9]])


def test_needs_a_gradient_path():
    class Detached(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = LogisticRegression(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.detach())

    x = torch.rand(6, 4)
    model = Detached()
    y = model(x).argmax(1)
    with pytest.raises(RobustConfigError, match="autograd"):
        evaluate(model, (x, y), attack="fab", eps=0.1, steps=2)


def test_known_answers_selftest_passes():
    outcome = selftest(attacks=["fab", "fab-t"])
    assert all(case.ok for attack in outcome for case in attack.cases), outcome
    assert all(not attack.skipped and not attack.error for attack in outcome), outcome
