"""--robust-report=html on real runs: the overview table at the top with the reason a row
failed, and a transfer check's record naming its surrogate fixture(s), not their class."""

from __future__ import annotations

import json
import re

import pytest

SUITE = """
import pytest
import torch
from pytest_robust import robust


def surrogate(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 2)).eval()


@pytest.fixture(scope="session")
def held_out():
    return surrogate(1)


@pytest.fixture(scope="session")
def other_net():
    return surrogate(2)


@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_gate():
    pass


@pytest.mark.xfail(reason="half the samples break at eps 0.1", strict=True)
@robust(attack="fgsm", eps=0.1, min_acc=0.9)
def test_too_high():
    pass


@robust(attack="transfer", surrogate="held_out", eps=0.1, steps=3)
def test_transfer(robustness):
    assert robustness.params["surrogate"] == "held_out"


@robust(attack="transfer", surrogate=["held_out", "other_net"], eps=0.1, steps=3)
def test_ensemble():
    pass
"""


def test_transfer_records_name_the_surrogate_fixtures(rtester: pytest.Pytester) -> None:
    """Catches `surrogate=[Sequential]` (the class the engine sees) in the result, the
    JSON report and the tables, where the marker named the fixture."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest(
        "--robust-report=term", "--robust-report=json:r.json", "-k", "transfer or ensemble"
    )
    result.assert_outcomes(passed=2)
    checks = json.loads((rtester.path / "r.json").read_text())["checks"]
    assert [c["params"]["surrogate"] for c in checks] == ["held_out", "[held_out, other_net]"]
    result.stdout.fnmatch_lines(["*transfer*surrogate=held_out via=pgd*"])
    assert "Sequential" not in result.stdout.str()


def test_the_html_report_opens_with_an_overview_that_says_why_a_row_failed(
    rtester: pytest.Pytester,
) -> None:
    """Catches a report without the overview at the top, a row without its link to its
    card, or an (x)failed row that does not say which threshold it missed; the transfer
    rows name their surrogate fixtures."""
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest("--robust-report=html:r.html")
    result.assert_outcomes(passed=3, xfailed=1)
    page = (rtester.path / "r.html").read_text()
    top = page.index('<table id="overview-table">')
    assert top < page.index('<section class="card" id="test-1">')
    links = re.findall(r'<a href="#(check-\d+)"', page)
    assert links == ["check-1", "check-2", "check-3", "check-4"]
    assert all(f'<tr id="{anchor}">' in page for anchor in links)
    rows = page[top : page.index("</table>", top)]
    assert "fail (xfail)" in rows
    assert "robust_acc 0.500 &lt; min_acc 0.900" in rows
    assert "transfer from held_out" in rows
    assert "transfer from [held_out, other_net]" in rows
