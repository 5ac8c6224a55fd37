"""The masking checks as an evaluation runs them: the cheap sanity flags (cached per
model and data), the gradient check, and the full diagnosis (docs/masking.md)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from pytest_robust.attacks import Attack
from pytest_robust.checks import gradients
from pytest_robust.checks.diagnosis import diagnose
from pytest_robust.checks.flags import Flag
from pytest_robust.checks.sanity import GRADIENT_SAMPLES
from pytest_robust.checks.sanity import cheap_flags
from pytest_robust.checks.sanity import determinism_flag
from pytest_robust.checks.sanity import gradient_loss
from pytest_robust.checks.sanity import probability_flag
from pytest_robust.engine.backoff import BackOff
from pytest_robust.engine.data import Samples
from pytest_robust.engine.result import RobustnessResult
from pytest_robust.engine.result import flag_string
from pytest_robust.engine.stores.session_cache import EvaluationCache
from pytest_robust.spec import Spec


def _rows(
    samples: Samples, ids: torch.Tensor, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of the samples `ids`, on the evaluation device."""
    return samples.inputs(ids, device, dtype), samples.y.cpu()[ids].to(device)


def full_diagnosis(spec: Spec, members: list[tuple[str, Attack]]) -> bool:
    if spec.check == "gradients" or not (spec.sanity == "full" or spec.check == "masking"):
        return False
    # Fooling uses data slots, not samples; always-targeted attacks pick their own targets;
    # attacks without an eps-ball (transform, noise) have no budget to vary.
    return not any(
        attack.targeted or name == "fooling" or not attack.eps_ball for name, attack in members
    )


def diagnosed(
    model: torch.nn.Module,
    data: Any,
    spec: Spec,
    result: RobustnessResult,
    members: list[tuple[str, Attack]],
    classes: int,
    cache: EvaluationCache,
    run: Callable[[Spec], RobustnessResult],
) -> RobustnessResult:
    """The result with the full masking diagnosis's flags and measurements added; `run`
    runs a variation of the spec (run_check with the same model, data and cache)."""
    dims = math.prod(cache.samples(data, spec.max_samples, (spec.inputs, spec.labels)).shape)
    started = time.perf_counter()
    found, measured = diagnose(
        spec,
        result,
        members,
        classes,
        dims,
        run,
    )
    details = dict(result.details)
    details["flags"] = [*details["flags"], *(flag.to_dict() for flag in found)]
    measured["duration_s"] = time.perf_counter() - started
    details["diagnosis"] = measured
    duration = result.duration_s + measured["duration_s"]
    return dataclasses.replace(result, details=details, duration_s=duration)


def sanity_flags(
    forward: Callable[[torch.Tensor], torch.Tensor],
    samples: Samples,
    clean: torch.Tensor,
    attacked: torch.Tensor,
    members: list[tuple[str, Attack]],
    device: torch.device,
    dtype: torch.dtype,
    backoff: BackOff,
    cache: EvaluationCache,
    key: tuple[str, str, str, str] | None,
    nondeterminism: Callable[[list[Flag]], list[Flag]] | None = None,
) -> list[Flag]:
    """The cheap flags, computed once per model identity, data, loss and attacked samples
    (every time when the model's identity cannot be established: key None).
    `nondeterminism` turns the two-forward comparison's flag into the check's own (a
    randomised model's flag depends on its seeded draws: engine/stochastic.py)."""
    sanity_key = None
    if key is not None:
        sanity_key = (*key, gradient_loss(members), flag_string(attacked), backoff.size)
    flags = cache.sanity_flags(sanity_key) if sanity_key is not None else None
    if flags is None:
        ids = attacked.nonzero().squeeze(1)[: max(GRADIENT_SAMPLES, backoff.size)]
        x, y = _rows(samples, ids, device, dtype)
        flags = backoff.retry(
            lambda size: cheap_flags(forward, x, y, clean[ids], members, size, nondeterminism)
        )
        if sanity_key is not None:
            cache.store_sanity_flags(sanity_key, flags)
    return flags


def gradient_check(
    forward: Callable[[torch.Tensor], torch.Tensor],
    samples: Samples,
    clean: torch.Tensor,
    clean_correct: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
) -> tuple[dict[str, Any], list[Flag]]:
    """check="gradients": input-gradient amplitudes of the clean-correct samples, and the
    output flags the attack checks raise on them (a randomised model's single gradient
    sample misleads as much as a masked one)."""
    ids = clean_correct.nonzero().squeeze(1)
    x, y = _rows(samples, ids, device, dtype)
    first = slice(0, batch_size)
    flags = probability_flag(clean[ids]) + determinism_flag(forward, x[first], clean[ids][first])
    amps = gradients.amplitudes(forward, x, y, batch_size)
    flags += gradients.flags_for(amps, "ce")
    if amps is None:
        empty = torch.full((len(ids),), math.nan, dtype=torch.float64)
        amps = {"ce": empty, "margin": empty}
    return {"gradients": gradients.summary(amps)}, flags
