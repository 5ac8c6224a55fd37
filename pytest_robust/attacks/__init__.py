"""Attacks: the protocol, the threat model, the registry, and one module per family.

A new attack is one new file (a subclass of `Attack` or `GradientAttack`, decorated with
`@register_attack`) plus one import line below: importing its module registers it.

- threat.py: `ThreatModel` (the eps-ball and bounds) and `per_sample`, the broadcast helper.
- base.py: `Attack` and `AttackBatch`, the protocol every attack follows.
- gradient.py: `GradientAttack`, the step loop shared by the gradient families.
- registry.py: `register_attack`, `get_attack`, `registered_attacks` and the presets.
- sampling.py: counter-based random numbers keyed by (seed, sample, stream).
- transform_ops.py: the differentiable input transformations behind attack='transform'.
"""

# The families: each import registers the family's attacks.
from pytest_robust.attacks import apgd
from pytest_robust.attacks import apgdt
from pytest_robust.attacks import deepfool
from pytest_robust.attacks import fab
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
from pytest_robust.attacks.gradient import GradientAttack
from pytest_robust.attacks.registry import get_attack
from pytest_robust.attacks.registry import register_attack
from pytest_robust.attacks.registry import registered_attacks
from pytest_robust.attacks.threat import ThreatModel

__all__ = [
    "Attack",
    "AttackBatch",
    "GradientAttack",
    "ThreatModel",
    "apgd",
    "apgdt",
    "deepfool",
    "fab",
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
