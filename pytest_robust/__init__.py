"""pytest-robust: adversarial robustness as ordinary pytest tests.

    from pytest_robust import robust

    @robust(attack="pgd", eps=0.1, steps=20, min_acc=0.8)
    def test_pgd(robustness): ...

Every public name loads on first use (module __getattr__): importing this package, or
any core module below it (`pytest_robust.engine`, `pytest_robust.spec`, ...), imports
neither torch nor pytest nor hypothesis until a name that needs them is used; `robust`
brings in pytest, the attack classes and `evaluate` bring in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from pytest_robust.attacks import Attack
    from pytest_robust.attacks import AttackBatch
    from pytest_robust.attacks import GradientAttack
    from pytest_robust.attacks import ThreatModel
    from pytest_robust.attacks import register_attack
    from pytest_robust.attacks import registered_attacks
    from pytest_robust.checks.smoothing import Smoothed
    from pytest_robust.engine import EvaluationCache
    from pytest_robust.engine import RobustnessResult
    from pytest_robust.engine.evaluate import evaluate
    from pytest_robust.errors import ProbabilityOutputWarning
    from pytest_robust.errors import RobustConfigError
    from pytest_robust.errors import RobustWarning
    from pytest_robust.errors import ShuffledDataWarning
    from pytest_robust.errors import SmallSampleWarning
    from pytest_robust.known_answers.run import selftest
    from pytest_robust.modules import BPDA
    from pytest_robust.modules import Normalize
    from pytest_robust.plugin.marker import robust

_LAZY = {
    "Attack": "pytest_robust.attacks",
    "AttackBatch": "pytest_robust.attacks",
    "GradientAttack": "pytest_robust.attacks",
    "ThreatModel": "pytest_robust.attacks",
    "register_attack": "pytest_robust.attacks",
    "registered_attacks": "pytest_robust.attacks",
    "EvaluationCache": "pytest_robust.engine",
    "RobustnessResult": "pytest_robust.engine",
    "evaluate": "pytest_robust.engine",
    "BPDA": "pytest_robust.modules",
    "Normalize": "pytest_robust.modules",
    "Smoothed": "pytest_robust.checks.smoothing",
    "selftest": "pytest_robust.known_answers.run",
    "ProbabilityOutputWarning": "pytest_robust.errors",
    "RobustConfigError": "pytest_robust.errors",
    "RobustWarning": "pytest_robust.errors",
    "ShuffledDataWarning": "pytest_robust.errors",
    "SmallSampleWarning": "pytest_robust.errors",
    "robust": "pytest_robust.plugin.marker",
}

__all__ = [
    "BPDA",
    "Attack",
    "AttackBatch",
    "EvaluationCache",
    "GradientAttack",
    "Normalize",
    "ProbabilityOutputWarning",
    "RobustConfigError",
    "RobustWarning",
    "RobustnessResult",
    "ShuffledDataWarning",
    "SmallSampleWarning",
    "Smoothed",
    "ThreatModel",
    "__version__",
    "evaluate",
    "register_attack",
    "registered_attacks",
    "robust",
    "selftest",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name == "__version__":
        from importlib.metadata import version

        return version("pytest-robust")
    raise AttributeError(f"module 'pytest_robust' has no attribute {name!r}")
