"""Input-gradient magnitudes, and the verdict they support.

Papernot et al. 2016 measured defensive distillation by the amplitude of the adversarial
gradient, binned logarithmically from 1e-40 to 1. Carlini & Wagner showed what those tiny
amplitudes are: deployed at T = 1, a distilled model's logits are about T times too large,
the softmax saturates and the cross-entropy gradient underflows, while the model is as
easy to fool as before. So the amplitude of the cross-entropy gradient alone says nothing
about robustness. This module measures it next to losses that do not saturate: the margin
on the logits (max wrong logit minus the true one, as CW uses), DLR (invariant to scaling
the logits) and cross-entropy after standardising the logits. When cross-entropy vanishes
where they do not, the verdict is masking by softmax saturation, never robustness.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from pytest_robust.checks.flags import MASKING
from pytest_robust.checks.flags import Flag

# The fix for a gradient that a non-differentiable step hides (zero_gradients,
# no_gradient_path): keep the step in the forward pass, approximate it on the backward pass.
BPDA_FIX = (
    "wrap the non-differentiable step in pytest_robust.BPDA(step) (docs/masking.md#bpda), "
    "or use a black-box attack (attack='square')"
)

# Papernot et al.'s bins, with one more for amplitudes above 1.
EDGES = (0.0, 1e-40, 1e-35, 1e-30, 1e-25, 1e-20, 1e-15, 1e-10, 1e-5, 1e-3, 1.0, math.inf)
# A sample's cross-entropy gradient counts as vanished when it is this many times smaller
# than its margin gradient. For an ordinary model the ratio is about exp(-margin), 1e-4 to
# 1e-10 for confident samples; a distilled model at T = 100 gives 0 (underflow).
SATURATION_RATIO = 1e-20
# Above this fraction of samples with vanished (or exactly zero) gradients, flag it.
FLAG_FRACTION = 0.05

Forward = Callable[[torch.Tensor], torch.Tensor]
LOSSES = ("ce", "margin", "dlr", "ce_rescaled")


def _losses(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample losses that an attacker ascends (higher = closer to a mistake)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    is_label = F.one_hot(labels, logits.shape[1]).bool()
    other = logits.masked_fill(is_label, -math.inf).amax(dim=1)
    losses = {
        "ce": F.cross_entropy(logits, labels, reduction="none"),
        "margin": other - true,
        # Dividing by each row's spread undoes any scaling of the logits.
        "ce_rescaled": F.cross_entropy(
            logits / logits.detach().std(dim=1, keepdim=True).clamp_min(1e-12),
            labels,
            reduction="none",
        ),
    }
    if logits.shape[1] >= 3:
        ranked = logits.sort(dim=1, descending=True).values
        losses["dlr"] = -(true - other) / (ranked[:, 0] - ranked[:, 2] + 1e-12)
    return losses


def amplitudes(
    forward: Forward,
    x: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    losses: tuple[str, ...] = LOSSES,
) -> dict[str, torch.Tensor] | None:
    """Per-sample mean |d loss / d x| for each of `losses` (float64, on the CPU); 'dlr'
    is left out with fewer than 3 classes.

    One forward and one backward per loss and batch. None when the output does not depend
    on the input through autograd (a detached or non-differentiable forward).
    """
    # No sample: empty amplitudes for every loss (no evidence of a path or of its absence).
    chunks: dict[str, list[torch.Tensor]] = {
        name: [torch.zeros(0, dtype=torch.float64)] for name in losses if name != "dlr"
    }
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(xb)
            if not logits.requires_grad:
                return None
            values = _losses(logits, labels[start : start + batch_size])
            names = [name for name in losses if name in values]
            for i, name in enumerate(names):
                # Summed: a sample's gradient does not depend on the batch it is in.
                (grad,) = torch.autograd.grad(
                    values[name].sum(), xb, retain_graph=i < len(names) - 1, allow_unused=True
                )
                grad = grad if grad is not None else torch.zeros_like(xb)
                # float64 so that amplitudes near float32's smallest values stay visible.
                amp = grad.detach().double().abs().flatten(1).mean(dim=1).cpu()
                chunks.setdefault(name, []).append(amp)
    return {name: torch.cat(parts) for name, parts in chunks.items()}


def histogram(values: torch.Tensor) -> list[dict[str, Any]]:
    """Counts of the finite amplitudes in Papernot's logarithmic bins."""
    finite = values[torch.isfinite(values)]
    bins = []
    for low, high in itertools.pairwise(EDGES):
        count = int(((finite >= low) & (finite < high)).sum())
        bins.append({"low": low, "high": high, "count": count})
    return bins


def summary(amps: dict[str, torch.Tensor]) -> dict[str, Any]:
    """JSON-safe description of the cross-entropy gradient amplitudes and the others'
    medians: what the report shows and the thresholds read."""
    ce = amps["ce"]
    n = len(ce)
    finite = ce[torch.isfinite(ce)]
    return {
        "loss": "ce",
        "n": n,
        "bins": histogram(ce),
        "median": float(finite.median()) if finite.numel() else math.nan,
        "zero_frac": float((ce == 0).sum()) / n if n else 0.0,
        "nan_frac": float(ce.isnan().sum()) / n if n else 0.0,
        "inf_frac": float(ce.isinf().sum()) / n if n else 0.0,
        "saturated_frac": float(saturated(amps).sum()) / n if n else 0.0,
        "medians": {name: _median(values) for name, values in amps.items()},
    }


def _median(values: torch.Tensor) -> float | None:
    finite = values[torch.isfinite(values)]
    return float(finite.median()) if finite.numel() else None


def saturated(amps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Samples whose cross-entropy gradient vanished while the margin gradient did not."""
    ce, margin = amps["ce"], amps["margin"]
    healthy_margin = torch.isfinite(margin) & (margin > 0)
    return healthy_margin & (ce <= SATURATION_RATIO * margin)


def flags_for(amps: dict[str, torch.Tensor] | None, loss: str) -> list[Flag]:
    """Gradient flags for an attack that ascends `loss` ('ce' or 'logits')."""
    if amps is None:
        return [
            Flag(
                "no_gradient_path",
                MASKING,
                "the model's output does not depend on its input through autograd (forward() "
                "detaches the input, runs under no_grad, or goes through numpy)",
                f"make forward() differentiable in x; {BPDA_FIX}",
            )
        ]
    own = amps["ce"] if loss == "ce" else amps["margin"]
    n = len(own)
    if n == 0:
        return []
    flags = []
    bad = int((~torch.isfinite(own)).sum())
    if bad:
        flags.append(
            Flag(
                "nonfinite_gradients",
                MASKING,
                f"{bad} of {n} samples have NaN or infinite input gradients",
                "find the numerically unstable layer (a log or division without a clamp); "
                "gradient attacks cannot follow NaN",
            )
        )
    vanished = saturated(amps) if loss == "ce" else torch.zeros(n, dtype=torch.bool)
    if float(vanished.sum()) / n > FLAG_FRACTION:
        ratio = _median(amps["ce"][vanished] / amps["margin"][vanished])
        flags.append(
            Flag(
                "softmax_saturation",
                MASKING,
                f"the cross-entropy input gradient vanished on {int(vanished.sum())} of {n} "
                f"samples (median {ratio:.1e} of the logit-margin gradient) while the "
                "margin gradient did not: the softmax is saturated (defensive distillation "
                "deployed at T=1, or very large logits), so cross-entropy attacks see no "
                "gradient and overstate robustness",
                "attack a scale-invariant loss: attack='apgd-dlr', 'cw' or 'deepfool' "
                "(or attack=[...] combining them)",
            )
        )
    zero = (own == 0) & ~vanished
    if float(zero.sum()) / n > FLAG_FRACTION:
        flags.append(
            Flag(
                "zero_gradients",
                MASKING,
                f"{int(zero.sum())} of {n} samples have an exactly zero input gradient of "
                f"the attack's loss ({'cross-entropy' if loss == 'ce' else 'logit margin'}): "
                "shattered or quantised gradients",
                f"{BPDA_FIX}; or remove the rounding/argmax step from forward()",
            )
        )
    return flags
