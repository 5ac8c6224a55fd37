"""Statistical gating: strict verdicts on the Wilson interval, the samples-needed estimate
and the minimum-samples rule, each checked against a brute-force search or hand values."""

from __future__ import annotations

import pytest
from hand_made import result_from_bits

from pytest_robust.engine.result import RobustnessResult
from pytest_robust.engine.stats import min_samples
from pytest_robust.engine.stats import samples_needed
from pytest_robust.engine.stats import wilson
from pytest_robust.engine.stats import wilson_real
from pytest_robust.errors import SmallSampleWarning
from pytest_robust.plugin.workers import cpu_threads
from pytest_robust.plugin.workers import worker_device
from pytest_robust.plugin.workers import worker_index


def result(robust: str, thresholds: dict[str, float], strict: bool = True) -> RobustnessResult:
    return result_from_bits(robust, thresholds, strict=strict)


def brute_force_needed(p: float, t: float, limit: int = 20_000) -> int | None:
    for n in range(1, limit):
        low, high = wilson_real(p * n, n)
        if (low >= t) if p > t else (high <= t):
            return n
    return None


@pytest.mark.parametrize(
    ("p", "t"),
    [(0.9, 0.8), (0.85, 0.8), (0.5, 0.4), (0.97, 0.95), (0.1, 0.2), (0.02, 0.05), (1.0, 0.9)],
)
def test_samples_needed_is_the_smallest_deciding_n(p: float, t: float) -> None:
    """Catches an estimate off by one or more from the smallest n a linear scan finds."""
    expected = brute_force_needed(p, t)
    assert expected is not None
    assert samples_needed(p, t) == expected


def test_samples_needed_cannot_decide_at_or_very_near_the_threshold() -> None:
    assert samples_needed(0.8, 0.8) is None
    assert samples_needed(0.8000001, 0.8) is None  # beyond the cap


@pytest.mark.parametrize("t", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_min_samples_is_where_a_perfect_result_first_clears(t: float) -> None:
    """Catches a minimum-samples rule that disagrees with the Wilson bound it is based on."""
    needed = min_samples(t)
    assert needed is not None
    assert wilson(needed, needed)[0] >= t > wilson(needed - 1, needed - 1)[0]
    assert wilson(0, needed)[1] <= 1 - t  # the same n for an upper threshold at 1 - t
    assert min_samples(1 - t, upper=True) == needed


def test_exact_thresholds_need_no_sample_count() -> None:
    assert min_samples(1.0) is None and min_samples(0.0, upper=True) is None


def test_strict_min_acc_passes_only_when_the_lower_bound_clears() -> None:
    """90 of 100 robust: the point estimate clears 0.85 but the lower bound (0.826) does
    not; it clears 0.8. Catches a strict mode that looks at the point estimate."""
    robust = "1" * 90 + "0" * 10
    assert result(robust, {"min_acc": 0.85}, strict=False).status == "pass"
    failed = result(robust, {"min_acc": 0.85})
    assert failed.status == "fail"
    line = failed.failure_message()
    needed = samples_needed(0.9, 0.85)
    assert (
        "robust_acc 0.900 >= min_acc 0.850 but its 95% CI lower bound 0.826 is below it "
        f"(strict; 95% CI [0.826, 0.945], n=100; about {needed} samples would be needed" in line
    )
    assert result(robust, {"min_acc": 0.8}).status == "pass"


def test_strict_max_success_uses_the_upper_bound() -> None:
    robust = "1" * 95 + "0" * 5  # success 0.05, upper bound 0.112
    assert result(robust, {"max_success": 0.1}, strict=False).status == "pass"
    assert "upper bound 0.112 is above it" in result(robust, {"max_success": 0.1}).failure_message()
    assert result(robust, {"max_success": 0.12}).status == "pass"


def test_strict_max_drop_uses_the_robust_lower_bound() -> None:
    robust = "1" * 90 + "0" * 10  # drop 0.10; with the lower bound 0.826: 0.174
    assert result(robust, {"max_drop": 0.15}, strict=False).status == "pass"
    assert "the drop could be 0.174" in result(robust, {"max_drop": 0.15}).failure_message()
    assert result(robust, {"max_drop": 0.18}).status == "pass"


def test_small_sample_warning_when_even_a_perfect_result_cannot_clear() -> None:
    """min_acc=0.9 needs n >= 35 (35/(35+3.84) = 0.901); 20 samples warn, 64 do not."""
    (warning,) = result("1" * 20, {"min_acc": 0.9}, strict=False).sample_size_warnings()
    assert isinstance(warning, SmallSampleWarning)
    assert "min_acc=0.9 on n=20 samples" in str(warning) and "n >= 35" in str(warning)
    assert result("1" * 64, {"min_acc": 0.9}).sample_size_warnings() == []
    assert result("1" * 20, {"min_acc": 1.0}).sample_size_warnings() == []  # exact


def test_worker_devices_and_threads() -> None:
    assert worker_index("gw3") == 3 and worker_index("master") is None
    assert [worker_device(f"gw{i}", 2) for i in range(4)] == ["cuda:0", "cuda:1"] * 2
    assert worker_device("gw1", 0) is None and worker_device("", 4) is None
    assert cpu_threads(16, 4) == 4 and cpu_threads(2, 4) == 1 and cpu_threads(8, 0) == 8
