"""check="gradients", check="masking", --robust-sanity and allow_masking through pytest."""

from __future__ import annotations

import pytest

MODELS = """
import pytest
import torch
from conftest import Linear
from pytest_robust import robust


class Saturated(torch.nn.Module):
    # Logits 1e4 times too large, as a distilled model deployed at T = 1.
    def __init__(self):
        super().__init__()
        self.inner = Linear()
        self.eval()

    def forward(self, x):
        return self.inner(x) * 1e4


class Noisy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Linear()
        self.eval()

    def forward(self, x):
        return self.inner(x + 0.01 * torch.randn_like(x))


@pytest.fixture(scope="session")
def saturated():
    return Saturated()


@pytest.fixture(scope="session")
def noisy():
    return Noisy()
"""


def test_gradient_check_passes_a_healthy_model_and_fails_a_saturated_one(
    rtester: pytest.Pytester,
) -> None:
    rtester.makepyfile(
        MODELS
        + """
@robust(check="gradients")
def test_healthy(robustness):
    assert robustness.details["gradients"]["zero_frac"] == 0.0

@robust(check="gradients", model="saturated")
def test_saturated():
    pass

@robust(check="gradients", model="saturated", allow_masking=True, max_zero_frac=0.5)
def test_saturated_threshold():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*not trustworthy: *softmax_saturation* the cross-entropy input gradient vanished*",
            "*zero-gradient fraction 1.000 > max_zero_frac 0.500 (of 64 samples)*",
        ]
    )


def test_a_masking_flag_fails_a_passing_gate_and_allow_masking_accepts_it(
    rtester: pytest.Pytester,
) -> None:
    rtester.makepyfile(
        MODELS
        + """
@robust(attack="fgsm", eps=0.03, min_acc=0.9, model="noisy")
def test_gate():
    pass

@robust(attack="fgsm", eps=0.03, min_acc=0.9, model="noisy", allow_masking=True)
def test_accepted(robustness):
    assert [f["name"] for f in robustness.flags] == ["nondeterministic"]
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*not trustworthy: *nondeterministic* two forward passes*"])
    off = rtester.runpytest("-p", "no:cacheprovider", "--robust-sanity=off", "-k", "test_gate")
    off.assert_outcomes(passed=1)


def test_full_sanity_from_the_ini_file_and_check_masking(rtester: pytest.Pytester) -> None:
    rtester.makepyfile(
        MODELS
        + """
@robust(attack="pgd", eps=0.1, steps=5, min_acc=0.3)
def test_gate(robustness):
    assert "diagnosis" in robustness.details

@robust(attack="pgd", eps=0.1, steps=5, min_acc=0.3, check="masking", model="saturated")
def test_masked():
    pass
"""
    )
    rtester.makeini("[pytest]\nrobust_sanity = full\n")
    result = rtester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*sanity=full*", "*large_eps_not_chance*"])


def test_a_bad_sanity_level_is_a_usage_error(rtester: pytest.Pytester) -> None:
    rtester.makepyfile("def test_nothing():\n    pass\n")
    result = rtester.runpytest("--robust-sanity=most")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'most': the sanity level must be one of off, cheap, full*"])


def test_a_bad_check_names_the_test_and_the_fix(rtester: pytest.Pytester) -> None:
    rtester.makepyfile(
        """
from pytest_robust import robust

@robust(check="gradients", eps=0.1)
def test_check():
    pass
"""
    )
    result = rtester.runpytest()
    result.stdout.fnmatch_lines(
        ["*@robust on test_check (*): eps= does not apply to check='gradients'*"]
    )
