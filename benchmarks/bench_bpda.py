"""BPDA on the quantised digits CNN: PGD through BPDA against Square with 5000 queries.

Not part of the test suite (tests/unit/test_bpda.py checks the same model against Square
with 300 queries, a larger but still valid upper bound). Run from the repository root:

    python benchmarks/bench_bpda.py            # about half a minute on one idle CPU thread

The model is the CNN of examples/digits behind round(4x)/4, on the first 100 test digits,
eps 0.1 (L-inf), min_acc 0.5. It prints one Markdown row per setting (docs/masking.md#bpda).
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "digits")]
from digits import digits_split  # noqa: E402
from digits import trained_cnn  # noqa: E402

from pytest_robust import BPDA  # noqa: E402
from pytest_robust import evaluate  # noqa: E402


class Quantise(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(4 * x) / 4


def main() -> None:
    torch.set_num_threads(1)
    _, _, x, y = digits_split()
    x, y = x[:100], y[:100]
    cnn = trained_cnn(seed=0)
    naive = torch.nn.Sequential(Quantise(), copy.deepcopy(cnn)).eval()
    wrapped = torch.nn.Sequential(BPDA(Quantise()), copy.deepcopy(cnn)).eval()
    settings: list[tuple[str, torch.nn.Module, dict[str, Any]]] = [
        ("quantised, pgd-50", naive, {"attack": "pgd", "steps": 50}),
        ("BPDA, pgd-50", wrapped, {"attack": "pgd", "steps": 50}),
        ("BPDA, apgd-ce", wrapped, {"attack": "apgd-ce"}),
        ("quantised, square-300", naive, {"attack": "square", "queries": 300}),
        ("quantised, square-1000", naive, {"attack": "square", "queries": 1000}),
        ("quantised, square-5000", naive, {"attack": "square", "queries": 5000}),
    ]
    print("| model, attack | clean | robust | flags | status | seconds |")
    print("|---|---|---|---|---|---|")
    for name, model, kw in settings:
        start = time.perf_counter()
        result = evaluate(model, (x, y), eps=0.1, min_acc=0.5, **kw)
        seconds = time.perf_counter() - start
        flags = ", ".join(flag["name"] for flag in result.flags) or "none"
        print(
            f"| {name} | {result.clean_acc:.2f} | {result.robust_acc:.2f} | {flags} | "
            f"{result.status} | {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
