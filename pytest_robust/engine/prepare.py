"""The first step of a check: refuse what cannot be evaluated, configure the attacks, read
the samples and pick this process's device and shard. Nothing runs the model yet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pytest_robust.checks.smoothing import Smoothed
from pytest_robust.engine.borrow import check_weights
from pytest_robust.engine.data import Samples
from pytest_robust.engine.device import resolve_device
from pytest_robust.engine.distributed import rank_device
from pytest_robust.engine.distributed import shard
from pytest_robust.engine.distributed import world
from pytest_robust.engine.input_domain import check_bounds
from pytest_robust.engine.input_domain import feature_bounds
from pytest_robust.engine.input_domain import frozen_features
from pytest_robust.engine.members import Members
from pytest_robust.engine.members import build_members
from pytest_robust.engine.members import models_in
from pytest_robust.engine.members import threat_of
from pytest_robust.engine.stores.session_cache import EvaluationCache
from pytest_robust.errors import RobustConfigError
from pytest_robust.spec import Spec


@dataclass
class Prepared:
    """What every later step of one check works with."""

    model: torch.nn.Module
    data: Any
    spec: Spec
    members: Members
    samples: Samples
    device: torch.device
    cache: EvaluationCache
    world_size: int
    # This rank's contiguous shard of the samples, [first, stop) (all of them in a
    # single process).
    first: int
    stop: int


def prepare(model: Any, data: Any, spec: Spec, cache: EvaluationCache) -> Prepared:
    """Check the model and the run settings, build the members, read the samples."""
    if not isinstance(model, torch.nn.Module):
        raise RobustConfigError(
            f"model is a {type(model).__name__}; it must be a torch.nn.Module returning logits"
        )
    if isinstance(model, Smoothed):
        raise RobustConfigError(_SMOOTHED)
    check_weights(model, "model")
    rank, world_size = world_for(spec)
    members = build_members(spec, threat_of(spec))
    for surrogate in models_in(members):
        check_weights(surrogate, "the attack's surrogate model")
    device = rank_device(resolve_device(spec.device))
    samples = cache.samples(data, spec.max_samples, (spec.inputs, spec.labels))
    per_feature = feature_bounds(spec.bounds, samples.shape) if spec.per_feature else None
    check_bounds(samples, spec.envelope, per_feature)
    if spec.mask is not None or per_feature is not None:  # checked against the samples now
        frozen = frozen_features(spec.mask, samples.shape) if spec.mask is not None else None
        members = build_members(spec, threat_of(spec, frozen, per_feature))
    first, stop = shard(len(samples), rank, world_size)
    return Prepared(model, data, spec, members, samples, device, cache, world_size, first, stop)


_SMOOTHED = (
    "model is a pytest_robust.Smoothed: it returns labels (PREDICT's majority vote, -1 "
    "for abstain), not logits, so no attack can follow its gradient and IBP cannot bound "
    "it. To certify it, pass its base model with check='certify', method='smoothing', "
    "sigma=... (the same sigma, n, alpha); to attack, pass the base model (model.base)"
)


def world_for(spec: Spec) -> tuple[int, int]:
    """(rank, world size) of this process, once decide_early is known to fit them."""
    if spec.decide_early and not spec.thresholds:
        raise RobustConfigError(
            "decide_early=True needs a threshold to decide (min_acc, max_success, max_drop or "
            "max_confidence); without one, drop decide_early"
        )
    rank, world_size = world()
    if spec.decide_early and world_size > 1:
        raise RobustConfigError(
            "decide_early=True stops after a prefix of the data, which a sharded (torch."
            "distributed) evaluation does not process in order; drop decide_early there"
        )
    return rank, world_size
