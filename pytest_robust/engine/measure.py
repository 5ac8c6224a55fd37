"""The measuring step of a check, after the clean pass: the input-gradient check
(check="gradients") or the attack passes, as per-sample outcomes in data order.

Only clean-correct samples are attacked (and, when targeted, not those already at their
target); a fresh float32 forward pass decides every outcome (engine/attack_passes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import torch

from pytest_robust.checks import certify
from pytest_robust.checks import crown
from pytest_robust.checks.flags import Flag
from pytest_robust.checks.sanity import black_box_share_flag
from pytest_robust.checks.sanity import resting_on_black_box
from pytest_robust.engine.attack_passes import AttackPasses
from pytest_robust.engine.attack_passes import PassContext
from pytest_robust.engine.backoff import BackOff
from pytest_robust.engine.backoff import mixed_precision
from pytest_robust.engine.clean_pass import CacheKey
from pytest_robust.engine.clean_pass import warn_probabilities
from pytest_robust.engine.early import early_verdict
from pytest_robust.engine.examples import Example
from pytest_robust.engine.fused_clean import FusedClean
from pytest_robust.engine.masking_checks import gradient_check
from pytest_robust.engine.masking_checks import sanity_flags
from pytest_robust.engine.prepare import Prepared
from pytest_robust.engine.stochastic import Randomness
from pytest_robust.engine.stores.counterexamples import CounterexampleMemory
from pytest_robust.engine.targets import resolve_targets
from pytest_robust.errors import RobustConfigError

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Measured:
    """Per-sample outcomes (boolean tensors over the samples the result covers: all of
    them, or the prefix a decided-early check stopped after) and the details to report."""

    clean_correct: torch.Tensor
    robust: torch.Tensor
    success: torch.Tensor
    attacked: torch.Tensor
    targets: torch.Tensor | None
    adversarial: torch.Tensor | None
    examples: list[Example]
    flags: list[Flag]
    details: dict[str, Any]
    # The clean logits when the measuring step made them (engine/fused_clean.py).
    clean: torch.Tensor | None = None


@dataclass(frozen=True)
class Inputs:
    """What the measuring step reads: the float32 forward pass (`forward`, which has
    already given logits for every clean input), the clean logits and the batch settings."""

    forward: Forward
    clean: torch.Tensor | None  # None: the attack passes make the clean pass (fused_clean.py)
    dtype: torch.dtype
    backoff: BackOff
    key: CacheKey | None  # the session cache's key for this model and data, if any
    # How the model's own randomness is driven (inactive: one draw, nothing seeded).
    randomness: Randomness = field(default_factory=Randomness)

    @property
    def clean_logits(self) -> torch.Tensor:
        """The clean logits of a check that made its clean pass first (every check but
        the attacks whose first forward is the clean pass)."""
        if self.clean is None:
            raise RuntimeError("this check's clean pass is fused with its attack")
        return self.clean


def measure_gradients(run: Prepared, given: Inputs) -> Measured:
    """check="gradients": input-gradient amplitudes of the clean-correct samples; nothing
    is attacked, so every clean-correct sample stays robust."""
    clean_correct = given.clean_logits.argmax(dim=1) == run.samples.y.cpu()
    details, flags = given.backoff.retry(
        lambda size: gradient_check(
            given.forward,
            run.samples,
            given.clean_logits,
            clean_correct,
            run.device,
            given.dtype,
            size,
        )
    )
    no_success = torch.zeros_like(clean_correct)
    return Measured(
        clean_correct, clean_correct, no_success, clean_correct, None, None, [], flags, details
    )


def measure_certificate(run: Prepared, given: Inputs) -> Measured:
    """check="certify", method="ibp": a sample counts as robust when it is clean-correct and
    IBP proves that no input of its eps-box (within the bounds) changes the prediction.
    Nothing is attacked, nothing succeeds; the result is a lower bound on robustness."""
    spec, samples = run.spec, run.samples
    assert spec.eps is not None  # validation requires eps for check="certify"
    if given.dtype not in (torch.float32, torch.float64):
        raise RobustConfigError(
            f"check='certify' needs a float32 or float64 model; this one computes in "
            f"{str(given.dtype).removeprefix('torch.')}, whose rounding the bounds (computed "
            "in float64 for the exact function) do not cover. Certify a float32 copy"
        )
    layers = certify.chain_of(run.model)
    modules = [layer.module for layer in layers]
    # float64 throughout; MPS has no float64, so the bounds are computed on the CPU there.
    device = torch.device("cpu") if run.device.type == "mps" else run.device
    # Per-feature bounds: the box is clipped to the range they span, a superset of the
    # threat model's, so a certificate stays sound (only looser).
    eps, bounds = spec.eps, spec.envelope
    method = spec.attack_params["method"]
    if method == "crown":
        crown.check_layers(layers)
    tighter = crown.Crown(modules, device) if method == "crown" else None

    def bound(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = samples.inputs(ids, device, torch.float64)
        labels = samples.y[ids.to(samples.y.device)].to(device)
        with torch.no_grad():
            box = certify.input_box(x, eps, bounds)
            if tighter is None:
                margins = certify.margin_lower_bounds(modules, box, labels)
            else:
                ball = (x, eps) if spec.norm == "l2" else None
                margins = tighter.margin_lower_bounds(box, labels, ball)
            chain = certify.forward_chain(modules, x)
        return margins.amin(dim=1).cpu(), chain.float().cpu()

    pieces = given.backoff.map(bound, torch.arange(len(samples)))
    margins = torch.cat([margin for margin, _ in pieces])
    certify.check_chain(layers, torch.cat([chain for _, chain in pieces]), given.clean_logits)
    clean_correct = given.clean_logits.argmax(dim=1) == samples.y.cpu()
    certified = clean_correct & (margins > 0)
    shown = margins[clean_correct]
    details = {
        "bound": "certified",
        "method": spec.attack_params["method"],
        "box": "linf"
        if spec.norm == "linf"
        else "the L-inf box of radius eps around the L2 ball (sound: the ball lies inside it)"
        + ("; CROWN also minimises over the L2 ball itself" if tighter is not None else ""),
        "elided": isinstance(modules[-1], torch.nn.Linear),
        # Lower bounds of the smallest logit margin over each clean-correct sample's box.
        "margin": {
            "min": float(shown.min()) if len(shown) else None,
            "median": float(shown.median()) if len(shown) else None,
        },
        # The centre and radius (or both corners) through each layer, and one float64
        # forward pass that checks the extracted layers against the model.
        "forward_passes": {"bounds": 2, "chain_check": 1},
        **(_crown_cost(tighter, len(modules)) if tighter is not None else {}),
        **given.backoff.details(),
    }
    no_success = torch.zeros_like(clean_correct)
    return Measured(
        clean_correct, certified, no_success, clean_correct, None, None, [], [], details
    )


def _crown_cost(tighter: crown.Crown, layers: int) -> dict[str, Any]:
    """CROWN's extra cost: the rows of linear bounds carried back through the chain, as
    full backward passes per sample (one per undecided ReLU neuron and per class)."""
    return {"backward_passes": round(tighter.cost.passes_per_sample(layers), 1)}


def measure_attacks(
    run: Prepared,
    given: Inputs,
    memory: CounterexampleMemory | None,
    keep_adversarial: bool,
    keep_examples: int,
) -> Measured:
    """Every member on the samples still unbroken, batch by batch; sanity flags first, or
    last when the clean logits come from the first member's first forward (given.clean is
    None: engine/fused_clean.py)."""
    spec, members, samples = run.spec, run.members, run.samples
    labels = samples.y.cpu()
    clean, targets, attacked = given.clean, None, None
    fused = FusedClean(run, given.dtype, given.backoff) if clean is None else None
    flags: list[Flag] = []
    if clean is not None:
        targets = _targets(run, clean, labels)
        attacked = _attacked(clean, targets, labels)
        flags = _sanity(run, given, clean, attacked)
    randomness = given.randomness
    attack_forward, amp_note = mixed_precision(given.forward, run.device, spec.amp)
    context = PassContext(
        attack_forward, given.forward, targets, run.device, given.dtype, spec.seed, randomness
    )
    names = [name for name, _ in members]
    passes = AttackPasses(
        samples, context, names, keep_adversarial, given.backoff, keep_examples, fused
    )
    stopped = _attack_with_memory(run, passes, clean, attacked, memory)
    if fused is not None:
        clean = fused.complete()
        # stacklevel: this function, run_check, and the caller of run_check.
        warn_probabilities(clean, stacklevel=3)
        if given.key is not None:
            run.cache.store_clean_logits(given.key, clean)
        attacked = _attacked(clean, targets, labels)
        flags = _sanity(run, given, clean, attacked)
    assert clean is not None and attacked is not None
    clean_correct = clean.argmax(dim=1) == labels
    flags = resting_on_black_box(flags, members, passes.skipped)
    robust = clean_correct & ~passes.misclassified
    n, decided = len(samples), None
    if stopped is not None:  # the result covers the samples evaluated, a prefix of the data
        n, verdict = stopped
        decided = {"verdict": verdict, "after": n, "of": len(samples)}
    preset = spec.preset
    if preset is not None and preset.black_box_check is not None and spec.sanity != "off":
        share = preset.black_box_check
        flags = [*flags, *black_box_share_flag(passes.broken_by, members, n, share)]
    details = {
        **passes.details(members, n),
        **given.backoff.details(),
        **({"amp": amp_note} if spec.amp else {}),
        **(_randomness_details(randomness) if randomness.active else {}),
        **({"decided_early": decided} if decided else {}),
        **({"world_size": run.world_size} if run.world_size > 1 else {}),
    }
    adversarial = passes.adversarial[:n] if passes.adversarial is not None else None
    return Measured(
        clean_correct[:n],
        robust[:n],
        passes.success[:n],
        attacked[:n],
        targets,
        adversarial,
        passes.pictured(clean),
        flags,
        details,
        clean,
    )


def _attacked(
    clean: torch.Tensor, targets: torch.Tensor | None, labels: torch.Tensor
) -> torch.Tensor:
    """The samples attacked: clean-correct, and (targeted) not already at their target
    (such a sample can never be a success)."""
    clean_correct = clean.argmax(dim=1) == labels
    return clean_correct & (targets != labels) if targets is not None else clean_correct


def _sanity(
    run: Prepared, given: Inputs, clean: torch.Tensor, attacked: torch.Tensor
) -> list[Flag]:
    """The cheap sanity flags on the attacked samples (none with sanity='off')."""
    if run.spec.sanity == "off":
        return []
    randomness = given.randomness
    return sanity_flags(
        randomness.stream(given.forward, "sanity"),
        run.samples,
        clean,
        attacked,
        run.members,
        run.device,
        given.dtype,
        given.backoff,
        run.cache,
        given.key,
        randomness.flags,
    )


def _randomness_details(randomness: Randomness) -> dict[str, Any]:
    """What the result says about a randomised model's draws (engine/stochastic.py)."""
    return {
        "draws": randomness.draws,
        "eot": randomness.eot,
        "randomness": randomness.kind,
        "judged": "robust only if correct on every draw",
    }


def _targets(run: Prepared, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """The class each sample is pushed towards (None: untargeted)."""
    targets = run.members[0][1].choose_targets(clean, labels)
    if run.spec.target is not None:
        targets = resolve_targets(run.spec.target, clean, labels, run.spec.seed)
    return targets


def _attack_with_memory(
    run: Prepared,
    passes: AttackPasses,
    clean: torch.Tensor | None,
    attacked: torch.Tensor | None,
    memory: CounterexampleMemory | None,
) -> tuple[int, str] | None:
    """Attack this rank's shard in data order, trying remembered counterexamples first and
    remembering the new ones; (m, verdict) when decide_early stopped after m samples.
    With `clean` None (fused: never with decide_early) every sample goes to the passes,
    which attack the clean-correct ones."""
    spec, members, fingerprint = run.spec, run.members, run.samples.fingerprint

    def decide(m: int) -> str | None:
        """The verdict of the thresholds on the first m samples, if already settled."""
        assert clean is not None and attacked is not None
        clean_correct = clean.argmax(dim=1) == run.samples.y.cpu()
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
            attack.recall(memory.load(name, fingerprint))
    if attacked is None:
        order = torch.arange(run.first, run.stop)
    else:
        order = attacked[run.first : run.stop].nonzero().squeeze(1) + run.first
    stopped = passes.attack_in_order(
        members, order, spec.batch_size, decide if spec.decide_early else None
    )
    if run.world_size > 1:
        passes.share()
    for name, attack in members:
        remembered = attack.remember()
        if memory is not None and remembered is not None:
            memory.save(name, fingerprint, remembered)
    return stopped
