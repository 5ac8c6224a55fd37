"""The evaluation engine: no pytest here. `evaluate()` is the programmatic entry point."""

from pytest_robust.engine.evaluate import evaluate
from pytest_robust.engine.evaluate import run_check
from pytest_robust.engine.result import RobustnessResult
from pytest_robust.engine.stores import DictStore
from pytest_robust.engine.stores.counterexamples import CounterexampleMemory
from pytest_robust.engine.stores.session_cache import EvaluationCache

__all__ = [
    "CounterexampleMemory",
    "DictStore",
    "EvaluationCache",
    "RobustnessResult",
    "evaluate",
    "run_check",
]
