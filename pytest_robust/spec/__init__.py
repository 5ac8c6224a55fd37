"""What one robustness check runs: the schema, validation and precedence.

Pure, no torch and no pytest; the marker, the plugin and `evaluate()` all go through here,
so a value is checked the same way wherever it comes from.

- schema.py: the one table of common parameters, thresholds, run settings, sanity levels;
- validate.py: a marker's (or evaluate()'s) arguments validated, once; attack_arg.py: what
  attack= stands for (its members, a preset's version) and the parameters they take;
  cases.py: list arguments zipped into cases;
- resolve.py: a case plus the run settings into a Spec (marker > CLI > ini > default).
"""

from pytest_robust.spec.attack_arg import attack_members
from pytest_robust.spec.attack_arg import attack_params
from pytest_robust.spec.cases import Case
from pytest_robust.spec.cases import expand
from pytest_robust.spec.resolve import SourceLabels
from pytest_robust.spec.resolve import Spec
from pytest_robust.spec.resolve import derive_seed
from pytest_robust.spec.resolve import resolve
from pytest_robust.spec.schema import CHECKS
from pytest_robust.spec.schema import COMMON_PARAMS
from pytest_robust.spec.schema import GRADIENT_CHECK_ARGS
from pytest_robust.spec.schema import GRADIENT_THRESHOLDS
from pytest_robust.spec.schema import NOT_ON_MARKER
from pytest_robust.spec.schema import PRESETS
from pytest_robust.spec.schema import RUN_SETTINGS
from pytest_robust.spec.schema import SANITY_LEVELS
from pytest_robust.spec.schema import THRESHOLDS
from pytest_robust.spec.schema import AttackSchema
from pytest_robust.spec.schema import Preset
from pytest_robust.spec.validate import validate

__all__ = [
    "CHECKS",
    "COMMON_PARAMS",
    "GRADIENT_CHECK_ARGS",
    "GRADIENT_THRESHOLDS",
    "NOT_ON_MARKER",
    "PRESETS",
    "RUN_SETTINGS",
    "SANITY_LEVELS",
    "THRESHOLDS",
    "AttackSchema",
    "Case",
    "Preset",
    "SourceLabels",
    "Spec",
    "attack_members",
    "attack_params",
    "derive_seed",
    "expand",
    "resolve",
    "validate",
]
