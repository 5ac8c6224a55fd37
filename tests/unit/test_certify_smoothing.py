"""check="certify", method="smoothing" and pytest_robust.Smoothed: CERTIFY agrees with a plain
reference implementation (same noise: exactly; independent noise: within sampling error),
its radii are sound and tight where the smoothed classifier has a closed form (a linear
model), an attack on the smoothed classifier does not break it inside the certified radius,
and the settings are checked."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from trained_once import trained_once

import pytest_robust
from pytest_robust import RobustConfigError
from pytest_robust.checks import smoothing
from pytest_robust.checks.smoothing import Smoothed

stats = pytest.importorskip("scipy.stats")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "defenses"))
import certified_models as cm  # noqa: E402

SIGMA, N0, N, ALPHA = 0.25, 100, 1000, 0.001
SAMPLES = 50


@pytest.fixture(scope="module")
def noise_cnn(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    """The examples' small CNN trained on Gaussian noise of sigma 0.25 (~12 s on one core;
    once per xdist run)."""
    return trained_once(tmp_path_factory, "examples-noise-cnn", cm.noise_cnn)


@pytest.fixture(scope="module")
def data(digits_data: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return digits_data[0][:SAMPLES], digits_data[1][:SAMPLES]


@pytest.fixture(scope="module")
def certified(noise_cnn: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> dict:
    result = pytest_robust.evaluate(
        noise_cnn, data, check="certify", method="smoothing", sigma=SIGMA, eps=0.0, n0=N0, n=N
    )
    return {**result.details, "robust_acc": result.robust_acc, "clean_acc": result.clean_acc}


def reference_certify(
    model: nn.Module, x: torch.Tensor, select: torch.Tensor, estimate: torch.Tensor
) -> tuple[int, float]:
    """Cohen et al.'s CERTIFY, written plainly: one batch per phase, scipy's exact interval."""
    with torch.no_grad():
        guess = int(torch.bincount(model(x + select).argmax(1), minlength=10).argmax())
        n_a = int((model(x + estimate).argmax(1) == guess).sum())
    p_a = stats.binomtest(n_a, len(estimate)).proportion_ci(1 - 2 * ALPHA, method="exact").low
    return (guess, SIGMA * stats.norm.ppf(p_a)) if p_a > 0.5 else (-1, 0.0)


def stream(seed: int, sample: int, phase: int, count: int, shape: torch.Size) -> torch.Tensor:
    """The noise the check draws for one sample and phase (its documented seeding)."""
    chunks = []
    for chunk in range(math.ceil(count / smoothing.CHUNK)):
        generator = torch.Generator().manual_seed(smoothing.noise_seed(seed, sample, phase, chunk))
        chunks.append(torch.randn((smoothing.CHUNK, *shape), generator=generator))
    return SIGMA * torch.cat(chunks)[:count]


def test_same_noise_gives_the_reference_certify_exactly(
    noise_cnn: nn.Module, data: tuple[torch.Tensor, torch.Tensor], certified: dict
) -> None:
    x, y = data
    for i in range(SAMPLES):
        select = stream(0, i, smoothing.SELECT, N0, x.shape[1:])
        estimate = stream(0, i, smoothing.ESTIMATE, N, x.shape[1:])
        label, radius = reference_certify(noise_cnn, x[i], select, estimate)
        assert certified["predictions"][i] == label
        expected = radius if label == int(y[i]) else 0.0
        assert certified["radii"][i] == pytest.approx(expected, rel=1e-3, abs=1e-12)


def test_certified_accuracy_at_three_radii_agrees_with_reference_on_independent_noise(
    noise_cnn: nn.Module, data: tuple[torch.Tensor, torch.Tensor], certified: dict
) -> None:
    x, y = data
    generator = torch.Generator().manual_seed(123)
    reference = []
    for i in range(SAMPLES):
        select, estimate = (
            SIGMA * torch.randn((k, *x.shape[1:]), generator=generator) for k in (N0, N)
        )
        label, radius = reference_certify(noise_cnn, x[i], select, estimate)
        reference.append(radius if label == int(y[i]) else -1.0)
    ours = torch.tensor(certified["radii"])
    theirs = torch.tensor(reference)
    correct = torch.tensor(certified["predictions"]) == y
    for radius in (0.25, 0.4, 0.5):
        mine = float(((ours >= radius) & correct).float().mean())
        ref = float((theirs >= radius).float().mean())
        # Two independent runs of a random certifier: 3 standard deviations of the
        # difference of two proportions (the samples near the threshold flip).
        p = max(mine, ref, 0.05)
        assert abs(mine - ref) <= 3 * math.sqrt(2 * p * (1 - p) / SAMPLES), (radius, mine, ref)
        assert 0.0 < ref < 1.0  # the radius separates the samples: the comparison bites
    assert certified["clean_acc"] > 0.9


def test_radii_are_sound_and_tight_on_a_linear_model() -> None:
    """For a linear score s = w.x + b the smoothed classifier is the model itself and its
    exact certified radius is |s| / ||w||, the distance to the decision boundary."""
    generator = torch.Generator().manual_seed(1)
    w = torch.randn(10, generator=generator)
    model = nn.Linear(10, 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([-w / 2, w / 2]))
        model.bias.zero_()
    x = torch.rand((40, 10), generator=generator) - 0.5
    with torch.no_grad():
        y = model(x).argmax(1)
    exact = (x @ w).abs() / w.norm()
    result = pytest_robust.evaluate(
        model, (x, y), check="certify", method="smoothing", sigma=0.5, eps=0.0, n=2000,
        bounds=(-1.0, 1.0),
    )  # fmt: skip
    radii = torch.tensor(result.details["radii"], dtype=torch.float32)
    assert bool((radii <= exact + 1e-6).all())  # sound (fails with probability <= alpha each)
    # ...and tight where it did not abstain: short of it by the confidence slack only
    # (< 0.1 at n=2000; an abstention is CERTIFY's n0 draws picking the other class).
    answered = torch.tensor(result.details["predictions"]) != -1
    assert bool((radii[answered] >= exact[answered] - 0.1).all())
    assert int(answered.sum()) > 30


def eot_pgd_l2(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, radii: torch.Tensor
) -> torch.Tensor:
    """L2 PGD on the soft smoothed classifier: the cross-entropy of the mean softmax over
    32 noise draws (expectation over transformation), 20 steps, each sample inside its
    radius (a batch of samples at once)."""
    generator = torch.Generator().manual_seed(0)
    x_adv, step = x.clone(), (2.5 * radii / 20).view(-1, 1, 1, 1)
    radii = radii.view(-1, 1, 1, 1)
    for _ in range(20):
        x_adv.requires_grad_(True)
        noise = SIGMA * torch.randn((32, *x.shape), generator=generator)
        logits = model((x_adv.unsqueeze(0) + noise).flatten(0, 1)).view(32, len(x), -1)
        probs = F.softmax(logits, dim=2).mean(0)
        loss = -torch.log(probs.gather(1, y[:, None]) + 1e-12).sum()
        (grad,) = torch.autograd.grad(loss, x_adv)
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        x_adv = x_adv.detach() + step * grad / norm
        delta = x_adv - x
        scale = radii / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        x_adv = (x + delta * scale.clamp(max=1.0)).clamp(0, 1)
    return x_adv.detach()


def test_an_eot_attack_on_the_smoothed_classifier_breaks_nothing_inside_the_radius(
    noise_cnn: nn.Module, data: tuple[torch.Tensor, torch.Tensor], certified: dict
) -> None:
    x, y = data
    ids = torch.tensor([i for i, r in enumerate(certified["radii"]) if r > 0])
    assert len(ids) > 35
    radii = torch.tensor(certified["radii"])[ids]
    smoothed = Smoothed(noise_cnn, SIGMA, n=N, alpha=ALPHA)

    def broken(scale: float) -> tuple[int, int]:
        labels = smoothed(eot_pgd_l2(noise_cnn, x[ids], y[ids], scale * radii))
        wrong = (labels != y[ids]) & (labels != Smoothed.ABSTAIN)
        return int(wrong.sum()), int((labels == Smoothed.ABSTAIN).sum())

    inside, _ = broken(0.99)
    # CERTIFY and PREDICT each err with probability <= alpha: the number broken inside the
    # radius is at most the 99.9% quantile of Binomial(len(ids), 2 alpha) (= 1 here).
    assert inside <= stats.binom.ppf(0.999, len(ids), 2 * ALPHA), inside
    # The same attack is not toothless: at four times the radius it breaks most samples.
    outside, abstained = broken(4.0)
    assert outside + abstained > len(ids) // 2, (outside, abstained)


def test_the_statistics_are_clopper_pearson_and_the_largest_radius() -> None:
    counts = torch.tensor([0, 1, 500, 990, 1000])
    bounds = smoothing.lower_confidence_bound(counts, 1000, ALPHA)
    for k, bound in zip(counts.tolist(), bounds.tolist(), strict=True):
        expected = stats.binomtest(k, 1000).proportion_ci(1 - 2 * ALPHA, method="exact").low
        assert bound == pytest.approx(expected, abs=1e-12)
    assert float(bounds[-1]) == pytest.approx(ALPHA ** (1 / 1000))  # all n agree
    most = smoothing.largest_radius(SIGMA, 10000, ALPHA)
    assert most == pytest.approx(SIGMA * stats.norm.ppf(ALPHA ** (1 / 10000)))
    assert most == pytest.approx(0.8, abs=0.01)  # 3.2 sigma (docs/certify.md)


def test_noise_is_seeded_per_sample_not_per_batch(
    noise_cnn: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = data[0][:8], data[1][:8]

    def run(**kw: Any) -> list[float]:
        result = pytest_robust.evaluate(
            noise_cnn, (x, y), check="certify", method="smoothing", sigma=SIGMA, eps=0.1,
            n0=10, n=200, **kw,
        )  # fmt: skip
        return list(result.details["radii"])

    assert run(batch_size=7) == run(batch_size=1000) == run(batch_size=7)
    assert run(seed=1) != run(seed=0)
    # A sample's noise does not depend on the others: its radius is the same alone.
    alone = pytest_robust.evaluate(
        noise_cnn, (x[:1], y[:1]), check="certify", method="smoothing", sigma=SIGMA, eps=0.1,
        n0=10, n=200,
    )  # fmt: skip
    assert alone.details["radii"][0] == run()[0]


def test_the_result_says_what_it_certifies(
    noise_cnn: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    noise_cnn.train()
    result = pytest_robust.evaluate(
        noise_cnn, data, check="certify", method="smoothing", sigma=SIGMA, eps=0.25,
        n0=N0, n=N, min_acc=0.99,
    )  # fmt: skip
    assert noise_cnn.training  # borrowed and given back
    noise_cnn.eval()
    assert result.attack == "certify-smoothing"
    assert result.norm == "l2"  # the default for smoothing
    assert result.details["bound"] == "certified"
    assert result.details["classifier"] == "smoothed"
    assert result.details["forward_passes"] == {"per_sample": N0 + N}
    assert result.params == {"sigma": SIGMA, "n0": N0, "n": N, "alpha": ALPHA}
    assert len(result.details["radii"]) == SAMPLES
    assert result.details["abstained"] == result.details["predictions"].count(-1)
    robust = [c == "1" for c in result.robust]
    assert robust == [r >= 0.25 for r in result.details["radii"]]
    (failure,) = result.threshold_failures()
    assert failure.startswith("certified_acc")
    assert result.describe_attack() == (
        "certify-smoothing eps=0.25 l2 sigma=0.25 n0=100 n=1000 alpha=0.001"
    )


def test_smoothed_predicts_labels_with_abstain(
    noise_cnn: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = data
    smoothed = Smoothed(noise_cnn, SIGMA, n=300, alpha=ALPHA)
    labels = smoothed(x[:20])
    assert labels.dtype == torch.long and labels.shape == (20,)
    assert set(labels.tolist()) <= {*range(10), Smoothed.ABSTAIN}
    assert float((labels == y[:20]).float().mean()) > 0.8
    # The same input gets the same answer, alone or in another batch.
    assert torch.equal(smoothed(x[3:4]), labels[3:4])
    assert torch.equal(smoothed(x[:20].flip(0)), labels.flip(0))
    # Pure noise around a grey image: the votes split and it abstains.
    grey = torch.full((4, 1, 8, 8), 0.5)
    assert (Smoothed(noise_cnn, 2.0, n=50, alpha=ALPHA)(grey) == Smoothed.ABSTAIN).all()
    radii_labels, radii = smoothed.certify(x[:5], n0=50, n=300)
    assert radii.shape == (5,) and bool((radii >= 0).all())
    assert bool(((radii > 0) == (radii_labels != Smoothed.ABSTAIN)).all())
    assert Smoothed(noise_cnn, 0.5).state_dict()["sigma"] == 0.5  # in the fingerprint


def test_a_smoothed_model_given_to_a_check_is_refused(
    noise_cnn: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    smoothed = Smoothed(noise_cnn, SIGMA, n=100)
    refused: tuple[dict[str, Any], ...] = (
        {"attack": "pgd", "eps": 0.1},
        {"check": "certify", "method": "ibp", "eps": 0.1},
    )
    for kwargs in refused:
        with pytest.raises(RobustConfigError, match=r"model is a pytest_robust\.Smoothed.*labels"):
            pytest_robust.evaluate(smoothed, data, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.5}, "sigma is missing: method='smoothing' needs the noise level"),
        ({"eps": 0.5, "sigma": 0.25, "norm": "linf"}, "norm='linf': Gaussian smoothing"),
        ({"eps": 0.5, "sigma": 0.0}, "sigma=0.0: the noise level must be > 0"),
        ({"eps": 0.5, "sigma": 0.25, "alpha": 0.6}, r"alpha=0.6: .* in \(0, 0.5\)"),
        ({"eps": 0.9, "sigma": 0.25}, r"eps=0.9 > 0.8, the largest radius that n=10000"),
        ({"eps": 0.5, "sigma": 0.25, "n": 0}, "n=0: must be >= 1"),
        ({"eps": 0.5, "sigma": 0.25, "steps": 10}, "steps= does not apply to check='certify'"),
    ],
)
def test_smoothing_settings_are_checked(kwargs: dict, message: str) -> None:
    x, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(RobustConfigError, match=message):
        pytest_robust.evaluate(nn.Flatten(), (x, y), check="certify", method="smoothing", **kwargs)


@pytest.mark.parametrize("name", ["sigma", "n0", "n", "alpha", "seed"])
def test_ibp_refuses_the_smoothing_settings(name: str) -> None:
    x, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    setting: dict[str, Any] = {name: 0.25 if name in ("sigma", "alpha") else 10}
    with pytest.raises(RobustConfigError, match=f"{name}= does not apply to method='ibp'"):
        pytest_robust.evaluate(
            nn.Flatten(), (x, y), check="certify", method="ibp", eps=0.1, **setting
        )


def test_without_scipy_smoothing_says_how_to_install_it() -> None:
    code = (
        "import sys\nsys.modules['scipy'] = None\n"
        "import torch, pytest_robust\n"
        "from pytest_robust import RobustConfigError\n"
        "model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))\n"
        "data = (torch.rand(3, 4), torch.zeros(3, dtype=torch.long))\n"
        "r = pytest_robust.evaluate(model, data, check='certify', method='ibp', eps=0.1)\n"
        "try:\n"
        "    pytest_robust.evaluate(model, data, check='certify', method='smoothing',\n"
        "                           sigma=0.5, eps=0.1, n=100)\n"
        "except RobustConfigError as error:\n"
        "    print(error)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'pytest-robust[certify]'" in done.stdout
