"""The evaluation engine: no pytest here. `evaluate()` is the programmatic entry point."""

from pytest_robust.engine.cache import EvaluationCache
from pytest_robust.engine.evaluate import evaluate
from pytest_robust.engine.evaluate import run_check
from pytest_robust.engine.memory import CounterexampleMemory
from pytest_robust.engine.memory import DictStore
from pytest_robust.engine.result import RobustnessResult

__all__ = [
    "CounterexampleMemory",
    "DictStore",
    "EvaluationCache",
    "RobustnessResult",
    "evaluate",
    "run_check",
]
