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
        ('method="deeppoly", eps=0.1', "method='deeppoly'*must be one of 'ibp', 'crown'*"),
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


# The tiny world's classifier again, through a ReLU layer that IBP bounds loosely: the
# hidden units are h = (sum(x) + 5) twice (always active), the logits [0, 2 h1 - h2 - 10]
# = [0, s]. An attack moves s by 10 eps; IBP's margin bound is |s| - 30 eps (the two
# hidden boxes are treated as independent). So at eps 0.03 PGD breaks nothing (1.0) while
# IBP proves only the strong samples (0.5); at eps 0.1 PGD breaks the weak ones (0.5) and
# IBP proves none (0.0); at eps 0.01 both say 1.0.
LOOSE = """
import pytest
import torch
from pytest_robust import robust


@pytest.fixture(scope="session")
def net():
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(10, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2)
    )
    with torch.no_grad():
        model[1].weight.fill_(1.0)
        model[1].bias.fill_(5.0)
        model[3].weight.copy_(torch.tensor([[0.0, 0.0], [2.0, -1.0]]))
        model[3].bias.copy_(torch.tensor([0.0, -10.0]))
    return model.eval()


@robust(check="certify", method="ibp", eps=[0.01, 0.03, 0.1], model="net")
def test_certified():
    pass


@robust(attack="pgd", eps=[0.01, 0.03, 0.1], steps=5, model="net")
def test_attacked():
    pass


@robust(attack="fgsm", eps=0.03)  # the tiny world's own model: another model, no pairing
def test_other_model():
    pass
"""


def test_reports_show_certified_and_attacked_as_one_interval(rtester: pytest.Pytester) -> None:
    """Catches the pairing missing in any report, pairing across models, or the ends
    swapped; the HTML report draws both bounds against eps."""
    rtester.makepyfile(LOOSE)
    result = rtester.runpytest(
        "-p",
        "no:cacheprovider",
        "--robust-report=json:r.json",
        "--robust-report=md:r.md",
        "--robust-report=html:r.html",
    )
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*robust accuracy intervals (the width is what the evaluation leaves open):",
            "*model*eps*n*robust acc in ?certified, attacked?*width*by",
            "* 0.01 linf *64*[[]1.000, 1.000]*0.000*certify-ibp <= pgd",
            "* 0.03 linf *64*[[]0.500, 1.000]*0.500*certify-ibp <= pgd",
            "* 0.1 linf *64*[[]0.000, 0.500]*0.500*certify-ibp <= pgd",
        ]
    )
    assert "soundness" not in result.stdout.str()
    report = json.loads((rtester.path / "r.json").read_text())
    found = [(i["eps"], i["certified"], i["attacked"]) for i in report["intervals"]]
    assert found == [(0.01, 1.0, 1.0), (0.03, 0.5, 1.0), (0.1, 0.0, 0.5)]
    (first, *_) = report["intervals"]
    assert [c["nodeid"] for c in first["certificates"]] == [
        "test_reports_show_certified_and_attacked_as_one_interval.py::"
        "test_certified[certify-ibp-eps=0.01]"
    ]
    markdown = (rtester.path / "r.md").read_text()
    assert "**Robust accuracy in [certified, attacked]**" in markdown
    assert "| 0.03 linf | 64 | **[0.500, 1.000]** | 0.500 |" in markdown
    page = (rtester.path / "r.html").read_text()
    assert "<h2>Robust accuracy in [certified, attacked]</h2>" in page
    assert page.count("<strong>[0.") == 2 and "<strong>[1.000, 1.000]</strong>" in page
    assert 'alt="certified and attacked robust accuracy against eps (model ' in page


def test_crown_closes_the_gap_ibp_leaves_on_the_loose_network(rtester: pytest.Pytester) -> None:
    """CROWN carries the linear function back instead of two independent boxes: on the
    network above its bound is the exact |s| - 10 eps, so its interval with PGD has width
    0 where IBP's had 0.5 (and the intervals pair CROWN, never smoothing, with attacks)."""
    rtester.makepyfile(
        LOOSE.split("@robust(check=")[0]
        + """
@robust(check="certify", method="crown", eps=[0.03, 0.1], model="net")
def test_crown(robustness):
    assert robustness.attack == "certify-crown"
    assert robustness.details["backward_passes"] > 0


@robust(attack="pgd", eps=[0.03, 0.1], steps=5, model="net")
def test_attacked():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider", "--robust-report=json:r.json")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "* 0.03 linf *64*[[]1.000, 1.000]*0.000*certify-crown <= pgd",
            "* 0.1 linf *64*[[]0.500, 0.500]*0.000*certify-crown <= pgd",
        ]
    )
