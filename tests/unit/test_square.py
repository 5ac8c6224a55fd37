"""Square Attack: a score-based search that breaks the digits CNN without gradients."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from model_wrappers import CountingModel
from per_sample import bits

from pytest_robust import evaluate


class ExactMatch(torch.nn.Module):
    """Class 0 for an input equal to one of `clean`, class 1 for anything else: every
    perturbation, however small, breaks it."""

    clean: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, clean: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("clean", clean.flatten(1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        known = (x.flatten(1)[:, None, :] == self.clean[None]).all(dim=2).any(dim=1)
        return torch.stack([4.0 * known.float(), 4.0 * (~known).float()], dim=1)


def test_breaks_the_undefended_cnn_without_gradients(digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack="square", eps=0.2, queries=1000)
    assert result.clean_acc > 0.95
    assert result.robust_acc < 0.05  # measured: 0.0 (seed 0)
    queries = result.details["queries"]
    assert 1 <= queries["median"] <= queries["mean"] <= 1000  # most break early


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_nothing_breaks_at_eps_zero_and_no_query_is_wasted(norm, digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack="square", eps=0.0, norm=norm, queries=50)
    assert result.robust_acc == result.clean_acc
    assert result.n_success == 0
    # Every candidate equals the clean input: only the initial query is spent.
    assert result.details["queries"] == {"mean": 1.0, "median": 1.0}


def test_a_fixed_target_is_reached_exactly_where_success_says(digits_cnn, digits_data):
    result = evaluate(
        digits_cnn,
        digits_data,
        attack="square",
        eps=0.3,
        queries=300,
        target=3,
        max_samples=150,
        keep_adversarial=True,
    )
    assert result.targeted
    with torch.no_grad():
        pred = digits_cnn(result.adversarial).argmax(1)
    hit = bits(result.success)
    assert torch.equal(hit, bits(result.attacked) & (pred == 3))
    assert result.success_rate > 0.9  # measured: 1.0


def test_queries_are_spent_only_on_unbroken_samples(digits_cnn, digits_data):
    model = CountingModel(digits_cnn)
    result = evaluate(model, digits_data, attack="square", eps=0.15, queries=200, sanity="off")
    attacked = result.n_attacked
    # Forward passes: clean pass (n), the attack, then the re-verification (attacked).
    attack_work = model.samples - result.n - attacked
    assert attack_work == round(result.details["queries"]["mean"] * attacked)
    assert attack_work < 0.5 * 200 * attacked  # broken samples left the batch early


def test_a_sample_broken_by_its_first_query_costs_one_query():
    x = 0.25 + 0.5 * torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    model = CountingModel(ExactMatch(x))
    for norm in ("linf", "l2"):
        before = model.samples
        result = evaluate(
            model,
            (x, torch.zeros(20, dtype=torch.long)),
            attack="square",
            eps=0.05,
            norm=norm,
            queries=100,
            sanity="off",  # counts the attack's queries only (no determinism forward)
        )
        assert result.robust_acc == 0.0
        assert result.details["queries"] == {"mean": 1.0, "median": 1.0}
        assert model.samples - before == 3 * 20  # clean pass, one query each, re-verification


def test_results_do_not_depend_on_the_batch_size(digits_cnn, digits_data):
    common: dict[str, Any] = {
        "eps": 0.1,
        "queries": 100,
        "seed": 5,
        "max_samples": 200,
        "keep_adversarial": True,
    }
    whole = evaluate(digits_cnn, digits_data, attack="square", batch_size=450, **common)
    split = evaluate(digits_cnn, digits_data, attack="square", batch_size=37, **common)
    assert whole.robust == split.robust
    assert whole.details["queries"] == split.details["queries"]
    assert torch.equal(whole.adversarial, split.adversarial)
    other_seed = evaluate(
        digits_cnn, digits_data, attack="square", batch_size=450, **{**common, "seed": 6}
    )
    assert not torch.equal(other_seed.adversarial, whole.adversarial)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_the_search_does_the_work_not_the_initialisation(norm, eps, digits_cnn, digits_data):
    common: dict[str, Any] = {"attack": "square", "eps": eps, "norm": norm, "max_samples": 150}
    init_only = evaluate(digits_cnn, digits_data, queries=1, **common)
    searched = evaluate(digits_cnn, digits_data, queries=300, **common)
    # Measured: linf 0.97 -> 0.49, l2 0.96 -> 0.07.
    assert init_only.robust_acc > 0.9
    assert searched.robust_acc < init_only.robust_acc - 0.4


def _reference_p_selection(it: int, n_queries: int, p_init: float, rescale: bool) -> float:
    """fra31/auto-attack square.py, SquareAttack.p_selection, transcribed."""
    if rescale:
        it = int(it / n_queries * 10000)
    bounds = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000, 10**9)
    for k, (low, high) in enumerate(itertools.pairwise(bounds)):
        if low < it <= high:
            return p_init / 2 ** (k + 1)
    return p_init


@pytest.mark.parametrize("rescale", [False, True])
def test_window_schedule_is_autoattacks(rescale):
    """rescale_schedule=False halves p at the absolute iterations 10, 50, 200, 500, 1000,
    2000, 4000 (AutoAttack's standard Square, resc_schedule=False); True rescales them to
    the budget. Our budget counts the initial query: queries=5001 is the reference's 5000
    iterations, numbered 0..4999 in both."""
    from pytest_robust.attacks.square import window_fraction

    budget = 5001
    ours = [window_fraction(i, budget, 0.8, rescale) for i in range(budget - 1)]
    # With rescaling the reference divides by its own iteration count (5000), we by the
    # query budget (5001): the same schedule up to one iteration at each boundary.
    reference = [
        _reference_p_selection(i, budget if rescale else budget - 1, 0.8, rescale)
        for i in range(budget - 1)
    ]
    assert ours == reference
    if not rescale:
        halvings = [i for i in range(1, budget - 1) if ours[i] < ours[i - 1]]
        assert halvings == [11, 51, 201, 501, 1001, 2001, 4001]


def test_chunked_draws_are_the_per_stream_draws():
    """Square draws a chunk of iterations' random numbers in one call: each iteration's
    numbers must be exactly those of its own stream (so results do not depend on the
    chunking, and a sample's search on the batch it is in)."""
    from pytest_robust.attacks import sampling

    ids = torch.tensor([0, 7, 450, 2**40 + 3])
    streams = torch.tensor([1, 17, 33, (1 << 33) + 5])
    drawn = sampling.uniform_streams(5, ids, streams, (3, 2), torch.float32)
    for k, stream in enumerate(streams.tolist()):
        one = sampling.uniform(5, ids, torch.Size([4, 3, 2]), stream, torch.float32)
        assert torch.equal(drawn[:, k], one)


def test_autoattack_schedule_is_a_square_parameter(digits_cnn, digits_data):
    x, y = digits_data
    fixed = evaluate(
        digits_cnn, (x[:30], y[:30]), attack="square", eps=0.1, queries=300,
        rescale_schedule=False,
    )  # fmt: skip
    rescaled = evaluate(digits_cnn, (x[:30], y[:30]), attack="square", eps=0.1, queries=300)
    assert fixed.params["rescale_schedule"] is False
    # The same search with larger windows for longer: a different path, both valid.
    assert fixed.robust != rescaled.robust or fixed.details != rescaled.details
