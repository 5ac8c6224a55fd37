"""--robust-cache: an unchanged check is reused from pytest's cache without running the
model; a changed weight, parameter or seed runs it again."""

from __future__ import annotations

import json

import pytest

from .conftest import WORLD

TEST = """
from pathlib import Path
from pytest_robust import robust


@robust(attack="pgd", eps={eps}, steps=5, min_acc=0.4)
def test_gate(robustness, robust_model):
    Path("forwards.txt").write_text(str(len(robust_model.seen)))
    Path("result.json").write_text(__import__("json").dumps(robustness.to_dict()))
"""


def run(rtester: pytest.Pytester, *args: str) -> tuple[int, dict, str]:
    result = rtester.runpytest("--robust-cache", *args)
    result.assert_outcomes(passed=1)
    forwards = int((rtester.path / "forwards.txt").read_text())
    return forwards, json.loads((rtester.path / "result.json").read_text()), result.stdout.str()


def test_second_run_reuses_the_result_without_calling_the_model(rtester):
    rtester.makepyfile(test_gate=TEST.format(eps=0.1))
    forwards, first, _ = run(rtester)
    assert forwards > 0 and "cached" not in first["details"]
    forwards, second, out = run(rtester)
    assert forwards == 0  # the model was never called
    assert second["details"]["cached"]["duration_s"] == first["duration_s"]
    for key in ("robust", "success", "clean_correct", "model_fingerprint", "seed"):
        assert second[key] == first[key]
    assert "pass (cached)" in out
    # Without the option the check runs again.
    rtester.runpytest().assert_outcomes(passed=1)
    assert int((rtester.path / "forwards.txt").read_text()) > 0


def test_a_changed_weight_or_parameter_runs_the_check_again(rtester):
    rtester.makepyfile(test_gate=TEST.format(eps=0.1))
    assert run(rtester)[0] > 0
    assert run(rtester)[0] == 0
    rtester.makeconftest(WORLD.replace("bias.fill_(-5.0)", "bias.fill_(-5.0 + 1e-4)"))
    forwards, changed, _ = run(rtester)
    assert forwards > 0 and "cached" not in changed["details"]
    assert run(rtester)[0] == 0
    rtester.makepyfile(test_gate=TEST.format(eps=0.11))  # another attack parameter
    assert run(rtester)[0] > 0
    assert run(rtester, "--robust-seed", "7")[0] > 0  # another seed


def test_cache_option_needs_the_cache_provider(rtester):
    rtester.makepyfile(test_gate=TEST.format(eps=0.1))
    result = rtester.runpytest("--robust-cache", "-p", "no:cacheprovider")
    assert "--robust-cache keeps results in pytest's cache" in result.stderr.str()
