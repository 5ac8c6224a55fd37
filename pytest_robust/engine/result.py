"""RobustnessResult: what one evaluation measured, with its 95% interval and verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from pytest_robust.checks.flags import masking_flags
from pytest_robust.checks.flags import sentence
from pytest_robust.errors import SmallSampleWarning

SCHEMA = 1


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# The largest sample count samples_needed() searches; beyond it a result is "undecidable".
SAMPLES_CAP = 10_000_000


def samples_needed(proportion: float, threshold: float, cap: int = SAMPLES_CAP) -> int | None:
    """About how many samples would decide `proportion` against `threshold` at 95%.

    Assumes the measured proportion stays as it is: the smallest n whose Wilson interval
    of `proportion * n` successes lies wholly on the proportion's side of the threshold
    (lower bound >= threshold when above it, upper bound <= threshold when below).
    None when it cannot be decided (the proportion equals the threshold) or needs more
    than `cap` samples. The bound moves monotonically towards the proportion as n grows,
    so a bisection finds the smallest n.
    """
    if proportion == threshold:
        return None

    def decided(n: int) -> bool:
        low, high = wilson_real(proportion * n, n)
        return low >= threshold if proportion > threshold else high <= threshold

    if not decided(cap):
        return None
    low, high = 1, cap
    while low < high:
        middle = (low + high) // 2
        if decided(middle):
            high = middle
        else:
            low = middle + 1
    return low


def wilson_real(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson interval without clipping to [0, 1], for a (possibly fractional) count."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / denom
    return (centre - half, centre + half)


def min_samples(threshold: float, upper: bool = False) -> int | None:
    """The fewest samples for which a perfect result would clear `threshold` at 95%.

    For a lower threshold (min_acc) a perfect result is every sample robust: the Wilson
    lower bound of n successes in n is n / (n + z^2), so n >= t z^2 / (1 - t). For an upper
    threshold (max_success) it is no success: upper bound z^2 / (n + z^2) <= t. None for
    a threshold of 1 (or 0 for an upper one): an exact requirement, not a statistical one.
    """
    z2 = 1.959963984540054**2
    target = 1 - threshold if upper else threshold
    if target >= 1 or target <= 0:
        return None
    return math.ceil(target * z2 / (1 - target) - 1e-9)


def _bits(flags: str) -> int:
    return flags.count("1")


@dataclass(frozen=True)
class RobustnessResult:
    """The outcome of one attack on one model and data set.

    Per-sample flags are strings of '0'/'1' in data order (compact and JSON-safe):
    `clean_correct[i]` the clean prediction was right; `robust[i]` it was right and the
    adversarial input is still classified correctly; `success[i]` the attack succeeded
    (misclassified, or for a targeted attack reached its target); `attacked[i]` the sample
    was attacked (clean-correct and, when targeted, not already at its target).
    """

    attack: str
    eps: float | None  # None for attacks that are not eps-ball attacks (transform, noise)
    norm: str
    bounds: tuple[float, float]
    params: Mapping[str, Any]
    targeted: bool
    clean_correct: str
    robust: str
    success: str
    thresholds: Mapping[str, float]
    seed: int
    device: str
    duration_s: float
    data_fingerprint: str
    model_fingerprint: str
    provenance: Mapping[str, str] = field(default_factory=dict)
    # Samples actually attacked: clean-correct, and for targeted checks not already at
    # their target. Empty means the same as clean_correct.
    attacked: str = ""
    # Attack-specific measurements, JSON-safe: perturbation sizes of the successes, ...
    details: Mapping[str, Any] = field(default_factory=dict)
    # "gradients" for check="gradients" (no attack ran); None for an attack.
    check: str | None = None
    # Masking flags are reported but do not fail a passing threshold.
    allow_masking: bool = False
    # Thresholds must be cleared by the 95% interval (strict mode), not the measured value.
    strict: bool = False
    # Adversarial inputs (all samples, clean ones where not attacked); only when asked for.
    adversarial: Any = field(default=None, compare=False, repr=False)
    # The most confidently fooled samples (engine.examples.Example), only when asked for
    # (run_check(keep_examples=k)); not part of to_dict().
    examples: Any = field(default=(), compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.clean_correct)

    @property
    def n_clean_correct(self) -> int:
        return _bits(self.clean_correct)

    @property
    def n_robust(self) -> int:
        return _bits(self.robust)

    @property
    def n_success(self) -> int:
        return _bits(self.success)

    @property
    def clean_acc(self) -> float:
        return self.n_clean_correct / self.n

    @property
    def robust_acc(self) -> float:
        return self.n_robust / self.n

    @property
    def n_attacked(self) -> int:
        return _bits(self.attacked) if self.attacked else self.n_clean_correct

    @property
    def success_rate(self) -> float:
        """Successes among the samples attacked (clean-correct, not already at their
        target); 0 if none were."""
        attacked = self.n_attacked
        return self.n_success / attacked if attacked else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        """95% Wilson interval of robust_acc."""
        return wilson(self.n_robust, self.n)

    @property
    def success_ci95(self) -> tuple[float, float]:
        return wilson(self.n_success, self.n_attacked)

    def describe_attack(self) -> str:
        """'pgd eps=0.1 linf steps=20 alpha=0.0125 ...': everything that defines the attack."""
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        target = " targeted" if self.targeted else ""
        ball = f" eps={_fmt(self.eps)} {self.norm}" if self.eps is not None else ""
        return f"{self.attack}{ball}{target}" + (f" {extra}" if extra else "")

    @property
    def flags(self) -> list[dict[str, Any]]:
        """Sanity flags found (name, severity, message, fix); see docs/masking.md."""
        return list(self.details.get("flags") or [])

    def threshold_failures(self) -> list[str]:
        """One sentence per threshold that was missed, and per masking flag that makes a
        gate untrustworthy (unless allow_masking); empty when all hold."""
        failures = self._missed_thresholds()
        if (self.thresholds or self.check) and not self.allow_masking:
            failures += [f"not trustworthy: {sentence(flag)}" for flag in masking_flags(self.flags)]
        return failures

    def _missed_thresholds(self) -> list[str]:
        lo, hi = self.ci95
        interval = f"95% CI [{lo:.3f}, {hi:.3f}], n={self.n}"
        failures = []
        min_acc = self.thresholds.get("min_acc")
        if min_acc is not None and self.robust_acc < min_acc:
            failures.append(
                f"robust_acc {self.robust_acc:.3f} < min_acc {min_acc:.3f} ({interval})"
            )
        elif min_acc is not None and self.strict and lo < min_acc:
            failures.append(
                f"robust_acc {self.robust_acc:.3f} >= min_acc {min_acc:.3f} but its 95% CI "
                f"lower bound {lo:.3f} is below it (strict; {interval}; "
                f"{_needed(self.robust_acc, min_acc)})"
            )
        max_success = self.thresholds.get("max_success")
        slo, shi = self.success_ci95
        of = f"{self.n_success} of {self.n_attacked} attacked"
        if max_success is not None and self.success_rate > max_success:
            failures.append(
                f"success_rate {self.success_rate:.3f} > max_success {max_success:.3f} "
                f"(95% CI [{slo:.3f}, {shi:.3f}], {of})"
            )
        elif max_success is not None and self.strict and shi > max_success:
            failures.append(
                f"success_rate {self.success_rate:.3f} <= max_success {max_success:.3f} but "
                f"its 95% CI upper bound {shi:.3f} is above it (strict; 95% CI [{slo:.3f}, "
                f"{shi:.3f}], {of}; {_needed(self.success_rate, max_success)})"
            )
        max_drop = self.thresholds.get("max_drop")
        drop = self.clean_acc - self.robust_acc
        if max_drop is not None and drop > max_drop + 1e-12:
            failures.append(
                f"accuracy drop {drop:.3f} > max_drop {max_drop:.3f} "
                f"(clean {self.clean_acc:.3f} -> robust {self.robust_acc:.3f}, {interval})"
            )
        elif max_drop is not None and self.strict and self.clean_acc - lo > max_drop + 1e-12:
            # The clean accuracy is measured exactly on these samples; the robust one is
            # the estimate, so the drop's bound uses the robust interval's lower end.
            floor = self.clean_acc - max_drop
            failures.append(
                f"accuracy drop {drop:.3f} <= max_drop {max_drop:.3f} but with robust_acc's "
                f"95% CI lower bound the drop could be {self.clean_acc - lo:.3f} (strict; "
                f"clean {self.clean_acc:.3f}, {interval}; {_needed(self.robust_acc, floor)})"
            )
        max_confidence = self.thresholds.get("max_confidence")
        reached = self.max_confidence_reached
        if max_confidence is not None and reached > max_confidence:
            failures.append(
                f"confidence {reached:.3f} > max_confidence {max_confidence:.3f} (the most "
                f"confident of {self.n_success} successful adversarial inputs)"
            )
        failures += self._gradient_failures()
        return failures

    def _gradient_failures(self) -> list[str]:
        stats = self.details.get("gradients") or {}
        failures = []
        max_zero = self.thresholds.get("max_zero_frac")
        if max_zero is not None and stats["zero_frac"] > max_zero:
            failures.append(
                f"zero-gradient fraction {stats['zero_frac']:.3f} > max_zero_frac "
                f"{max_zero:.3f} (of {stats['n']} samples)"
            )
        min_median = self.thresholds.get("min_median")
        median = stats.get("median")
        if min_median is not None and not (median is not None and median >= min_median):
            failures.append(
                f"median mean |input gradient| {median:.3g} < min_median {min_median:.3g} "
                f"(of {stats['n']} samples)"
            )
        return failures

    def sample_size_warnings(self) -> list[SmallSampleWarning]:
        """A warning per proportion threshold that n is too small to establish at 95%
        even with a perfect result (see min_samples); thresholds of 0 or 1 are exact."""
        warnings = []
        checks = [
            ("min_acc", self.n, False),
            ("max_drop", self.n, True),
            ("max_success", self.n_attacked, True),
        ]
        for name, n, upper in checks:
            threshold = self.thresholds.get(name)
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

    @property
    def max_confidence_reached(self) -> float:
        """The highest probability the model gave a successful adversarial input's predicted
        class (0 when nothing succeeded)."""
        confidence = self.details.get("confidence")
        return float(confidence["max"]) if confidence else 0.0

    @property
    def status(self) -> str:
        """'pass', 'fail', or 'measured' when no threshold was set (a check without
        thresholds passes when it found no masking)."""
        if self.threshold_failures():
            return "fail"
        return "pass" if self.thresholds or self.check else "measured"

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    def failure_message(self) -> str:
        """One line for a failed gate: what was measured, against what, on how many samples."""
        if self.check == "gradients":
            return "; ".join(self.threshold_failures()) + f" (input-gradient check, n={self.n})"
        decided = self.details.get("decided_early")
        early = (
            f"; decided early after the first {decided['after']} of {decided['of']} samples"
            if decided
            else ""
        )
        # An attack may name its most telling counterexample (transform: the smallest).
        example = self.details.get("counterexample")
        return (
            "; ".join(self.threshold_failures())
            + f" under {self.describe_attack()}; clean_acc {self.clean_acc:.3f}{early}"
            + (f"; {example}" if isinstance(example, str) else "")
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("adversarial")
        data.pop("examples")
        data["bounds"] = list(self.bounds)
        data["schema"] = SCHEMA
        data.update(
            n=self.n,
            clean_acc=self.clean_acc,
            robust_acc=self.robust_acc,
            success_rate=self.success_rate,
            ci95=list(self.ci95),
            status=self.status,
        )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobustnessResult:
        names = {f for f in cls.__dataclass_fields__ if f not in ("adversarial", "examples")}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["bounds"] = tuple(kwargs["bounds"])
        return cls(**kwargs)


def _needed(proportion: float, threshold: float) -> str:
    needed = samples_needed(proportion, threshold)
    if proportion == threshold:
        return "it cannot be decided: the measured value is the threshold itself"
    if needed is None:
        return f"more than {SAMPLES_CAP:,} samples would be needed to decide"
    return f"about {needed} samples would be needed to decide"


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
