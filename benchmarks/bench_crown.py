"""The cost and tightness of check="certify": IBP against CROWN on two ReLU digits models.

Not part of the test suite. Run from the repository root:

    python benchmarks/bench_crown.py                 # a few minutes on one idle CPU thread
    python benchmarks/bench_crown.py --cnn-samples 450

Models (trained here, seed 0, plain cross-entropy): an MLP 64-128-10 and a CNN
conv16(3x3)-conv32(3x3, stride 2)-fc64-fc10 (ReLU throughout, no max pooling, so CROWN
applies; the examples' DigitsCNN has a MaxPool2d, which CROWN refuses). For each eps it
prints one Markdown row: certified accuracy of IBP and CROWN, PGD-20's robust accuracy
(the upper end of the interval), the seconds of each, and the cost in passes: IBP's are
fixed (2 through the bounds + 1 chain check), CROWN's `backward_passes` are the rows of
linear bounds carried back through the chain, per sample, counted in full passes; the
last column is CROWN's time over one float32 forward pass of the same samples.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "digits")]
from digits import digits_split  # noqa: E402
from digits import train  # noqa: E402

from pytest_robust import RobustnessResult  # noqa: E402
from pytest_robust import evaluate  # noqa: E402


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def trained(build: Callable[[], nn.Module]) -> nn.Module:
    x_train, y_train, _, _ = digits_split()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build()
    train(model, x_train, y_train, seed=0)
    return model.eval()


def timed(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], **kwargs: Any
) -> tuple[RobustnessResult, float]:
    start = time.perf_counter()
    result = evaluate(model, data, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cnn-samples", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, _, x_test, y_test = digits_split()
    print(
        "| model | n | eps | clean | IBP | CROWN | PGD-20 | IBP s | CROWN s | PGD s "
        "| CROWN backward passes / sample | CROWN / forward |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    models = (("MLP 64-128-10", mlp, 450), ("CNN c16-c32s2-fc64", cnn, args.cnn_samples))
    for name, build, n in models:
        model = trained(build)
        data = (x_test[:n], y_test[:n])
        with torch.no_grad():
            start = time.perf_counter()
            for _ in range(10):
                model(data[0])
            forward = (time.perf_counter() - start) / 10
        for eps in (0.01, 0.02, 0.05):
            ibp, ibp_s = timed(model, data, check="certify", method="ibp", eps=eps)
            tight, crown_s = timed(model, data, check="certify", method="crown", eps=eps)
            pgd, pgd_s = timed(model, data, attack="pgd", eps=eps, steps=20)
            print(
                f"| {name} | {n} | {eps:g} | {ibp.clean_acc:.3f} | {ibp.robust_acc:.3f} "
                f"| {tight.robust_acc:.3f} | {pgd.robust_acc:.3f} | {ibp_s:.2f} | {crown_s:.1f} "
                f"| {pgd_s:.1f} | {tight.details['backward_passes']:g} "
                f"| {crown_s / forward:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
