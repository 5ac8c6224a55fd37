"""The verdict's sentences: which thresholds a result missed and why, the one-line failure
message, and the warning when a threshold needs more samples than were evaluated.

Pure text over a RobustnessResult's measurements (engine/result.py); the statistics come
from engine/stats.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from pytest_robust.checks.flags import masking_flags
from pytest_robust.checks.flags import sentence
from pytest_robust.engine.stats import SAMPLES_CAP
from pytest_robust.engine.stats import min_samples
from pytest_robust.engine.stats import samples_needed
from pytest_robust.errors import SmallSampleWarning

if TYPE_CHECKING:
    from pytest_robust.engine.result import RobustnessResult


def threshold_failures(result: RobustnessResult) -> list[str]:
    """One sentence per threshold that was missed, and per masking flag that makes a gate
    untrustworthy (unless allow_masking); empty when all hold."""
    failures = [
        *_accuracy_failures(result),
        *_success_failures(result),
        *_drop_failures(result),
        *_confidence_failures(result),
        *_gradient_failures(result),
    ]
    if (result.thresholds or result.check) and not result.allow_masking:
        failures += [f"not trustworthy: {sentence(flag)}" for flag in masking_flags(result.flags)]
    return failures


def _interval(result: RobustnessResult) -> str:
    lo, hi = result.ci95
    return f"95% CI [{lo:.3f}, {hi:.3f}], n={result.n}"


def _gate(
    threshold: float | None,
    missed: Callable[[float], bool],
    strict_missed: Callable[[float], bool],
    strict: bool,
    sentences: Callable[[float], tuple[str, str]],
) -> list[str]:
    """The sentence for a proportion threshold: missed by the measured value (first
    sentence), or, in strict mode, by its 95% interval (second); none when it holds."""
    if threshold is None:
        return []
    if missed(threshold):
        return [sentences(threshold)[0]]
    if strict and strict_missed(threshold):
        return [sentences(threshold)[1]]
    return []


def _accuracy_name(r: RobustnessResult) -> str:
    """What robust_acc measures: a certificate's is a proven lower bound."""
    return "certified_acc" if r.check == "certify" else "robust_acc"


def _accuracy_failures(r: RobustnessResult) -> list[str]:
    lo = r.ci95[0]
    name = _accuracy_name(r)

    def sentences(min_acc: float) -> tuple[str, str]:
        return (
            f"{name} {r.robust_acc:.3f} < min_acc {min_acc:.3f} ({_interval(r)})",
            f"{name} {r.robust_acc:.3f} >= min_acc {min_acc:.3f} but its 95% CI "
            f"lower bound {lo:.3f} is below it (strict; {_interval(r)}; "
            f"{_needed(r.robust_acc, min_acc)})",
        )

    return _gate(
        r.thresholds.get("min_acc"),
        lambda t: r.robust_acc < t,
        lambda t: lo < t,
        r.strict,
        sentences,
    )


def _success_failures(r: RobustnessResult) -> list[str]:
    slo, shi = r.success_ci95
    of = f"{r.n_success} of {r.n_attacked} attacked"

    def sentences(max_success: float) -> tuple[str, str]:
        return (
            f"success_rate {r.success_rate:.3f} > max_success {max_success:.3f} "
            f"(95% CI [{slo:.3f}, {shi:.3f}], {of})",
            f"success_rate {r.success_rate:.3f} <= max_success {max_success:.3f} but "
            f"its 95% CI upper bound {shi:.3f} is above it (strict; 95% CI [{slo:.3f}, "
            f"{shi:.3f}], {of}; {_needed(r.success_rate, max_success)})",
        )

    return _gate(
        r.thresholds.get("max_success"),
        lambda t: r.success_rate > t,
        lambda t: shi > t,
        r.strict,
        sentences,
    )


def _drop_failures(r: RobustnessResult) -> list[str]:
    lo = r.ci95[0]
    drop = r.clean_acc - r.robust_acc

    def sentences(max_drop: float) -> tuple[str, str]:
        # The clean accuracy is measured exactly on these samples; the robust one is the
        # estimate, so the drop's bound uses the robust interval's lower end.
        floor = r.clean_acc - max_drop
        return (
            f"accuracy drop {drop:.3f} > max_drop {max_drop:.3f} (clean {r.clean_acc:.3f} -> "
            f"{_accuracy_name(r).removesuffix('_acc')} {r.robust_acc:.3f}, {_interval(r)})",
            f"accuracy drop {drop:.3f} <= max_drop {max_drop:.3f} but with {_accuracy_name(r)}'s "
            f"95% CI lower bound the drop could be {r.clean_acc - lo:.3f} (strict; "
            f"clean {r.clean_acc:.3f}, {_interval(r)}; {_needed(r.robust_acc, floor)})",
        )

    return _gate(
        r.thresholds.get("max_drop"),
        lambda t: drop > t + 1e-12,
        lambda t: r.clean_acc - lo > t + 1e-12,
        r.strict,
        sentences,
    )


def _confidence_failures(r: RobustnessResult) -> list[str]:
    max_confidence = r.thresholds.get("max_confidence")
    reached = r.max_confidence_reached
    if max_confidence is not None and reached > max_confidence:
        return [
            f"confidence {reached:.3f} > max_confidence {max_confidence:.3f} (the most "
            f"confident of {r.n_success} successful adversarial inputs)"
        ]
    return []


def _gradient_failures(r: RobustnessResult) -> list[str]:
    stats: Any = r.details.get("gradients") or {}
    failures = []
    max_zero = r.thresholds.get("max_zero_frac")
    if max_zero is not None and stats["zero_frac"] > max_zero:
        failures.append(
            f"zero-gradient fraction {stats['zero_frac']:.3f} > max_zero_frac "
            f"{max_zero:.3f} (of {stats['n']} samples)"
        )
    min_median = r.thresholds.get("min_median")
    median = stats.get("median")
    defined = median is not None and not math.isnan(median)
    if min_median is not None and not defined:
        failures.append(
            f"min_median {min_median:.3g} cannot hold: no finite input gradient to take a "
            f"median of ({stats['n']} clean-correct samples measured; with 0, the model "
            "classifies none of the data correctly)"
        )
    elif min_median is not None and not median >= min_median:
        failures.append(
            f"median mean |input gradient| {median:.3g} < min_median {min_median:.3g} "
            f"(of {stats['n']} samples)"
        )
    return failures


def sample_size_warnings(r: RobustnessResult) -> list[SmallSampleWarning]:
    """A warning per proportion threshold that n is too small to establish at 95% even
    with a perfect result (see min_samples); thresholds of 0 or 1 are exact."""
    warnings = []
    checks = [("min_acc", r.n, False), ("max_drop", r.n, True), ("max_success", r.n_attacked, True)]
    for name, n, upper in checks:
        threshold = r.thresholds.get(name)
        needed = min_samples(threshold, upper) if threshold is not None else None
        if needed is not None and n < needed:
            warnings.append(
                SmallSampleWarning(
                    f"{name}={threshold:g} on n={n} samples: even a perfect result could "
                    f"not establish it at 95% confidence (that needs n >= {needed}); the "
                    "check passes or fails by chance. Evaluate more samples or loosen "
                    "the threshold"
                )
            )
    return warnings


def failure_message(r: RobustnessResult) -> str:
    """One line for a failed gate: what was measured, against what, on how many samples."""
    if r.check == "gradients":
        return "; ".join(r.threshold_failures()) + f" (input-gradient check, n={r.n})"
    decided = r.details.get("decided_early")
    early = (
        f"; decided early after the first {decided['after']} of {decided['of']} samples"
        if decided
        else ""
    )
    # An attack may name its most telling counterexample (transform: the smallest).
    example = r.details.get("counterexample")
    # A preset's members that the model's classes rule out (DLR on a binary classifier).
    left_out = "".join(f"; {name} {why}" for name, why in r.details.get("left_out", {}).items())
    return (
        "; ".join(r.threshold_failures())
        + f" under {r.describe_attack()}; clean_acc {r.clean_acc:.3f}{early}"
        + (f"; {example}" if isinstance(example, str) else "")
        + left_out
    )


def _needed(proportion: float, threshold: float) -> str:
    needed = samples_needed(proportion, threshold)
    if proportion == threshold:
        return "it cannot be decided: the measured value is the threshold itself"
    if needed is None:
        return f"more than {SAMPLES_CAP:,} samples would be needed to decide"
    return f"about {needed} samples would be needed to decide"
