"""Targeted mode (target=) and the output= adapter for models that return tuples or dicts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from per_sample import bits

from pytest_robust import RobustConfigError
from pytest_robust import evaluate


def predictions(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd"])
def test_a_fixed_target_is_reached_not_merely_missed(attack, digits_cnn, digits_data):
    _, y = digits_data
    extra: dict[str, Any] = {} if attack == "fgsm" else {"steps": 30}
    result = evaluate(
        digits_cnn, digits_data, attack=attack, eps=0.3, target=3, keep_adversarial=True, **extra
    )
    assert result.targeted and result.params["target"] == "3"
    pred = predictions(digits_cnn, result.adversarial)
    hit = bits(result.success)
    assert torch.equal(hit, bits(result.attacked) & (pred == 3))
    # Samples labelled 3 are already at the target: not attacked, never a success.
    attacked = bits(result.attacked)
    assert not bool(attacked[y == 3].any()) and not bool(hit[y == 3].any())
    if attack != "fgsm":
        assert result.success_rate > 0.8


@pytest.mark.parametrize("target", ["least_likely", "random"])
def test_named_targets(target, digits_cnn, digits_data):
    x, y = digits_data
    result = evaluate(
        digits_cnn, digits_data, attack="pgd", eps=0.3, target=target, keep_adversarial=True
    )
    pred = predictions(digits_cnn, result.adversarial)
    hit = bits(result.success)
    with torch.no_grad():
        clean = digits_cnn(x)
    if target == "least_likely":
        assert torch.equal(pred[hit], clean.argmin(1)[hit])
    assert not bool((pred[hit] == y[hit]).any())  # a target is never the true class
    assert result.success_rate > 0.5
    again = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.3, target=target)
    assert again.success == result.success  # random targets are seeded


def test_random_targets_cover_every_other_class(digits_data):
    from pytest_robust.engine.targets import resolve_targets

    _, y = digits_data
    logits = torch.zeros(len(y), 10)
    targets = resolve_targets("random", logits, y, seed=0)
    assert not bool((targets == y).any())
    assert set(targets.tolist()) == set(range(10))


def test_per_sample_tensor_and_callable_targets(digits_cnn, digits_data):
    _, y = digits_data
    wanted = (y + 1) % 10
    by_tensor = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.3, target=wanted)
    by_callable = evaluate(
        digits_cnn,
        digits_data,
        attack="pgd",
        eps=0.3,
        target=lambda logits, labels: (labels + 1) % 10,
    )
    assert by_tensor.success == by_callable.success and by_tensor.success_rate > 0.5


def test_bad_targets_are_explained(digits_cnn, digits_data):
    with pytest.raises(RobustConfigError, match="cannot be targeted"):
        evaluate(digits_cnn, digits_data, attack="illc", eps=0.1, target=3)
    with pytest.raises(RobustConfigError, match="10 classes"):
        evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, target=12)
    with pytest.raises(RobustConfigError, match="one integer class per sample"):
        evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, target=torch.zeros(3))
    with pytest.raises(RobustConfigError, match="'least_likely', 'random'"):
        evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, target="most_likely")


class TupleModel(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.inner(x)
        return torch.zeros(len(x)), logits


class DictModel(TupleModel):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"logits": self.inner(x), "features": x.flatten(1)}


@pytest.mark.parametrize(
    ("wrapper", "output"),
    [(TupleModel, 1), (DictModel, "logits"), (TupleModel, lambda out: out[1])],
)
def test_output_adapter_gives_the_same_result_as_the_bare_model(
    wrapper, output, digits_cnn, digits_data
):
    bare = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, steps=5)
    wrapped = evaluate(
        wrapper(digits_cnn), digits_data, attack="pgd", eps=0.1, steps=5, output=output
    )
    assert wrapped.robust == bare.robust


def test_output_is_never_guessed(digits_cnn, digits_data):
    # A dict's 'logits' entry is read by its name (tests/unit/test_data_as_they_come.py);
    # a tuple says nothing about which element holds the logits.
    with pytest.raises(RobustConfigError, match="output="):
        evaluate(TupleModel(digits_cnn), digits_data, attack="fgsm", eps=0.1)
    with pytest.raises(RobustConfigError, match="does not fit"):
        evaluate(DictModel(digits_cnn), digits_data, attack="fgsm", eps=0.1, output="probs")
    with pytest.raises(RobustConfigError, match="not a tensor of logits"):
        evaluate(TupleModel(digits_cnn), digits_data, attack="fgsm", eps=0.1, output=lambda o: 5)


def test_perturbation_sizes_are_reported(digits_cnn, digits_data):
    result = evaluate(digits_cnn, digits_data, attack="pgd", eps=0.1, norm="l2")
    sizes = result.details["perturbation"]
    assert sizes["count"] == result.n_success
    assert 0 < sizes["median"] <= 0.1 + 1e-5 and 0 < sizes["mean"] <= 0.1 + 1e-5


def test_evaluate_takes_a_per_sample_list_of_targets(digits_cnn, digits_data):
    _, y = digits_data
    wanted = ((y + 1) % 10).tolist()
    by_list = evaluate(digits_cnn, digits_data, attack="fgsm", eps=0.2, target=wanted)
    by_tensor = evaluate(
        digits_cnn, digits_data, attack="fgsm", eps=0.2, target=torch.tensor(wanted)
    )
    assert by_list.success == by_tensor.success
