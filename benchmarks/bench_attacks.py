"""Time pytest-robust's attacks against the physical limit and against peer libraries.

Not part of the test suite. Run from the repository root:

    python benchmarks/bench_attacks.py            # digits CNN and resnet18, 1 CPU thread
    python benchmarks/bench_attacks.py --threads 0 --repeats 5 --device cuda

For each workload (same process, model, data, batch size and device) it times:

- limit: k plain forward+backward passes (input gradient only, parameters frozen) over
  all samples; a k-step gradient attack cannot be faster than this;
- ours: `evaluate()` end to end (clean pass, attack, fresh-forward re-verification);
- with --floor: the limit plus the forward passes no check can skip (the re-verification,
  and the clean pass unless the first gradient's forward gives it): ours can only
  approach floor/limit, never reach the limit;
- peers: torchattacks / Foolbox / ART when installed (optional imports), timed as the
  attack call plus the one forward pass needed to score it.

Two settings per attack: "full" uses eps so small that no sample breaks (every sample is
attacked for every step: the overhead over the limit), "eps" the real budget (an
undefended model breaks early, so per-sample early stopping pays). Each time is the
median of --repeats runs. The output is a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "digits")]

from pytest_robust import evaluate  # noqa: E402

# (label, our attack name, steps, our extra params)
ATTACKS: list[tuple[str, str, int, dict[str, Any]]] = [
    ("FGSM", "fgsm", 1, {}),
    ("PGD-10", "pgd", 10, {"steps": 10}),
    ("PGD-40", "pgd", 40, {"steps": 40}),
    ("APGD-CE-100", "apgd-ce", 100, {"steps": 100}),
]
FULL_EPS = 1e-6  # nothing breaks: every sample is attacked for every step


def digits_workload(
    n: int,
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, tuple[float, ...]]:
    from digits import digits_split
    from digits import trained_cnn

    _, _, x, y = digits_split()
    return trained_cnn(seed=0), x[:n], y[:n], (0.1, 0.3)


def resnet_workload(
    n: int,
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, tuple[float, ...]]:
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
        x = torch.rand(n, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(dim=1)  # random weights: label = clean prediction, all correct
    return model, x, y, (2 / 255,)


def run_peer(
    run: Callable[..., torch.Tensor], model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> float:
    torch.manual_seed(0)  # peers draw random starts from the global generator
    acc = robust_acc(model, run(model, x, y), x, y)
    sync(x.device)
    return acc


def limit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, batch: int) -> None:
    """k forward+backward passes over all samples, input gradient only."""
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        for _ in range(k):
            xi = xb.detach().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xi), yb, reduction="sum")
            torch.autograd.grad(loss, xi)
    sync(x.device)


def floor(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, batch: int, fused: bool
) -> None:
    """The model passes a check cannot skip: the limit's k forward+backward passes, the
    fresh forward that re-verifies every final point, and a clean forward unless the first
    gradient's forward gives the clean logits (FGSM: fused; PGD's random start: not)."""
    limit(model, x, y, k, batch)
    with torch.no_grad():
        for start in range(0, len(x), batch):
            for _ in range(1 if fused else 2):
                model(x[start : start + batch])
    sync(x.device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def robust_acc(
    model: torch.nn.Module, adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> float:
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        return float((clean & (model(adv).argmax(1) == y)).float().mean())


def peers(label: str, eps: float, steps: int) -> dict[str, Callable[..., torch.Tensor]]:
    """name -> function(model, x, y) giving adversarial inputs, for installed peers."""
    found: dict[str, Callable[..., torch.Tensor]] = {}
    alpha = 2.5 * eps / max(steps, 1)
    try:
        import torchattacks as ta
    except ImportError:
        ta = None
    if ta is not None:
        make = {
            "FGSM": lambda m: ta.FGSM(m, eps=eps),
            "PGD-10": lambda m: ta.PGD(m, eps=eps, alpha=alpha, steps=10, random_start=True),
            "PGD-40": lambda m: ta.PGD(m, eps=eps, alpha=alpha, steps=40, random_start=True),
            "APGD-CE-100": lambda m: ta.APGD(m, eps=eps, steps=100, loss="ce", n_restarts=1),
        }[label]
        found["torchattacks"] = lambda m, x, y: make(m)(x, y)
    try:
        import foolbox as fb
    except ImportError:
        fb = None
    if fb is not None and label != "APGD-CE-100":
        attack = (
            fb.attacks.FGSM()
            if label == "FGSM"
            else fb.attacks.LinfPGD(abs_stepsize=alpha, steps=steps, random_start=True)
        )

        def run_fb(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            fmodel = fb.PyTorchModel(m, bounds=(0, 1))
            _, adv, _ = attack(fmodel, x, y, epsilons=eps)
            return adv

        found["foolbox"] = run_fb
    try:
        from art.attacks.evasion import AutoProjectedGradientDescent
        from art.attacks.evasion import FastGradientMethod
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        PyTorchClassifier = None
    if PyTorchClassifier is not None:

        def run_art(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            gpu = "gpu" if x.device.type == "cuda" else "cpu"  # ART's name for CUDA
            clf = PyTorchClassifier(
                m, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                nb_classes=10, clip_values=(0.0, 1.0), device_type=gpu,
            )  # fmt: skip
            if label == "FGSM":
                atk: Any = FastGradientMethod(clf, eps=eps, batch_size=len(x))
            elif label == "APGD-CE-100":
                atk = AutoProjectedGradientDescent(
                    clf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1,
                    batch_size=len(x), loss_type="cross_entropy", verbose=False,
                )  # fmt: skip
            else:
                atk = ProjectedGradientDescent(
                    clf, eps=eps, eps_step=alpha, max_iter=steps, num_random_init=1,
                    batch_size=len(x), verbose=False,
                )  # fmt: skip
            return torch.as_tensor(atk.generate(x.cpu().numpy())).to(x.device)

        found["ART"] = run_art
    return found


def interleaved(jobs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, Any]]:
    """Median time and last output of each job, the jobs run in turn in every repeat, so
    that a change of machine load hits all of them alike."""
    times: dict[str, list[float]] = {key: [] for key in jobs}
    outs: dict[str, Any] = {}
    for _ in range(repeats):
        for key, job in jobs.items():
            start = time.perf_counter()
            outs[key] = job()
            times[key].append(time.perf_counter() - start)
    return {key: (statistics.median(times[key]), outs[key]) for key in jobs}


def bench(name: str, workload: Any, args: argparse.Namespace) -> list[str]:
    device = torch.device(args.device)
    model, x, y, budgets = workload
    model, x, y = model.to(device), x.to(device), y.to(device)
    batch = args.batch_size or len(x)
    print(f"# {name}: n={len(x)}, batch={batch}", file=sys.stderr)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    peer_model = copy.deepcopy(model).eval()
    rows = []
    for label, attack, steps, extra in ATTACKS:
        if args.only and label not in args.only:
            continue
        jobs: dict[str, Callable[[], Any]] = {
            "limit": functools.partial(limit, frozen, x, y, steps, batch)
        }
        if args.floor:
            fused = label == "FGSM"
            jobs["floor"] = functools.partial(floor, frozen, x, y, steps, batch, fused)
        for eps in (FULL_EPS, *budgets):
            jobs[f"ours {eps}"] = functools.partial(
                evaluate,
                model,
                (x, y),
                attack,
                eps,
                batch_size=batch,
                device=str(device),
                sanity=args.sanity,
                **extra,
            )
            for peer, run in peers(label, eps, steps).items() if eps != FULL_EPS else []:
                jobs[f"{peer} {eps}"] = functools.partial(run_peer, run, peer_model, x, y)
        timed = interleaved(jobs, args.repeats)
        t_limit = timed["limit"][0]
        for eps in (FULL_EPS, *budgets):
            t, result = timed[f"ours {eps}"]
            shown = "1e-6 (nothing breaks)" if eps == FULL_EPS else f"{eps:.4g}"
            if eps == FULL_EPS and result.n_success:
                shown += f" ({result.n_success} broke!)"
            cells = [name, label, shown, f"{t_limit:.3f}", f"{t:.3f}", f"{t / t_limit:.2f}"]
            if args.floor:
                cells.append(f"{timed['floor'][0] / t_limit:.2f}")
            cells.append(f"{result.robust_acc:.3f}")
            peer_cells = []
            for key, (t_peer, acc) in timed.items():
                peer, _, peer_eps = key.rpartition(" ")
                if peer not in ("limit", "ours") and peer_eps == str(eps):
                    peer_cells.append(
                        f"{peer}: {t_peer:.3f} s, acc {acc:.3f}, ours/peer {t / t_peer:.2f}"
                    )
            cells.append("; ".join(peer_cells) or "-")
            rows.append("| " + " | ".join(cells) + " |")
            if args.verbose:
                print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 = torch default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=0, help="default: all samples at once")
    parser.add_argument("--digits-n", type=int, default=450)
    parser.add_argument("--resnet-n", type=int, default=32)
    parser.add_argument("--workloads", default="digits,resnet18")
    parser.add_argument(
        "--sanity",
        default="off",
        choices=("off", "cheap"),
        help="our sanity checks (docs/masking.md); off by default, since the peers run none: "
        "'cheap' measures what the default flags add",
    )
    parser.add_argument("--verbose", action="store_true", help="rows to stderr as they finish")
    parser.add_argument("--only", nargs="*", help="attack labels to run, e.g. PGD-10")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the model passes no check can skip (the limit, the re-verification "
        "forward, the clean forward unless fused) and show floor/limit",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"sanity {args.sanity}, "
        f"repeats {args.repeats} (median), load average at start {load:.2f}\n"
    )
    header = (
        "| workload | attack | eps | limit: k x fwd+bwd (s) | ours (s) | ours/limit "
        + ("| floor/limit " if args.floor else "")
        + "| our robust acc | peers (time, robust acc, ours/peer) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    makers = {
        "digits": lambda: digits_workload(args.digits_n),
        "resnet18": lambda: resnet_workload(args.resnet_n),
    }
    for name in args.workloads.split(","):
        for row in bench(name, makers[name](), args):
            print(row, flush=True)
    if hasattr(os, "getloadavg"):
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
