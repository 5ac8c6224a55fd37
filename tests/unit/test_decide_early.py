"""decide_early=True: a clearly failing or passing gate stops after a prefix of the data."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from model_wrappers import CountingModel

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.engine.early import ALPHA
from pytest_robust.engine.early import early_verdict
from pytest_robust.engine.early import log_mixture
from pytest_robust.engine.early import settled_side
from pytest_robust.engine.stats import wilson

KW: dict[str, Any] = {"attack": "pgd", "steps": 10, "batch_size": 50, "seed": 1}


def flags(ones: int, n: int) -> torch.Tensor:
    return torch.arange(n) < ones


def test_verdict_follows_the_confidence_sequence():
    n = 100
    everything = flags(n, n)
    # 90 of 100 robust: the 95% confidence sequence is about [0.78, 0.97] (wider than the
    # fixed-sample Wilson interval [0.826, 0.945], which would already settle 0.8 and 0.95).
    robust = flags(90, n)
    args = (everything, robust, ~robust, everything, 0.0)
    assert early_verdict({"min_acc": 0.75}, *args) == "pass"
    assert early_verdict({"min_acc": 0.98}, *args) == "fail"
    assert early_verdict({"min_acc": 0.8}, *args) is None
    assert early_verdict({"min_acc": 0.95}, *args) is None
    assert early_verdict({"max_success": 0.02}, *args) == "fail"
    assert early_verdict({"max_success": 0.25}, *args) == "pass"
    assert early_verdict({"max_drop": 0.25}, *args) == "pass"
    # Passing one threshold is not enough while another is open.
    assert early_verdict({"min_acc": 0.75, "max_success": 0.1}, *args) is None
    # Two thresholds share the 5% (each gets 2.5%): 0.77 is settled alone, not in a pair.
    assert early_verdict({"min_acc": 0.77}, *args) == "pass"
    assert early_verdict({"min_acc": 0.77, "max_drop": 0.5}, *args) is None
    # max_confidence can only fail early.
    assert early_verdict({"min_acc": 0.75, "max_confidence": 0.99}, *args) is None
    assert early_verdict({"max_confidence": 0.9}, *args[:-1], 0.95) == "fail"


def test_clearly_failing_gate_stops_early_and_says_so(digits_cnn, digits_data):
    full_model, early_model = CountingModel(digits_cnn), CountingModel(digits_cnn)
    full = evaluate(full_model, digits_data, eps=0.3, min_acc=0.9, **KW)
    early = evaluate(early_model, digits_data, eps=0.3, min_acc=0.9, decide_early=True, **KW)
    assert full.status == early.status == "fail"
    decided = early.details["decided_early"]
    assert decided["verdict"] == "fail" and decided["of"] == full.n == 450
    assert early.n == decided["after"] < 150
    assert early_model.samples < 0.5 * full_model.samples
    # The evaluated prefix has exactly the per-sample outcomes of the full run.
    assert early.robust == full.robust[: early.n]
    assert early.clean_correct == full.clean_correct[: early.n]
    assert early.ci95[1] < 0.9
    assert "decided_early" not in full.details


def test_clearly_passing_gate_stops_early(digits_cnn, digits_data):
    model = CountingModel(digits_cnn)
    result = evaluate(model, digits_data, eps=0.01, min_acc=0.5, decide_early=True, **KW)
    assert result.status == "pass"
    assert result.details["decided_early"]["verdict"] == "pass"
    assert result.n < 450 and result.ci95[0] > 0.5


def test_undecided_gate_runs_to_the_end(digits_cnn, digits_data):
    kwargs: dict[str, Any] = {**KW, "eps": 0.1}
    full = evaluate(digits_cnn, digits_data, **kwargs)
    acc = full.robust_acc
    result = evaluate(digits_cnn, digits_data, min_acc=acc, decide_early=True, **kwargs)
    assert result.n == 450 and "decided_early" not in result.details
    assert result.robust == full.robust


def test_decide_early_needs_a_threshold(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="decide_early=True needs a threshold"):
        evaluate(digits_cnn, digits_data, eps=0.1, decide_early=True, **KW)


def test_failure_message_and_table_say_it_stopped_early(digits_cnn, digits_data):
    from pytest_robust.report.terminal import format_table

    result = evaluate(digits_cnn, digits_data, eps=0.3, min_acc=0.9, decide_early=True, **KW)
    assert f"decided early after the first {result.n} of 450 samples" in result.failure_message()
    record = {**result.to_dict(), "nodeid": "t.py::test", "row_status": "fail"}
    assert f"{result.n}/450 early" in format_table([record])[1]


# --- anytime validity: the confidence sequence behind early_verdict --------------------


def wilson_side(count: torch.Tensor, total: torch.Tensor, threshold: float) -> torch.Tensor:
    """The old rule, for contrast: the 95% Wilson interval at each look (vectorised form of
    engine/stats.wilson, checked against it below)."""
    z = 1.959963984540054
    t, p = total.double(), count.double() / total.double()
    centre = (p + z * z / (2 * t)) / (1 + z * z / t)
    half = z * torch.sqrt(p * (1 - p) / t + z * z / (4 * t * t)) / (1 + z * z / t)
    return torch.where(centre - half > threshold, 1, torch.where(centre + half < threshold, -1, 0))


def wrong_early_rate(side_of, rate: float, threshold: float, n: int, batch: int) -> float:
    """Share of 2000 seeded Bernoulli(rate) streams of n samples, looked at after every
    `batch`, whose first settled look contradicts the truth (pass iff rate >= threshold)."""
    g = torch.Generator().manual_seed(0)
    streams = torch.rand(2000, n, generator=g, dtype=torch.float64) < rate
    count = streams.cumsum(1)[:, batch - 1 :: batch]
    total = torch.arange(batch, n + 1, batch).expand_as(count)
    sides = side_of(count, total, threshold)
    looked = sides != 0
    first = sides.gather(1, looked.int().argmax(1, keepdim=True)).squeeze(1)
    truth = 1 if rate >= threshold else -1
    return float(((first != 0) & (first != truth)).double().mean())


@pytest.mark.parametrize(
    ("threshold", "rate", "n", "batch"),
    [(0.9, 0.9, 2000, 1), (0.5, 0.5, 2000, 1), (0.9, 0.9, 450, 50), (0.9, 0.89, 2000, 1),
     (0.5, 0.53, 2000, 1)],
)  # fmt: skip
def test_wrong_early_verdicts_stay_below_five_percent_whatever_the_looks(threshold, rate, n, batch):
    """Catches a sequential rule whose error grows with the number of looks: at true rates
    at and near the threshold, the old rule (Wilson at every look) is wrong in 6-36% of
    the streams; the confidence sequence stays below 5%."""
    old = wrong_early_rate(wilson_side, rate, threshold, n, batch)
    new = wrong_early_rate(settled_side, rate, threshold, n, batch)
    assert old > ALPHA  # the simulation sees the flaw it exists for
    assert new <= ALPHA


def test_the_mixture_is_a_martingale_at_the_true_rate():
    """What Ville's inequality needs (checked from the definition, not the code's own
    algebra): M_0 = 1 and E[M_t+1 | S, t] = M_t when samples are Bernoulli(rate)."""
    t = torch.arange(0, 300).repeat_interleave(torch.arange(1, 301))
    s = torch.cat([torch.arange(0, k + 1) for k in range(300)])
    for rate in (0.02, 0.5, 0.9):
        now = log_mixture(s, t, rate)
        up = math.log(rate) + log_mixture(s + 1, t + 1, rate)
        down = math.log(1 - rate) + log_mixture(s, t + 1, rate)
        # In logs (M reaches 1e+500 here): log(rate M(S+1) + (1 - rate) M(S)) = log M(S).
        assert torch.allclose(torch.logaddexp(up, down), now, rtol=0, atol=1e-9)
    assert float(log_mixture(torch.tensor(0), torch.tensor(0), 0.3)) == 0.0
    # Closed form with no success: 1 / ((t + 1) (1 - p)^t).
    assert float(log_mixture(torch.tensor(0), torch.tensor(8), 0.9).exp()) == pytest.approx(
        1 / (9 * 0.1**8)
    )


def test_a_settled_sequence_implies_the_reported_interval_agrees():
    """The result's ci95 (Wilson over the prefix) then lies on the verdict's side, as
    docs/semantics.md says: for every count up to 400 samples and thresholds across (0, 1)."""
    t = torch.arange(1, 401).repeat_interleave(torch.arange(2, 402))
    s = torch.cat([torch.arange(0, k + 1) for k in range(1, 401)])
    for threshold in (0.01, 0.1, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99):
        side = settled_side(s, t, threshold)
        lo, hi = wilson_side(s, t, threshold) > 0, wilson_side(s, t, threshold) < 0
        assert bool(((side > 0) <= lo).all() and ((side < 0) <= hi).all())
    for count, total in ((0, 1), (3, 7), (90, 100), (449, 450)):
        expected = wilson(count, total)
        got = wilson_side(torch.tensor([count] * 2), torch.tensor([total] * 2), 0.0)
        assert int(got[0]) == (1 if expected[0] > 0 else 0)


def test_early_verdict_decides_as_the_simulated_rule():
    """The simulation tests settled_side; early_verdict must be that rule on real flags."""
    g = torch.Generator().manual_seed(1)
    for _ in range(40):
        robust = torch.rand(300, generator=g) < 0.85
        for m in range(25, 301, 25):
            side = int(settled_side(robust[:m].sum(), torch.tensor(m), 0.8))
            everything = torch.ones(m, dtype=torch.bool)
            args = (everything, robust[:m], ~robust[:m], everything, 0.0)
            assert early_verdict({"min_acc": 0.8}, *args) == {1: "pass", -1: "fail", 0: None}[side]
