"""One robustness check, as a pipeline of named steps (run_check):

1. prepare (engine/prepare.py): refuse what cannot be evaluated, build the attacks
   (engine/members.py), read the samples, pick the device and this rank's shard;
2. reuse a stored result when everything it depends on is unchanged (engine/stores/);
3. borrow the models (engine/borrow.py) and run the clean pass (engine/clean_pass.py);
4. measure (engine/measure.py): the gradient check, or the attack passes on the
   clean-correct samples, each final input checked to be inside the threat model and
   re-classified by a fresh forward pass that decides the outcome (engine/attack_passes.py);
5. assemble the RobustnessResult, add the full masking diagnosis when asked for
   (engine/masking_checks.py), and store it for the next run.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import torch

from pytest_robust.attacks import registered_attacks
from pytest_robust.checks.flags import Flag
from pytest_robust.checks.sanity import train_mode_flag
from pytest_robust.engine.backoff import BackOff
from pytest_robust.engine.borrow import borrowed_all
from pytest_robust.engine.clean_pass import CacheKey
from pytest_robust.engine.clean_pass import clean_pass
from pytest_robust.engine.clean_pass import input_dtype
from pytest_robust.engine.digests import structure_digest
from pytest_robust.engine.fingerprint import identify
from pytest_robust.engine.fingerprint import value_identity
from pytest_robust.engine.forward import forward_logits
from pytest_robust.engine.forward import input_keyword
from pytest_robust.engine.fused_clean import fuses_clean_pass
from pytest_robust.engine.masking_checks import diagnosed
from pytest_robust.engine.masking_checks import full_diagnosis
from pytest_robust.engine.measure import Inputs
from pytest_robust.engine.measure import Measured
from pytest_robust.engine.measure import measure_attacks
from pytest_robust.engine.measure import measure_certificate
from pytest_robust.engine.measure import measure_gradients
from pytest_robust.engine.members import describe_params
from pytest_robust.engine.members import fitting_members
from pytest_robust.engine.members import models_in
from pytest_robust.engine.prepare import Prepared
from pytest_robust.engine.prepare import prepare
from pytest_robust.engine.result import RobustnessResult
from pytest_robust.engine.result import flag_string
from pytest_robust.engine.smoothing_pass import measure_smoothing
from pytest_robust.engine.stochastic import Randomness
from pytest_robust.engine.stochastic import default_draws
from pytest_robust.engine.stores import Store
from pytest_robust.engine.stores.counterexamples import CounterexampleMemory
from pytest_robust.engine.stores.result_reuse import load
from pytest_robust.engine.stores.result_reuse import result_key
from pytest_robust.engine.stores.result_reuse import save
from pytest_robust.engine.stores.session_cache import EvaluationCache
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
    `check="certify", method="ibp"` proves instead of attacking: `robust_acc` is then the
    certified accuracy, a lower bound (docs/certify.md); `method="smoothing"` (with sigma=,
    n0=, n=, alpha=) certifies the smoothed classifier, not the model itself.
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
    store: Store | None = None,
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
    cache = cache if cache is not None else EvaluationCache()
    run = prepare(model, data, spec, cache)
    started = time.perf_counter()
    # The caches reuse a value only for the same model identity (code, structure,
    # attributes, hooks, weights: engine/fingerprint.py); None when it cannot be established.
    fingerprint, identity = identify(model)
    randomness = _randomness(run)
    key = _cache_key(run, identity, randomness)
    was_training = model.training
    reuse_key = None
    if store is not None and run.world_size == 1 and not keep_adversarial:
        reuse_key = result_key(spec, identity, run.samples.fingerprint, run.device)
        stored = load(store, slot, reuse_key, spec) if reuse_key else None
        if stored is not None:
            return _with_train_mode_flag(stored, was_training)
    with borrowed_all(model, models_in(run.members), run.device):
        dtype = input_dtype(model, run.samples.dtype)
        backoff = BackOff(spec.batch_size)
        keyword = input_keyword(model, spec.inputs)  # model(pixel_values=x): by keyword
        if randomness.active:
            probed = run.samples.inputs(torch.arange(min(4, len(run.samples))), run.device, dtype)
            randomness.probe(
                functools.partial(forward_logits, model, output=spec.output, keyword=keyword),
                probed,
            )
        # Without a clean pass of its own when the first attack's first forward makes it.
        fused = fuses_clean_pass(run, key, randomness)
        clean = None if fused else clean_pass(run, key, dtype, backoff, randomness)
        # The model gave logits for every clean input: a failure from here on is not
        # about input shapes or types (see forward_logits).
        forward = functools.partial(
            forward_logits, model, output=spec.output, after_clean=True, keyword=keyword
        )
        # A preset leaves out the members the model's class count rules out (binary: DLR);
        # a preset is never fused (fuses_clean_pass), so its clean logits are known here.
        skipped: dict[str, str] = {}
        if clean is not None:
            run.members, skipped = fitting_members(spec, run.members, int(clean.shape[1]))
        given = Inputs(forward, clean, dtype, backoff, key, randomness)
        if spec.check == "gradients":
            measured = measure_gradients(run, given)
        elif spec.check == "certify" and spec.attack_params["method"] == "smoothing":
            measured = measure_smoothing(run, given)
        elif spec.check == "certify":
            measured = measure_certificate(run, given)
        else:
            measured = measure_attacks(run, given, memory, keep_adversarial, keep_examples)
        clean = clean if clean is not None else measured.clean
        assert clean is not None
    if skipped:
        measured = dataclasses.replace(measured, details={**measured.details, "left_out": skipped})
    flags = [*measured.flags, *train_mode_flag(was_training)]
    result = _assemble(run, measured, flags, (fingerprint, structure_digest(model)), started)
    if full_diagnosis(spec, run.members):
        result = diagnosed(
            model,
            data,
            spec,
            result,
            run.members,
            clean.shape[1],
            cache,
            lambda variant: run_check(model, data, variant, cache=cache),
        )
    if store is not None and reuse_key:
        save(store, slot, reuse_key, result)
    return result


def _randomness(run: Prepared) -> Randomness:
    """How this check drives the model's randomness: active with eot > 1 or draws > 1."""
    eot = max((attack.eot for _, attack in run.members), default=1)
    draws = run.spec.draws if run.spec.draws is not None else default_draws(eot)
    return Randomness(run.spec.seed, run.device, eot, draws)


def _cache_key(run: Prepared, identity: str | None, randomness: Randomness) -> CacheKey | None:
    """The session cache's key for this model, data, device and output= adapter (and, when
    the model's randomness is seeded, the seed, draws and batch size the clean logits and
    flags depend on); None when the model's or the adapter's identity cannot be
    established."""
    output = value_identity(run.spec.output)
    if identity is None or output is None:
        return None
    if run.spec.inputs is not None:  # the same model called by keyword or positionally
        output += f" keyword={input_keyword(run.model, run.spec.inputs)}"
    if randomness.active:
        output += f" seed={run.spec.seed} draws={randomness.draws} eot={randomness.eot}"
        output += f" batch_size={run.spec.batch_size}"
    return (identity, run.samples.fingerprint, str(run.device), output)


def _assemble(
    run: Prepared,
    measured: Measured,
    flags: list[Flag],
    model: tuple[str, str],
    started: float,
) -> RobustnessResult:
    """The RobustnessResult of the measured outcomes, timed up to now."""
    spec, members, device = run.spec, run.members, run.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return RobustnessResult(
        attack=_check_name(spec, members),
        eps=spec.eps,
        norm=spec.norm,
        bounds=spec.envelope,
        params=describe_params(members, spec),
        targeted=measured.targets is not None,
        clean_correct=flag_string(measured.clean_correct),
        robust=flag_string(measured.robust),
        success=flag_string(measured.success),
        attacked=flag_string(measured.attacked),
        thresholds=dict(spec.thresholds),
        seed=spec.seed,
        device=str(device),
        duration_s=time.perf_counter() - started,
        data_fingerprint=run.samples.fingerprint,
        model_fingerprint=model[0],
        provenance=dict(spec.provenance),
        model_structure=model[1],
        details={**measured.details, "flags": [flag.to_dict() for flag in flags]},
        check=spec.check if spec.check in ("gradients", "certify") else None,
        allow_masking=spec.allow_masking,
        strict=spec.strict,
        adversarial=measured.adversarial,
        examples=tuple(measured.examples),
    )


def _check_name(spec: Spec, members: list[tuple[str, Any]]) -> str:
    """The result's `attack`: the members' names, or what ran instead of an attack."""
    if spec.check == "certify":
        return f"certify-{spec.attack_params['method']}"
    if spec.preset is not None:  # attack='autoattack': the name the user wrote
        return str(spec.attack)
    return "+".join(name for name, _ in members) or "gradients"


def _with_train_mode_flag(result: RobustnessResult, was_training: bool) -> RobustnessResult:
    """A stored result with the train-mode warning of the model handed over now (the
    mode is not part of the model's identity: every evaluation runs in eval mode)."""
    kept = [flag for flag in result.flags if flag.get("name") != "train_mode"]
    now = [flag.to_dict() for flag in train_mode_flag(was_training)]
    return dataclasses.replace(result, details={**result.details, "flags": [*kept, *now]})
