"""A cached value (clean logits, sanity flags) is reused only for the same model: twins that
share their weights but differ in a parameter-free module, a plain attribute, a buffer, a
submodule, their forward code, a hook or the output= adapter never share what was cached,
and a genuine hit still saves the forward passes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_wrappers import counting_linear
from torch import nn

from pytest_robust import EvaluationCache
from pytest_robust import evaluate
from pytest_robust.engine.fingerprint import model_identity
from pytest_robust.engine.fingerprint import value_identity

GATE: dict[str, Any] = {"attack": "pgd", "eps": 0.1, "steps": 5, "min_acc": 0.9, "max_samples": 60}


class Round4(nn.Module):
    """Quantises its input to quarters: zero gradients almost everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 4) / 4


class Temperature(nn.Module):
    """The inner model's logits divided by a plain float attribute."""

    def __init__(self, inner: nn.Module, t: float) -> None:
        super().__init__()
        self.inner, self.t = inner, t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) / self.t


def test_round4_twin_does_not_inherit_the_identity_twins_flags(digits_cnn, digits_data):
    cache = EvaluationCache()
    evaluate(nn.Sequential(nn.Identity(), digits_cnn), digits_data, cache=cache, **GATE)
    twin = evaluate(nn.Sequential(Round4(), digits_cnn), digits_data, cache=cache, **GATE)
    alone = evaluate(nn.Sequential(Round4(), digits_cnn), digits_data, **GATE)
    assert "zero_gradients" in [flag["name"] for flag in alone.flags]
    assert twin.flags == alone.flags
    assert twin.clean_correct == alone.clean_correct
    assert twin.status == alone.status == "fail"


def test_temperature_twin_does_not_inherit_the_first_temperatures_results(digits_cnn, digits_data):
    cache = EvaluationCache()
    evaluate(Temperature(digits_cnn, 1.0), digits_data, cache=cache, **GATE)
    twin = evaluate(Temperature(digits_cnn, 1e-4), digits_data, cache=cache, **GATE)
    alone = evaluate(Temperature(digits_cnn, 1e-4), digits_data, **GATE)
    assert twin.flags == alone.flags
    assert twin.status == alone.status


# --- the matrix: twins that share every weight ------------------------------------------


class Shift(nn.Module):
    """Logits rolled by an int attribute; `on` (a bool attribute) switches it."""

    def __init__(self, inner: nn.Module, k: int = 0, on: bool = True) -> None:
        super().__init__()
        self.inner, self.k, self.on = inner, k, on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out.roll(self.k, dims=1) if self.on else out


class Scaled(nn.Module):
    """Inputs multiplied by a buffer."""

    scale: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, inner: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("scale", torch.tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * self.scale)


class Pair(nn.Module):
    """Returns (logits, logits / 1e4): output= picks one."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.inner(x)
        return out, out / 1e4


class Code(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class OtherCode(Code):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.clamp(0.25, 0.75))


# Same qualified name, same module, same weights: only forward's code differs.
OtherCode.__name__ = OtherCode.__qualname__ = "Code"


def hooked(net: nn.Module) -> nn.Module:
    model = nn.Sequential(nn.Identity(), net)
    model.register_forward_hook(lambda module, args, out: out * 1e-4)
    return model


def twins(net: nn.Module) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
    """Models (and output= adapters) that differ from each other in one thing only."""
    return {
        "identity": (nn.Sequential(nn.Identity(), net), {}),
        "round4 (parameter-free module swapped)": (nn.Sequential(Round4(), net), {}),
        "hardtanh (submodule swapped)": (nn.Sequential(nn.Hardtanh(0.0, 1.0), net), {}),
        "identity added": (nn.Sequential(nn.Identity(), net, nn.Identity()), {}),
        "t=1": (Temperature(net, 1.0), {}),
        "t=1e-4 (float attribute)": (Temperature(net, 1e-4), {}),
        "k=0": (Shift(net, 0), {}),
        "k=1 (int attribute)": (Shift(net, 1), {}),
        "k=1 off (bool attribute)": (Shift(net, 1, on=False), {}),
        "scale=1": (Scaled(net, 1.0), {}),
        "scale=0.5 (buffer)": (Scaled(net, 0.5), {}),
        "code": (Code(net), {}),
        "other code (forward changed)": (OtherCode(net), {}),
        "hooked (forward hook)": (hooked(net), {}),
        "output=0": (Pair(net), {"output": lambda out: out[0]}),
        "output=1 (adapter changed)": (Pair(net), {"output": lambda out: out[1]}),
    }


def test_every_twin_has_its_own_identity(digits_cnn):
    models = twins(digits_cnn)
    identities = {name: model_identity(model) for name, (model, _) in models.items()}
    assert None not in identities.values()
    # output= is part of the cache key, not of the model: the two Pair entries share one.
    assert len(set(identities.values())) == len(models) - 1
    adapters = [value_identity(kwargs["output"]) for _, kwargs in models.values() if kwargs]
    assert len(set(adapters)) == 2 and None not in adapters
    # Identities are stable: the same model, described again, is the same.
    for name, (model, _) in models.items():
        assert model_identity(model) == identities[name], name


CHEAP: dict[str, Any] = {"attack": "fgsm", "eps": 0.05, "max_samples": 40, "min_acc": 0.5}


def test_no_twin_is_served_what_another_twin_left_in_the_cache(digits_cnn, digits_data):
    """Each twin, evaluated after all the others in one cache, does exactly the work it does
    alone (its clean pass and its flags are computed, not inherited), and gets the same
    result; the same model again does less work (a genuine hit)."""
    weight = digits_cnn.classifier[-1].weight
    shared = EvaluationCache()
    for name, (model, kwargs) in twins(digits_cnn).items():
        with counting_linear(weight) as after_others:
            in_shared = evaluate(model, digits_data, cache=shared, **CHEAP, **kwargs)
        with counting_linear(weight) as alone_count:
            alone = evaluate(model, digits_data, cache=EvaluationCache(), **CHEAP, **kwargs)
        assert after_others[0] == alone_count[0], name
        assert in_shared.flags == alone.flags, name
        assert (in_shared.clean_correct, in_shared.robust) == (alone.clean_correct, alone.robust)
        with counting_linear(weight) as again:
            evaluate(model, digits_data, cache=shared, **CHEAP, **kwargs)
        assert again[0] <= alone_count[0] - in_shared.n, name  # no clean pass, no flags


def test_a_genuine_hit_saves_the_clean_pass_and_the_flags(digits_cnn, digits_data):
    weight = digits_cnn.classifier[-1].weight
    cache, model = EvaluationCache(), Temperature(digits_cnn, 1.0)
    gate: dict[str, Any] = {**CHEAP, "max_samples": 100}
    with counting_linear(weight) as first:
        one = evaluate(model, digits_data, cache=cache, **gate)
    with counting_linear(weight) as second:
        two = evaluate(model, digits_data, cache=cache, **gate)
    # The clean pass (100 samples) and the flags' forward passes are not repeated.
    assert second[0] <= first[0] - 100
    assert (one.robust, one.flags) == (two.robust, two.flags)
    # A model rebuilt with the same content is the same model: still a hit.
    with counting_linear(weight) as rebuilt:
        evaluate(Temperature(digits_cnn, 1.0), digits_data, cache=cache, **gate)
    assert rebuilt[0] == second[0]


def test_a_model_changed_in_place_is_evaluated_again(digits_cnn, digits_data):
    weight = digits_cnn.classifier[-1].weight
    cache, model = EvaluationCache(), Temperature(digits_cnn, 1.0)
    evaluate(model, digits_data, cache=cache, **CHEAP)
    with counting_linear(weight) as same:
        evaluate(model, digits_data, cache=cache, **CHEAP)
    model.t = 1e-4
    with counting_linear(weight) as changed:
        evaluate(model, digits_data, cache=cache, **CHEAP)
    with counting_linear(weight) as alone:
        evaluate(model, digits_data, cache=EvaluationCache(), **CHEAP)
    assert changed[0] == alone[0] > same[0]


def test_data_changed_in_place_is_read_again(digits_data):
    x, y = digits_data[0].clone(), digits_data[1].clone()
    cache, pair = EvaluationCache(), (x, y)
    first = cache.samples(pair, 30)
    assert cache.samples(pair, 30) is first
    x[0].fill_(0.5)
    again = cache.samples(pair, 30)
    assert again is not first and again.fingerprint != first.fingerprint


class Unreadable(nn.Module):
    """Holds a generator (state outside any __dict__): its identity cannot be established."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.generator = inner, torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_a_model_whose_identity_cannot_be_established_is_never_served_from_the_cache(
    digits_cnn, digits_data
):
    model = Unreadable(digits_cnn)
    assert model_identity(model) is None
    weight = digits_cnn.classifier[-1].weight
    cache = EvaluationCache()
    with counting_linear(weight) as first:
        evaluate(model, digits_data, cache=cache, **CHEAP)
    with counting_linear(weight) as second:
        evaluate(model, digits_data, cache=cache, **CHEAP)
    assert first[0] == second[0] > 0


def test_identity_covers_closures_globals_and_cycles():
    scale = [1.0]

    def adapter(out: torch.Tensor) -> torch.Tensor:
        return out * scale[0]

    before = value_identity(adapter)
    scale[0] = 2.0
    assert value_identity(adapter) != before
    cyclic = nn.Sequential(nn.Identity())
    cyclic.parent_ref = [cyclic]  # type: ignore[assignment]  # a plain attribute, pointing back
    assert model_identity(cyclic) is not None
    assert model_identity(cyclic) == model_identity(cyclic)
    shared = nn.Linear(2, 2)
    assert model_identity(nn.Sequential(shared, shared)) != model_identity(
        nn.Sequential(shared, nn.Linear(2, 2))
    )


@pytest.mark.parametrize("value", [None, 3, "logits", (1, 2)])
def test_plain_output_adapters_have_an_identity(value):
    assert value_identity(value) is not None
