"""Peak resident memory of a check against the size of its data set.

Not part of the test suite. Run from the repository root:

    python benchmarks/bench_memory.py                 # 2,000 and 16,000 samples
    python benchmarks/bench_memory.py --root OTHER    # the same, with another checkout's code

Each check runs in a fresh subprocess (its peak resident set size, ru_maxrss, is its own):
FGSM on a small CNN over N synthetic 3x64x64 samples from a lazy Dataset that makes each
sample from its index (nothing is stored: 16,000 samples would be 786 MB of float32). It
prints the peak of each run and the difference; with --in-memory it also runs the same
data handed over as tensors, and checks that the per-sample outcomes are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys
import torch
from torch.utils.data import Dataset
from pytest_robust import evaluate

torch.set_num_threads(1)
n, form = int(sys.argv[1]), sys.argv[2]


class Synthetic(Dataset):
    '''Sample i: uniform noise from a generator seeded with i; label i % 10.'''

    def __len__(self):
        return n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.rand(3, 64, 64, generator=g), i % 10


torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
    torch.nn.Flatten(), torch.nn.Linear(128, 10),
).eval()
data = Synthetic()
if form == "tensors":
    x = torch.stack([data[i][0] for i in range(n)])
    data = (x, torch.arange(n) % 10)
result = evaluate(model, data, "fgsm", 0.01, batch_size=256)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "form": form, "peak_mb": peak_kb / 1024, "robust": result.robust,
                  "clean_correct": result.clean_correct, "fingerprint": result.data_fingerprint}))
"""


def run(root: Path, n: int, form: str) -> dict[str, object]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), form],
        env=env,
        cwd=root,  # `python -c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose code runs")
    parser.add_argument("--sizes", type=int, nargs=2, default=(2000, 16000))
    parser.add_argument("--in-memory", action="store_true", help="also run tensors, compare")
    args = parser.parse_args()
    small, large = args.sizes
    print(f"code: {args.root}")
    runs = {n: run(args.root, n, "dataset") for n in (small, large)}
    for n, got in runs.items():
        print(f"lazy Dataset, {n:>6} samples: peak RSS {got['peak_mb']:.0f} MB")
    grew = float(runs[large]["peak_mb"]) - float(runs[small]["peak_mb"])  # type: ignore[arg-type]
    print(f"difference {large} vs {small} samples: {grew:.0f} MB")
    if args.in_memory:
        tensors = run(args.root, small, "tensors")
        same = all(tensors[k] == runs[small][k] for k in ("robust", "clean_correct", "fingerprint"))
        print(
            f"tensors, {small:>6} samples: peak RSS {tensors['peak_mb']:.0f} MB; "
            f"outcomes and fingerprint identical to the lazy Dataset: {same}"
        )


if __name__ == "__main__":
    main()
