"""decide_early=True: a clearly failing or passing gate stops after a prefix of the data."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_wrappers import CountingModel

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.engine.early import early_verdict

KW: dict[str, Any] = {"attack": "pgd", "steps": 10, "batch_size": 50, "seed": 1}


def flags(ones: int, n: int) -> torch.Tensor:
    return torch.arange(n) < ones


def test_verdict_follows_the_wilson_interval():
    n = 100
    everything = flags(n, n)
    # 90 of 100 robust: the interval [0.826, 0.945] is above 0.8, below 0.95, straddles 0.9.
    robust = flags(90, n)
    args = (everything, robust, ~robust, everything, 0.0)
    assert early_verdict({"min_acc": 0.8}, *args) == "pass"
    assert early_verdict({"min_acc": 0.95}, *args) == "fail"
    assert early_verdict({"min_acc": 0.9}, *args) is None
    assert early_verdict({"max_success": 0.05}, *args) == "fail"
    assert early_verdict({"max_success": 0.2}, *args) == "pass"
    assert early_verdict({"max_drop": 0.2}, *args) == "pass"
    # Passing one threshold is not enough while another is open.
    assert early_verdict({"min_acc": 0.8, "max_success": 0.1}, *args) is None
    # max_confidence can only fail early.
    assert early_verdict({"min_acc": 0.8, "max_confidence": 0.99}, *args) is None
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
