"""Out-of-memory back-off: a batch that does not fit is retried in halves, same numbers."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_wrappers import OutOfMemoryAbove

from pytest_robust import evaluate
from pytest_robust.engine.backoff import BackOff

KW: dict[str, Any] = {"attack": "pgd", "eps": 0.1, "steps": 5, "seed": 2}


def test_out_of_memory_halves_the_batch_and_gives_the_same_result(digits_cnn, digits_data):
    reference = evaluate(digits_cnn, digits_data, batch_size=256, **KW)
    model = OutOfMemoryAbove(digits_cnn, limit=100)
    result = evaluate(model, digits_data, batch_size=256, **KW)
    assert model.refused > 0
    assert result.details["batch_size"] == {
        "requested": 256,
        "used": 64,  # 256 -> 128 -> 64, then kept
        "out_of_memory_retries": 2,
    }
    assert (result.robust, result.success, result.clean_correct) == (
        reference.robust,
        reference.success,
        reference.clean_correct,
    )
    assert "batch_size" not in reference.details


def test_one_sample_that_does_not_fit_raises(digits_cnn, digits_data):
    model = OutOfMemoryAbove(digits_cnn, limit=0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        evaluate(model, digits_data, batch_size=8, **KW)


def test_backoff_keeps_order_and_the_smaller_size():
    backoff = BackOff(8)

    def work(ids: torch.Tensor) -> torch.Tensor:
        if len(ids) > 3:
            raise torch.cuda.OutOfMemoryError("too big")
        return ids

    pieces = backoff.map(work, torch.arange(20))
    assert torch.equal(torch.cat(pieces), torch.arange(20))
    assert backoff.size == 2 and all(len(p) <= 2 for p in pieces)
