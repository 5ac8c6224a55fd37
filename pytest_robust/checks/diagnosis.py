"""The full gradient-masking diagnosis (sanity='full' or check='masking'; Carlini et al.
2019): it re-runs the evaluation with variations that must behave in known ways: a huge
budget must reach chance, more budget must not help the model, a single step must not beat
the iterative attack, more steps and restarts must not change the result, and random noise
or a black-box attack must not beat the white-box attack.

The cheap flags that run with every check are sanity.py's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from pytest_robust.attacks import Attack
from pytest_robust.attacks import registered_attacks
from pytest_robust.attacks.base import NoGradientPath
from pytest_robust.checks.flags import MASKING
from pytest_robust.checks.flags import Flag
from pytest_robust.spec import THRESHOLDS
from pytest_robust.spec import Spec

if TYPE_CHECKING:
    from pytest_robust.engine.result import RobustnessResult

Run = Callable[[Spec], "RobustnessResult"]

# The full diagnosis re-runs the evaluation on at most this many samples, per variation.
DIAGNOSIS_SAMPLES = 200


def variant(spec: Spec, **changes: Any) -> Spec:
    """The spec with `changes`, no thresholds, no sanity checks, on the first samples."""
    cap = (
        DIAGNOSIS_SAMPLES if spec.max_samples is None else min(spec.max_samples, DIAGNOSIS_SAMPLES)
    )
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
