"""Pairing certificates with attacks into robust accuracy intervals (report/intervals.py):
pure functions over forged records, with the lower end the per-sample union of the
certificates and the upper end the per-sample intersection of the attacks."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_robust.report.intervals import curves
from pytest_robust.report.intervals import intervals
from pytest_robust.report.json_report import build_report
from pytest_robust.report.markdown import build_markdown
from pytest_robust.report.terminal import format_intervals


def record(nodeid: str, attack: str, robust: str, **extra: Any) -> dict[str, Any]:
    """A record over len(robust) samples; certificates when `attack` starts 'certify-'."""
    certify = attack.startswith("certify-")
    base: dict[str, Any] = {
        "nodeid": nodeid,
        "attack": attack,
        "targeted": False,
        "params": {} if certify else {"steps": 10},
        "norm": "linf",
        "eps": 0.1,
        "bounds": [0.0, 1.0],
        "n": len(robust),
        "clean_correct": "1" * len(robust),
        "robust": robust,
        "robust_acc": robust.count("1") / len(robust),
        "check": "certify" if certify else None,
        "model_fingerprint": "f" * 32,
        "model_structure": "s" * 32,
        "data_fingerprint": "d" * 32,
        "details": (
            {"bound": "certified", "method": attack.removeprefix("certify-")} if certify else {}
        ),
    }
    return {**base, **extra}


def test_a_certificate_and_an_attack_of_the_same_model_and_eps_pair() -> None:
    """Catches the ends swapped, or the width not upper - lower."""
    (found,) = intervals(
        [record("t.py::cert", "certify-ibp", "1100"), record("t.py::pgd", "pgd", "1110")]
    )
    assert (found["certified"], found["attacked"], found["width"]) == (0.5, 0.75, 0.25)
    assert [c["nodeid"] for c in found["certificates"]] == ["t.py::cert"]
    assert [a["nodeid"] for a in found["attacks"]] == ["t.py::pgd"]
    assert found["contradictions"] == []
    assert (found["eps"], found["norm"], found["n"]) == (0.1, "linf", 4)


def test_lower_end_is_the_union_of_certificates_upper_the_intersection_of_attacks() -> None:
    """Catches max/min of the accuracies in place of per-sample OR/AND: the union of
    1100 and 0011 certifies all four, the intersection of 1111-broken-differently none."""
    found = intervals(
        [
            record("a::ibp", "certify-ibp", "1100"),
            record("a::crown", "certify-crown", "0011"),
            record("a::pgd", "pgd", "1111"),
            record("a::sq", "square", "1111"),
        ]
    )
    assert (found[0]["certified"], found[0]["attacked"]) == (1.0, 1.0)
    found = intervals(
        [
            record("a::ibp", "certify-ibp", "0000"),
            record("a::pgd", "pgd", "1100"),
            record("a::sq", "square", "0011"),
        ]
    )
    assert (found[0]["certified"], found[0]["attacked"]) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_fingerprint", "0" * 32),
        ("model_structure", "t" * 32),
        ("data_fingerprint", "e" * 32),
        ("norm", "l2"),
        ("eps", 0.2),
        ("bounds", [0.0, 255.0]),
    ],
)
def test_records_that_differ_in_model_data_norm_eps_or_bounds_do_not_pair(
    field: str, value: Any
) -> None:
    """Catches an interval across two models (other weights; or the same weights in
    another module tree, ReLU vs Tanh), two data sets, two norms, two radii or two input
    ranges."""
    records = [record("a::ibp", "certify-ibp", "1100"), record("a::pgd", "pgd", "1110")]
    assert len(intervals(records)) == 1
    records[1][field] = value
    assert intervals(records) == []


def test_a_structure_digest_from_the_session_run_pairs_with_itself() -> None:
    """Results stored before the field existed (None) pair only with each other."""
    cert = record("a::ibp", "certify-ibp", "1100", model_structure=None)
    attack = record("a::pgd", "pgd", "1110", model_structure=None)
    assert len(intervals([cert, attack])) == 1
    assert intervals([cert, record("a::pgd", "pgd", "1110")]) == []


@pytest.mark.parametrize(
    "other",
    [
        # Randomized smoothing certifies the smoothed classifier, not the model.
        {"attack": "certify-smoothing", "details": {"bound": "certified", "method": "smoothing"}},
        {"details": {"bound": "certified", "method": "ibp", "classifier": "smoothed"}},
        # No eps-ball, no claim about one.
        {"eps": None},
        # check="gradients" attacks nothing.
        {"check": "gradients", "details": {}},
    ],
)
def test_smoothing_gradients_and_ballless_records_are_never_an_end(other: dict[str, Any]) -> None:
    """Catches a smoothed classifier's certificate shown as the lower end of an attack on
    the model (a different classifier)."""
    attack = record("a::pgd", "pgd", "1110")
    assert intervals([{**record("a::x", "certify-ibp", "1111"), **other}, attack]) == []


@pytest.mark.parametrize(
    "other",
    [
        {"details": {"decided_early": {"of": 8}}},  # a prefix of the data, not all of it
        {"params": {"output": "logits_of"}},  # an adapter makes another classifier
    ],
)
def test_early_decisions_and_adapted_outputs_are_not_an_upper_end(other: dict[str, Any]) -> None:
    cert = record("a::ibp", "certify-ibp", "1100")
    assert intervals([cert, {**record("a::pgd", "pgd", "1110"), **other}]) == []


def test_a_certified_sample_an_attack_broke_is_a_contradiction_naming_both() -> None:
    """Catches the soundness check missing a broken certificate (here sample 1)."""
    (found,) = intervals([record("a::ibp", "certify-ibp", "1100"), record("a::pgd", "pgd", "1011")])
    (item,) = found["contradictions"]
    assert item["samples"] == [1] and item["count"] == 1
    assert (item["certificate"]["nodeid"], item["attack"]["nodeid"]) == ("a::ibp", "a::pgd")
    lines = format_intervals(
        [record("a::ibp", "certify-ibp", "1100"), record("a::pgd", "pgd", "1011")]
    )
    (note,) = [line for line, kind in lines if kind == "fail"]
    assert "soundness: certify-ibp (a::ibp) certified 1 sample(s) at eps=0.1" in note
    assert "pgd (a::pgd) broke" in note and "sample 1." in note
    markdown = build_markdown(
        [
            {**record("a::ibp", "certify-ibp", "1100"), **SHOWN},
            {**record("a::pgd", "pgd", "1011"), **SHOWN},
        ],
        {},
        {},
        None,
    )
    assert "❗ soundness: certify-ibp" in markdown


# What the table rows of the Markdown report read besides the pairing fields.
SHOWN = {"clean_acc": 1.0, "ci95": [0.5, 1.0], "thresholds": {}, "row_status": "measured"}


def test_terminal_markdown_and_json_carry_the_interval() -> None:
    records = [
        {**record("t.py::test_cert", "certify-ibp", "1100"), **SHOWN},
        {**record("t.py::test_pgd", "pgd", "1110"), **SHOWN},
    ]
    lines = [line for line, _ in format_intervals(records)]
    assert lines[0].startswith("robust accuracy intervals")
    assert lines[2].split() == [
        "ffffffff",
        "0.1",
        "linf",
        "4",
        "[0.500,",
        "0.750]",
        "0.250",
        "certify-ibp",
        "<=",
        "pgd",
    ]
    markdown = build_markdown(records, {}, {}, None)
    assert "**Robust accuracy in [certified, attacked]**" in markdown
    assert "| `ffffffff` | 0.1 linf | 4 | **[0.500, 0.750]** | 0.250 |" in markdown
    report = build_report(records, {})
    assert [(i["certified"], i["attacked"]) for i in report["intervals"]] == [(0.5, 0.75)]
    assert format_intervals(records[:1]) == []
    assert "[certified, attacked]" not in build_markdown(records[:1], {}, {}, None)


def test_curves_give_each_bound_at_every_eps_it_was_measured() -> None:
    """The HTML picture's points: certificates and attacks at their own eps values, for a
    model that paired at least once; a model that never paired draws nothing."""
    records = [
        record("a::ibp1", "certify-ibp", "1100", eps=0.05),
        record("a::ibp2", "certify-ibp", "1000", eps=0.1),
        record("a::pgd2", "pgd", "1110", eps=0.1),
        record("a::pgd3", "pgd", "1000", eps=0.2),
        record("b::ibp", "certify-ibp", "1", model_structure="other", n=1),
    ]
    (curve,) = curves(records)
    assert curve["certified"] == [(0.05, 0.5), (0.1, 0.25)]
    assert curve["attacked"] == [(0.1, 0.75), (0.2, 0.25)]
    assert (curve["certified_by"], curve["attacked_by"]) == (["certify-ibp"], ["pgd"])
