"""The HTML report's fooled samples: the engine keeps exactly the k successes the model is
most confident about (checked against an independent forward pass), and encodes them small."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import torch
from per_sample import bits

from pytest_robust import evaluate
from pytest_robust.engine.examples import TopExamples
from pytest_robust.engine.examples import encode


def test_running_top_k_over_batches_equals_a_global_sort() -> None:
    """Catches a selection that keeps the first successes, the last batch's, misses a hit
    from an early batch, lets a non-success in, or breaks ties by batch order."""
    g = torch.Generator().manual_seed(3)
    n, k = 50, 4
    confidence = torch.rand(n, generator=g).round(decimals=1)  # many ties
    hit = torch.rand(n, generator=g) < 0.6
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)
    top = TopExamples(k)
    for start in (0, 17, 33):  # uneven batches
        ids = torch.arange(start, min(start + 17, n) if start < 33 else n)
        top.offer(ids, x[ids], x[ids] + 1, ids % 3, ids % 5, confidence[ids], hit[ids])
    expected = sorted((i for i in range(n) if hit[i]), key=lambda i: (-float(confidence[i]), i))[:k]
    assert [e.index for e in top.kept] == expected
    assert all(torch.equal(e.clean, x[e.index]) for e in top.kept)
    assert [e.confidence for e in top.kept] == [float(confidence[i]) for i in expected]


def test_fewer_successes_than_k_keeps_them_all_and_zero_keeps_none() -> None:
    ids = torch.arange(4)
    x = torch.zeros(4, 2)
    hit = torch.tensor([False, True, False, True])
    top = TopExamples(3)
    top.offer(ids, x, x, ids, ids, torch.tensor([0.9, 0.2, 0.8, 0.7]), hit)
    assert [e.index for e in top.kept] == [3, 1]
    none = TopExamples(0)
    none.offer(ids, x, x, ids, ids, torch.ones(4), hit)
    assert none.kept == []


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_evaluate_keeps_the_most_confident_successes(
    digits_cnn: torch.nn.Module, digits_data: tuple[torch.Tensor, torch.Tensor], attack: str
) -> None:
    """Checked against the model itself: the kept samples are successes, their recorded
    predictions and confidences are what a fresh forward pass gives, and no other success
    has a higher confidence."""
    x, y = digits_data
    params: dict[str, Any] = {"steps": 5} if attack == "pgd" else {}
    result = evaluate(
        digits_cnn, (x, y), attack, 0.1, keep_examples=4, keep_adversarial=True, **params
    )
    assert result.n_success > 4
    with torch.no_grad():
        probs = digits_cnn(result.adversarial).softmax(dim=1)
        clean_probs = digits_cnn(x).softmax(dim=1)
    success = bits(result.success)
    confidence = probs.amax(dim=1)
    ranked = sorted(success.nonzero().squeeze(1).tolist(), key=lambda i: -float(confidence[i]))
    kept = result.examples
    assert len(kept) == 4
    assert all(success[e.index] for e in kept)
    assert [e.confidence for e in kept] == sorted((e.confidence for e in kept), reverse=True)
    assert kept[-1].confidence >= float(confidence[ranked[4]]) - 1e-5
    for e in kept:
        assert e.label == int(y[e.index]) != e.prediction == int(probs[e.index].argmax())
        assert e.confidence == pytest.approx(float(confidence[e.index]), abs=1e-5)
        assert torch.equal(e.clean, x[e.index])
        assert torch.allclose(e.adversarial, result.adversarial[e.index])
        assert e.clean_prediction == int(clean_probs[e.index].argmax())
        assert e.clean_confidence == pytest.approx(float(clean_probs[e.index].max()), abs=1e-5)
    assert "examples" not in result.to_dict()


def test_nothing_is_kept_unless_asked(
    digits_cnn: torch.nn.Module, digits_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    assert evaluate(digits_cnn, digits_data, "fgsm", 0.1).examples == ()


def test_encode_images_as_uint8_and_perturbation_stretched() -> None:
    """Catches pixels off by a scaling (bounds not applied), a perturbation whose stated
    amplification does not match the picture, or vectors drawn as images."""
    clean = torch.full((1, 8, 8), 0.5)
    adversarial = clean.clone()
    adversarial[0, 0, 0] = 0.6
    adversarial[0, 1, 1] = 0.45
    from pytest_robust.engine.examples import Example

    example = Example(7, clean, adversarial, 3, 5, 0.9, 3, 0.99)
    encoded = encode([example], (0.0, 1.0))
    assert encoded["kind"] == "image" and encoded["shape"] == [1, 8, 8]
    (item,) = encoded["items"]
    pixels = torch.frombuffer(bytearray(base64.b64decode(item["clean"])), dtype=torch.uint8)
    assert pixels.tolist() == [128] * 64
    delta = torch.frombuffer(bytearray(base64.b64decode(item["perturbation"])), dtype=torch.uint8)
    assert (int(delta[0]), int(delta[9]), int(delta[5])) == (255, 64, 128)
    assert item["amplification"] == pytest.approx(0.5 / 0.1, rel=1e-3)
    assert item["max_abs_perturbation"] == pytest.approx(0.1, rel=1e-5)
    vector = encode([Example(1, torch.zeros(5), torch.ones(5), 0, 1, 0.5)], (0.0, 1.0))
    assert vector["kind"] == "vector" and vector["items"][0]["adversarial"] == [1.0] * 5


@pytest.mark.parametrize("eps", [0.1, 0.15])
def test_a_targeted_check_shows_samples_pushed_to_a_wrong_class_not_the_target(
    digits_cnn: torch.nn.Module, digits_data: tuple[torch.Tensor, torch.Tensor], eps: float
) -> None:
    """Catches a targeted check that reached few targets showing nothing (at eps 0.1 ILLC
    reaches no target on these digits but misclassifies several): the picture is filled
    with the samples pushed to a wrong class other than their target, marked as such and
    ranked by confidence, as an independent forward pass of the kept inputs sees them."""
    x, y = digits_data[0][:100], digits_data[1][:100]
    result = evaluate(
        digits_cnn, (x, y), "illc", eps, steps=10, keep_examples=4, keep_adversarial=True
    )
    with torch.no_grad():
        probs = digits_cnn(result.adversarial).softmax(dim=1)
        clean_logits = digits_cnn(x)
    target = clean_logits.argmin(dim=1)  # ILLC's target: the least likely class
    pred, confidence = probs.argmax(dim=1), probs.amax(dim=1)
    correct = clean_logits.argmax(dim=1) == y
    missed = [i for i in range(len(y)) if correct[i] and pred[i] != y[i] and pred[i] != target[i]]
    kept = result.examples
    reached = [e for e in kept if not e.missed_target]
    assert len(reached) == min(result.n_success, 4)
    assert kept[: len(reached)] == tuple(reached)  # the successes come first
    shown = [e for e in kept if e.missed_target]
    assert missed and len(shown) == min(len(missed), 4 - len(reached)) > 0
    ranked = sorted(missed, key=lambda i: (-float(confidence[i]), i))
    assert [e.index for e in shown] == ranked[: len(shown)]
    for e in kept:
        assert e.target == int(target[e.index])
        assert e.prediction == int(pred[e.index]) != e.label
        assert (e.prediction == e.target) != e.missed_target
    items = encode(list(kept), (0.0, 1.0))["items"]
    assert [item["missed_target"] for item in items] == [e.missed_target for e in kept]


def test_a_missed_target_reached_later_is_dropped_and_kept_once() -> None:
    """Catches a sample shown as a missed target after another attack reached it, or shown
    twice when two attacks both pushed it to a wrong class."""
    ids = torch.arange(3)
    x = torch.zeros(3, 2)
    everyone = torch.ones(3, dtype=torch.bool)
    top = TopExamples(4)
    top.offer(ids, x, x, ids, ids + 1, torch.tensor([0.5, 0.6, 0.7]), everyone, ids, True)
    top.offer(ids, x, x, ids, ids + 1, torch.tensor([0.9, 0.1, 0.1]), everyone, ids, True)
    assert [e.index for e in top.kept] == [0, 2, 1]
    assert [e.confidence for e in top.kept] == pytest.approx([0.9, 0.7, 0.6])
    assert all(e.missed_target and e.target == e.index for e in top.kept)
    top.drop([2])
    assert [e.index for e in top.kept] == [0, 1]
