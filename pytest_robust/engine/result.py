"""RobustnessResult: what one evaluation measured, with its 95% interval and verdict.

The measurements and their serialised form live here; the sentences that judge them
(missed thresholds, failure messages, sample-size warnings) in engine/verdict.py, the
statistics in engine/stats.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

from pytest_robust.engine import verdict
from pytest_robust.engine.stats import wilson

if TYPE_CHECKING:
    import torch

    from pytest_robust.errors import SmallSampleWarning

SCHEMA = 1


def flag_string(flags: torch.Tensor) -> str:
    """Per-sample boolean flags as the result's '0'/'1' string (compact and JSON-safe)."""
    # As bytes: '0' is 48 (a loop over the flags costs more than the check's bookkeeping).
    return (flags.cpu().bool().byte() + 48).numpy().tobytes().decode("ascii")


def count_set(flags: str) -> int:
    """How many samples a '0'/'1' flag string marks."""
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
    # The model's module tree (names and classes, engine/fingerprint.structure_digest):
    # the fingerprint above reads the weights only; reports pair a certificate with an
    # attack only when both agree. None in results stored before it existed.
    model_structure: str | None = None
    # Samples actually attacked: clean-correct, and for targeted checks not already at
    # their target. Empty means the same as clean_correct.
    attacked: str = ""
    # Attack-specific measurements, JSON-safe: perturbation sizes of the successes, ...
    details: Mapping[str, Any] = field(default_factory=dict)
    # "gradients" for check="gradients", "certify" for check="certify" (no attack ran in
    # either); None for an attack.
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
        return count_set(self.clean_correct)

    @property
    def n_robust(self) -> int:
        return count_set(self.robust)

    @property
    def n_success(self) -> int:
        return count_set(self.success)

    @property
    def clean_acc(self) -> float:
        return self.n_clean_correct / self.n

    @property
    def robust_acc(self) -> float:
        return self.n_robust / self.n

    @property
    def n_attacked(self) -> int:
        return count_set(self.attacked) if self.attacked else self.n_clean_correct

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
        return verdict.threshold_failures(self)

    def sample_size_warnings(self) -> list[SmallSampleWarning]:
        """A warning per proportion threshold that n is too small to establish at 95%
        even with a perfect result (see min_samples); thresholds of 0 or 1 are exact."""
        return verdict.sample_size_warnings(self)

    @property
    def max_confidence_reached(self) -> float:
        """The highest probability the model gave a successful adversarial input's predicted
        class (0 when nothing succeeded)."""
        confidence = self.details.get("confidence")
        return float(confidence["max"]) if confidence else 0.0

    @property
    def status(self) -> str:
        """'pass', 'fail', or 'measured' when no threshold was set (check='gradients'
        without thresholds passes when it found no masking)."""
        if self.threshold_failures():
            return "fail"
        return "pass" if self.thresholds or self.check == "gradients" else "measured"

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    def failure_message(self) -> str:
        """One line for a failed gate: what was measured, against what, on how many samples."""
        return verdict.failure_message(self)

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


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
