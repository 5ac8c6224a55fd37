"""The marker side of the attack arsenal: target=, output=, worst case over a list of
attacks, and transfer from a surrogate fixture.

The world (see conftest.py): 2-class linear model, 64 samples, half of them 0.5 from the
boundary (broken by any L-inf attack at eps=0.1), half 2.0 away.
"""

from __future__ import annotations

import pytest


def test_target_list_expands_and_target_is_reached(rtester: pytest.Pytester) -> None:
    """Catches target= being ignored (an untargeted run), or a list of targets not
    expanding into one test per class."""
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="pgd", eps=0.1, steps=5, target=[0, 1])
        def test_targeted(robustness):
            assert robustness.targeted
            # Half the samples are labelled with the target: they are not attacked.
            assert robustness.n_attacked == 32
            assert robustness.n_success == 16  # the weak half of the others
        """
    )
    result = rtester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_targeted[[]pgd-target=0[]] PASSED*"])


def test_untargetable_attack_is_refused_at_collection(rtester: pytest.Pytester) -> None:
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="illc", eps=0.1, target=1)
        def test_x():
            pass
        """
    )
    result = rtester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*target=: attack 'illc' cannot be targeted*"])


def test_worst_case_over_a_list_of_attacks(rtester: pytest.Pytester) -> None:
    """Catches a list attack being averaged, expanded into tests, or losing its breakdown."""
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack=["fgsm", "pgd"], eps=0.1, steps=3, min_acc=0.5)
        def test_both(robustness):
            assert robustness.attack == "fgsm+pgd"
            assert robustness.details["broken_by"] == {"fgsm": 32, "pgd": 0}
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_both*fgsm+pgd*0.500*pass*"])


def test_transfer_from_a_surrogate_fixture(rtester: pytest.Pytester) -> None:
    """Catches surrogate= not being resolved as a fixture, or examples judged on the
    surrogate: the surrogate here is the same linear model with its sign flipped, so
    examples crafted on it move the target's samples away from the boundary."""
    rtester.makeconftest(
        rtester.path.joinpath("conftest.py").read_text()
        + """

class Flipped(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).flip(1)


@pytest.fixture(scope="session")
def flipped_model(robust_model):
    return Flipped(robust_model)
"""
    )
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="transfer", surrogate="flipped_model", via="fgsm", eps=0.1)
        def test_transfer(robustness):
            assert robustness.n_success == 0  # pushed the wrong way on the target
            # The flipped surrogate is "fooled" everywhere (it is wrong on every sample),
            # yet nothing transfers: the examples are judged on the target.
            assert robustness.details["surrogate_success_rate"] == 1.0
            assert robustness.params["via"] == "fgsm"

        @robust(attack="transfer", surrogate="robust_model", via="fgsm", eps=0.1)
        def test_self_transfer(robustness):
            assert robustness.n_success == 32

        @robust(attack="transfer", surrogate="no_such_model", eps=0.1)
        def test_missing():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*surrogate='no_such_model' names no fixture*"])


def test_output_adapter_on_the_marker(rtester: pytest.Pytester) -> None:
    rtester.makeconftest(
        rtester.path.joinpath("conftest.py").read_text()
        + """

class Pair(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        # Not under "logits" (which would be read by that name): output= must say where.
        return {"scores": self.inner(x), "aux": x}


@pytest.fixture(scope="session")
def dict_model(robust_model):
    return Pair(robust_model)
"""
    )
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.1, model="dict_model", output="scores", min_acc=0.5)
        def test_adapted():
            pass

        @robust(attack="fgsm", eps=0.1, model="dict_model")
        def test_not_guessed():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*returned a dict*output=*"])
