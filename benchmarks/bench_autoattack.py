"""attack="autoattack" against torchattacks' AutoAttack: time and robust accuracy.

Not part of the test suite. Run from the repository root:

    python benchmarks/bench_autoattack.py                 # 450 digits, 1 CPU thread, 1 repeat
    python benchmarks/bench_autoattack.py --repeats 3 --settings linf:0.1

Same process, model and batch (the 450 test digits of examples/digits, one batch of 450);
for each setting and repeat, ours and torchattacks' run back to back (interleaved, so a
change of machine load hits both alike). Ours: `evaluate(attack="autoattack")` end to end
(clean pass, the members, the float32 re-verification; sanity checks off, as the peer runs
none). torchattacks: `AutoAttack(model, norm, eps, version='standard', n_classes=10,
seed=0)` on a deepcopy in eval mode, timed as the call plus the forward pass that scores
it. The seconds each member spends inside the same runs (ours: its `propose`; theirs: its
`forward`) are clocked too, so a gap can be traced to a member. Also Square alone (5000
iterations, AutoAttack's schedule) on the samples APGD-CE leaves robust, for the cost per
robust sample. Prints Markdown tables.

Set OMP_NUM_THREADS to the --threads value (the default 1) for both to run alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "digits")]

from pytest_robust import evaluate  # noqa: E402

SETTINGS = ("linf:0.1", "linf:0.15", "l2:0.5")


@contextlib.contextmanager
def _clocked(methods: list[tuple[type, str, str]], seconds: dict[str, float]) -> Iterator[None]:
    """Add the time spent in each (class, method) to seconds[label] while inside."""
    saved: list[tuple[type, str, Any]] = []
    for cls, method, label in methods:
        saved.append((cls, method, cls.__dict__.get(method)))
        inner = getattr(cls, method)

        def timed(*args: Any, _inner: Any = inner, _label: str = label, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return _inner(*args, **kw)
            finally:
                seconds[_label] = seconds.get(_label, 0.0) + time.perf_counter() - start

        setattr(cls, method, timed)
    try:
        yield
    finally:
        for cls, method, original in reversed(saved):
            if original is None:
                delattr(cls, method)
            else:
                setattr(cls, method, original)


def _members(seconds: list[dict[str, float]]) -> str:
    """Median seconds per member over the repeats, e.g. 'apgd-ce 1.0, apgd-t 2.0'."""
    names = list(seconds[0]) if seconds else []
    return ", ".join(f"{n} {statistics.median(s.get(n, 0.0) for s in seconds):.1f}" for n in names)


def _ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, **kw: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = evaluate(model, (x, y), sanity="off", batch_size=len(x), **kw)
    return time.perf_counter() - start, result


def _theirs(
    attack: Any, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    start = time.perf_counter()
    adv = attack(x, y)
    with torch.no_grad():
        acc = float((model(adv).argmax(1) == y).float().mean())
    return time.perf_counter() - start, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--n", type=int, default=450, help="test digits")
    parser.add_argument("--no-square", action="store_true", help="skip the Square-only rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchattacks
    from digits import digits_split
    from digits import trained_cnn

    from pytest_robust.attacks.registry import get_attack

    _, _, x, y = digits_split()
    x, y = x[: args.n], y[: args.n]
    model = trained_cnn(seed=0).eval()
    names = ("apgd-ce", "apgd-t", "fab-t", "square")
    ours_clock = [(get_attack(name), "propose", name) for name in names]
    theirs_clock = [
        (getattr(torchattacks, cls), "forward", name)
        for cls, name in zip(("APGD", "APGDT", "FAB", "Square"), names, strict=True)
    ]
    rows, member_rows = [], []
    for setting in args.settings:
        norm, eps_text = setting.split(":")
        eps = float(eps_text)
        ta_norm = {"linf": "Linf", "l2": "L2"}[norm]
        ours_t, theirs_t, ours_acc, theirs_acc, broken_by = [], [], 0.0, 0.0, None
        ours_m: list[dict[str, float]] = []
        theirs_m: list[dict[str, float]] = []
        for _ in range(args.repeats):
            ours_m.append({})
            with _clocked(ours_clock, ours_m[-1]):
                t, result = _ours(model, x, y, attack="autoattack", eps=eps, norm=norm)
            ours_t.append(t)
            ours_acc, broken_by = result.robust_acc, result.details.get("broken_by")
            peer = copy.deepcopy(model).eval()
            aa = torchattacks.AutoAttack(
                peer, norm=ta_norm, eps=eps, version="standard", n_classes=10, seed=0
            )
            theirs_m.append({})
            with _clocked(theirs_clock, theirs_m[-1]):
                t, theirs_acc = _theirs(aa, peer, x, y)
            theirs_t.append(t)
            print(f"# {setting}: ours {ours_t[-1]:.1f} s, torchattacks {t:.1f} s", flush=True)
        rows.append(
            f"| AutoAttack standard | {norm} | {eps:g} | {statistics.median(ours_t):.1f} | "
            f"{ours_acc:.4f} ({round(ours_acc * len(x))}/{len(x)}) | "
            f"{statistics.median(theirs_t):.1f} | "
            f"{theirs_acc:.4f} ({round(theirs_acc * len(x))}/{len(x)}) | "
            f"{statistics.median(ours_t) / statistics.median(theirs_t):.2f} | {broken_by} |"
        )
        print(rows[-1], flush=True)
        member_rows.append(f"| {norm} | {eps:g} | {_members(ours_m)} | {_members(theirs_m)} |")
        print(member_rows[-1], flush=True)
        if args.no_square:
            continue
        # Square alone on the samples APGD-CE leaves robust: all of them spend the budget.
        _, first = _ours(model, x, y, attack="apgd-ce", eps=eps, norm=norm)
        keep = torch.tensor([bit == "1" for bit in first.robust])
        xs, ys = x[keep], y[keep]
        sq_ours, sq_theirs, sq_oacc, sq_tacc = [], [], 0.0, 0.0
        for _ in range(args.repeats):
            t, result = _ours(
                model, xs, ys, attack="square", eps=eps, norm=norm, queries=5001,
                rescale_schedule=False,
            )  # fmt: skip
            sq_ours.append(t)
            sq_oacc = result.robust_acc
            peer = copy.deepcopy(model).eval()
            square = torchattacks.Square(
                peer, norm=ta_norm, eps=eps, n_queries=5000, n_restarts=1, seed=0,
                resc_schedule=False,
            )  # fmt: skip
            t, sq_tacc = _theirs(square, peer, xs, ys)
            sq_theirs.append(t)
        ours_s, theirs_s = statistics.median(sq_ours), statistics.median(sq_theirs)
        rows.append(
            f"| Square 5000 on the {len(xs)} APGD-CE left | {norm} | {eps:g} | {ours_s:.1f} | "
            f"{sq_oacc:.4f} | {theirs_s:.1f} | {sq_tacc:.4f} | {ours_s / theirs_s:.2f} | - |"
        )
        print(rows[-1], flush=True)
    print(
        f"\ntorch {torch.__version__}, torchattacks {torchattacks.__version__}, "
        f"threads {torch.get_num_threads()}, {args.repeats} repeat(s), n={len(x)}\n"
    )
    print(
        "| run | norm | eps | ours (s) | our robust acc | torchattacks (s) | "
        "their robust acc | ours/theirs | broken_by (ours) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| norm | eps | ours per member (s) | torchattacks per member (s) |")
    print("|---|---|---|---|")
    print("\n".join(member_rows))


if __name__ == "__main__":
    main()
