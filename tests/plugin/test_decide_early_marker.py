"""decide_early on the marker: a clearly failing gate stops early and the report says so."""

from __future__ import annotations


def test_marker_decide_early_stops_and_reports_it(rtester):
    rtester.makepyfile(
        test_gate="""
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.3, min_acc=0.9, batch_size=8, decide_early=True)
        def test_gate(robustness, robust_model):
            pass

        @robust(attack="fgsm", eps=0.3, min_acc=0.9, batch_size=8)
        def test_full(robustness):
            pass
        """
    )
    result = rtester.runpytest("-rf")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    # Everything breaks at eps=0.3: after one batch of 8 the interval is [0, 0.32] < 0.9.
    assert "decided early after the first 8 of 64 samples" in out
    assert "8/64 early" in out
    assert out.count("8/64 early") == 1  # the full run shows n=64
