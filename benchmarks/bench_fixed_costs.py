"""The fixed costs of a check on a large model: the model hash, first and second check.

Not part of the test suite. Run from the repository root:

    python benchmarks/bench_fixed_costs.py [--threads 1] [--device cpu]

Builds a resnet-like CNN with about 4.9 million parameters (no download), then times, in
one process: the model identity the first time and again (engine/tensor_memo.py
remembers each tensor's digest), counting the tensors whose bytes are read; and two FGSM
checks in a row on 16 random 32x32 images, counting the tensors read by the second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from pytest_robust import EvaluationCache  # noqa: E402
from pytest_robust import evaluate  # noqa: E402
from pytest_robust.engine import fingerprint  # noqa: E402
from pytest_robust.engine.fingerprint import identify  # noqa: E402


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


def resnet_like(blocks: int = 1, classes: int = 10) -> nn.Module:
    """A ResNet with `blocks` basic blocks per stage (2: resnet18's layout)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        for i in range(blocks):
            layers.append(Block(cin, cout, 2 if stage and not i else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = resnet_like().eval().to(args.device)
    params = sum(p.numel() for p in model.parameters())
    reads = [0]
    original = fingerprint.tensor_bytes

    def counted(tensor: torch.Tensor) -> tuple[str, Any]:
        reads[0] += 1
        return original(tensor)

    fingerprint.tensor_bytes = counted  # type: ignore[assignment]
    print(f"resnet-like CNN, {params / 1e6:.2f}M parameters, device {args.device}")
    for label in ("first", "second"):
        reads[0] = 0
        start = time.perf_counter()
        identify(model)
        took = time.perf_counter() - start
        print(f"identity, {label} time: {took * 1e3:.1f} ms, tensors read: {reads[0]}")
    x = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        y = model(x.to(args.device)).argmax(1).cpu()
    cache = EvaluationCache()
    for label in ("first", "second"):
        reads[0] = 0
        start = time.perf_counter()
        result = evaluate(model, (x, y), "fgsm", 2 / 255, cache=cache, device=args.device)
        took = time.perf_counter() - start
        print(
            f"FGSM check, {label}: {took * 1e3:.0f} ms, tensors read: {reads[0]} "
            f"(robust acc {result.robust_acc:.3f})"
        )


if __name__ == "__main__":
    main()
