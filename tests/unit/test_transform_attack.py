"""attack='transform': models invariant by construction survive, a one-pixel reader breaks at
the smallest shift, and the threat model is the box of transformation parameters."""

from __future__ import annotations

import pytest
import torch

import pytest_robust.attacks.transform_ops as T
from pytest_robust import Attack
from pytest_robust import AttackBatch
from pytest_robust import RobustConfigError
from pytest_robust import evaluate
from pytest_robust import register_attack
from pytest_robust.engine import CounterexampleMemory
from pytest_robust.engine import DictStore


class SumOfPixels(torch.nn.Module):
    """Class 1 iff the total ink exceeds 8: invariant to any translation that keeps the
    content in the frame (bilinear interpolation moves mass, it does not create it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.sum(dim=(1, 2, 3)) - 8.0
        return torch.stack([-score, score], dim=1)


class PooledPointwise(torch.nn.Module):
    """A 1x1 convolution (equivariant to shifts), then a sum over all positions: invariant
    to whole-pixel shifts of content surrounded by background."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Conv2d(1, 6, 1)
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.features(x)).sum(dim=(2, 3)))


class OnePixel(torch.nn.Module):
    """Class 1 iff pixel (4, 4) is above 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x[:, 0, 4, 4] - 0.5
        return torch.stack([-p, p], dim=1) * 10


def centred_blobs(n: int, seed: int = 0) -> torch.Tensor:
    """8x8 images with random content in the central 4x4 and a 2-pixel black border."""
    x = torch.zeros(n, 1, 8, 8)
    x[..., 2:6, 2:6] = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    return x


def labelled(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep samples the model classifies with a clear margin; label them as it does."""
    with torch.no_grad():
        logits = model(x)
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-3
    return x[clear], logits.argmax(dim=1)[clear]


@pytest.mark.parametrize("search", ["grid", "random", "grad"])
def test_a_model_invariant_to_translation_is_never_broken(search: str) -> None:
    model = SumOfPixels()
    x, y = labelled(model, centred_blobs(60))
    assert 0 < int(y.sum()) < len(y)  # both classes present
    result = evaluate(model, (x, y), attack="transform", translate=2, search=search, budget=50)
    assert result.clean_acc == 1.0 and result.robust_acc == 1.0
    assert result.details["counterexamples"] == {}


def test_global_pooling_over_shift_equivariant_features_survives_the_shift_grid() -> None:
    model = PooledPointwise()
    x = centred_blobs(60, seed=1)
    with torch.no_grad():  # centre the logits on this data, so that every class occurs
        model.head.bias -= model(x).mean(dim=0)  # type: ignore[misc]  # bias=True: a tensor
    x, y = labelled(model, x)
    assert len(set(y.tolist())) > 1
    result = evaluate(model, (x, y), attack="transform", translate=2)
    assert result.details["search"] == "grid"
    assert result.details["tries"]["mean"] == 24  # every shift tried, none broke a sample
    assert result.robust_acc == 1.0


def one_pixel_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Ten class-1 images (pixel (4, 4) lit, a black 5x5 around it) and ten class-0 ones;
    outside that window, random ink."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 1, 8, 8, generator=g)
    x[..., 2:7, 2:7] = 0.0
    x[:10, 0, 4, 4] = 1.0
    y = torch.tensor([1] * 10 + [0] * 10)
    return x, y


def test_a_one_pixel_reader_is_broken_by_the_smallest_shift() -> None:
    x, y = one_pixel_data()
    result = evaluate(OnePixel(), (x, y), attack="transform", translate=2, rotate=10)
    assert result.clean_acc == 1.0 and result.robust_acc == 0.5  # every lit pixel moved off
    examples = result.details["counterexamples"]
    assert sorted(map(int, examples)) == list(range(10))
    for example in examples.values():
        # One whole pixel along one axis (or the half-way rotation): the smallest on the grid.
        assert example in (
            {"translate_x": 1.0},
            {"translate_x": -1.0},
            {"translate_y": 1.0},
            {"translate_y": -1.0},
            {"rotate": 5.0},
            {"rotate": -5.0},
        ), example
    assert "smallest breaking transformation: sample" in result.failure_message() or (
        result.status == "measured"
    )


@pytest.mark.parametrize("search", ["random", "grad"])
def test_search_and_shrink_stop_just_past_the_decision_boundary(search: str) -> None:
    """Under a shift (tx, ty) with |t| <= 1 the read pixel becomes (1 - |tx|)(1 - |ty|);
    shrinking leaves it just at or under 0.5, where the class flips."""
    x, y = one_pixel_data()
    result = evaluate(OnePixel(), (x, y), attack="transform", translate=1, search=search)
    assert result.robust_acc == 0.5
    for example in result.details["counterexamples"].values():
        tx, ty = abs(example.get("translate_x", 0.0)), abs(example.get("translate_y", 0.0))
        pixel = (1 - tx) * (1 - ty)
        assert 0.5 - 0.01 < pixel <= 0.5, example  # a tie goes to class 0


def test_failure_message_names_the_smallest_counterexample() -> None:
    x, y = one_pixel_data()
    result = evaluate(OnePixel(), (x, y), attack="transform", translate=2, min_acc=0.9)
    assert result.status == "fail"
    message = result.failure_message()
    assert "under transform translate=2" in message and " eps=" not in message
    assert "smallest breaking transformation: sample 0: translate_" in message
    assert result.eps is None and result.to_dict()["eps"] is None


def test_adversarial_images_are_the_reported_transformations() -> None:
    x, y = one_pixel_data()
    result = evaluate(
        OnePixel(), (x, y), attack="transform", translate=2, brightness=0.1, keep_adversarial=True
    )
    for sample, example in result.details["counterexamples"].items():
        i = int(sample)
        row = torch.tensor([[example.get(name, 0.0) for name in T.PARAMS]])
        assert torch.allclose(result.adversarial[i : i + 1], T.apply(x[i : i + 1], row))


def late_break_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Like one_pixel_data, but the 5x5 window of the class-1 images is lit except at
    (4, 2): of the shifts up to 2 pixels, only translate_x=+2 breaks them, late on the grid."""
    x, y = one_pixel_data()
    x[:10, 0, 2:7, 2:7] = 1.0
    x[:10, 0, 4, 2] = 0.0
    return x, y


def test_replay_tries_the_remembered_counterexample_first() -> None:
    x, y = late_break_data()
    memory = CounterexampleMemory(DictStore(), "test_node")
    first = evaluate(OnePixel(), (x, y), attack="transform", translate=2, memory=memory)
    assert first.details["replayed"] == 0
    again = evaluate(OnePixel(), (x, y), attack="transform", translate=2, memory=memory)
    assert again.details["replayed"] == 10
    # Each broken sample took one try (its replay); the 10 unbreakable ones the whole grid.
    assert again.details["tries"]["mean"] == (10 * 1 + 10 * 24) / 20
    assert first.details["tries"]["mean"] > again.details["tries"]["mean"]
    assert again.details["counterexamples"] == first.details["counterexamples"]
    assert set(map(str, again.details["counterexamples"].values())) == {"{'translate_x': 2.0}"}
    # A narrower range must not replay a transformation outside it.
    narrow = evaluate(OnePixel(), (x, y), attack="transform", rotate=3, memory=memory)
    assert narrow.details["replayed"] == 0


def test_brightness_contrast_and_noise_work_on_any_input_shape() -> None:
    x = torch.rand(30, 12, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    w = torch.linspace(-1, 1, 12)
    model = torch.nn.Linear(12, 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([-w, w]))
        model.bias.zero_()
        y = model(x).argmax(1)
    # Brightness adds the same value to every input: sum(w) = 0, so nothing can change.
    result = evaluate(model, (x, y), attack="transform", brightness=0.3)
    assert result.robust_acc == 1.0
    with pytest.raises(RobustConfigError, match=r"need image inputs of shape \(N, C, H, W\)"):
        evaluate(model, (x, y), attack="transform", translate=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"translate": 2, "eps": 0.1}, "eps= does not apply to attack 'transform'"),
        ({"translate": 2, "norm": "l2"}, "norm= does not apply"),
        ({}, "needs at least one transformation range"),
        ({"rotate": 200}, "rotate=200"),
        ({"translate": 1, "search": "bayes"}, "search='bayes'"),
    ],
)
def test_bad_transform_arguments_are_named(kwargs: dict[str, object], match: str) -> None:
    x, y = one_pixel_data()
    with pytest.raises(RobustConfigError, match=match):
        evaluate(OnePixel(), (x, y), attack="transform", **kwargs)  # type: ignore[arg-type]


def test_transform_cannot_share_a_worst_case_with_an_eps_ball_attack() -> None:
    x, y = one_pixel_data()
    with pytest.raises(RobustConfigError, match="not an eps-ball attack"):
        evaluate(OnePixel(), (x, y), attack=["fgsm", "transform"], eps=0.1, translate=1)
    with pytest.raises(RobustConfigError, match="via="):
        evaluate(OnePixel(), (x, y), attack="transfer", eps=0.1, via="transform")


class Escapes(Attack):
    """A bounds-only attack whose run() skips the projection: the engine must stop it."""

    name = "test-escapes"
    eps_ball = False

    def propose(self, batch: AttackBatch) -> torch.Tensor:
        return batch.x + 2.0

    def run(self, batch: AttackBatch) -> torch.Tensor:
        return self.propose(batch)


class FarButInside(Escapes):
    """Far from x (no eps applies) but inside the bounds, through the base's projection."""

    name = "test-far"
    run = Attack.run


def test_the_guard_checks_the_bounds_of_attacks_without_an_eps_ball() -> None:
    x, y = one_pixel_data()
    for cls in (Escapes, FarButInside):
        register_attack(cls)
    try:
        with pytest.raises(RuntimeError, match="outside the threat model"):
            evaluate(OnePixel(), (x, y), attack="test-escapes")
        result = evaluate(OnePixel(), (x, y), attack="test-far", keep_adversarial=True)
        assert torch.all(result.adversarial == 1.0)  # clipped to the upper bound, no ball
        assert result.robust_acc == 0.5
    finally:
        from pytest_robust.attacks import registry

        for cls in (Escapes, FarButInside):
            registry._REGISTRY.pop(cls.name, None)


def test_a_damaged_memory_is_ignored() -> None:
    x, y = one_pixel_data()
    store = DictStore()
    memory = CounterexampleMemory(store, "test_node")
    evaluate(OnePixel(), (x, y), attack="transform", translate=2, memory=memory)
    (key,) = store.entries
    store.entries[key]["samples"] = {"0": "junk", "1": {"shear": 3}, "x": {}, "2": {"rotate": "a"}}
    result = evaluate(OnePixel(), (x, y), attack="transform", translate=2, memory=memory)
    assert result.details["replayed"] == 0 and result.robust_acc == 0.5
    store.entries[key] = ["not", "a", "dict"]
    assert evaluate(OnePixel(), (x, y), attack="transform", translate=2, memory=memory).n == 20


def test_the_gradient_search_climbs_the_loss_to_the_one_breaking_direction() -> None:
    """Images lit around (4, 4) except at its left neighbour: under a shift (tx, ty) the read
    pixel is 1 - tx (1 - |ty|) for tx > 0 and 1 for tx <= 0, so only shifts right break
    them. From a start with tx > 0 the gradient leads there; with tx <= 0 the loss is flat
    and a first-order search is stuck (why the grid is the default)."""
    x = torch.zeros(40, 1, 8, 8)
    x[..., 3:6, 3:6] = 1.0
    x[..., 4, 3] = 0.0
    y = torch.ones(40, dtype=torch.long)
    grad = evaluate(OnePixel(), (x, y), attack="transform", translate=1, search="grad")
    broken = grad.n_success
    assert grad.details["tries"]["mean"] > 1
    for example in grad.details["counterexamples"].values():
        assert example["translate_x"] > 0.5  # moved right, the only way to break it
    one_draw = evaluate(
        OnePixel(), (x, y), attack="transform", translate=1, search="random", budget=1
    )
    assert broken > 2 * one_draw.n_success and broken > 10


def test_the_masking_diagnosis_is_for_eps_ball_attacks_only() -> None:
    x, y = one_pixel_data()
    with pytest.raises(RobustConfigError, match="check='masking' diagnoses gradient attacks"):
        evaluate(OnePixel(), (x, y), attack="transform", translate=1, check="masking")
    # sanity='full' on every check skips what it cannot vary (there is no eps).
    result = evaluate(OnePixel(), (x, y), attack="noise", sigma=0.1, sanity="full")
    assert result.n == 20 and "diagnosis" not in result.details
