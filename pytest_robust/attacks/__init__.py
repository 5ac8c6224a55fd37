"""Built-in attacks. Importing this package registers them; one module per family."""

from pytest_robust.attacks import apgd
from pytest_robust.attacks import deepfool
from pytest_robust.attacks import fgsm
from pytest_robust.attacks import fooling
from pytest_robust.attacks import iterative
from pytest_robust.attacks import momentum
from pytest_robust.attacks import noise
from pytest_robust.attacks import optimization
from pytest_robust.attacks import penalty
from pytest_robust.attacks import square
from pytest_robust.attacks import transfer
from pytest_robust.attacks import transform
from pytest_robust.attacks.base import Attack
from pytest_robust.attacks.base import AttackBatch
from pytest_robust.attacks.base import GradientAttack
from pytest_robust.attacks.base import ThreatModel
from pytest_robust.attacks.base import get_attack
from pytest_robust.attacks.base import register_attack
from pytest_robust.attacks.base import registered_attacks
from pytest_robust.spec import PRESETS

# attack="strong": the worst case per sample over these three (docs/attacks.md says exactly
# what runs; it is not AutoAttack).
PRESETS["strong"] = ("apgd-ce", "apgd-dlr", "square")

__all__ = [
    "Attack",
    "AttackBatch",
    "GradientAttack",
    "ThreatModel",
    "apgd",
    "deepfool",
    "fgsm",
    "fooling",
    "get_attack",
    "iterative",
    "momentum",
    "noise",
    "optimization",
    "penalty",
    "register_attack",
    "registered_attacks",
    "square",
    "transfer",
    "transform",
]
