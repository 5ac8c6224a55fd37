"""Certificates on the digits: their cost in forward passes and time, and the two
measurements issue 15 asks of randomized smoothing.

Not part of the test suite (tests/unit/test_certify_smoothing.py checks the same on 50
samples with n = 1000). Run from the repository root:

    python benchmarks/bench_certify.py            # a few minutes on one idle CPU thread
    python benchmarks/bench_certify.py examples   # the tables of examples/defenses/README.md

1. IBP (`method="ibp"`): time of the certificate against one float32 forward pass over the
   450 test digits, for the IBP-trained MLP and the undefended CNN of examples/digits.
2. Smoothing (`method="smoothing"`, the noise-trained CNN of examples/defenses, sigma 0.25,
   n0 = 100, alpha = 0.001): forward passes per sample (n0 + n) and time per sample for
   n = 1000 / 2000 / 10000; certified accuracy at radii 0.25 / 0.5 / 0.75 against a plain
   reference CERTIFY with independent noise (200 samples, n = 2000); and an L2 PGD attack
   with EOT (20 steps x 32 noise draws, on the soft smoothed classifier) inside 0.99 x and
   2 x each certified radius, judged by PREDICT (n = 2000): broken = another class.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "digits"), str(ROOT / "examples" / "defenses")]
import certified_models as cm  # noqa: E402
from defended_models import held_out_data  # noqa: E402
from defended_models import standard_model  # noqa: E402
from digits import trained_cnn  # noqa: E402

from pytest_robust import Smoothed  # noqa: E402
from pytest_robust import evaluate  # noqa: E402

SIGMA, N0, ALPHA = cm.SIGMA, 100, 0.001


def timed(work):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = work()
    return out, time.perf_counter() - start


def ibp_cost(x: torch.Tensor, y: torch.Tensor) -> None:
    print("| model | float32 forward (450) | IBP certify (450) | ratio | certified eps 0.05 |")
    print("|---|---|---|---|---|")
    for name, model in (("IBP-trained MLP", cm.ibp_mlp()), ("undefended CNN", trained_cnn())):
        with torch.no_grad():
            _, forward = timed(lambda m=model: m(x))
        result, total = timed(
            lambda m=model: evaluate(m, (x, y), check="certify", method="ibp", eps=0.05)
        )
        print(
            f"| {name} | {forward * 1000:.1f} ms | {total * 1000:.1f} ms | "
            f"{total / forward:.0f}x | {result.robust_acc:.3f} |"
        )


def reference_certify(model: nn.Module, x: torch.Tensor, n: int) -> tuple[int, float]:
    """Cohen et al.'s CERTIFY, written plainly (global RNG, one batch per phase)."""
    with torch.no_grad():
        noisy = x + SIGMA * torch.randn((N0, *x.shape))
        guess = int(torch.bincount(model(noisy).argmax(1), minlength=10).argmax())
        noisy = x + SIGMA * torch.randn((n, *x.shape))
        n_a = int((model(noisy).argmax(1) == guess).sum())
    p_a = stats.binomtest(n_a, n).proportion_ci(1 - 2 * ALPHA, method="exact").low
    return (guess, SIGMA * stats.norm.ppf(p_a)) if p_a > 0.5 else (-1, 0.0)


def eot_pgd_l2(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, radii: torch.Tensor
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    radii = radii.view(-1, 1, 1, 1)
    x_adv, step = x.clone(), 2.5 * radii / 20
    for _ in range(20):
        x_adv.requires_grad_(True)
        noise = SIGMA * torch.randn((32, *x.shape), generator=generator)
        logits = model((x_adv.unsqueeze(0) + noise).flatten(0, 1)).view(32, len(x), -1)
        probs = F.softmax(logits, dim=2).mean(0)
        (grad,) = torch.autograd.grad(-torch.log(probs.gather(1, y[:, None]) + 1e-12).sum(), x_adv)
        x_adv = x_adv.detach() + step * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = x_adv - x
        scale = radii / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        x_adv = (x + delta * scale.clamp(max=1.0)).clamp(0, 1)
    return x_adv.detach()


def smoothing(x: torch.Tensor, y: torch.Tensor) -> None:
    model, _ = timed(cm.noise_cnn)
    with torch.no_grad():
        _, forward = timed(lambda: model(x.repeat(3, 1, 1, 1)[:1000]))
    print(f"\nnoise-trained CNN: one forward pass of 1000 rows {forward * 1000:.1f} ms")
    print("| n | forward passes per sample | time per sample | clean (smoothed) | abstained |")
    print("|---|---|---|---|---|")
    for n, count in ((1000, 100), (2000, 100), (10000, 50)):
        result, total = timed(
            lambda n=n, k=count: evaluate(
                model, (x[:k], y[:k]), check="certify", method="smoothing", sigma=SIGMA,
                eps=0.25, n0=N0, n=n, batch_size=1000,
            )
        )  # fmt: skip
        print(
            f"| {n} | {result.details['forward_passes']['per_sample']} | "
            f"{total / count * 1000:.0f} ms | {result.clean_acc:.3f} | "
            f"{result.details['abstained']}/{count} |"
        )
    count, n = 200, 2000
    result = evaluate(
        model, (x[:count], y[:count]), check="certify", method="smoothing", sigma=SIGMA,
        eps=0.0, n0=N0, n=n, batch_size=1000,
    )  # fmt: skip
    ours = torch.tensor(result.details["radii"])
    correct = torch.tensor(result.details["predictions"]) == y[:count]
    torch.manual_seed(123)
    ref = []
    for i in range(count):
        label, radius = reference_certify(model, x[i], n)
        ref.append(radius if label == int(y[i]) else -1.0)
    theirs = torch.tensor(ref)
    print(f"\ncertified accuracy, {count} samples, n={n}: ours vs plain reference CERTIFY")
    for r in (0.0, 0.25, 0.5, 0.75):
        mine = float(((ours >= r) & correct).float().mean())
        print(f"  radius {r}: {mine:.3f} vs {float((theirs >= r).float().mean()):.3f}")
    ids = torch.tensor([i for i in range(count) if ours[i] > 0])
    smoothed = Smoothed(model, SIGMA, n=n, alpha=ALPHA)
    for scale in (0.99, 2.0):
        (labels, spent) = timed(
            lambda s=scale: smoothed(eot_pgd_l2(model, x[ids], y[ids], s * ours[ids]))
        )
        wrong = int(((labels != y[ids]) & (labels != -1)).sum())
        print(
            f"  EOT-PGD inside {scale} x radius on {len(ids)} certified samples: broken {wrong}, "
            f"abstained {int((labels == -1).sum())} [{spent:.0f} s]"
        )
    bound = stats.binom.ppf(0.999, len(ids), 2 * ALPHA)
    print(f"  allowed inside the radius (99.9% quantile of Bin({len(ids)}, 2 alpha)): {bound:.0f}")


def examples(x: torch.Tensor, y: torch.Tensor) -> None:
    """Certified (IBP) against attacked (PGD-20) accuracy, and transfer against white-box."""
    models = {
        "standard MLP": standard_model(),
        "IBP-trained MLP (eps 0.1)": cm.ibp_mlp(),
        "undefended CNN (examples/digits)": trained_cnn(),
    }
    print("| model | clean | IBP 0.02 / 0.05 / 0.1 | PGD-20 0.02 / 0.05 / 0.1 |")
    print("|---|---|---|---|")
    for name, model in models.items():
        ibp, pgd = [], []
        for eps in (0.02, 0.05, 0.1):
            ibp.append(evaluate(model, (x, y), check="certify", method="ibp", eps=eps))
            pgd.append(evaluate(model, (x, y), attack="pgd", eps=eps, steps=20))
        print(
            f"| {name} | {ibp[0].clean_acc:.3f} | "
            + " / ".join(f"{r.robust_acc:.3f}" for r in ibp)
            + " | "
            + " / ".join(f"{r.robust_acc:.3f}" for r in pgd)
            + " |"
        )
    held = cm.held_out_mlp()
    print("\n| model | clean | FGSM | PGD-20 (white-box) | transfer PGD | transfer FGSM |")
    print("|---|---|---|---|---|---|")
    for name, model in (
        ("standard MLP", standard_model()),
        ("ensemble-trained", cm.ensemble_mlp()),
    ):
        runs = [
            evaluate(model, (x, y), attack="fgsm", eps=cm.ENSEMBLE_EPS),
            evaluate(model, (x, y), attack="pgd", eps=cm.ENSEMBLE_EPS, steps=20),
            evaluate(model, (x, y), attack="transfer", surrogate=[held], eps=cm.ENSEMBLE_EPS),
            evaluate(
                model, (x, y), attack="transfer", surrogate=[held], via="fgsm",
                eps=cm.ENSEMBLE_EPS,
            ),
        ]  # fmt: skip
        print(
            f"| {name} | {runs[0].clean_acc:.3f} | "
            + " | ".join(f"{r.robust_acc:.3f}" for r in runs)
            + " |"
        )


def main() -> None:
    torch.set_num_threads(1)
    x, y = held_out_data()
    if sys.argv[1:] == ["examples"]:
        examples(x, y)
        return
    ibp_cost(x, y)
    smoothing(x, y)


if __name__ == "__main__":
    main()
