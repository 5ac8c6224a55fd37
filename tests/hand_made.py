"""Results built by hand, for tests of what is computed from the outcome bits alone
(statistics, verdicts, diagnoses), without running an attack."""

from __future__ import annotations

from pytest_robust.engine.result import RobustnessResult


def result_from_bits(
    robust: str, thresholds: dict[str, float] | None = None, *, strict: bool = False
) -> RobustnessResult:
    """A PGD result on len(robust) samples, all classified correctly before the attack;
    robust[i] == "1" where sample i survived it (success is the complement)."""
    return RobustnessResult(
        attack="pgd",
        eps=0.1,
        norm="linf",
        bounds=(0.0, 1.0),
        params={},
        targeted=False,
        clean_correct="1" * len(robust),
        robust=robust,
        success="".join("0" if bit == "1" else "1" for bit in robust),
        thresholds=thresholds or {},
        seed=0,
        device="cpu",
        duration_s=0.0,
        data_fingerprint="d",
        model_fingerprint="m",
        strict=strict,
    )
