"""Training recipes that make defended (and falsely defended) models, for the examples and
tests. For demonstration and testing, not a training framework: each is one short function
over a model and a DataLoader of (x, y) batches, trains the model in place with Adam,
deterministically for a given seed and without touching the global RNG, and returns it in
eval mode. See docs/defenses.md.
"""

from pytest_robust.defenses.adversarial import adversarial_training
from pytest_robust.defenses.distillation import defensive_distillation
from pytest_robust.defenses.ensemble import ensemble_adversarial_training
from pytest_robust.defenses.fgsm_regularized import fgsm_regularized
from pytest_robust.defenses.gradient_regularized import input_gradient_regularized
from pytest_robust.defenses.ibp import ibp_training
from pytest_robust.defenses.noise import gaussian_noise_training
from pytest_robust.defenses.training import standard_training

__all__ = [
    "adversarial_training",
    "defensive_distillation",
    "ensemble_adversarial_training",
    "fgsm_regularized",
    "gaussian_noise_training",
    "ibp_training",
    "input_gradient_regularized",
    "standard_training",
]
