"""Built-in attacks. Importing this package registers them; one module per family."""

from pytest_robust.attacks import apgd
from pytest_robust.attacks import deepfool
from pytest_robust.attacks import fgsm
from pytest_robust.attacks import iterative
from pytest_robust.attacks import optimization
from pytest_robust.attacks import penalty
from pytest_robust.attacks import transfer
from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.base import GradientAttack
from pytest_robust.attacks.base import ThreatModel
from pytest_robust.attacks.base import get_attack
from pytest_robust.attacks.base import register_attack
from pytest_robust.attacks.base import registered_attacks

__all__ = [
    "Attack",
    "AttackBatch",
    "GradientAttack",
    "ThreatModel",
    "apgd",
    "deepfool",
    "fgsm",
    "get_attack",
    "iterative",
    "optimization",
    "penalty",
    "register_attack",
    "registered_attacks",
    "transfer",
]
