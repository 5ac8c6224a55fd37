"""The randomised and non-differentiable defences of examples/defenses, measured: the numbers
in examples/defenses/README.md ("Randomised and non-differentiable defences") and the
must-holds of issue 14 on them (EOT reproducible, EOT-PGD at least as strong as PGD and
Square under the same judge, more steps never more robust with a fixed step size, BPDA-PGD
within 0.05 of Square with 5000 queries).

Not part of the test suite (tests/unit/test_eot.py and tests/unit/test_bpda.py check the same
claims on smaller settings). Run from the repository root:

    python benchmarks/bench_randomised_defenses.py   # a few minutes on one idle CPU thread

Models: examples/defenses/randomised_models.py; data: the first 200 of the 450 held-out
digits; L-inf eps 0.1, seed 0, min_acc 0.7 (the example's naive gates).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "defenses")]
from defended_models import held_out_data  # noqa: E402
from randomised_models import noisy_cnn  # noqa: E402
from randomised_models import quantised_cnn  # noqa: E402
from randomised_models import quantised_cnn_bpda  # noqa: E402

from pytest_robust import RobustnessResult  # noqa: E402
from pytest_robust import evaluate  # noqa: E402

EPS = 0.1
SAMPLES = 200


def row(name: str, model: torch.nn.Module, data: Any, **kw: Any) -> RobustnessResult:
    start = time.perf_counter()
    result = evaluate(model, data, eps=EPS, min_acc=0.7, seed=0, max_samples=SAMPLES, **kw)
    seconds = time.perf_counter() - start
    flags = ", ".join(f"{f['name']} ({f['severity']})" for f in result.flags) or "none"
    draws = result.details.get("draws", 1)
    print(
        f"| {name} | {draws} | {result.clean_acc:.3f} | {result.robust_acc:.3f} | {flags} | "
        f"{result.status} | {seconds:.1f} |",
        flush=True,
    )
    return result


def main() -> None:
    torch.set_num_threads(1)
    data = held_out_data()
    noisy = noisy_cnn()
    print("| model, attack | draws | clean | robust | flags | status | seconds |")
    print("|---|---|---|---|---|---|---|")
    row("noisy, pgd-20", noisy, data, attack="pgd", steps=20)
    naive = row(
        "noisy, pgd-40, judged over 10 draws", noisy, data, attack="pgd", steps=40, draws=10
    )
    eot = row("noisy, pgd-40 eot=10", noisy, data, attack="pgd", steps=40, eot=10)
    again = row("noisy, pgd-40 eot=10 (again)", noisy, data, attack="pgd", steps=40, eot=10)
    row("noisy, apgd-ce eot=10", noisy, data, attack="apgd-ce", eot=10)
    square = row("noisy, square-1000", noisy, data, attack="square", queries=1000, draws=10)
    by_steps = [
        row(
            f"noisy, pgd-{steps} eot=10, alpha eps/8, 20 draws",
            noisy,
            data,
            attack="pgd",
            steps=steps,
            alpha=EPS / 8,
            eot=10,
            draws=20,
        ).robust_acc
        for steps in (10, 20, 40, 80)
    ]
    row("quantised, pgd-50", quantised_cnn(), data, attack="pgd", steps=50)
    bpda = row("quantised + BPDA, pgd-50", quantised_cnn_bpda(), data, attack="pgd", steps=50)
    quantised_square = row(
        "quantised, square-5000", quantised_cnn(), data, attack="square", queries=5000
    )
    print()
    print(f"EOT reproducible (same seed, same numbers): {eot.robust == again.robust}")
    strongest = eot.robust_acc <= min(naive.robust_acc, square.robust_acc)
    print(
        f"EOT-PGD {eot.robust_acc:.3f} <= min(PGD {naive.robust_acc:.3f}, "
        f"Square {square.robust_acc:.3f}): {strongest}"
    )
    falling = by_steps == sorted(by_steps, reverse=True)
    print(f"more steps (10/20/40/80): {by_steps}, non-increasing: {falling}")
    gap = abs(bpda.robust_acc - quantised_square.robust_acc)
    print(
        f"BPDA-PGD vs Square-5000: {bpda.robust_acc:.3f} vs "
        f"{quantised_square.robust_acc:.3f}, gap {gap:.3f}"
    )


if __name__ == "__main__":
    main()
