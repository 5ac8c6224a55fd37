"""APGD-T: targeted DLR over the most likely other classes, untargeted success."""

from __future__ import annotations

import copy

import pytest
import torch

from pytest_robust import evaluate
from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks.apgdt import APGDT
from pytest_robust.errors import RobustConfigError
from pytest_robust.known_answers.run import selftest


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_apgdt_is_at_least_as_strong_as_torchattacks(digits_cnn, digits_data, eps):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_data[0][:100], digits_data[1][:100]
    ours = evaluate(digits_cnn, (x, y), attack="apgd-t", eps=eps, steps=10, n_target_classes=9)
    model = copy.deepcopy(digits_cnn).eval()
    # torchattacks' APGDT tries n_classes - 1 = 9 targets, like ours here.
    adv = torchattacks.APGDT(model, eps=eps, steps=10, n_classes=10, seed=0)(x, y)
    with torch.no_grad():
        theirs = float((model(adv).argmax(1) == y).float().mean())
    assert ours.robust_acc <= theirs + 1 / len(y)
    assert sum(ours.details["broken_by_target_rank"]) >= round(
        (ours.clean_acc - ours.robust_acc) * len(y)
    )


class _Linear(torch.nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targets_are_the_clean_ranking_and_success_is_untargeted(norm):
    # Linear logits z = (x1, 0.9 x1, 0.8 x1, 1.5 x2), true class 0 at x = (0.5, 0.25):
    # z = (0.5, 0.45, 0.4, 0.375), so the targets are ranked 1, 2, 3. Classes 1 and 2 can
    # never beat class 0 (x1 > 0); class 3 beats it iff 1.5 x2 > x1, whose best value in
    # the L-inf ball is 1.5 (0.25 + eps) - (0.5 - eps) > 0 iff eps > 0.05, in the L2 ball
    # 1.5 * 0.25 - 0.5 + eps * |(-1, 1.5)| > 0 iff eps > 0.125 / 1.803 = 0.0693.
    # So only the third target rank can break it, and it counts as an untargeted success.
    weight = torch.tensor([[1.0, 0.0], [0.9, 0.0], [0.8, 0.0], [0.0, 1.5]])
    model = _Linear(weight)
    x, y = torch.tensor([[0.5, 0.25]]), torch.tensor([0])
    below, above = (0.045, 0.055) if norm == "linf" else (0.065, 0.075)
    for eps, broken in ((below, 0), (above, 1)):
        attack = APGDT(ThreatModel(eps, norm, (0.0, 1.0)), steps=20, restarts=1)
        batch = AttackBatch(model, x, y, None, torch.tensor([0]), 0)
        assert attack._ranked_targets(batch).tolist() == [[1, 2, 3]]
        adv = attack.run(batch)
        with torch.no_grad():
            assert int(model(adv).argmax(1).item() != 0) == broken
            assert (model(adv).argmax(1).item() == 3) == bool(broken)
        details = attack.details()
        assert details["broken_by_target_rank"] == [0, 0, broken]
        # 9 asked, 3 possible: the cap is reported.
        assert details["n_target_classes"] == 3
        assert "reduced to 3" in details["note"]


class _OneTarget(APGDT):
    """One run of the reference's loop over targets: APGD-T towards target rank `only`
    alone, from the random starts that rank draws in the stacked run."""

    def __init__(self, threat: ThreatModel, only: int, **config: object) -> None:
        super().__init__(threat, **config)
        self.only = only

    def _ranked_targets(self, batch: AttackBatch) -> torch.Tensor:
        return super()._ranked_targets(batch)[:, self.only : self.only + 1]

    def _stream(self, restart: int, rank: int) -> int:
        return super()._stream(restart, self.only)


@pytest.mark.parametrize(("norm", "eps", "restarts"), [("linf", 0.1, 1), ("l2", 0.5, 2)])
def test_stacked_targets_break_the_samples_the_loop_over_targets_breaks(
    digits_cnn, digits_data, norm, eps, restarts
):
    # The reference runs target rank 1, then 2, ... each on the samples still robust; ours
    # runs all ranks as rows of one batch. A sample must be broken by one exactly when it
    # is broken by the other (rows are independent and draw the same random starts).
    x, y = digits_data[0][:48], digits_data[1][:48]
    model = copy.deepcopy(digits_cnn).eval()
    threat = ThreatModel(eps, norm, (0.0, 1.0))
    config = {"steps": 10, "restarts": restarts, "n_target_classes": 9}
    ids = torch.arange(len(x))

    def broken(attack: APGDT, rows: torch.Tensor) -> torch.Tensor:
        adv = attack.run(AttackBatch(model, x[rows], y[rows], None, ids[rows], 0))
        with torch.no_grad():
            return model(adv).argmax(1) != y[rows]

    stacked = broken(APGDT(threat, **config), ids)
    robust = torch.ones(len(x), dtype=torch.bool)
    for rank in range(9):
        rows = robust.nonzero().squeeze(1)
        robust[rows[broken(_OneTarget(threat, rank, **config), rows)]] = False
    assert 5 < int(stacked.sum()) < len(x) - 5  # a mix, so the comparison says something
    assert stacked.tolist() == (~robust).tolist()


def test_refuses_target_and_too_few_classes():
    x = torch.rand(4, 2)
    with pytest.raises(RobustConfigError, match="target"):
        evaluate(
            _Linear(torch.randn(5, 2)),
            (x, torch.zeros(4, dtype=torch.long)),
            attack="apgd-t",
            eps=0.1,
            target=1,
        )
    three = _Linear(torch.randn(3, 2))
    y = three(x).argmax(1)
    with pytest.raises(RobustConfigError, match="at least 4 classes"):
        evaluate(three, (x, y), attack="apgd-t", eps=0.1, steps=2)


def test_combines_with_other_attacks(digits_cnn, digits_data):
    x, y = digits_data[0][:20], digits_data[1][:20]
    result = evaluate(
        digits_cnn, (x, y), attack=["apgd-ce", "apgd-t"], eps=0.1, steps=5, n_target_classes=2
    )
    assert not result.targeted
    assert result.details["attacks"]["apgd-t"]["n_target_classes"] == 2


def test_known_answers_selftest_passes():
    outcome = selftest(attacks=["apgd-t"])
    assert all(case.ok for attack in outcome for case in attack.cases), outcome
