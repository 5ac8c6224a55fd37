"""One robustness check: clean pass, attack pass, re-verification, result.

Only clean-correct samples are attacked; clean logits are computed once per model, data
and device (through the cache); every final adversarial input is checked to be inside the
threat model and re-classified with a fresh forward pass, and that pass decides the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import torch

from pytest_robust.attacks import Attack
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import get_attack
from pytest_robust.attacks import registered_attacks
from pytest_robust.checks.flags import Flag
from pytest_robust.checks.sanity import resting_on_black_box
from pytest_robust.checks.sanity import train_mode_flag
from pytest_robust.engine.backoff import BackOff
from pytest_robust.engine.backoff import mixed_precision
from pytest_robust.engine.data import Samples
from pytest_robust.engine.data import check_bounds
from pytest_robust.engine.device import resolve_device
from pytest_robust.engine.distributed import gather_rows
from pytest_robust.engine.distributed import rank_device
from pytest_robust.engine.distributed import shard
from pytest_robust.engine.distributed import world
from pytest_robust.engine.early import early_verdict
from pytest_robust.engine.examples import Example
from pytest_robust.engine.fingerprint import identify
from pytest_robust.engine.fingerprint import value_identity
from pytest_robust.engine.forward import forward_logits
from pytest_robust.engine.guard import borrowed
from pytest_robust.engine.masking import bits
from pytest_robust.engine.masking import diagnosed
from pytest_robust.engine.masking import full_diagnosis
from pytest_robust.engine.masking import gradient_check
from pytest_robust.engine.masking import sanity_flags
from pytest_robust.engine.passes import Passes
from pytest_robust.engine.passes import Setting
from pytest_robust.engine.result import RobustnessResult
from pytest_robust.engine.stores.counterexamples import CounterexampleMemory
from pytest_robust.engine.stores.result_reuse import ResultStore
from pytest_robust.engine.stores.result_reuse import load
from pytest_robust.engine.stores.result_reuse import result_key
from pytest_robust.engine.stores.result_reuse import save
from pytest_robust.engine.stores.session_cache import EvaluationCache
from pytest_robust.engine.targets import describe
from pytest_robust.engine.targets import resolve_targets
from pytest_robust.errors import ProbabilityOutputWarning
from pytest_robust.errors import RobustConfigError
from pytest_robust.spec import Spec
from pytest_robust.spec import attack_params
from pytest_robust.spec import resolve
from pytest_robust.spec import validate


def evaluate(
    model: torch.nn.Module,
    data: Any,
    attack: str | list[str] | tuple[str, ...] | None = None,
    eps: float | None = None,
    *,
    cache: EvaluationCache | None = None,
    keep_adversarial: bool = False,
    memory: CounterexampleMemory | None = None,
    keep_examples: int = 0,
    **params: Any,
) -> RobustnessResult:
    """Attack `model` on `data` and measure what survives.

    `data` is an (x, y) pair of tensors, a Dataset or a DataLoader; `params` are the
    marker's arguments (steps, alpha, random_start, restarts, norm, bounds, batch_size,
    max_samples, device, seed, min_acc, max_success, max_drop). Thresholds do not raise:
    read `result.status` / `result.threshold_failures()`. With keep_adversarial=True,
    `result.adversarial` holds the adversarial inputs (clean inputs where not attacked).
    `check="gradients"` measures input gradients instead of attacking (no attack, no eps);
    `check="masking"` adds the full gradient-masking diagnosis to the attack.
    `memory` keeps counterexamples between calls (attacks that replay them try them first).
    `keep_examples=k` keeps the k most confidently fooled samples in `result.examples`.
    `eps` is required by eps-ball attacks and refused by the others (transform, noise).
    """
    if isinstance(params.get("target"), list):  # no expansion here: a per-sample list
        params["target"] = torch.as_tensor(params["target"])
    given = {name: value for name, value in (("attack", attack), ("eps", eps)) if value is not None}
    kwargs = validate({**given, **params}, registered_attacks(), "argument")
    lists = [name for name, value in kwargs.items() if isinstance(value, list)]
    if lists:
        raise RobustConfigError(
            f"{', '.join(lists)}: evaluate() runs one check; call it once per value"
        )
    spec = resolve(
        kwargs, attack_params(kwargs["attack"], registered_attacks(), kwargs), case_where="argument"
    )
    return run_check(
        model,
        data,
        spec,
        cache=cache,
        keep_adversarial=keep_adversarial,
        memory=memory,
        keep_examples=keep_examples,
    )


def run_check(
    model: torch.nn.Module,
    data: Any,
    spec: Spec,
    *,
    cache: EvaluationCache | None = None,
    keep_adversarial: bool = False,
    memory: CounterexampleMemory | None = None,
    store: ResultStore | None = None,
    slot: str = "",
    keep_examples: int = 0,
) -> RobustnessResult:
    """Run a resolved Spec. The model comes back exactly as it was, also on error.

    With a `store` (--robust-cache), a result stored in `slot` by an earlier run with the
    same model weights, data, parameters, seed, device and versions is returned without
    running the model; a new result is stored there. `keep_examples=k` keeps the k
    successful adversarial inputs the model is most confident about in `result.examples`
    (for the HTML report's pictures; no extra forward pass).
    """
    if not isinstance(model, torch.nn.Module):
        raise RobustConfigError(
            f"model is a {type(model).__name__}; it must be a torch.nn.Module returning logits"
        )
    _check_weights(model, "model")
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
    threat = (
        ThreatModel(spec.eps, spec.norm, spec.bounds)
        if spec.eps is not None
        else ThreatModel.bounds_only(spec.bounds)
    )
    members = _build_members(spec, threat)
    for surrogate in _models_in(members):
        _check_weights(surrogate, "the attack's surrogate model")
    forward = functools.partial(forward_logits, model, output=spec.output)
    device = rank_device(resolve_device(spec.device))
    cache = cache if cache is not None else EvaluationCache()
    samples = cache.samples(data, spec.max_samples)
    check_bounds(samples, spec.bounds)
    # This rank's contiguous shard of the samples (all of them in a single process).
    first, stop = shard(len(samples), rank, world_size)

    started = time.perf_counter()
    # The caches reuse a value only for the same model identity (code, structure,
    # attributes, hooks, weights: engine/fingerprint.py); None when it cannot be established.
    fingerprint, identity = identify(model)
    output = value_identity(spec.output)
    key = None
    if identity is not None and output is not None:
        key = (identity, samples.fingerprint, str(device), output)
    was_training = model.training
    flags: list[Flag] = []  # copied below, never the cache's own list
    reuse_key = None
    if store is not None and world_size == 1 and not keep_adversarial:
        reuse_key = result_key(spec, identity, samples.fingerprint, device)
        stored = load(store, slot, reuse_key, spec) if reuse_key else None
        if stored is not None:
            return _with_train_mode_flag(stored, was_training)
    with contextlib.ExitStack() as borrowing:
        borrowing.enter_context(borrowed(model, device))
        for other in _models_in(members):  # e.g. transfer surrogates
            borrowing.enter_context(borrowed(other, device))
        dtype = _input_dtype(model, samples.x.dtype)
        clean = cache.clean_logits(key) if key is not None else None
        backoff = BackOff(spec.batch_size)
        if clean is None:
            ids = torch.arange(first, stop)
            clean = _clean_logits(forward, samples, ids, device, dtype, backoff)
            if world_size > 1:
                clean = gather_rows(clean)
            _check_logits(clean, samples.y)
            if key is not None:
                cache.store_clean_logits(key, clean)
        # The model gave logits for every clean input: a failure from here on is not
        # about input shapes or types (see forward_logits).
        forward = functools.partial(forward_logits, model, output=spec.output, after_clean=True)
        labels = samples.y.cpu()
        clean_correct = clean.argmax(dim=1) == labels
        if spec.check == "gradients":
            details, flags = backoff.retry(
                lambda size: gradient_check(
                    forward, samples, clean, clean_correct, device, dtype, size
                )
            )
            # Nothing is attacked: every clean-correct sample stays robust.
            targets, attacked, robust, adversarial = None, clean_correct, clean_correct, None
            success, stopped, amp_note = torch.zeros_like(clean_correct), None, None
            examples: list[Example] = []
        else:
            targets = members[0][1].choose_targets(clean, labels)
            if spec.target is not None:
                targets = resolve_targets(spec.target, clean, labels, spec.seed)
            # A sample already at its target is not attacked (and can never be a success).
            attacked = clean_correct & (targets != labels) if targets is not None else clean_correct
            if spec.sanity != "off":
                flags = sanity_flags(
                    forward, samples, clean, attacked, members, device, dtype, backoff, cache, key
                )
            attackforward_logits, amp_note = mixed_precision(forward, device, spec.amp)
            setting = Setting(attackforward_logits, forward, targets, device, dtype, spec.seed)
            names = [name for name, _ in members]
            passes = Passes(samples, setting, names, keep_adversarial, backoff, keep_examples)

            def decide(m: int) -> str | None:
                """The verdict of the thresholds on the first m samples, if already settled."""
                robust = clean_correct & ~passes.misclassified
                return early_verdict(
                    spec.thresholds,
                    clean_correct[:m],
                    robust[:m],
                    passes.success[:m],
                    attacked[:m],
                    passes.max_confidence(m),
                )

            if memory is not None:  # what broke samples last time is tried first
                for name, attack in members:
                    attack.recall(memory.load(name, samples.fingerprint))
            order = attacked[first:stop].nonzero().squeeze(1) + first
            stopped = passes.attack_in_order(
                members, order, spec.batch_size, decide if spec.decide_early else None
            )
            if world_size > 1:
                passes.share()
            for name, attack in members:
                remembered = attack.remember()
                if memory is not None and remembered is not None:
                    memory.save(name, samples.fingerprint, remembered)
            flags = resting_on_black_box(flags, members, passes.skipped)
            success = passes.success
            robust = clean_correct & ~passes.misclassified
            adversarial = passes.adversarial
            examples = passes.examples.with_clean(clean)
    flags = [*flags, *train_mode_flag(was_training)]
    n, decided = len(samples), None
    if stopped is not None:  # the result covers the samples evaluated, a prefix of the data
        n, verdict = stopped
        decided = {"verdict": verdict, "after": n, "of": len(samples)}
        clean_correct, robust, attacked = clean_correct[:n], robust[:n], attacked[:n]
    if spec.check != "gradients":
        details = {
            **passes.details(members, n),
            **backoff.details(),
            **({"amp": amp_note} if spec.amp else {}),
            **({"decided_early": decided} if decided else {}),
            **({"world_size": world_size} if world_size > 1 else {}),
        }
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result = RobustnessResult(
        attack="+".join(name for name, _ in members) or "gradients",
        eps=spec.eps,
        norm=spec.norm,
        bounds=spec.bounds,
        params=_describe_params(members, spec),
        targeted=targets is not None,
        clean_correct=bits(clean_correct),
        robust=bits(robust),
        success=bits(success[:n]),
        attacked=bits(attacked),
        thresholds=dict(spec.thresholds),
        seed=spec.seed,
        device=str(device),
        duration_s=time.perf_counter() - started,
        data_fingerprint=samples.fingerprint,
        model_fingerprint=fingerprint,
        provenance=dict(spec.provenance),
        details={**details, "flags": [flag.to_dict() for flag in flags]},
        check=spec.check if spec.check == "gradients" else None,
        allow_masking=spec.allow_masking,
        strict=spec.strict,
        adversarial=adversarial[:n] if adversarial is not None else None,
        examples=tuple(examples),
    )
    if full_diagnosis(spec, members):
        result = diagnosed(
            model,
            data,
            spec,
            result,
            members,
            clean.shape[1],
            cache,
            lambda variant: run_check(model, data, variant, cache=cache),
        )
    if store is not None and reuse_key:
        save(store, slot, reuse_key, result)
    return result


def _with_train_mode_flag(result: RobustnessResult, was_training: bool) -> RobustnessResult:
    """A stored result with the train-mode warning of the model handed over now (the
    mode is not part of the model's identity: every evaluation runs in eval mode)."""
    kept = [flag for flag in result.flags if flag.get("name") != "train_mode"]
    now = [flag.to_dict() for flag in train_mode_flag(was_training)]
    return dataclasses.replace(result, details={**result.details, "flags": [*kept, *now]})


def _build_members(spec: Spec, threat: ThreatModel) -> list[tuple[str, Attack]]:
    """(name, configured attack) for each attack of the spec, in order."""
    names = spec.attack if isinstance(spec.attack, tuple) else (spec.attack,)
    registry = registered_attacks()
    members = []
    for name in names:
        cls = get_attack(name)  # target= was checked against the attack by validate()
        if cls.targeted and len(names) > 1:
            raise RobustConfigError(
                f"attack {name!r} always picks its own targets, so it cannot be combined with "
                "other attacks; run it in its own test"
            )
        own = attack_params((name,), registry, spec.attack_params)
        config = {}
        for key, param in own.items():
            # In a combination, a parameter nobody set takes each attack's own default.
            given = len(names) == 1 or spec.provenance.get(key, "default") != "default"
            config[key] = spec.attack_params.get(key, param.default) if given else param.default
        config = cls.finalize(config, threat)
        members.append((name, cls(threat, **config)))
    return members


def _models_in(members: list[tuple[str, Attack]]) -> list[torch.nn.Module]:
    found: list[torch.nn.Module] = []
    for _, attack in members:
        for value in attack.config.values():
            values = value if isinstance(value, (list, tuple)) else [value]
            found.extend(v for v in values if isinstance(v, torch.nn.Module))
    return found


def _describe_params(members: list[tuple[str, Attack]], spec: Spec) -> dict[str, Any]:
    def plain(config: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: v if isinstance(v, (int, float, str, bool)) else describe(v)
            for k, v in config.items()
        }

    if not members:  # check="gradients"
        params: dict[str, Any] = {"check": "gradients", "losses": "ce margin dlr ce_rescaled"}
    elif len(members) == 1:
        params = plain(members[0][1].config)
    else:
        params = {"attacks": {name: plain(attack.config) for name, attack in members}}
    if spec.target is not None:
        params["target"] = describe(spec.target)
    if spec.output is not None:
        params["output"] = describe(spec.output)
    return params


def _check_weights(model: torch.nn.Module, role: str) -> None:
    """A model on the meta device has shapes but no values: nothing to evaluate."""
    meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise RobustConfigError(
            f"{role} has {len(meta)} parameter(s) or buffer(s) on the meta device (first: "
            f"{meta[0]!r}): they have shapes but no values, e.g. a model built under "
            "torch.device('meta') or with empty weights. Load its weights before the check: "
            "model.load_state_dict(state, assign=True), or model.to_empty(device='cpu') "
            "followed by load_state_dict(state)"
        )


def _input_dtype(model: torch.nn.Module, default: torch.dtype) -> torch.dtype:
    """Feed inputs in the dtype of the model's floating-point weights."""
    for tensor in [*model.parameters(), *model.buffers()]:
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
) -> torch.Tensor:
    """Clean logits (float32, on the CPU) for all samples; only the rows of `ids` are
    computed here (the others are this rank's zeros, filled in by the other ranks)."""

    def logits_of(piece: torch.Tensor) -> torch.Tensor:
        x = samples.x[piece.to(samples.x.device)].to(device=device, dtype=dtype)
        with torch.no_grad():
            return model(x).float().cpu()

    # A rank with an empty shard still runs one sample, to learn the number of classes.
    computed = torch.cat(backoff.map(logits_of, ids if len(ids) else torch.arange(1)))
    logits = torch.zeros((len(samples), computed.shape[1]))
    logits[ids] = computed[: len(ids)]
    return logits


def _check_logits(logits: torch.Tensor, labels: torch.Tensor) -> None:
    bad = ~torch.isfinite(logits).all(dim=1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise RobustConfigError(
            f"model returned NaN or infinite logits for {int(bad.sum())} of {len(logits)} clean "
            f"inputs (first: sample {first}); fix the model or the data before attacking it"
        )
    classes = logits.shape[1]
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise RobustConfigError(
            f"data: labels range over [{int(labels.min())}, {int(labels.max())}] but the model "
            f"outputs {classes} classes; labels must be class indices 0..{classes - 1}"
        )
    if bool((logits >= 0).all()) and bool(((logits.sum(dim=1) - 1).abs() < 1e-3).all()):
        warnings.warn(
            "model outputs look like probabilities (non-negative, rows sum to 1), not logits: "
            "cross-entropy on probabilities has vanishing gradients, so gradient attacks are "
            "weakened and robustness is overestimated. Return logits (drop the final softmax)",
            ProbabilityOutputWarning,
            stacklevel=3,
        )
