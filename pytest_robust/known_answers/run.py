"""Known-answer self-test: does every registered attack work, here, on this device?

Each attack runs through `evaluate()` (so the engine's projection, re-verification and
bookkeeping are part of what is tested) against the known-answer classifier of
`known_answers.py`, in each norm it supports:

- robust: a budget whose largest possible effect is below every sample's margin (10% slack):
  nothing may break; an attack (or engine) that overshoots eps breaks samples here;
- undefended: twice the budget the farthest sample needs: everything must break;
- tight: 1.1 times the budget the farthest sample needs: everything must break, which needs
  the attack to find close to the optimal direction;
- targeted (attacks that accept target=): the class across each sample's nearest boundary
  must be reached at the undefended budget, and never at the robust budget.

Cases an attack cannot be expected to pass are reported "n/a" with the reason, never passed
vacuously; attacks that are not eps-ball attacks, or that need arguments the self-test cannot
guess, are skipped with the reason.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from pytest_robust.attacks import get_attack
from pytest_robust.attacks import registered_attacks
from pytest_robust.engine.evaluate import evaluate
from pytest_robust.errors import RobustConfigError
from pytest_robust.known_answers import cases as known_answers
from pytest_robust.known_answers.cases import KnownAnswers

ROBUST_SLACK, TIGHT_SLACK, UNDEFENDED_SLACK = 1.1, 1.1, 2.0

# Cases an attack cannot be expected to pass, with the reason its line gives.
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "random_noise": {
        "undefended": "random draws are not expected to find the worst-case direction",
        "tight": "random draws are not expected to find the worst-case direction",
        "targeted": "random draws are not expected to reach a given class",
    },
    "square": {
        "tight-l2": "score-based random search with its default 1000 queries does not get within "
        "10% of the L2 optimum (measured: 13/32 even with 5000); the 2x case is checked",
    },
    "illc": {
        "undefended": "its target is the least likely class, out of reach by construction",
        "tight": "its target is the least likely class, out of reach by construction",
    },
}


@dataclass(frozen=True)
class CaseOutcome:
    """One known-answer case: how many samples broke, and whether that was the answer."""

    case: str  # e.g. "robust-linf", "tight-l2", "targeted-linf"
    expect: str  # "none" or "all"
    broken: int
    n: int
    ok: bool
    note: str = ""

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        return f"{self.case} {verdict} {self.broken}/{self.n}" + (
            f" ({self.note})" if self.note else ""
        )


@dataclass
class SelfTestOutcome:
    """The self-test of one attack: its cases, or why it was skipped."""

    attack: str
    cases: list[CaseOutcome] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)
    skipped: str = ""
    error: str = ""
    duration_s: float = 0.0

    @property
    def status(self) -> str:
        if self.error or not all(case.ok for case in self.cases):
            return "FAIL"
        return "SKIP" if self.skipped else "PASS"

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"

    def line(self) -> str:
        parts = [f"{self.attack:<14} {self.status}"]
        if self.skipped:
            parts.append(f"skipped: {self.skipped}")
        parts.extend(case.summary() for case in self.cases)
        reasons: dict[str, list[str]] = {}  # cases sharing a reason are named together
        for case, why in self.not_applicable.items():
            reasons.setdefault(why, []).append(case)
        parts.extend(f"{', '.join(cases)} n/a ({why})" for why, cases in reasons.items())
        if self.error:
            parts.append(f"error: {self.error}")
        return "  ".join(parts) + f"  [{self.duration_s:.2f}s]"


def selftest(
    device: str = "cpu", attacks: Iterable[str] | None = None, seed: int = 0
) -> list[SelfTestOutcome]:
    """Run the known-answer cases for `attacks` (default: every registered attack)."""
    names = sorted(registered_attacks()) if attacks is None else list(attacks)
    for name in names:
        get_attack(name)  # an unknown name is a RobustConfigError, before anything runs
    answers = known_answers.build(seed)
    known_answers.check(answers)
    return [run_attack(name, answers, device) for name in names]


def run_attack(name: str, answers: KnownAnswers, device: str) -> SelfTestOutcome:
    started = time.perf_counter()
    outcome = SelfTestOutcome(name)
    try:
        cls = get_attack(name)
        if not getattr(cls, "eps_ball", True):
            outcome.skipped = "not an eps-ball attack; the known answers are eps-balls"
        elif name == "fooling":
            _fooling(outcome, answers, device)
        else:
            _eps_ball_cases(outcome, cls.norms, answers, device, _targetable(cls))
    except RobustConfigError as exc:
        outcome.cases.clear()
        outcome.skipped = f"does not run with its default arguments: {exc}"
    except Exception as exc:  # a crash of the attack is a failed self-test, not ours
        outcome.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    outcome.duration_s = time.perf_counter() - started
    return outcome


def _targetable(cls: Any) -> bool:
    return bool(cls.targetable and not cls.targeted)


def _params(name: str, answers: KnownAnswers) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if get_attack(name).delegate == "via":
        # A surrogate identical to the target: transfer is then the white-box attack run to
        # the end (it never stops on the surrogate).
        params["surrogate"] = [copy.deepcopy(answers.model)]
    return params


def _eps_ball_cases(
    outcome: SelfTestOutcome,
    norms: tuple[str, ...],
    answers: KnownAnswers,
    device: str,
    targetable: bool,
) -> None:
    name = outcome.attack
    skip = NOT_APPLICABLE.get(name, {})
    reach = {
        "robust": known_answers.M_LOW / ROBUST_SLACK,
        "undefended": known_answers.M_HIGH * UNDEFENDED_SLACK,
        "tight": known_answers.M_HIGH * TIGHT_SLACK,
    }
    for norm in norms:
        for case, expect in (("robust", "none"), ("undefended", "all"), ("tight", "all")):
            if case in skip or f"{case}-{norm}" in skip:
                continue
            eps = answers.eps_for_reach(reach[case], norm)
            broken, n = _broken(name, answers, eps, norm, device)
            ok = broken == 0 if expect == "none" else broken == n > 0
            outcome.cases.append(CaseOutcome(f"{case}-{norm}", expect, broken, n, ok))
        if targetable and "targeted" not in skip:
            for case, expect in (("robust", "none"), ("undefended", "all")):
                eps = answers.eps_for_reach(reach[case], norm)
                target = answers.across.tolist()
                reached, n = _broken(name, answers, eps, norm, device, target)
                ok = reached == 0 if expect == "none" else reached == n > 0
                label = f"targeted-{case}-{norm}"
                outcome.cases.append(CaseOutcome(label, expect, reached, n, ok))
    outcome.not_applicable.update(skip)


def _broken(
    name: str,
    answers: KnownAnswers,
    eps: float,
    norm: str,
    device: str,
    target: list[int] | None = None,
) -> tuple[int, int]:
    """(samples broken, samples attacked) by `name` at this budget."""
    kwargs: dict[str, Any] = {"norm": norm, "device": device, "seed": 0}
    if target is not None:
        kwargs["target"] = target
    result = evaluate(
        answers.model, (answers.x, answers.y), name, eps, **kwargs, **_params(name, answers)
    )
    if result.clean_acc != 1.0:  # the known-answer data is classified correctly by design
        raise RuntimeError(f"self-test model: clean accuracy {result.clean_acc} on {device}")
    return result.success.count("1"), result.attacked.count("1")


def _fooling(outcome: SelfTestOutcome, answers: KnownAnswers, device: str) -> None:
    """Fooling images start from noise anywhere in the bounds (eps = the whole range). On
    the known-answer model every class is reachable: the score v . (x - 0.5) spans
    [-4, 4] over [0, 1]^d, and at |s| = 4 the end classes have probability > 0.999."""
    result = evaluate(answers.model, (answers.x, answers.y), "fooling", 1.0, device=device)
    # Fooling cycles through the classes; a sample whose label is its target is not attacked.
    broken, n = result.success.count("1"), result.attacked.count("1")
    ok = broken == n > 0
    outcome.cases.append(CaseOutcome("fool-every-class-linf", "all", broken, n, ok))
    outcome.not_applicable["robust, undefended, tight"] = (
        "fooling images need eps = the whole input range, not an eps-ball"
    )
