"""Fooling images: noise the model classifies as a chosen class with high confidence."""

from __future__ import annotations

import pytest
import torch
from per_sample import bits

from pytest_robust import RobustConfigError
from pytest_robust import evaluate


def test_the_undefended_cnn_sees_digits_in_noise(digits_cnn, digits_data):
    x, y = digits_data
    result = evaluate(
        digits_cnn,
        (x[:100], y[:100]),
        attack="fooling",
        eps=1.0,
        confidence=0.9,
        keep_adversarial=True,
    )
    hit = bits(result.success)
    assert result.success_rate > 0.8
    with torch.no_grad():
        probs = digits_cnn(result.adversarial).softmax(1)
    targets = torch.arange(100) % 10
    # Success means the target class with at least the asked-for confidence, checked anew.
    assert bool((probs[hit].argmax(1) == targets[hit]).all())
    assert bool((probs[hit].amax(1) >= 0.9).all())
    assert result.details["confidence"]["max"] >= 0.9
    # The images are noise, not the digits: far from the clean inputs.
    assert float((result.adversarial[hit] - x[:100][hit]).abs().amax(dim=(1, 2, 3)).min()) > 0.3


def test_confidence_gates(digits_cnn, digits_data):
    x, y = digits_data
    data = (x[:40], y[:40])
    strict = evaluate(digits_cnn, data, attack="fooling", eps=1.0, target=3, max_confidence=0.5)
    assert strict.status == "fail"
    assert "max_confidence 0.500" in strict.failure_message()
    easy = evaluate(
        digits_cnn, data, attack="fooling", eps=1.0, target=3, confidence=0.999, steps=1
    )
    assert easy.n_success <= strict.n_success


def test_fooling_needs_the_whole_input_range(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="eps must cover the whole range: eps=1"):
        evaluate(digits_cnn, digits_data, attack="fooling", eps=0.5)
