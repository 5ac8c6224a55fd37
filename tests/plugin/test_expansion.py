"""List expansion: list-valued marker arguments are zipped into one test per position,
with readable ids, and combine with the user's own parametrize as a product."""

from __future__ import annotations

import pytest


def collected_ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line and not line.startswith(" ")]


def test_lists_expand_into_one_test_per_value_with_readable_ids(
    rtester: pytest.Pytester,
) -> None:
    """Catches lists that are not expanded (one test for all eps), unreadable ids
    (test_x[_robust_case0]), or a single-valued marker that grows a needless [id]."""
    rtester.makepyfile(
        test_x="""
        from pytest_robust import robust

        @robust(attack="pgd", eps=[0.05, 0.1], min_acc=[0.0, 0.0], steps=2)
        def test_x():
            pass

        @robust(attack="fgsm", eps=0.1)
        def test_single():
            pass
        """
    )
    result = rtester.runpytest("--collect-only", "-q")
    assert collected_ids(result) == [
        "test_x.py::test_x[pgd-eps=0.05]",
        "test_x.py::test_x[pgd-eps=0.1]",
        "test_x.py::test_single",
    ]
    rtester.runpytest().assert_outcomes(passed=3)


def test_each_case_runs_its_own_values_zipped(rtester: pytest.Pytester) -> None:
    """Catches zipping by the wrong position (eps of one case with the threshold of
    another) or every case running the first value: eps=0.03 keeps everything (1.0),
    eps=0.1 breaks half (0.5), so only the correctly zipped pairs hold."""
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="fgsm", eps=[0.03, 0.1], min_acc=[0.9, 0.4])
        def test_zipped(robustness):
            assert robustness.robust_acc == {0.03: 1.0, 0.1: 0.5}[robustness.eps]

        @robust(attack="fgsm", eps=[0.03, 0.1], min_acc=[0.4, 0.9])
        def test_swapped():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*_ test_swapped[[]fgsm-eps=0.1[]] _*", "robust_acc 0.500 < min_acc 0.900 *"]
    )


def test_ids_name_the_varying_arguments(rtester: pytest.Pytester) -> None:
    """Catches ids that omit a varying attack parameter (steps) or that become
    duplicates when only a threshold varies."""
    rtester.makepyfile(
        test_ids="""
        from pytest_robust import robust

        @robust(attack="pgd", eps=[0.05, 0.1], steps=[1, 2])
        def test_steps():
            pass

        @robust(attack="fgsm", eps=0.1, min_acc=[0.4, 0.5])
        def test_thresholds():
            pass
        """
    )
    result = rtester.runpytest("--collect-only", "-q")
    assert collected_ids(result) == [
        "test_ids.py::test_steps[pgd-eps=0.05-steps=1]",
        "test_ids.py::test_steps[pgd-eps=0.1-steps=2]",
        "test_ids.py::test_thresholds[fgsm-min_acc=0.4]",
        "test_ids.py::test_thresholds[fgsm-min_acc=0.5]",
    ]


def test_combines_with_user_parametrize_as_a_product_under_strict(
    rtester: pytest.Pytester,
) -> None:
    """Catches expansion that replaces, or is replaced by, the user's own parametrize, and
    ids or marker registration that break pytest 9's `strict = true` (strict markers,
    strict config, strict parametrization ids)."""
    rtester.makeini("[pytest]\nstrict = true\n")
    rtester.makepyfile(
        test_x="""
        import pytest
        from pytest_robust import robust

        @pytest.mark.parametrize("k", [1, 2], ids=["ka", "kb"])
        @robust(attack="pgd", eps=[0.05, 0.1], min_acc=[0.0, 0.0], steps=2)
        def test_x(robustness, k):
            assert k in (1, 2)
            assert robustness.eps in (0.05, 0.1)
        """
    )
    result = rtester.runpytest("--collect-only", "-q")
    ids = collected_ids(result)
    assert len(ids) == len(set(ids)) == 4, ids
    for eps in ("pgd-eps=0.05", "pgd-eps=0.1"):
        for k in ("ka", "kb"):
            assert sum(eps + "]" in i or eps + "-" in i for i in ids if k in i) == 1, ids
    result = rtester.runpytest()
    result.assert_outcomes(passed=4, warnings=0)
    assert result.ret == pytest.ExitCode.OK
