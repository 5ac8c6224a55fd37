"""The clean pass: the model's logits on the unperturbed samples, computed once per model
identity, data, device and output= adapter (through the session cache), and checked before
anything is attacked (finite, labels in range, logits rather than probabilities)."""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable

import torch

from pytest_robust.engine.backoff import BackOff
from pytest_robust.engine.data import Samples
from pytest_robust.engine.distributed import gather_rows
from pytest_robust.engine.forward import forward_logits
from pytest_robust.engine.forward import input_keyword
from pytest_robust.engine.prepare import Prepared
from pytest_robust.engine.stochastic import Randomness
from pytest_robust.errors import ProbabilityOutputWarning
from pytest_robust.errors import RobustConfigError

CacheKey = tuple[str, str, str, str]


def clean_pass(
    run: Prepared,
    key: CacheKey | None,
    dtype: torch.dtype,
    backoff: BackOff,
    randomness: Randomness | None = None,
) -> torch.Tensor:
    """Clean logits (float32, on the CPU) for all samples, from the cache when `key` (the
    model's identity, data, device, output=) is there; None: computed every time.

    With `randomness.draws` > 1 each sample is judged over that many seeded draws, like an
    adversarial point: its logits are the mean over the draws when every draw is correct,
    else those of its first wrong draw (so argmax == label exactly when correct on every
    draw, and the mean logits rank targets)."""
    clean = run.cache.clean_logits(key) if key is not None else None
    if clean is None:
        forward = functools.partial(
            forward_logits,
            run.model,
            output=run.spec.output,
            keyword=input_keyword(run.model, run.spec.inputs),
        )
        ids = torch.arange(run.first, run.stop)
        randomness = randomness if randomness is not None else Randomness()
        clean = _clean_logits(forward, run.samples, ids, run.device, dtype, backoff, randomness)
        if run.world_size > 1:
            clean = gather_rows(clean)
        # stacklevel: check_logits, clean_pass, run_check, and the caller of run_check.
        check_logits(clean, run.samples.y, stacklevel=4)
        if key is not None:
            run.cache.store_clean_logits(key, clean)
    return clean


def input_dtype(model: torch.nn.Module, default: torch.dtype) -> torch.dtype:
    """Feed inputs in the dtype of the model's floating-point weights."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):  # the first decides
        if tensor.is_floating_point():
            return tensor.dtype
    return default


def _clean_logits(
    model: Callable[[torch.Tensor], torch.Tensor],
    samples: Samples,
    ids: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    backoff: BackOff,
    randomness: Randomness,
) -> torch.Tensor:
    """Clean logits (float32, on the CPU) for all samples; only the rows of `ids` are
    computed here (the others are this rank's zeros, filled in by the other ranks)."""

    def logits_of(piece: torch.Tensor) -> torch.Tensor:
        x = samples.inputs(piece, device, dtype)
        seeded = randomness.stream(model, "clean", int(piece[0]) if len(piece) else -1)
        with torch.no_grad():
            draws = seeded.draws(x, randomness.draws).float().cpu()
        if len(draws) == 1:
            return draws[0]
        wrong = draws.argmax(dim=2) != samples.y.cpu()[piece].to(torch.long)
        first_wrong = draws[wrong.int().argmax(dim=0), torch.arange(len(piece))]
        return torch.where(wrong.any(dim=0)[:, None], first_wrong, draws.mean(dim=0))

    # A rank with an empty shard still runs one sample, to learn the number of classes.
    computed = torch.cat(backoff.map(logits_of, ids if len(ids) else torch.arange(1)))
    logits = torch.zeros((len(samples), computed.shape[1]))
    logits[ids] = computed[: len(ids)]
    return logits


def check_logits(logits: torch.Tensor, labels: torch.Tensor, stacklevel: int = 2) -> None:
    """Refuse non-finite logits and out-of-range labels; warn on probabilities (the
    warning is attributed `stacklevel` frames up, to the user's call)."""
    refuse_bad_logits(logits, labels)
    warn_probabilities(logits, stacklevel)


def refuse_bad_logits(
    logits: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor | None = None
) -> None:
    """Refuse non-finite clean logits and labels outside the model's classes. `logits`
    are those of the samples `ids` (default: all of them, in order); `labels` of all."""
    bad = ~torch.isfinite(logits).all(dim=1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        first = int(ids[first]) if ids is not None else first
        of = f"{len(logits)} clean inputs"
        if ids is not None and len(ids) < len(labels):  # a batch of a fused clean pass
            of = f"the {len(logits)} clean inputs of a batch"
        raise RobustConfigError(
            f"model returned NaN or infinite logits for {int(bad.sum())} of {of} "
            f"(first: sample {first}); fix the model or the data before attacking it"
        )
    classes = logits.shape[1]
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise RobustConfigError(
            f"data: labels range over [{int(labels.min())}, {int(labels.max())}] but the model "
            f"outputs {classes} classes; labels must be class indices 0..{classes - 1}"
        )


def warn_probabilities(logits: torch.Tensor, stacklevel: int = 2) -> None:
    """Warn when every clean output row looks like probabilities (attributed `stacklevel`
    frames up, counting the caller as 1, to the user's call)."""
    if bool((logits >= 0).all()) and bool(((logits.sum(dim=1) - 1).abs() < 1e-3).all()):
        warnings.warn(
            "model outputs look like probabilities (non-negative, rows sum to 1), not logits: "
            "cross-entropy on probabilities has vanishing gradients, so gradient attacks are "
            "weakened and robustness is overestimated. Return logits (drop the final softmax)",
            ProbabilityOutputWarning,
            stacklevel=stacklevel + 1,
        )
