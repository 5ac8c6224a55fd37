"""check="certify", method="ibp": the bounds are sound (Hypothesis: random networks, random
points of the box), the certified counts equal a plain interval-arithmetic reference, no
certified sample is ever broken by an attack, and what IBP cannot bound is refused."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
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
from pytest_robust.checks.certify import bounds_of
from pytest_robust.checks.certify import chain_of
from pytest_robust.checks.certify import input_box
from pytest_robust.checks.certify import margin_lower_bounds

BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "mlp": lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, 12),
        nn.LeakyReLU(0.1),
        nn.Linear(12, 8),
        nn.Tanh(),
        nn.Linear(8, 5),
    ),
    "conv_bn_pool": lambda: nn.Sequential(
        Normalize([0.4], [0.3]),
        nn.Conv2d(1, 3, 3, padding=1),
        batch_norm(3, True),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 2, padding=1, stride=1),
        nn.Sigmoid(),
        nn.AvgPool2d(2, ceil_mode=True),
        nn.Flatten(),
        nn.Linear(16, 5),
    ),
    "nested": lambda: nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 2, stride=2), nn.ELU()),
        nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()),
        batch_norm(8, False),
        nn.ReLU6(),
        nn.Sequential(nn.Linear(8, 6), nn.Hardtanh()),
        nn.AdaptiveMaxPool1d(4),
        nn.Linear(4, 5),
    ),
    "activations": lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, 8),
        nn.Softplus(),
        nn.Linear(8, 8),
        nn.SELU(),
        nn.Dropout(),
        nn.Linear(8, 8),
        nn.Hardsigmoid(),
        nn.Linear(8, 8),
        nn.CELU(),
        nn.Linear(8, 5),
        nn.ReLU(),  # ends without a Linear: no elision
    ),
    "traced": Traced,
}


def _network(kind: str, seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BUILDERS[kind]().double().eval()


def _points(x: torch.Tensor, eps: float, bounds: tuple[float, float], seed: int) -> torch.Tensor:
    """32 points of the box around each sample: 16 random corners, 16 inside (K, B, ...)."""
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (16, *x.shape), generator=generator).double() * 2 - 1
    inside = torch.rand((16, *x.shape), generator=generator, dtype=torch.float64) * 2 - 1
    return (x + torch.cat([signs, inside]) * eps).clamp(*bounds)


def _violation(
    model: nn.Module, x: torch.Tensor, eps: float, bounds: tuple[float, float], seed: int
) -> float:
    """The largest amount by which a logit or a margin of a point in the box leaves the
    IBP bounds (<= 0 when sound), relative to the logits' scale."""
    layers = [layer.module for layer in chain_of(model)]
    labels = torch.arange(len(x)) % 5
    with torch.no_grad():
        lower, upper = bounds_of(layers, input_box(x, eps, bounds))
        margins = margin_lower_bounds(layers, input_box(x, eps, bounds), labels)
        margins = margins.scatter(1, labels[:, None], -math.inf)  # not a margin: y - y
        worst = -math.inf
        for point in _points(x, eps, bounds, seed):
            z = model(point)
            scale = 1 + z.abs().max().item()
            true_margins = z.gather(1, labels[:, None]) - z
            worst = max(
                worst,
                (lower - z).max().item() / scale,
                (z - upper).max().item() / scale,
                (margins - true_margins).max().item() / scale,
            )
    return worst


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(sorted(BUILDERS)),
    seed=st.integers(0, 2**16),
    eps=st.floats(0.0, 0.3),
    bounds=st.sampled_from([(0.0, 1.0), (-1.0, 2.0)]),
)
def test_logits_of_points_in_the_box_lie_inside_the_ibp_bounds(
    kind: str, seed: int, eps: float, bounds: tuple[float, float]
) -> None:
    model = _network(kind, seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((3, 1, 4, 4), generator=generator, dtype=torch.float64)
    x = x * (bounds[1] - bounds[0]) + bounds[0]
    assert _violation(model, x, eps, bounds, seed) <= 1e-9


def test_the_soundness_property_catches_a_wrong_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A property that cannot fail proves nothing: with |W| replaced by W in the radius of
    a Linear layer, the same points leave the bounds."""
    sound = certify.propagate

    def wrong(layer: nn.Module, box: certify.Box) -> certify.Box:
        if isinstance(layer, nn.Linear):
            lower, upper = box
            centre, radius = (upper + lower) / 2, (upper - lower) / 2
            centre = F.linear(centre, layer.weight, layer.bias)
            radius = F.linear(radius, layer.weight).abs()  # not |W| r: too small
            return centre - radius, centre + radius
        return sound(layer, box)

    monkeypatch.setattr(certify, "propagate", wrong)
    x = torch.rand((3, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert _violation(_network("mlp", 0), x, 0.2, (0.0, 1.0), 0) > 1e-3


# --- digits: a small MLP (digits_mlp, tests/conftest.py) -----------------------------------


def _reference_certified(
    model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps: float
) -> torch.Tensor:
    """Plain interval arithmetic over W+ and W-, the last layer elided by explicit loops."""
    first, last = model[1], model[3]
    assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
    lo = (x.flatten(1).double() - eps).clamp(0, 1)
    hi = (x.flatten(1).double() + eps).clamp(0, 1)
    w, b = first.weight.double(), first.bias.double()
    low = (lo @ w.clamp(min=0).T + hi @ w.clamp(max=0).T + b).relu()
    high = (hi @ w.clamp(min=0).T + lo @ w.clamp(max=0).T + b).relu()
    v, c = last.weight.double(), last.bias.double()
    clean_correct = model(x).argmax(1) == y
    out = []
    for i, label in enumerate(y.tolist()):
        certain = bool(clean_correct[i])
        for j in range(v.shape[0]):
            if j != label:
                d = v[label] - v[j]
                bound = d.clamp(min=0) @ low[i] + d.clamp(max=0) @ high[i] + c[label] - c[j]
                certain = certain and bool(bound > 0)
        out.append(certain)
    return torch.tensor(out)


@pytest.mark.parametrize("eps", [0.005, 0.02, 0.05])
def test_certified_counts_equal_a_reference_interval_computation(
    digits_mlp: nn.Sequential, digits_data: tuple[torch.Tensor, torch.Tensor], eps: float
) -> None:
    x, y = digits_data
    result = pytest_robust.evaluate(digits_mlp, (x, y), check="certify", method="ibp", eps=eps)
    expected = _reference_certified(digits_mlp, x, y, eps)
    assert 0 < int(expected.sum()) < result.n_clean_correct  # neither vacuous nor trivial
    assert torch.equal(bits(result.robust), expected)
    assert result.details["bound"] == "certified"


def test_eps_zero_certifies_exactly_the_clean_correct_samples(
    digits_cnn: nn.Module, digits_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    result = pytest_robust.evaluate(digits_cnn, digits_data, check="certify", method="ibp", eps=0)
    assert result.robust == result.clean_correct
    assert result.n_robust == result.n_clean_correct > 400


def test_no_certified_sample_is_broken_by_pgd_apgd_square_or_their_worst_case(
    digits_mlp: nn.Sequential, digits_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y, eps = digits_data[0][:150], digits_data[1][:150], 0.04
    certified = pytest_robust.evaluate(digits_mlp, (x, y), check="certify", method="ibp", eps=eps)
    attacked = pytest_robust.evaluate(
        digits_mlp, (x, y), attack=["pgd", "apgd", "square"], eps=eps, queries=300, steps=20
    )
    proven = bits(certified.robust)
    assert int(proven.sum()) > 20  # the check is not vacuous
    # The worst case is robust only where every attack failed, so this covers each attack.
    survived = bits(attacked.robust)
    assert not bool((proven & ~survived).any())
    assert int((~proven & bits(attacked.clean_correct) & ~survived).sum()) > 0  # attacks bite
    assert certified.robust_acc <= attacked.robust_acc


# --- what IBP cannot bound is refused, naming it ------------------------------------------


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.out(self.fc(x) + x)


class Doubled(nn.Linear):
    """Looks like a Linear layer, computes twice one: only the chain check can tell."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return 2 * super().__call__(x)


def _with_patched_forward() -> nn.Module:
    layer = nn.Linear(64, 10)
    layer.forward = lambda x: F.linear(x, layer.weight)  # type: ignore[method-assign,assignment]
    return nn.Sequential(nn.Flatten(), layer)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.GELU(), nn.Linear(8, 10)),
            "cannot bound layer '2' (GELU): it is not monotone",
        ),
        (
            lambda: nn.Sequential(
                nn.Flatten(), nn.Sequential(nn.Linear(64, 8), nn.LeakyReLU(-1.0)), nn.Linear(8, 10)
            ),
            "cannot bound layer '1.1' (LeakyReLU): a negative slope",
        ),
        (Residual, "cannot bound the model (Residual): its forward calls add()"),
        (_with_patched_forward, "layer '1' (Linear): its forward is not the standard one"),
        (
            lambda: nn.Sequential(nn.Flatten(), Doubled(64, 10)),
            "do not reproduce its logits",
        ),
        (
            lambda: nn.Sequential(
                nn.Flatten(), nn.BatchNorm1d(64, track_running_stats=False), nn.Linear(64, 10)
            ),
            "layer '1' (BatchNorm1d): without running statistics",
        ),
    ],
)
def test_a_model_ibp_cannot_bound_is_refused_naming_the_layer(
    build: Callable[[], nn.Module], message: str, digits_data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    model = build().train()
    with pytest.raises(RobustConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pytest_robust.evaluate(model, digits_data, check="certify", method="ibp", eps=0.01)
    assert model.training  # borrowed and given back, also when refused


def test_a_forward_hook_is_refused() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    model[1].register_forward_hook(lambda module, args, out: out * 2)
    with pytest.raises(RobustConfigError, match=r"layer '1' \(Linear\): a forward hook"):
        chain_of(model)
