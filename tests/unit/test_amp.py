"""amp=True: attacks under autocast, the clean pass and every re-verification in float32.

No GPU here: CPU autocast (bfloat16) stands in for CUDA's by adding 'cpu' to AMP_DTYPES.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_wrappers import AutocastRecorder

from pytest_robust import RobustWarning
from pytest_robust import evaluate
from pytest_robust.engine import backoff as memory

# sanity="off": the call sequence below is the attack's alone (no sanity forwards).
KW: dict[str, Any] = {
    "attack": "pgd",
    "eps": 0.1,
    "steps": 3,
    "seed": 0,
    "batch_size": 500,
    "sanity": "off",
}


def test_amp_attacks_in_low_precision_and_verifies_in_float32(digits_cnn, digits_data, monkeypatch):
    monkeypatch.setitem(memory.AMP_DTYPES, "cpu", torch.bfloat16)
    model = AutocastRecorder(digits_cnn, "cpu")
    result = evaluate(model, digits_data, amp=True, **KW)
    clean, *attack, verify = model.calls
    assert clean == (False, torch.float32)
    assert attack and all(call == (True, torch.bfloat16) for call in attack)
    assert verify == (False, torch.float32)
    assert result.details["amp"].startswith("bfloat16 autocast")
    # The outcome is what float32 says about the final points.
    reference = evaluate(digits_cnn, digits_data, **KW)
    assert abs(result.robust_acc - reference.robust_acc) < 0.05


def test_amp_success_needs_float32_confirmation(digits_cnn, digits_data, monkeypatch):
    """A model whose reduced-precision output always looks broken: float32 disagrees, so
    no success is counted."""
    monkeypatch.setitem(memory.AMP_DTYPES, "cpu", torch.bfloat16)

    class LiesUnderAutocast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = digits_cnn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.inner(x)
            if torch.is_autocast_enabled("cpu"):
                return logits.roll(1, dims=1)  # every prediction wrong under autocast
            return logits

    result = evaluate(LiesUnderAutocast(), digits_data, amp=True, **{**KW, "eps": 0.0})
    assert result.n_success == 0 and result.robust_acc == result.clean_acc


def test_amp_without_cuda_is_a_no_op_that_says_so(digits_cnn, digits_data):
    with pytest.warns(RobustWarning, match="amp=True not used: autocast runs on CUDA only"):
        result = evaluate(digits_cnn, digits_data, amp=True, device="cpu", **KW)
    reference = evaluate(digits_cnn, digits_data, device="cpu", **KW)
    assert result.robust == reference.robust
    assert "not used" in result.details["amp"]
