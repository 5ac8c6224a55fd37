"""FAB and FAB-T against torchattacks' FAB on the digits CNN: minimum norms and time.

Not part of the test suite (tests/unit/test_fab.py checks the same with 20 steps). Run from
the repository root:

    python benchmarks/bench_fab.py                 # about 10 minutes on one idle CPU thread
    python benchmarks/bench_fab.py --repeats 1 --steps 20

The model is the CNN of examples/digits on the first 100 test digits. Per norm:

- fab (untargeted, 1 run, no random start) against torchattacks.FAB(norm, steps,
  n_restarts=1, eps=100, multi_targeted=False): the median norm over the samples both
  broke, and the time (ours: evaluate() end to end, with the clean pass and the
  re-verification; theirs: the attack call plus the forward that scores it);
- fab-t at eps (L-inf 0.1, L2 0.5) against torchattacks' multi-targeted FAB (9 targets, as
  AutoAttack's FAB-T): robust accuracy and time, ours with and without stop_at_eps.

Every repeat runs all contestants in turn (so that machine load hits them alike); times are
medians over the repeats. It prints Markdown tables (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "digits")]
from digits import digits_split  # noqa: E402
from digits import trained_cnn  # noqa: E402

from pytest_robust import evaluate  # noqa: E402

EPS = {"linf": 0.1, "l2": 0.5}
PEER_NORM = {"linf": "Linf", "l2": "L2"}


def norms(adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    delta = (adv - x).flatten(1)
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torchattacks

    if args.threads:
        torch.set_num_threads(args.threads)
    _, _, x, y = digits_split()
    x, y = x[:100], y[:100]
    model = trained_cnn(seed=0).eval()
    peer_model = copy.deepcopy(model).eval()
    steps = args.steps
    minimum_rows, target_rows = [], []
    for norm in ("linf", "l2"):
        times: dict[str, list[float]] = {}
        outcome: dict[str, Any] = {}

        def ours_fab(norm: str = norm) -> Any:
            return evaluate(
                model, (x, y), attack="fab", eps=100.0, norm=norm, steps=steps,
                keep_adversarial=True,
            )  # fmt: skip

        def theirs_fab(norm: str = norm) -> Any:
            attack = torchattacks.FAB(
                peer_model, norm=PEER_NORM[norm], steps=steps, n_restarts=1, eps=100.0,
                multi_targeted=False,
            )  # fmt: skip
            adv = attack(x, y)
            with torch.no_grad():
                broke = (peer_model(adv).argmax(1) != y) & (peer_model(x).argmax(1) == y)
            return adv, broke

        def ours_fab_t(stop: bool, norm: str = norm) -> Any:
            return evaluate(
                model, (x, y), attack="fab-t", eps=EPS[norm], norm=norm, steps=steps,
                stop_at_eps=stop,
            )  # fmt: skip

        def theirs_fab_t(norm: str = norm) -> Any:
            attack = torchattacks.FAB(
                peer_model, norm=PEER_NORM[norm], steps=steps, n_restarts=1, eps=EPS[norm],
                multi_targeted=True, n_classes=10,
            )  # fmt: skip
            adv = attack(x, y)
            with torch.no_grad():
                return float((peer_model(adv).argmax(1) == y).float().mean())

        contestants: dict[str, Callable[[], Any]] = {
            "ours fab": ours_fab,
            "torchattacks fab": theirs_fab,
            "ours fab-t": lambda: ours_fab_t(False),
            "ours fab-t stop_at_eps": lambda: ours_fab_t(True),
            "torchattacks fab-t": theirs_fab_t,
        }
        for _ in range(args.repeats):
            for name, fn in contestants.items():
                seconds, outcome[name] = timed(fn)
                times.setdefault(name, []).append(seconds)
        t = {name: statistics.median(values) for name, values in times.items()}
        ours = outcome["ours fab"]
        theirs_adv, theirs_broke = outcome["torchattacks fab"]
        ours_broke = torch.tensor([c == "1" for c in ours.success])
        both = ours_broke & theirs_broke
        mine = float(norms(ours.adversarial, x, norm)[both].median())
        peer = float(norms(theirs_adv, x, norm)[both].median())
        minimum_rows.append(
            f"| {norm} | {steps} | {int(ours_broke.sum())} / {int(theirs_broke.sum())} | "
            f"{int(both.sum())} | {mine:.4f} | {peer:.4f} | {mine / peer:.4f} | "
            f"{t['ours fab']:.2f} | {t['torchattacks fab']:.2f} | "
            f"{t['ours fab'] / t['torchattacks fab']:.2f} |"
        )
        full, stopped = outcome["ours fab-t"], outcome["ours fab-t stop_at_eps"]
        target_rows.append(
            f"| {norm} | {EPS[norm]} | {steps} | {full.robust_acc:.2f} | "
            f"{stopped.robust_acc:.2f} | {outcome['torchattacks fab-t']:.2f} | "
            f"{t['ours fab-t']:.2f} | {t['ours fab-t stop_at_eps']:.2f} | "
            f"{t['torchattacks fab-t']:.2f} | "
            f"{t['ours fab-t stop_at_eps'] / t['torchattacks fab-t']:.2f} |"
        )
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"{torch.get_num_threads()} thread(s), {args.repeats} repeat(s)")  # fmt: skip
    print()
    print(
        "| norm | steps | broken (ours / theirs) | both | median norm, ours | median norm, "
        "torchattacks | ours / theirs | ours (s) | torchattacks (s) | time ours / theirs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(minimum_rows))
    print()
    print(
        "| norm | eps | steps | robust acc, ours fab-t | ours, stop_at_eps | torchattacks "
        "FAB-T | ours (s) | ours, stop_at_eps (s) | torchattacks (s) | stop_at_eps / theirs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(target_rows))


if __name__ == "__main__":
    main()
