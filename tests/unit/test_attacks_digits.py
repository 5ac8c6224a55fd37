"""The attacks on a real model: the example's CNN on held-out handwritten digits."""

from __future__ import annotations

import pytest
import torch
from model_wrappers import CountingModel
from model_wrappers import counting_linear
from per_sample import bits

from pytest_robust import evaluate


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd"])
def test_untargeted_attacks_break_the_undefended_cnn_at_large_eps(attack, digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack=attack, eps=0.3)
    assert result.clean_acc > 0.95
    assert result.robust_acc < 0.05 if attack != "fgsm" else result.robust_acc < 0.3


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd", "illc"])
def test_nothing_breaks_at_eps_zero(attack, digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack=attack, eps=0.0)
    assert result.robust_acc == result.clean_acc
    assert result.n_success == 0


def test_iterative_is_at_least_as_strong_as_single_step(digits_cnn, digits_data):
    fgsm = evaluate(digits_cnn, digits_data, attack="fgsm", eps=0.1)
    pgd = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, steps=40)
    assert pgd.robust_acc <= fgsm.robust_acc


def test_robust_acc_decreases_with_eps(digits_cnn, digits_data):
    accs = [
        evaluate(digits_cnn, digits_data, attack="pgd", eps=eps).robust_acc
        for eps in (0.0, 0.05, 0.1, 0.2)
    ]
    assert accs == sorted(accs, reverse=True) and accs[0] > accs[-1] + 0.5


def test_illc_reaches_the_least_likely_class(digits_cnn, digits_data):
    x, y = digits_data
    result = evaluate(digits_cnn, digits_data, attack="illc", eps=0.3, keep_adversarial=True)
    assert result.targeted
    with torch.no_grad():
        least_likely = digits_cnn(x).argmin(1)
        adv_pred = digits_cnn(result.adversarial).argmax(1)
    success = bits(result.success)
    assert success.sum() > 0.8 * len(y)
    # Success means the predicted class IS the least likely one, not merely wrong.
    assert torch.equal(adv_pred[success], least_likely[success])
    assert not bool((adv_pred[~success] == least_likely[~success]).any())


def test_results_are_reproducible_and_independent_of_batch_size(digits_cnn, digits_data):
    a = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.08, seed=3, batch_size=450)
    b = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.08, seed=3, batch_size=450)
    c = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.08, seed=3, batch_size=37)
    assert a.robust == b.robust
    # Random starts are keyed by sample index, so a different split gives the same starts;
    # only float rounding in batched matmuls can differ, which flips at most a sample.
    assert sum(p != q for p, q in zip(a.robust, c.robust, strict=True)) <= 2
    d = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.08, seed=4, batch_size=450)
    assert d.seed == 4 and d.robust_acc == pytest.approx(a.robust_acc, abs=0.05)


def test_restarts_never_lower_strength(digits_cnn, digits_data):
    one = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.06, steps=5, restarts=1)
    three = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.06, steps=5, restarts=3)
    # Restart 0 is the same run in both (same seed and stream), so 3 restarts dominate.
    pairs = zip(one.robust, three.robust, strict=True)
    assert all(not (r1 == "0" and r3 == "1") for r1, r3 in pairs)


def test_broken_and_misclassified_samples_are_not_attacked_further(digits_cnn, digits_data):
    """Only clean-correct samples are attacked, and a broken sample leaves the batch."""
    model = CountingModel(digits_cnn)
    steps = 20
    result = evaluate(model, digits_data, attack="bim", eps=0.3, steps=steps)
    clean_pass = result.n
    attacked = result.n_clean_correct
    full_work = attacked * (steps + 1)  # a loop that never drops a sample
    attack_work = model.samples - clean_pass - attacked  # minus clean and re-verify passes
    assert 0 < attack_work < 0.5 * full_work


def test_clean_predictions_are_computed_once_per_model_and_data(digits_cnn, digits_data):
    from pytest_robust import EvaluationCache

    # Counted from outside the model (a counter attribute would change its identity).
    cache, model = EvaluationCache(), digits_cnn
    first = evaluate(model, digits_data, attack="fgsm", eps=0.0, cache=cache)
    with counting_linear(model.classifier[-1].weight) as seen:
        evaluate(model, digits_data, attack="fgsm", eps=0.0, cache=cache)
    # eps=0 attacks every clean-correct sample once (1 step: 1 forward, whose final point
    # the re-verification forward judges: no third pass) and re-verifies.
    assert seen[0] == 2 * first.n_clean_correct
    with torch.no_grad():
        model.classifier[-1].bias.add_(0.0)  # same content: still cached
    with counting_linear(model.classifier[-1].weight) as seen:
        evaluate(model, digits_data, attack="fgsm", eps=0.0, cache=cache)
    assert seen[0] == 2 * first.n_clean_correct
