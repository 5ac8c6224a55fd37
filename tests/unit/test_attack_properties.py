"""Properties every attack must have, whatever the model, shape, eps and norm."""

from __future__ import annotations

import torch
from every_attack import quick_arguments
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from toy_models import TinyNet

from pytest_robust import evaluate
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import registered_attacks

ATTACKS = sorted(registered_attacks())
# Attacks that are not eps-ball attacks take their own ranges instead of eps (transform:
# the kinds that take inputs of any shape).
OWN_RANGES = {
    "transform": lambda size: {"brightness": size, "contrast": min(size, 1.0), "noise": size},
    "noise": lambda size: {"sigma": size, "draws": 2},
}


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attack=st.sampled_from(ATTACKS),
    shape=shapes,
    n=st.integers(1, 12),
    eps=st.floats(0.0, 2.0),
    norm_choice=st.integers(0, 1),
    low=st.floats(-2.0, 0.5),
    width=st.floats(0.1, 3.0),
    seed=st.integers(0, 2**16),
    batch_size=st.integers(1, 8),
)
# Found by Hypothesis: ranges so small they underflow to 0 in float32 left the transform
# search no parameter to pick (an IndexError).
@example(
    attack="transform",
    shape=(1,),
    n=1,
    eps=2.9508633014140454e-245,
    norm_choice=0,
    low=0.0,
    width=1.0,
    seed=0,
    batch_size=1,
)
# The minimum-norm attacks find points beyond eps as well; they must hand back the clean
# input there, never a point that projecting would turn into an unjudged one.
@example(
    attack="fab", shape=(2, 3), n=7, eps=0.3, norm_choice=0, low=-0.5, width=1.5, seed=1,
    batch_size=3,
)  # fmt: skip
@example(
    attack="fab-t", shape=(4,), n=9, eps=0.5, norm_choice=1, low=0.0, width=1.0, seed=2,
    batch_size=4,
)  # fmt: skip
def test_adversarial_inputs_stay_in_the_ball_and_bounds(
    attack: str,
    shape: tuple[int, ...],
    n: int,
    eps: float,
    norm_choice: int,
    low: float,
    width: float,
    seed: int,
    batch_size: int,
) -> None:
    g = torch.Generator().manual_seed(seed)
    bounds = (low, low + width)
    x = torch.rand(n, *shape, generator=g) * width + low
    features = x[0].numel()
    # 5 classes: every registered attack applies (apgd-t's targeted DLR loss needs at least 4)
    model = TinyNet(features, 5, seed)
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample clean-correct, so every sample is attacked
    x_before = x.clone()
    norms = registered_attacks()[attack].norms
    norm = norms[norm_choice % len(norms)]  # only the norms the attack supports
    schema = registered_attacks()[attack]
    if attack == "fooling":  # starts from noise anywhere in the bounds: eps covers them
        eps = max(eps, width)
    sized = OWN_RANGES.get(attack)  # ranges that grow with the drawn size
    own = {**sized(eps or 0.1), "budget": 4} if sized is not None else None
    extra = quick_arguments(attack, model, eps, norm_choice, own)
    result = evaluate(
        model,
        (x, y),
        attack=attack,
        bounds=bounds,
        batch_size=batch_size,
        seed=seed,
        keep_adversarial=True,
        **extra,
    )
    adv = result.adversarial
    assert torch.equal(x, x_before), "the user's data was modified in place"
    assert adv.dtype == x.dtype and adv.shape == x.shape
    threat = ThreatModel(eps, norm, bounds) if schema.eps_ball else ThreatModel.bounds_only(bounds)
    tol = threat.tolerance()
    assert float(threat.distance(adv, x).max()) <= threat.eps + tol
    assert float(adv.min()) >= bounds[0] - tol and float(adv.max()) <= bounds[1] + tol
    # Success is judged on the returned points, not on what the attack believed.
    with torch.no_grad():
        pred = model(adv).argmax(1)
    broken = (pred != y) if not result.targeted else None
    if broken is not None:
        assert result.success == "".join("1" if b else "0" for b in broken.tolist())
    assert result.robust == "".join("1" if (p == t) else "0" for p, t in zip(pred, y, strict=True))
    if eps == 0.0 and schema.eps_ball:
        assert result.robust_acc == result.clean_acc == 1.0


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 50),
    eps=st.floats(1e-3, 3.0),
    norm=st.sampled_from(["linf", "l2"]),
    seed=st.integers(0, 2**31 - 1),
    stream=st.integers(0, 100),
)
def test_random_start_is_inside_the_ball_and_depends_only_on_seed_and_index(
    n: int, d: int, eps: float, norm: str, seed: int, stream: int
) -> None:
    threat = ThreatModel(eps, norm, (0.0, 1.0))
    x = torch.full((n, d), 0.5)
    ids = torch.arange(10, 10 + n)
    point = threat.random_point(x, seed, ids, stream)
    assert float(threat.distance(point, x).max()) <= eps + threat.tolerance()
    # The same sample gets the same start in any batch, alone or with others.
    alone = threat.random_point(x[-1:], seed, ids[-1:], stream)
    assert torch.equal(point[-1:], alone)


def test_random_start_is_roughly_uniform() -> None:
    """Mean 0.5 and variance 1/12 per coordinate for U[0, 1) numbers (the hash is sound)."""
    from pytest_robust.attacks import sampling

    u = sampling.uniform(0, torch.arange(2000), torch.Size([2000, 50]), 0, torch.float64)
    assert abs(float(u.mean()) - 0.5) < 0.005
    assert abs(float(u.var()) - 1 / 12) < 0.002
    z = sampling.normal(1, torch.arange(2000), torch.Size([2000, 50]), 0, torch.float64)
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
