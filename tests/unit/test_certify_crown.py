"""check="certify", method="crown": the linear bounds are sound (Hypothesis: random ReLU
networks, random points of the box or of the L2 ball), never looser than IBP, exact where
the network is linear on the box (closed form), tighter than IBP on a digits MLP without
any certified sample broken, and what CROWN does not relax is refused naming the layer."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import cast

import pytest
import torch
from certify_nets import Traced
from certify_nets import batch_norm
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from per_sample import bits
from torch import nn

import pytest_robust
from pytest_robust import Normalize
from pytest_robust import RobustConfigError
from pytest_robust.checks import certify
from pytest_robust.checks import crown
from pytest_robust.checks.certify import chain_of
from pytest_robust.checks.certify import input_box
from pytest_robust.checks.crown import Crown

BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "mlp": lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, 12),
        nn.ReLU(),
        nn.Linear(12, 8),
        nn.ReLU(),
        nn.Linear(8, 5),
    ),
    "conv_bn_pool": lambda: nn.Sequential(
        Normalize([0.4], [0.3]),
        nn.Conv2d(1, 3, 3, padding=1),
        batch_norm(3, True),
        nn.ReLU(),
        nn.AvgPool2d(2, ceil_mode=True),
        nn.Conv2d(3, 4, 2, padding=1, stride=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(36, 5),
    ),
    "nested": lambda: nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 2, stride=2), nn.ReLU()),
        nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()),
        batch_norm(8, False),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Sequential(nn.Linear(8, 6), nn.ReLU()),
        nn.Linear(6, 5),
        nn.ReLU(),  # ends without a Linear
    ),
    "traced": Traced,
}


def _network(kind: str, seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BUILDERS[kind]().double().eval()


def _points(
    x: torch.Tensor, eps: float, norm: str, bounds: tuple[float, float], seed: int
) -> torch.Tensor:
    """32 points of the box (16 random corners, 16 inside) or of the L2 ball (16 on the
    sphere, 16 inside) around each sample, clamped to the bounds (which moves a point of
    the ball towards x, so it stays in the ball)."""
    generator = torch.Generator().manual_seed(seed)
    if norm == "linf":
        signs = torch.randint(0, 2, (16, *x.shape), generator=generator).double() * 2 - 1
        inside = torch.rand((16, *x.shape), generator=generator, dtype=torch.float64) * 2 - 1
        steps = torch.cat([signs, inside]) * eps
    else:
        direction = torch.randn((32, *x.shape), generator=generator, dtype=torch.float64)
        length = direction.flatten(2).norm(dim=2).reshape(32, len(x), *([1] * (x.dim() - 1)))
        scale = torch.cat([torch.ones(16), torch.rand(16, generator=generator)]).double()
        steps = direction / length * eps * scale.reshape(32, *([1] * x.dim()))
    return (x + steps).clamp(*bounds)


def _crown_and_ibp(
    model: nn.Module, x: torch.Tensor, eps: float, norm: str, bounds: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    layers = chain_of(model)
    crown.check_layers(layers)
    modules = [layer.module for layer in layers]
    labels = torch.arange(len(x)) % 5
    box = input_box(x, eps, bounds)
    with torch.no_grad():
        tight = Crown(modules, torch.device("cpu")).margin_lower_bounds(
            box, labels, (x, eps) if norm == "l2" else None
        )
        loose = certify.margin_lower_bounds(modules, box, labels)
    return tight, loose, labels


def _violation(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    norm: str,
    bounds: tuple[float, float],
    seed: int,
) -> float:
    """The largest amount by which a margin of a point in the box or ball falls below
    CROWN's bound (<= 0 when sound), relative to the logits' scale."""
    margins, _, labels = _crown_and_ibp(model, x, eps, norm, bounds)
    margins = margins.scatter(1, labels[:, None], -math.inf)  # not a margin: y - y
    worst = -math.inf
    with torch.no_grad():
        for point in _points(x, eps, norm, bounds, seed):
            z = model(point)
            scale = 1 + z.abs().max().item()
            worst = max(worst, (margins - (z.gather(1, labels[:, None]) - z)).max().item() / scale)
    return worst


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(sorted(BUILDERS)),
    seed=st.integers(0, 2**16),
    eps=st.floats(0.0, 0.3),
    norm=st.sampled_from(["linf", "l2"]),
    bounds=st.sampled_from([(0.0, 1.0), (-1.0, 2.0)]),
)
def test_margins_of_points_in_the_box_or_ball_lie_above_the_crown_bounds(
    kind: str, seed: int, eps: float, norm: str, bounds: tuple[float, float]
) -> None:
    model = _network(kind, seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((3, 1, 4, 4), generator=generator, dtype=torch.float64)
    x = x * (bounds[1] - bounds[0]) + bounds[0]
    assert _violation(model, x, eps, norm, bounds, seed) <= 1e-9
    tight, loose, _ = _crown_and_ibp(model, x, eps, norm, bounds)
    assert bool((tight >= loose).all())  # crown certifies whatever ibp certifies


SOUND = crown.relaxation


@pytest.mark.parametrize(
    "wrong",
    [
        # The chord's intercept dropped: the upper line passes below relu at 0.
        lambda low, high: (*SOUND(low, high)[:2], torch.zeros_like(low)),
        # Half the chord's slope: the upper line passes below relu at the right end.
        # (Any lower slope in [0, 1] is sound, so changing that choice is no mutation.)
        lambda low, high: (SOUND(low, high)[0], SOUND(low, high)[1] / 2, SOUND(low, high)[2]),
    ],
)
def test_the_soundness_property_catches_a_wrong_relaxation(
    monkeypatch: pytest.MonkeyPatch,
    wrong: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]],
) -> None:
    """A property that cannot fail proves nothing: with a relaxation that does not enclose
    relu, points of the box fall below the bounds."""
    monkeypatch.setattr(crown, "relaxation", wrong)
    x = torch.rand((3, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = _network("mlp", 0)
    assert _violation(model, x, 0.3, "linf", (0.0, 1.0), 0) > 1e-2


def test_crown_is_exact_where_the_network_is_linear_on_the_box() -> None:
    """Closed form: hidden h = (sum(x) + 5) twice (always active), logits [0, 2 h1 - h2 - 10]
    = [0, sum(x) - 5]. The true margin bound is |s| - 10 eps; IBP, treating h1 and h2 as
    independent, gets |s| - 30 eps; CROWN, carrying the linear function back, gets the
    exact value."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    first, second = cast(nn.Linear, model[1]), cast(nn.Linear, model[3])
    with torch.no_grad():
        first.weight.fill_(1.0)
        first.bias.fill_(5.0)
        second.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, -1.0]]))
        second.bias.copy_(torch.tensor([0.0, -10.0]))
    x = torch.tensor([[0.55] * 10, [0.3] * 10], dtype=torch.float64)  # s = 0.5 and -2
    labels = torch.tensor([1, 0])
    box = input_box(x, 0.03, (0.0, 1.0))
    with torch.no_grad():
        tight = Crown(list(model), torch.device("cpu")).margin_lower_bounds(box, labels)
        loose = certify.margin_lower_bounds(list(model), box, labels)
    other = 1 - labels[:, None]
    expected = torch.tensor([0.5 - 0.3, 2.0 - 0.3], dtype=torch.float64)
    assert torch.allclose(tight.gather(1, other).flatten(), expected, atol=1e-12)
    assert torch.allclose(loose.gather(1, other).flatten(), expected - 0.6, atol=1e-12)


# --- digits: a small MLP (digits_mlp, tests/conftest.py) -----------------------------------


def test_crown_certifies_more_than_ibp_and_no_certified_sample_is_broken(
    digits_mlp: nn.Sequential, digits_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """On the digits MLP at eps 0.02: CROWN's certified samples include IBP's and more, and
    none of them is broken by PGD, APGD, Square or their worst case."""
    x, y, eps = digits_data[0][:150], digits_data[1][:150], 0.02
    ibp = pytest_robust.evaluate(digits_mlp, (x, y), check="certify", method="ibp", eps=eps)
    tight = pytest_robust.evaluate(digits_mlp, (x, y), check="certify", method="crown", eps=eps)
    attacked = pytest_robust.evaluate(
        digits_mlp, (x, y), attack=["pgd", "apgd", "square"], eps=eps, queries=300, steps=20
    )
    proven, loose, survived = bits(tight.robust), bits(ibp.robust), bits(attacked.robust)
    assert bool((loose <= proven).all())
    assert int(proven.sum()) > int(loose.sum()) + 10  # strictly tighter, by a margin
    assert not bool((proven & ~survived).any())
    assert tight.attack == "certify-crown" and tight.details["bound"] == "certified"
    assert tight.details["backward_passes"] > 1


def test_eps_zero_certifies_exactly_the_clean_correct_samples(
    digits_mlp: nn.Sequential, digits_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = digits_data[0][:100], digits_data[1][:100]
    before = {k: v.clone() for k, v in digits_mlp.state_dict().items()}
    result = pytest_robust.evaluate(digits_mlp, (x, y), check="certify", method="crown", eps=0)
    assert result.robust == result.clean_correct and result.n_robust > 80
    after = digits_mlp.state_dict()  # the float64 copies never touch the model
    assert all(v.dtype == torch.float32 and torch.equal(v, after[k]) for k, v in before.items())


# --- what CROWN does not relax is refused, naming it ----------------------------------------


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)), "'2' (Tanh)"),
        (
            nn.Sequential(
                nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 10)
            ),
            "'2' (MaxPool2d): max pooling is not linear",
        ),
    ],
)
def test_a_layer_crown_does_not_relax_is_refused_naming_it_and_suggesting_ibp(
    model: nn.Module, named: str, digits_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    data = (digits_data[0][:8], digits_data[1][:8])
    with pytest.raises(RobustConfigError) as error:
        pytest_robust.evaluate(model.eval(), data, check="certify", method="crown", eps=0.01)
    assert named in str(error.value) and "Use method='ibp'" in str(error.value)
    ibp = pytest_robust.evaluate(model, data, check="certify", method="ibp", eps=0.01)
    assert ibp.n == 8  # IBP bounds the same model


def test_a_model_no_certificate_bounds_is_refused_without_naming_only_ibp(
    digits_data: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """The chain reader is shared by both methods: its refusal must not tell a CROWN user
    that "IBP" cannot bound the model (it said so before)."""

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.flat = nn.Flatten()
            self.linear = nn.Linear(64, 64)
            self.head = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.flat(x)
            return self.head(h + self.linear(h))

    data = (digits_data[0][:4], digits_data[1][:4])
    with pytest.raises(RobustConfigError) as error:
        pytest_robust.evaluate(Residual().eval(), data, check="certify", method="crown", eps=0.01)
    text = str(error.value)
    assert "cannot bound the model (Residual)" in text
    assert "A certificate (ibp, crown) bounds" in text and "IBP" not in text


@pytest.mark.parametrize("kind", ["mlp", "conv_bn_pool"])
def test_crown_agrees_with_auto_lirpa(kind: str) -> None:
    """Optional peer check (auto_LiRPA is not a dependency and is not installed in CI):
    plain CROWN (no IBP intersections, as auto_LiRPA's method="CROWN") gives auto_LiRPA's
    margin bounds. (With IBP, the default, intermediate intervals differ, and so may the
    adaptive lower slopes: bounds then differ either way, all sound.)"""
    with warnings.catch_warnings():  # it warns on import (torch.jit.script is deprecated)
        warnings.simplefilter("ignore")
        auto_lirpa = pytest.importorskip("auto_LiRPA")
    model = cast(nn.Sequential, _network(kind, 1))  # "mlp" and "conv_bn_pool" are Sequential
    if kind == "conv_bn_pool":
        # auto_LiRPA mishandles pytest_robust.Normalize's (1, C, 1, 1) buffers (it warns
        # "Constant operand of node BoundSub has batch dimension"); its bounds there were
        # measured above the smallest margin found at corners of the box: unsound.
        model[0] = nn.Identity()
    x = torch.rand((4, 1, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.arange(4) % 5
    eps = 0.05
    eye = torch.eye(5, dtype=torch.float64)
    spec = eye[labels][:, None, :] - eye[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bounded = auto_lirpa.BoundedModule(model, torch.zeros_like(x))
        perturbation = auto_lirpa.PerturbationLpNorm(
            norm=math.inf, x_L=(x - eps).clamp(0, 1), x_U=(x + eps).clamp(0, 1)
        )
        theirs, _ = bounded.compute_bounds(
            x=(auto_lirpa.BoundedTensor(x, perturbation),), C=spec, method="CROWN"
        )
    _, loose, _ = _crown_and_ibp(model, x, eps, "linf", (0.0, 1.0))
    box = input_box(x, eps, (0.0, 1.0))
    with torch.no_grad():
        plain = Crown(list(model), torch.device("cpu"), with_ibp=False)
        ours = plain.margin_lower_bounds(box, labels)
    keep = torch.ones(4, 5, dtype=torch.bool).scatter(1, labels[:, None], False)
    assert bool((theirs[keep] > loose[keep] + 1e-3).any())  # CROWN is tighter here
    assert torch.allclose(ours[keep], theirs[keep].detach(), atol=1e-6)
