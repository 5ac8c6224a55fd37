"""Sanity flags that decide whether a robustness number can be trusted (Carlini et al. 2019).

`cheap_flags` runs with every check (unless sanity='off'): about one extra forward and a
few backward passes on the samples the attack will work on. `diagnose` is the full
diagnosis (sanity='full' or check='masking'): it re-runs the evaluation with variations
that must behave in known ways: a huge budget must reach chance, more budget must not
help the model, a single step must not beat the iterative attack, more steps and restarts
must not change the result, and random noise or a black-box attack must not beat the
white-box attack.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

import torch

from pytest_robust.attacks import Attack
from pytest_robust.attacks import registered_attacks
from pytest_robust.attacks.base import NoGradientPath
from pytest_robust.checks import gradients
from pytest_robust.checks.flags import MASKING
from pytest_robust.checks.flags import WARNING
from pytest_robust.checks.flags import Flag
from pytest_robust.spec import THRESHOLDS
from pytest_robust.spec import Spec

if TYPE_CHECKING:
    from pytest_robust.engine.result import RobustnessResult

Forward = Callable[[torch.Tensor], torch.Tensor]
Run = Callable[[Spec], "RobustnessResult"]

# Gradient flags are measured on at most this many attacked samples: enough to see a
# fraction of a few percent, and a bounded cost on large evaluation sets.
GRADIENT_SAMPLES = 512
# The full diagnosis re-runs the evaluation on at most this many samples, per variation.
DIAGNOSIS_SAMPLES = 200


def probability_flag(clean_logits: torch.Tensor) -> list[Flag]:
    # all() of nothing is True: without a row there is no evidence either way.
    if len(clean_logits) == 0:
        return []
    rows_sum_to_one = ((clean_logits.sum(dim=1) - 1).abs() < 1e-3).all()
    if bool((clean_logits >= 0).all()) and bool(rows_sum_to_one):
        return [
            Flag(
                "probability_outputs",
                MASKING,
                "the model's outputs are probabilities (non-negative, rows sum to 1), not "
                "logits: cross-entropy on probabilities has vanishing gradients",
                "return logits (drop the final softmax), or pass output= a callable that "
                "returns them",
            )
        ]
    return []


def train_mode_flag(was_training: bool) -> list[Flag]:
    if not was_training:
        return []
    return [
        Flag(
            "train_mode",
            WARNING,
            "the model was handed over in train mode (dropout and batch-norm updates "
            "active); it was evaluated in eval mode, as it should be deployed",
            "call model.eval() in the model fixture, so that every user of it sees the "
            "deployed model",
        )
    ]


def determinism_flag(forward: Forward, x: torch.Tensor, clean_logits: torch.Tensor) -> list[Flag]:
    """Two forward passes in eval mode on the same inputs must agree."""
    if len(x) == 0:
        return []
    with torch.no_grad():
        again = forward(x).float().cpu()
    scale = clean_logits.abs().amax().clamp_min(1.0)
    if bool(((again - clean_logits).abs() <= 1e-4 * scale).all()):
        return []
    return [
        Flag(
            "nondeterministic",
            MASKING,
            "two forward passes on the same inputs gave different logits in eval mode: the "
            "model is randomised, so a single gradient sample misleads the attack",
            "attack the expectation over the randomness (EOT: average gradients over many "
            "forward passes), or make the model deterministic for evaluation",
        )
    ]


def gradient_loss(members: list[tuple[str, Attack]]) -> str | None:
    """The loss to check gradients of: 'ce' when every gradient member ascends
    cross-entropy, 'logits' when some member uses a logit loss, None without gradients."""
    losses = {attack.gradient_loss() for _, attack in members} - {None}
    if not losses:
        return None
    return "ce" if losses == {"ce"} else "logits"


def cheap_flags(
    forward: Forward,
    x: torch.Tensor,
    labels: torch.Tensor,
    clean_logits: torch.Tensor,
    members: list[tuple[str, Attack]],
    batch_size: int,
    nondeterminism: Callable[[list[Flag]], list[Flag]] | None = None,
) -> list[Flag]:
    """Flags from the model's outputs and input gradients on the samples `x` (already on
    the device), whose clean logits are `clean_logits`. `nondeterminism` replaces the
    two-forward comparison's flag (with EOT: the seeded probe's verdict)."""
    # Every flag looks at these samples only: none attacked, nothing to find (issue 11).
    if len(x) == 0:
        return []
    flags = probability_flag(clean_logits)
    first = slice(0, min(batch_size, len(x)))
    compared = determinism_flag(forward, x[first], clean_logits[first])
    flags += nondeterminism(compared) if nondeterminism is not None else compared
    loss = gradient_loss(members)
    if loss is not None:
        keep = slice(0, GRADIENT_SAMPLES)
        amps = gradients.amplitudes(
            forward, x[keep], labels[keep], batch_size, losses=("ce", "margin")
        )
        if amps is not None or loss == "ce":
            flags += gradients.flags_for(amps, loss)
    return flags


# The flags that say the gradient members' evidence is masked. A black-box member (Square)
# never reads the model's gradients, and its margin loss works on probabilities too.
GRADIENT_FLAGS = frozenset(
    {
        "no_gradient_path",
        "zero_gradients",
        "softmax_saturation",
        "nonfinite_gradients",
        "probability_outputs",
    }
)


def resting_on_black_box(
    flags: list[Flag], members: list[tuple[str, Attack]], skipped: list[str]
) -> list[Flag]:
    """The flags of a worst case over members, when some members are black-box.

    A black-box member attacks every sample the members before it left unbroken, so the
    worst case is at least as strong as that member alone, which is gated without any
    gradient flag. A flag that only says the gradient members' evidence is masked then
    becomes a warning that names them: the verdict rests on the black-box members' evidence.
    Every other flag (a randomised model, the full diagnosis) stays as it was. A gradient
    member skipped for want of a gradient path gets its flag here, whatever the sanity level.
    """
    black = [name for name, attack in members if attack.black_box]
    masked = [name for name, attack in members if attack.gradient_loss() is not None]
    if not black or not masked:
        return flags
    if skipped and not any(flag.name == "no_gradient_path" for flag in flags):
        flags = [
            *flags,
            Flag(
                "no_gradient_path",
                MASKING,
                "the model's output does not depend on its input through autograd, so "
                f"{', '.join(skipped)} could not run and {'was' if len(skipped) == 1 else 'were'}"
                " skipped",
                f"make forward() differentiable in x; {gradients.BPDA_FIX}",
            ),
        ]
    rest = (
        f"; the evidence of {', '.join(masked)} is masked, so this result rests on "
        f"{', '.join(black)} alone"
    )
    return [
        Flag(flag.name, WARNING, flag.message + rest, flag.fix)
        if flag.name in GRADIENT_FLAGS
        else flag
        for flag in flags
    ]


def black_box_share_flag(
    broken_by: Mapping[str, int],
    members: list[tuple[str, Attack]],
    evaluated: int,
    alpha: float,
) -> list[Flag]:
    """AutoAttack's check_square_sr, for a preset whose black-box members run after its
    gradient members: they must not break more than `alpha` of the samples evaluated, or
    the gradient members were misled there and the result rests on a query-limited search.
    The full diagnosis makes the same point by running Square on its own
    (_black_box_flags); here the members' own counts say it at no extra cost."""
    black = [name for name, attack in members if attack.black_box]
    white = [name for name, attack in members if attack.gradient_loss() is not None]
    broken = sum(broken_by.get(name, 0) for name in black)
    if not black or not white or evaluated == 0 or broken <= alpha * evaluated:
        return []
    return [
        Flag(
            "black_box_beats_white_box",
            MASKING,
            f"{', '.join(black)} broke {broken} of the {evaluated} samples "
            f"({broken / evaluated:.1%}) that {', '.join(white)} left robust, more than "
            f"{alpha:.1%} (AutoAttack's check_square_sr): the gradients mislead the white-box "
            "members there, so the result rests on a query-limited search",
            "the gradients are masked; measure with an adaptive attack (BPDA or EOT, "
            "docs/masking.md) or Square with more queries (attack='square', queries=20000), "
            "or accept the number with allow_masking=True",
        )
    ]


# --- the full diagnosis -------------------------------------------------------------------


def variant(spec: Spec, **changes: Any) -> Spec:
    """The spec with `changes`, no thresholds, no sanity checks, on the first samples."""
    cap = DIAGNOSIS_SAMPLES if spec.max_samples is None else min(spec.max_samples, 200)
    cleared: dict[str, Any] = {name: None for name in THRESHOLDS}
    return dataclasses.replace(
        spec, sanity="off", check=None, max_samples=cap, **cleared, **changes
    )


def with_attack(spec: Spec, name: str, **params: Any) -> Spec:
    """The spec's variant running another attack with its default parameters."""
    own = registered_attacks()[name].params
    config = {k: p.default for k, p in own.items()}
    config.update(params)
    # Only attack parameters change: the target (if any) stays, so success means the same.
    return variant(spec, attack=name, attack_params=config)


def stronger(spec: Spec, members: list[tuple[str, Attack]]) -> tuple[Spec, str] | None:
    """Twice the steps (alpha re-derived when it was defaulted) and one more restart."""
    params = dict(spec.attack_params)
    said = []
    if "steps" in params:
        params["steps"] = 2 * int(params["steps"])
        said.append(f"steps={params['steps']}")
        if "alpha" in params and spec.provenance.get("alpha", "default") == "default":
            params["alpha"] = None
    if "restarts" in params and params.get("random_start", True):
        params["restarts"] = int(params["restarts"]) + 1
        said.append(f"restarts={params['restarts']}")
    if not said:
        return None
    return variant(spec, attack_params=params), " ".join(said)


@dataclasses.dataclass
class _Diagnosis:
    """What every step of the full diagnosis compares against: the base run and its
    tolerance, with the measurements collected so far."""

    spec: Spec
    members: list[tuple[str, Attack]]
    run: Run
    base: RobustnessResult
    eps: float
    half: float  # half the input range, in the spec's norm
    tol: float
    measured: dict[str, Any]

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.members}


def diagnose(
    spec: Spec,
    result: RobustnessResult,
    members: list[tuple[str, Attack]],
    classes: int,
    dims: int,
    run: Run,
) -> tuple[list[Flag], dict[str, Any]]:
    """Re-run variations of `spec` (through `run`) and flag what contradicts `result`."""
    # Never run for attacks without an eps-ball (engine/masking_checks.full_diagnosis).
    assert spec.eps is not None, "the masking diagnosis needs an eps-ball attack"
    base = run(variant(spec))
    k = base.n
    tol = max(0.02, 2.0 / k)  # two samples, or two percent
    measured: dict[str, Any] = {"samples": k, "robust_acc": base.robust_acc, "tolerance": tol}
    low, high = spec.envelope
    half = 0.5 * (high - low) * (1.0 if spec.norm == "linf" else math.sqrt(dims))
    d = _Diagnosis(spec, members, run, base, spec.eps, half, tol, measured)
    flags = [
        *_large_eps_flag(d, classes),
        *_monotone_flag(d),
        *_single_step_flag(d),
        *_converged_flag(d),
        *_black_box_flags(d),
    ]
    return flags, measured


def _large_eps_flag(d: _Diagnosis, classes: int) -> list[Flag]:
    """A budget of half the input range must bring robust accuracy down to chance."""
    if d.eps >= d.half:
        return []
    big = d.run(variant(d.spec, eps=d.half))
    chance = 1.0 / classes
    d.measured["large_eps"] = {"eps": d.half, "robust_acc": big.robust_acc}
    if big.robust_acc <= chance + d.tol:
        return []
    return [
        Flag(
            "large_eps_not_chance",
            MASKING,
            f"at eps={d.half:g} (half the input range, enough to turn any input grey) "
            f"robust accuracy is still {big.robust_acc:.3f}, above chance "
            f"({chance:.3f}): the attack is not working",
            "the attack's gradients are masked or its step size is wrong; try "
            "attack='apgd-dlr' or 'square'",
        )
    ]


def _monotone_flag(d: _Diagnosis) -> list[Flag]:
    """Robust accuracy must not rise with the budget (eps/2, eps, 2 eps)."""
    eps, base, tol = d.eps, d.base, d.tol
    smaller = d.run(variant(d.spec, eps=eps / 2))
    larger = d.run(variant(d.spec, eps=min(2 * eps, d.half))) if eps < d.half else base
    d.measured["eps_curve"] = {
        f"{eps / 2:g}": smaller.robust_acc,
        f"{eps:g}": base.robust_acc,
        f"{min(2 * eps, d.half):g}": larger.robust_acc,
    }
    if smaller.robust_acc >= base.robust_acc - tol and larger.robust_acc <= base.robust_acc + tol:
        return []
    return [
        Flag(
            "not_monotone_in_eps",
            MASKING,
            f"robust accuracy does not fall as eps grows ({d.measured['eps_curve']}): a "
            "larger budget must never help the model",
            "the attack is not converging or its gradients are masked; use more steps, "
            "restarts, or attack='apgd-dlr'",
        )
    ]


def _single_step_flag(d: _Diagnosis) -> list[Flag]:
    """Single-step FGSM must not beat the iterative attack."""
    if "fgsm" in d.names or not any(attack.gradient_loss() for _, attack in d.members):
        return []
    try:
        single: RobustnessResult | None = d.run(with_attack(d.spec, "fgsm"))
    except NoGradientPath:  # the cheap flags say so; base rests on a black-box member
        single = None
    d.measured["fgsm_robust_acc"] = single.robust_acc if single is not None else None
    if single is None or single.robust_acc >= d.base.robust_acc - d.tol:
        return []
    return [
        Flag(
            "single_step_stronger",
            MASKING,
            f"single-step FGSM leaves robust accuracy {single.robust_acc:.3f}, lower "
            f"than this iterative attack's {d.base.robust_acc:.3f}",
            "the iterative attack is stuck (step size too small, too few steps, or "
            "a loss that saturates); try attack='apgd-dlr' or more steps",
        )
    ]


def _converged_flag(d: _Diagnosis) -> list[Flag]:
    """More steps and restarts must not change the result."""
    more = stronger(d.spec, d.members)
    if more is None:
        return []
    strong_spec, said = more
    strong = d.run(strong_spec)
    d.measured["stronger"] = {"params": said, "robust_acc": strong.robust_acc}
    if strong.robust_acc >= d.base.robust_acc - d.tol:
        return []
    return [
        Flag(
            "not_converged",
            MASKING,
            f"with {said} robust accuracy falls from {d.base.robust_acc:.3f} to "
            f"{strong.robust_acc:.3f}: the attack has not converged",
            f"run the attack with {said} (or more) until the number stops moving",
        )
    ]


def _black_box_flags(d: _Diagnosis) -> list[Flag]:
    """Random noise and the black-box Square attack must not beat the white-box attack."""
    flags = []
    base = d.base
    for name, label in (("random_noise", "random noise"), ("square", "the black-box Square")):
        if name in d.names or d.spec.norm not in registered_attacks()[name].norms:
            continue
        other = d.run(with_attack(d.spec, name))
        beaten = sum(w == "1" and o == "0" for w, o in zip(base.robust, other.robust, strict=True))
        d.measured[f"{name}_robust_acc"] = other.robust_acc
        d.measured[f"{name}_beats_on"] = beaten
        if other.robust_acc < base.robust_acc - d.tol:
            flags.append(
                Flag(
                    "noise_beats_white_box"
                    if name == "random_noise"
                    else "black_box_beats_white_box",
                    MASKING,
                    f"{label} leaves robust accuracy {other.robust_acc:.3f}, lower than the "
                    f"white-box attack's {base.robust_acc:.3f} (it breaks {beaten} samples "
                    "the white-box attack did not): the white-box gradients mislead",
                    "the gradients are masked; use attack=[..., 'square'] for the worst case "
                    "and a scale-invariant loss (attack='apgd-dlr')",
                )
            )
    return flags
