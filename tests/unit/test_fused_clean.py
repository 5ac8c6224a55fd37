"""The clean pass fused with the first attack's first forward (engine/fused_clean.py,
issue 16): the same numbers as a separate clean pass, one forward fewer per batch, no work
on clean-wrong samples, and the model given back as it was, also on error."""

from __future__ import annotations

import functools
import importlib
from typing import Any

import pytest
import torch
from model_snapshot import assert_unchanged
from model_snapshot import snapshot
from model_wrappers import CountingModel

from pytest_robust import EvaluationCache
from pytest_robust import RobustConfigError
from pytest_robust import RobustnessResult
from pytest_robust import evaluate

# The module (pytest_robust.engine.evaluate is also the name of the function it defines).
engine = importlib.import_module("pytest_robust.engine.evaluate")
N, BATCH = 120, 50  # three batches, the last one short


@pytest.fixture(scope="module")
def data(digits_data: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """120 digits, 15 of them mislabelled: clean-wrong samples in every batch, so the
    fused batches (all samples) differ from the unfused ones (clean-correct samples)."""
    x, y = digits_data
    y = y[:N].clone()
    y[::8] = (y[::8] + 1) % 10
    return x[:N], y


def outcomes(result: RobustnessResult) -> dict[str, Any]:
    """Everything a result says about the samples (not its timing)."""
    return {
        "bits": (result.clean_correct, result.robust, result.success, result.attacked),
        "details": result.details,
        "examples": [
            (e.index, e.prediction, e.confidence, e.clean_prediction, e.clean_confidence)
            for e in result.examples
        ],
    }


def same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-5 relative: a confidence or a perturbation size comes from the
    float32 re-verification forward of the same point, whose last bits depend on the other
    rows of its batch (here 1.3e-6 for one digit judged in a batch of 20 or alone)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-5)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(p, q) for p, q in zip(a, b, strict=True))
    return bool(a == b)


CHECKS: list[dict[str, Any]] = [
    {"attack": "fgsm", "eps": 0.1},
    {"attack": "fgsm", "eps": 0.1, "sanity": "cheap"},
    {"attack": "bim", "eps": 0.1, "steps": 5},
    {"attack": "mifgsm", "eps": 0.1, "steps": 5},
    {"attack": "pgd", "eps": 0.1, "steps": 5, "random_start": False},
    {"attack": ["fgsm", "pgd"], "eps": 0.08, "steps": 3},
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: f"{c['attack']}-{c.get('sanity')}")
def test_fused_numbers_equal_a_separate_clean_pass(
    digits_cnn: torch.nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    check: dict[str, Any],
) -> None:
    """Catches the fused clean logits, the skipped clean-wrong samples or the different
    batches (all samples, not the clean-correct ones) changing any number: outcomes,
    adversarial points, perturbation sizes, confidences, flags, pictures' examples."""
    kwargs = {"sanity": "off", "batch_size": BATCH, "keep_examples": 4, **check}
    cache = EvaluationCache()
    fused = evaluate(digits_cnn, data, keep_adversarial=True, cache=cache, **kwargs)
    # The same cache now holds the fused clean logits: a second check uses them (no clean
    # pass, no fusion) and must agree too.
    reused = evaluate(digits_cnn, data, keep_adversarial=True, cache=cache, **kwargs)
    monkeypatch.setattr(engine, "fuses_clean_pass", lambda *args: False)
    separate = evaluate(digits_cnn, data, keep_adversarial=True, **kwargs)
    assert 0 < separate.n_clean_correct < N and separate.n_success > 0
    for other in (fused, reused):
        assert other.clean_correct == separate.clean_correct and other.flags == separate.flags
        assert same(outcomes(other), outcomes(separate))
        assert other.adversarial is not None and separate.adversarial is not None
        assert torch.equal(other.adversarial, separate.adversarial)


def test_fused_clean_logits_are_the_clean_pass_logits(
    digits_cnn: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """Catches clean logits other than a plain forward's (taken under autograd, or from
    the wrong rows) entering the session cache, where every later check reads them."""
    cache = EvaluationCache()
    evaluate(digits_cnn, data, "fgsm", 0.1, cache=cache, batch_size=BATCH, sanity="off")
    (stored,) = cache._clean.values()
    with torch.no_grad():
        plain = torch.cat([digits_cnn.eval()(x) for x in data[0].split(BATCH)])
    assert torch.equal(stored, plain)


class Counted(CountingModel):
    """Logs each forward (its rows, whether it makes an input gradient) and counts the
    input gradients computed."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__(inner)
        self.log: list[tuple[int, bool]] = []
        self.backward = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((len(x), x.requires_grad))
        if x.requires_grad:
            x.register_hook(functools.partial(self._count))
        return super().forward(x)

    def _count(self, grad: torch.Tensor) -> None:
        self.backward += 1


@pytest.mark.parametrize("fused", [True, False])
def test_fgsm_makes_one_forward_backward_and_one_verification_per_batch(
    digits_cnn: torch.nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    fused: bool,
) -> None:
    """Catches a clean forward of its own next to the attack's (3 forwards per batch
    instead of 2), a forward for pictures or flags nobody asked for, and clean-wrong
    samples re-verified."""
    if not fused:
        monkeypatch.setattr(engine, "fuses_clean_pass", lambda *args: False)
    model = Counted(digits_cnn)
    result = evaluate(model, data, "fgsm", 0.1, batch_size=BATCH, sanity="off", keep_examples=3)
    correct = [int(result.clean_correct[i : i + BATCH].count("1")) for i in range(0, N, BATCH)]
    attacked = [(size, True) for size in (50, 50, 20)]
    verified = [(size, False) for size in correct]
    if fused:  # per batch: the attack's forward (the clean pass) and the verification
        assert model.log == [step for pair in zip(attacked, verified, strict=True) for step in pair]
    else:  # the clean pass, then per batch of clean-correct samples: attack and verify
        n = result.n_clean_correct
        sizes = [min(BATCH, n - start) for start in range(0, n, BATCH)]
        assert model.log == [*[(size, False) for size in (50, 50, 20)]] + [
            step for size in sizes for step in ((size, True), (size, False))
        ]
    assert model.backward == 3
    assert model.samples == N + result.n_clean_correct * (1 if fused else 2)


def test_clean_wrong_samples_get_no_further_work(
    digits_cnn: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """Catches clean-wrong samples walked on, judged or attacked by a later member."""
    model = Counted(digits_cnn)
    kwargs: dict[str, Any] = {"eps": 0.001, "steps": 4, "batch_size": N, "sanity": "off"}
    result = evaluate(model, data, attack=["bim", "fgsm"], **kwargs)
    wrong = N - result.n_clean_correct
    assert result.n_success == 0 and wrong >= 15  # eps 0.001 breaks nothing
    # bim: 4 steps, all samples in the first (the clean pass), the clean-correct ones
    # after; its verification; fgsm's step and its verification on the clean-correct ones.
    attacked = N - wrong
    bim = [(N, True), *[(attacked, True)] * 3, (attacked, False)]
    assert model.log == [*bim, (attacked, True), (attacked, False)]


def test_a_batch_of_clean_wrong_samples_gets_no_empty_forward(
    digits_cnn: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """Catches the re-verification (or a later member) calling the model on zero rows
    when every sample of a batch is clean-wrong (a model may fail on an empty batch)."""
    x, y = data
    with torch.no_grad():
        y = y.clone()
        y[:BATCH] = (digits_cnn.eval()(x[:BATCH]).argmax(dim=1) + 1) % 10
    model = Counted(digits_cnn)
    result = evaluate(model, (x, y), attack=["fgsm", "bim"], eps=0.1, steps=2, batch_size=BATCH)
    assert result.clean_correct[:BATCH] == "0" * BATCH
    assert model.log[0] == (BATCH, True) and model.log[1][0] == BATCH  # batch 2 starts
    assert all(size > 0 for size, _ in model.log)


def test_a_gradient_member_without_a_gradient_path_leaves_the_clean_pass_to_a_forward(
    digits_cnn: torch.nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Catches the black-box member getting no clean logits (or every sample) when the
    fused first member is skipped for want of a gradient path."""

    class Detached(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = digits_cnn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.detach())

    kwargs: dict[str, Any] = {"eps": 0.1, "queries": 30, "batch_size": BATCH}
    fused = evaluate(Detached(), data, attack=["fgsm", "square"], **kwargs)
    monkeypatch.setattr(engine, "fuses_clean_pass", lambda *args: False)
    separate = evaluate(Detached(), data, attack=["fgsm", "square"], **kwargs)
    assert fused.details["skipped"] == ["fgsm"] and separate.n_success > 0
    assert same(outcomes(fused), outcomes(separate))


def test_nan_clean_logits_in_a_later_batch_name_the_sample_and_give_the_model_back(
    data: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Catches a fused clean pass that lets NaN clean logits through (attacked on), and
    the model's mode, requires_grad or the global RNG state not restored on that error."""

    class NanFrom(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.linear = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.linear(x.flatten(1))
            # Sample 70 (in the second batch) gives NaN: its row is the 21st of that batch.
            is_70 = (x.flatten(1) == data[0][70].flatten()).all(dim=1)
            return torch.where(is_70[:, None], torch.nan, out)

    model = NanFrom().train()
    model.linear.bias.requires_grad_(False)
    before, rng = snapshot(model), torch.get_rng_state()
    with pytest.raises(
        RobustConfigError,
        match=r"NaN or infinite logits for 1 of the 50 clean inputs of a batch "
        r"\(first: sample 70\)",
    ):
        evaluate(model, data, "fgsm", 0.1, batch_size=BATCH)
    assert_unchanged(before, model)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_model_failing_only_on_inputs_that_require_gradients_is_told_so(
    data: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Catches the fused clean pass blaming the inputs' shapes for a failure that only
    inputs requiring gradients cause (a separate clean pass would have worked)."""

    class NumpyModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(torch.as_tensor(x.numpy()).flatten(1))

    with pytest.raises(RobustConfigError, match="part-way through the check") as raised:
        evaluate(NumpyModel(), data, "fgsm", 0.1)
    assert "require gradients" in str(raised.value)
    assert "Check that the data's inputs have the shape" not in str(raised.value)
