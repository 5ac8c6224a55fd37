"""Errors and warnings of pytest-robust. Importable without torch or pytest."""

from __future__ import annotations


class RobustConfigError(ValueError):
    """Bad input to an evaluation: an argument, the model or the data.

    The message names the argument and the fix; the pytest layer adds the test's id.
    """

    __module__ = "pytest_robust"


class RobustWarning(UserWarning):
    """Base class of every warning pytest-robust emits."""

    __module__ = "pytest_robust"


class ProbabilityOutputWarning(RobustWarning):
    """The model's outputs look like probabilities rather than logits.

    Cross-entropy on probabilities has vanishing gradients, so every gradient attack is
    weakened and robust accuracy is overestimated. Return logits (drop the final softmax).
    """

    __module__ = "pytest_robust"


class ShuffledDataWarning(RobustWarning):
    """The data shuffles between passes, so sample identities are not stable across runs."""

    __module__ = "pytest_robust"


class SmallSampleWarning(RobustWarning):
    """Too few samples for a threshold to mean anything at 95% confidence.

    Raised when even a perfect result (every sample robust, no attack success) would leave
    the threshold inside the 95% Wilson interval: the check can pass or fail by chance.
    Evaluate more samples, or loosen the threshold.
    """

    __module__ = "pytest_robust"
