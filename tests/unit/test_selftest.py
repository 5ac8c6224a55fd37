"""The known-answer self-test: its answers are right, and it catches broken attacks.

What it can catch: an attack too weak to break a model that provably can be broken (a
wrong gradient sign, steps that never move, a search that gives up); a crash; and points
outside the eps-ball that reach the verdict. That last one needs two bugs at once in our
code, because the base class projects every proposal and the engine re-verifies every
final point: the tests below break both (ThreatModel.project and ThreatModel.distance) to
show that the provably robust model still exposes the overshoot, since its proof does not
use the engine's own distance code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import torch

from pytest_robust import RobustConfigError
from pytest_robust import selftest
from pytest_robust.attacks import Attack
from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import register_attack
from pytest_robust.attacks import registry
from pytest_robust.known_answers import cases as known_answers
from pytest_robust.known_answers.run import SelfTestOutcome


def test_known_answers_are_right_by_direct_computation() -> None:
    answers = known_answers.build()
    known_answers.check(answers)  # the witnesses at 1.1 and 2 x M_HIGH are adversarial
    with torch.no_grad():
        assert torch.equal(answers.model(answers.x).argmax(1), answers.y)
    assert set(answers.y.tolist()) == {0, 1, 2, 3}
    for norm, dual in answers.dual_norms.items():
        # The best point of the ball just under M_LOW changes no prediction ...
        robust = known_answers.witness(answers, 0.99 * known_answers.M_LOW / dual, norm)
        with torch.no_grad():
            assert torch.equal(answers.model(robust).argmax(1), answers.y)
        # ... and the margins are where the docstring says: some sample needs nearly M_HIGH.
        almost = known_answers.witness(answers, 0.9 * known_answers.M_HIGH / dual, norm)
        with torch.no_grad():
            assert not torch.equal(answers.model(almost).argmax(1), answers.across)


def test_the_answer_check_is_not_vacuous() -> None:
    answers = known_answers.build()
    wrong = dataclasses.replace(answers, across=answers.y)  # "adversarial" = own class
    with pytest.raises(RuntimeError, match="known adversarial examples"):
        known_answers.check(wrong)
    wrong = dataclasses.replace(answers, across=(answers.y + 2) % 4)  # out of reach
    with pytest.raises(RuntimeError, match="known adversarial examples"):
        known_answers.check(wrong)
    with pytest.raises(RuntimeError, match="known adversarial examples"):
        known_answers.check(answers, slacks=(0.5,))  # below the margins: nothing crosses


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test-only attack name; the registry is restored afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yield


def only(name: str) -> SelfTestOutcome:
    (outcome,) = selftest(attacks=[name])
    return outcome


def case(outcome: SelfTestOutcome, name: str) -> tuple[bool, int]:
    (found,) = [c for c in outcome.cases if c.case == name]
    return found.ok, found.broken


@pytest.mark.usefixtures("scratch_registry")
def test_an_attack_that_overshoots_eps_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    @register_attack
    class Overshoot(Attack):
        """FGSM with 3x the budget, on the exact direction of the known-answer model."""

        name = "selftest-overshoot"
        norms = ("linf",)

        def propose(self, batch: AttackBatch) -> torch.Tensor:
            x = batch.x.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = torch.nn.functional.cross_entropy(batch.model(x), batch.labels)
                (grad,) = torch.autograd.grad(loss, x)
            return batch.x + 3 * self.threat.eps * grad.sign()

    # With the projection intact the overshoot is projected away: a correct FGSM.
    assert only("selftest-overshoot").passed
    # Projection broken: the engine's final guard refuses the points -> FAIL, no crash.
    monkeypatch.setattr(ThreatModel, "project", lambda self, x_adv, x: x_adv.clamp(0, 1))
    outcome = only("selftest-overshoot")
    assert outcome.status == "FAIL" and "outside the threat model" in outcome.error
    # Guard broken too: only the known answer is left, and it sees the overshoot.
    monkeypatch.setattr(ThreatModel, "distance", lambda self, x_adv, x: torch.zeros(len(x)))
    outcome = only("selftest-overshoot")
    ok, broken = case(outcome, "robust-linf")
    assert outcome.status == "FAIL" and not ok and broken > 0
    assert "robust-linf FAIL" in outcome.line()


@pytest.mark.usefixtures("scratch_registry")
def test_an_attack_that_does_not_move_is_caught() -> None:
    @register_attack
    class Idle(Attack):
        name = "selftest-idle"

        def propose(self, batch: AttackBatch) -> torch.Tensor:
            return batch.x

    outcome = only("selftest-idle")
    assert outcome.status == "FAIL"
    assert case(outcome, "robust-l2") == (True, 0)  # nothing broken where nothing may break
    assert case(outcome, "undefended-linf") == (False, 0)
    assert case(outcome, "tight-l2") == (False, 0)


@pytest.mark.usefixtures("scratch_registry")
def test_an_attack_with_the_wrong_gradient_sign_is_caught() -> None:
    @register_attack
    class Backwards(Attack):
        name = "selftest-backwards"

        def propose(self, batch: AttackBatch) -> torch.Tensor:
            x = batch.x.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = torch.nn.functional.cross_entropy(batch.model(x), batch.labels)
                (grad,) = torch.autograd.grad(loss, x)
            return batch.x - self.threat.eps * grad.sign()  # descends instead of ascending

    outcome = only("selftest-backwards")
    assert outcome.status == "FAIL"
    assert case(outcome, "undefended-linf") == (False, 0)


@pytest.mark.usefixtures("scratch_registry")
def test_a_crashing_attack_is_a_fail_line_not_a_crash() -> None:
    @register_attack
    class Crash(Attack):
        name = "selftest-crash"

        def propose(self, batch: AttackBatch) -> torch.Tensor:
            raise ValueError("boom")

    outcome = only("selftest-crash")
    assert outcome.status == "FAIL" and outcome.error == "ValueError: boom"
    assert "error: ValueError: boom" in outcome.line()


@pytest.mark.usefixtures("scratch_registry")
def test_attacks_without_an_eps_ball_known_answer_are_skipped_with_the_reason() -> None:
    @register_attack
    class Rotate(Attack):
        name = "selftest-rotate"
        eps_ball = False  # as the transformation and noise attacks declare

        def propose(self, batch: AttackBatch) -> torch.Tensor:
            return batch.x

    @register_attack
    class NeedsSigma(Attack):
        name = "selftest-needs-sigma"

        @classmethod
        def finalize(cls, config: dict[str, object], threat: ThreatModel) -> dict[str, object]:
            raise RobustConfigError("attack='selftest-needs-sigma' needs sigma=")

        def propose(self, batch: AttackBatch) -> torch.Tensor:
            return batch.x

    rotate, needs = selftest(attacks=["selftest-rotate", "selftest-needs-sigma"])
    assert rotate.status == "SKIP" and "not an eps-ball attack" in rotate.line()
    assert (
        needs.status == "SKIP"
        and "default arguments: attack='selftest-needs-sigma' needs sigma=" in needs.line()
    )
    assert rotate.passed and needs.passed


def test_not_applicable_cases_say_why_and_are_not_counted_as_passed() -> None:
    (noise,) = selftest(attacks=["random_noise"])
    assert noise.passed
    assert {c.case for c in noise.cases} == {"robust-linf", "robust-l2"}
    assert "undefended, tight n/a (random draws" in noise.line()


def test_an_unknown_attack_name_is_a_config_error() -> None:
    with pytest.raises(RobustConfigError, match="'pgdd' is not a registered attack"):
        selftest(attacks=["pgdd"])
