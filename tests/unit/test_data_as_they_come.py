"""Data and models as they come (issue 17 part 5): dict batches read by inputs=/labels=, a
model that takes its input by keyword and returns an object with `.logits`, and binary
classifiers under the presets. Every result is compared with something outside the code
under test: the same model on (x, y) tensors, or the closed-form worst case of a linear
classifier."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import model_snapshot
import pytest
import torch
from per_sample import bits
from torch.utils.data import DataLoader
from torch.utils.data import Dataset

from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust.engine.data import load_samples


@dataclass
class ImageClassifierOutput:
    """What a Hugging Face classifier returns: an object holding `logits` (and more)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None


class HFStyle(torch.nn.Module):
    """A stand-in for a Hugging Face image classifier: the input by keyword
    (`model(pixel_values=x)`), an output object with `.logits`."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(
        self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> ImageClassifierOutput:
        assert pixel_values is not None, "called without pixel_values="
        return ImageClassifierOutput(self.inner(pixel_values))


class KeywordOnly(torch.nn.Module):
    """A model whose input can only be passed by keyword, returning a dict."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *, input_values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"hidden": input_values.flatten(1), "logits": self.inner(input_values)}


class DictItems(Dataset):
    """A map-style Dataset of Hugging Face-style items."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, key: str = "pixel_values") -> None:
        self.x, self.y, self.key = x, y, key

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {self.key: self.x[i], "labels": int(self.y[i]), "id": f"sample-{i}"}


@pytest.fixture
def small(digits_data):
    x, y = digits_data
    return x[:60], y[:60]


def test_every_dict_form_gives_the_samples_of_the_pair(small):
    x, y = small
    keys = ("pixel_values", "labels")
    forms = [
        DictItems(x, y),  # read lazily by index
        DataLoader(DictItems(x, y), batch_size=16),  # read in order, batch by batch
        {"pixel_values": x, "labels": y},  # one dict batch
    ]
    plain = load_samples((x, y))
    for form in forms:
        samples = load_samples(form, keys=keys)
        assert samples.fingerprint == plain.fingerprint
        assert torch.equal(samples.x, x) and torch.equal(samples.y, y)


def test_a_dict_loader_streams_and_checks_each_read(small):
    """The lazy path keeps its guarantees for dicts: a second read is checked."""
    x, y = small

    class Drifting(DictItems):
        reads = 0

        def __getitem__(self, i: int) -> dict[str, Any]:
            item = super().__getitem__(i)
            Drifting.reads += 1
            if Drifting.reads > len(self):  # the second pass sees other inputs
                item["pixel_values"] = item["pixel_values"] * 0.5
            return item

    samples = load_samples(
        DataLoader(Drifting(x, y), batch_size=16), keys=("pixel_values", "labels")
    )
    with pytest.raises(RobustConfigError, match="read again is not the sample read first"):
        samples.inputs(torch.arange(len(y)), torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("form", ["loader", "dataset"])
def test_a_hugging_face_style_model_on_dict_batches_matches_the_bare_model(form, small, digits_cnn):
    """No wrapper written by the user: inputs=/labels= name the keys, the model is called
    as model(pixel_values=x) and its `.logits` are read. Same outcome, sample by sample, as
    the bare model on the (x, y) tensors; the model comes back as it was."""
    x, y = small
    bare = evaluate(digits_cnn, (x, y), attack="pgd", eps=0.1, steps=5)
    hf = HFStyle(copy.deepcopy(digits_cnn)).train()  # handed over in train mode
    before = model_snapshot.snapshot(hf)
    data: Any = DictItems(x, y) if form == "dataset" else DataLoader(DictItems(x, y), batch_size=16)
    result = evaluate(
        hf, data, attack="pgd", eps=0.1, steps=5, inputs="pixel_values", labels="labels"
    )
    assert result.clean_correct == bare.clean_correct
    assert result.robust == bare.robust
    assert result.data_fingerprint == bare.data_fingerprint
    model_snapshot.assert_unchanged(before, hf)
    assert hf.training


@pytest.mark.parametrize("attack", ["strong", "fgsm"])  # fgsm: the clean pass is fused
def test_a_keyword_only_model_returning_a_dict_runs(attack, small, digits_cnn):
    x, y = small
    loader = DataLoader(DictItems(x, y, key="input_values"), batch_size=20)
    params: dict[str, Any] = {"steps": 5, "queries": 20} if attack == "strong" else {}
    result = evaluate(
        KeywordOnly(digits_cnn),
        loader,
        attack=attack,
        eps=0.1,
        inputs="input_values",
        labels="labels",
        **params,
    )
    bare = evaluate(digits_cnn, (x, y), attack=attack, eps=0.1, **params)
    assert result.robust == bare.robust
    assert result.clean_correct == bare.clean_correct


def test_a_positional_model_gets_its_input_positionally(small, digits_cnn):
    """forward(self, x) has no parameter named 'pixel_values': the input goes first."""
    x, y = small
    result = evaluate(
        digits_cnn, DictItems(x, y), attack="fgsm", eps=0.1, inputs="pixel_values", labels="labels"
    )
    assert result.robust == evaluate(digits_cnn, (x, y), attack="fgsm", eps=0.1).robust


def test_a_dict_without_keys_names_the_keys_it_has_and_the_fix(small, digits_cnn):
    x, y = small
    loader = DataLoader(DictItems(x, y), batch_size=16)
    with pytest.raises(RobustConfigError) as raised:
        evaluate(digits_cnn, loader, attack="fgsm", eps=0.1)
    message = str(raised.value)
    assert "['id', 'labels', 'pixel_values']" in message
    assert "inputs='pixel_values', labels='labels'" in message
    with pytest.raises(RobustConfigError, match="labels= not given"):
        evaluate(digits_cnn, loader, attack="fgsm", eps=0.1, inputs="pixel_values")
    with pytest.raises(RobustConfigError, match=r"inputs='image' is not a key of .* \['id'"):
        evaluate(digits_cnn, loader, attack="fgsm", eps=0.1, inputs="image", labels="labels")
    with pytest.raises(RobustConfigError, match="name the keys of dict batches"):
        evaluate(digits_cnn, (x, y), attack="fgsm", eps=0.1, inputs="pixel_values", labels="y")


def test_logits_are_read_by_name_and_nothing_else_is_guessed(small, digits_cnn):
    x, y = small
    bare = evaluate(digits_cnn, (x, y), attack="fgsm", eps=0.1)

    class Returns(torch.nn.Module):
        def __init__(self, make: Any) -> None:
            super().__init__()
            self.make = make

        def forward(self, x: torch.Tensor) -> Any:
            return self.make(digits_cnn(x))

    for make in (lambda z: ImageClassifierOutput(z), lambda z: {"logits": z, "aux": 0}):
        assert evaluate(Returns(make), (x, y), attack="fgsm", eps=0.1).robust == bare.robust
    with pytest.raises(RobustConfigError, match=r"a tuple index \(output=0\)"):
        evaluate(Returns(lambda z: (z, z)), (x, y), attack="fgsm", eps=0.1)
    with pytest.raises(RobustConfigError, match="output="):
        evaluate(Returns(lambda z: {"scores": z}), (x, y), attack="fgsm", eps=0.1)
    with pytest.raises(RobustConfigError, match="whose 'logits' is a list"):
        evaluate(Returns(lambda z: {"logits": [z]}), (x, y), attack="fgsm", eps=0.1)


def _binary_problem() -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """A linear binary classifier, samples labelled by it, and the closed-form robust flags
    at eps (L-inf, bounds (0, 1)): the worst point moves every input against the sign of
    the margin's weights, clipped to the bounds; samples too near a tie are left out."""
    torch.manual_seed(3)
    model = torch.nn.Linear(6, 2)
    with torch.no_grad():  # the decision boundary through the middle of the cube
        model.bias.copy_(-model.weight @ torch.full((6,), 0.5))
    eps = 0.08
    x = torch.rand(400, 6)
    with torch.no_grad():
        y = model(x).argmax(1)
        w = model.weight[y] - model.weight[1 - y]  # margin direction per sample
        b = model.bias[y] - model.bias[1 - y]
        worst = (x - eps * w.sign()).clamp(0, 1)
        margin = (w * worst).sum(1) + b
    keep = margin.abs() > 1e-3
    return model, x[keep][:120], y[keep][:120], margin[keep][:120] > 0, eps


@pytest.mark.parametrize("attack", ["strong", "autoattack"])
def test_a_binary_classifier_gets_the_presets_without_dlr(attack):
    model, x, y, robust, eps = _binary_problem()
    assert 0 < int(robust.sum()) < len(robust)  # both outcomes occur
    params: dict[str, Any] = {"queries": 50} if attack == "strong" else {}
    result = evaluate(model, (x, y), attack=attack, eps=eps, **params)
    found = bits(result.robust)
    assert torch.equal(found, robust)  # exactly the closed form
    left_out = result.details["left_out"]
    expected = {"apgd-dlr"} if attack == "strong" else {"apgd-t"}
    assert set(left_out) == expected
    assert "needs at least" in next(iter(left_out.values()))
    assert not any(name in result.details.get("broken_by", {}) for name in expected)


def test_a_dlr_attack_named_on_a_binary_classifier_still_explains_itself():
    model, x, y, _, eps = _binary_problem()
    with pytest.raises(RobustConfigError, match="needs at least 3 classes"):
        evaluate(model, (x, y), attack=["apgd-ce", "apgd-dlr"], eps=eps, steps=5)
    with pytest.raises(RobustConfigError, match="needs at least 4 classes"):
        evaluate(model, (x, y), attack="apgd-t", eps=eps, steps=5)


def test_a_multiclass_model_keeps_every_member(small, digits_cnn):
    x, y = small
    result = evaluate(digits_cnn, (x, y), attack="strong", eps=0.1, steps=5, queries=20)
    assert "left_out" not in result.details
    assert result.attack == "apgd-ce+apgd-dlr+square"


def test_a_single_logit_is_refused_with_a_fix_that_needs_no_wrapper():
    """The fix the message gives, applied as output=, gives the two-logit model's result."""
    two, x, y, robust, eps = _binary_problem()
    one = torch.nn.Linear(6, 1)
    with torch.no_grad():  # z = logit of class 1 minus logit of class 0: the same classifier
        one.weight.copy_(two.weight[1] - two.weight[0])
        one.bias.copy_(two.bias[1] - two.bias[0])
    with pytest.raises(RobustConfigError, match=r"one score per input.*output=lambda z: torch"):
        evaluate(one, (x, y), attack="fgsm", eps=eps)
    result = evaluate(
        one,
        (x, y),
        attack="strong",
        eps=eps,
        queries=50,
        output=lambda z: torch.cat([torch.zeros_like(z), z], dim=1),
    )
    assert result.robust == "".join("1" if r else "0" for r in robust.tolist())


def test_a_randomly_initialised_transformers_vit_runs_as_it_is(small):
    """The real thing where `transformers` is installed (not a dependency): a tiny random
    ViTForImageClassification on dict items, no wrapper, equal to the same ViT called
    through a plain positional adapter."""
    transformers = pytest.importorskip("transformers")
    x, y = small
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=10,
    )
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():
        y = vit(pixel_values=x).logits.argmax(1)  # every sample clean-correct

    class Plain(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return vit(pixel_values=images).logits

    result = evaluate(
        vit,
        DictItems(x, y),
        attack="pgd",
        eps=0.05,
        steps=5,
        inputs="pixel_values",
        labels="labels",
    )
    assert result.robust == evaluate(Plain(), (x, y), attack="pgd", eps=0.05, steps=5).robust
