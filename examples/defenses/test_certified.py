"""Certified robustness next to attacks: run with `pytest examples/defenses`.

An attack can only show that a model is *not* robust; a certificate proves that it is
(docs/certify.md). The models (certified_models.py):

- the IBP-trained MLP: its certified accuracy at L-inf eps 0.05 is a real, passing gate;
- the undefended CNN of examples/digits: PGD leaves most digits standing at eps 0.05, so
  its attack number looks fine, but IBP proves nothing about it (certified accuracy 0);
- the noise-trained CNN, smoothed: randomized smoothing certifies L2 radii of the
  *smoothed* classifier (pytest_robust.Smoothed), not of the CNN itself;
- the ensemble-adversarially trained MLP (Tramer et al. 2018): it resists attacks
  transferred from a model it never saw far better than white-box attacks.

Measured numbers: README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust import RobustnessResult
from pytest_robust import robust

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "digits")]
import certified_models as cm  # noqa: E402
from randomised_models import digits_cnn  # noqa: E402


@pytest.fixture(scope="session")
def ibp_trained() -> nn.Module:
    """The MLP trained with IBP at eps 0.1 (60 epochs, eps and kappa ramps)."""
    return cm.ibp_mlp()


@pytest.fixture(scope="session")
def undefended_cnn() -> nn.Module:
    """The CNN of examples/digits, plain cross-entropy training (trained once per process,
    shared with the quantised CNN of test_randomised_defenses.py)."""
    return digits_cnn()


@pytest.fixture(scope="session")
def noise_trained() -> nn.Module:
    """The small CNN trained on Gaussian noise of sigma 0.25: smoothing's base model."""
    return cm.noise_cnn()


@pytest.fixture(scope="session")
def ensemble_trained() -> nn.Module:
    return cm.ensemble_mlp()


@pytest.fixture(scope="session")
def held_out() -> nn.Module:
    """A standard MLP never used in training: the source of the transfer attacks."""
    return cm.held_out_mlp()


# --- a certificate that is a real gate, and what an attack alone hides --------------------


@robust(check="certify", method="ibp", eps=0.05, min_acc=0.85, strict=True, model="ibp_trained")
def test_ibp_trained_mlp_is_certified_at_eps_005() -> None:
    """Proven: no L-inf perturbation of 0.05 changes at least 85% of the digits' labels."""


@robust(attack="pgd", eps=0.05, min_acc=0.85, model="ibp_trained")
def test_ibp_trained_mlp_under_pgd(robustness: RobustnessResult) -> None:
    """The attack's upper bound; the truth lies between the two numbers."""


@robust(attack="pgd", eps=0.05, min_acc=0.8, model="undefended_cnn")
def test_undefended_cnn_looks_robust_to_pgd() -> None:
    """PGD leaves most digits standing: by the attack alone this gate passes."""


@robust(check="certify", method="ibp", eps=0.05, model="undefended_cnn")
def test_undefended_cnn_has_no_certificate(robustness: RobustnessResult) -> None:
    """...but nothing of it is proven: the certificate is (near) zero."""
    assert robustness.robust_acc < 0.05


@pytest.mark.xfail(reason="undefended: IBP certifies almost nothing at eps 0.05", strict=True)
@robust(check="certify", method="ibp", eps=0.05, min_acc=0.85, model="undefended_cnn")
def test_undefended_cnn_fails_the_certified_gate() -> None:
    """The IBP-trained MLP's gate, on the undefended CNN: it fails."""


# --- randomized smoothing: the smoothed classifier, certified in L2 ------------------------


@robust(
    check="certify", method="smoothing", sigma=cm.SIGMA, eps=0.25, n0=100, n=1000,
    max_samples=100, min_acc=0.7, model="noise_trained",
)  # fmt: skip
def test_smoothed_cnn_is_certified_at_l2_radius_025(robustness: RobustnessResult) -> None:
    """Certified: the smoothed CNN (its majority vote under N(0, 0.25^2) noise, deployable as
    pytest_robust.Smoothed(model, 0.25, n, alpha)), each certificate wrong with probability
    at most alpha = 0.001. Not a statement about the CNN itself."""
    assert robustness.details["classifier"] == "smoothed"
    radii = torch.tensor(robustness.details["radii"])
    assert float((radii >= 0.5).float().mean()) > 0.3  # one run gives every radius


# --- ensemble adversarial training: robust to transfer, not to white-box attacks ----------

TRANSFER: dict[str, Any] = {"attack": "transfer", "surrogate": ["held_out"], "eps": cm.ENSEMBLE_EPS}


@robust(**TRANSFER, min_acc=0.85, model="ensemble_trained")
def test_ensemble_trained_mlp_resists_transferred_pgd() -> None:
    """PGD crafted on a model it never saw: the threat Tramer et al. defend against."""


@pytest.mark.xfail(reason="undefended: transferred PGD leaves about 47% of digits", strict=True)
@robust(**TRANSFER, min_acc=0.85, model="standard")
def test_standard_mlp_does_not_resist_transferred_pgd() -> None:
    """The same gate on the undefended MLP: it fails."""


@robust(attack="pgd", eps=cm.ENSEMBLE_EPS, model="ensemble_trained")
def test_ensemble_trained_mlp_is_weaker_against_white_box_pgd(
    robustness: RobustnessResult,
) -> None:
    """White-box PGD breaks it far more: not a defence against an attacker with the model."""
    assert robustness.robust_acc < 0.8
