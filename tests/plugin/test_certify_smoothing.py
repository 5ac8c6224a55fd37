"""check="certify", method="smoothing" through pytest: the gate, the row, the JSON record.

The tiny world's model is linear (logits [0, s], s = sum(x) - 5), so its smoothed
classifier is the model itself and the exact certified L2 radius of a sample is its
distance to the boundary, |s| / sqrt(10): 0.158 for the even samples (margin 0.5), 0.632
for the odd ones (margin 2.0). With sigma 0.25 and n = 1000 CERTIFY returns about 0.13 and
0.54: every sample is certified at eps 0.05, the odd half at eps 0.3.
"""

from __future__ import annotations

import json

import pytest


def test_a_smoothing_gate_passes_and_fails_on_the_certified_accuracy(
    rtester: pytest.Pytester,
) -> None:
    rtester.makepyfile(
        """
from pytest_robust import robust


@robust(check="certify", method="smoothing", sigma=0.25, eps=[0.05, 0.3], n=1000,
        min_acc=[1.0, 0.6])
def test_smoothing(robustness):
    assert robustness.details["classifier"] == "smoothed"
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider", "--robust-report=json:r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*certified_acc 0.500 < min_acc 0.600 (95% CI [[]0.*], n=64) under "
            "certify-smoothing eps=0.3 l2 sigma=0.25 n0=100 n=1000 alpha=0.001; clean_acc 1.000*",
        ]
    )
    records = json.loads((rtester.path / "r.json").read_text())["checks"]
    assert [(r["attack"], r["norm"], r["robust_acc"]) for r in records] == [
        ("certify-smoothing", "l2", 1.0),
        ("certify-smoothing", "l2", 0.5),
    ]
    radii = records[0]["details"]["radii"]
    assert all(0.1 < r < 0.158 for r in radii[0::2])  # below the exact 0.158: sound
    assert all(0.45 < r < 0.632 for r in radii[1::2])
    assert records[0]["details"]["bound"] == "certified"
    assert records[0]["details"]["forward_passes"] == {"per_sample": 1100}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("eps=0.1", "sigma is missing: method='smoothing'*"),
        ('eps=0.1, sigma=0.25, norm="linf"', "*Gaussian smoothing certifies L2 balls*"),
        ("eps=0.7, sigma=0.25, n=1000", "*eps=0.7 > 0.616, the largest radius*raise n or sigma"),
    ],
)
def test_smoothing_arguments_are_checked_at_collection(
    rtester: pytest.Pytester, arguments: str, message: str
) -> None:
    rtester.makepyfile(
        f"""
from pytest_robust import robust

@robust(check="certify", method="smoothing", {arguments})
def test_bad():
    pass
"""
    )
    result = rtester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}*"])
