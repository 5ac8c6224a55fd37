"""One pytest session, one shared evaluation cache: twins that share every weight but differ
in a parameter-free module or a plain attribute get their own clean pass and flags, so the
gate's verdict is the one each twin gets alone."""

from __future__ import annotations

import pytest

from .conftest import WORLD

TWINS = """

class Round4(torch.nn.Module):
    def forward(self, x):
        return torch.round(x * 4) / 4


class Temperature(torch.nn.Module):
    def __init__(self, inner, t):
        super().__init__()
        self.inner, self.t = inner, t

    def forward(self, x):
        return self.inner(x) / self.t


@pytest.fixture(scope="session")
def shared():
    return Linear().eval()


@pytest.fixture(scope="session")
def plain(shared):
    return torch.nn.Sequential(torch.nn.Identity(), shared)


@pytest.fixture(scope="session")
def rounded(shared):
    return torch.nn.Sequential(Round4(), shared)


@pytest.fixture(scope="session")
def warm(shared):
    return Temperature(shared, 1.0)


@pytest.fixture(scope="session")
def cold(shared):
    return Temperature(shared, 1e-4)
"""

GATES = """
from pytest_robust import robust

GATE = dict(attack="pgd", eps=0.03, steps=5, min_acc=0.4)


@robust(model="{first}", **GATE)
def test_first(robustness):
    pass


@robust(model="{second}", **GATE)
def test_second(robustness):
    pass
"""


@pytest.mark.parametrize(("first", "second"), [("plain", "rounded"), ("warm", "cold")])
def test_the_second_twin_gets_its_own_verdict_in_one_session(rtester, first, second):
    rtester.makeconftest(WORLD + TWINS)
    rtester.makepyfile(test_gate=GATES.format(first=first, second=second))
    together = rtester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider")
    together.assert_outcomes(passed=1, failed=1)
    assert "not trustworthy" in together.stdout.str()  # a masking flag, not a threshold
    # Alone, the second twin fails the same way.
    alone = rtester.runpytest("-p", "no:cacheprovider", "-k", "test_second")
    alone.assert_outcomes(failed=1)
