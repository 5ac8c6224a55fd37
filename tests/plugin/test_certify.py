"""check="certify", method="ibp" through pytest: the gate, the row, the JSON record and
the messages.

The tiny world's classifier written as a chain: logits [0, s], s = sum(x) - 5. IBP's elided
margin bound is exact for one Linear layer: |s| - 10 eps, so with margins 0.5 (even
samples) and 2.0 (odd) the certified accuracy is 1.0 below eps 0.05, 0.5 up to eps 0.2
and 0.0 above, the same numbers the attacks reach in this world.
"""

from __future__ import annotations

import json

import pytest

CHAIN = """
import pytest
import torch
from pytest_robust import robust


@pytest.fixture(scope="session")
def chain():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(10), torch.ones(10)]))
        model[1].bias.copy_(torch.tensor([0.0, -5.0]))
    return model.eval()
"""


def test_a_certify_gate_passes_and_fails_on_the_certified_accuracy(
    rtester: pytest.Pytester,
) -> None:
    rtester.makepyfile(
        CHAIN
        + """
@robust(check="certify", method="ibp", eps=[0.03, 0.1, 0.3], min_acc=[1.0, 0.5, 0.1],
        model="chain")
def test_ibp(robustness):
    assert robustness.details["bound"] == "certified"
    assert robustness.check == "certify"
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider", "--robust-report=json:r.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*certified_acc 0.000 < min_acc 0.100 (95% CI [[]0.000, 0.057], n=64) under "
            "certify-ibp eps=0.3 linf; clean_acc 1.000*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*test_ibp?certify-ibp-eps=0.03?*certify-ibp*0.03*64*1.000*1.000*pass",
            "*test_ibp?certify-ibp-eps=0.1?*certify-ibp*0.1*64*1.000*0.500*pass",
        ]
    )
    records = json.loads((rtester.path / "r.json").read_text())["checks"]
    assert [(r["attack"], r["check"], r["robust_acc"]) for r in records] == [
        ("certify-ibp", "certify", 1.0),
        ("certify-ibp", "certify", 0.5),
        ("certify-ibp", "certify", 0.0),
    ]
    assert {r["details"]["bound"] for r in records} == {"certified"}


def test_a_certify_check_without_threshold_is_measured(rtester: pytest.Pytester) -> None:
    rtester.makepyfile(
        CHAIN
        + """
@robust(check="certify", method="ibp", eps=0.1, norm="l2", model="chain")
def test_measured(robustness):
    assert robustness.status == "measured"
    assert robustness.robust_acc == 0.5  # the L2 ball's L-inf box: the same bound here
    assert "L2 ball" in robustness.details["box"]
"""
    )
    rtester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('method="ibp", eps=0.1, attack="pgd"', "attack= does not apply to check='certify'"),
        ('method="ibp", eps=0.1, steps=10', "steps= does not apply to check='certify'"),
        ('method="ibp", eps=0.1, max_success=0.1', "max_success= does not apply*min_acc"),
        ("eps=0.1", "method is missing: check='certify' needs method=*'ibp'"),
        ('method="ibp"', "eps is missing: check='certify' needs*eps="),
        ('method="crown", eps=0.1', "method='crown'*must be one of 'ibp'"),
        ('method="ibp", eps=0.1, norm="l1"', "norm='l1'*"),
    ],
)
def test_certify_arguments_are_checked_at_collection(
    rtester: pytest.Pytester, arguments: str, message: str
) -> None:
    rtester.makepyfile(
        CHAIN
        + f"""
@robust(check="certify", {arguments}, model="chain")
def test_bad():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_method_without_check_certify_is_refused(rtester: pytest.Pytester) -> None:
    rtester.makepyfile(
        CHAIN
        + """
@robust(attack="pgd", eps=0.1, method="ibp")
def test_bad():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*method= belongs to check='certify'*"])


def test_a_model_ibp_cannot_bound_fails_the_test_naming_the_layer(
    rtester: pytest.Pytester,
) -> None:
    rtester.makepyfile(
        """
import pytest
import torch
from pytest_robust import robust

@pytest.fixture(scope="session")
def gelu():
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(10, 4), torch.nn.GELU(), torch.nn.Linear(4, 2)
    ).eval()

@robust(check="certify", method="ibp", eps=0.1, model="gelu")
def test_gelu():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot bound layer '2' (GELU): it is not monotone*"])
