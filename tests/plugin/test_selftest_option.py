"""`pytest --robust-selftest`: one line per registered attack, exit status 0/1, no tests run."""

from __future__ import annotations

import pytest
import torch

from pytest_robust.attacks import Attack
from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import registered_attacks
from pytest_robust.attacks import registry


def test_selftest_prints_one_line_per_attack_and_exits_0(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError('tests ran')\n")
    result = pytester.runpytest_inprocess("--robust-selftest", "--robust-device=cpu")
    assert result.ret == 0, result.stdout.str()
    lines = result.stdout.lines
    for name, cls in sorted(registered_attacks().items()):
        (line,) = [x for x in lines if x.split()[:1] == [name]]
        # Only an attack without an eps-ball known answer may skip: every other one must pass
        # its known answers here (the one run of them all; tests/unit run a few by name).
        expected = "PASS" if getattr(cls, "eps_ball", True) else "SKIP"
        assert line.split()[1] == expected, line
        assert line.endswith("s]")  # the time
    result.stdout.fnmatch_lines(["pytest-robust self-test (device=cpu)", "self-test: * 0 failed*"])
    result.stdout.no_fnmatch_line("*tests ran*")
    # The known answers the lines report: for pgd, nothing broken where nothing may break.
    result.stdout.fnmatch_lines(["pgd *robust-linf PASS 0/32*undefended-linf PASS 32/32*"])


def test_selftest_exits_1_on_a_broken_attack(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Idle(Attack):
        name = "selftest-idle"

        def propose(self, batch: AttackBatch) -> torch.Tensor:
            return batch.x

    monkeypatch.setitem(registry._REGISTRY, Idle.name, Idle)
    result = pytester.runpytest_inprocess("--robust-selftest=fgsm,selftest-idle")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "fgsm *PASS*",
            "selftest-idle *FAIL*undefended-linf FAIL 0/32*",
            "self-test: 1 passed, 1 failed, 0 skipped in *",
        ]
    )


def test_selftest_unknown_attack_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--robust-selftest=pgdd")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["ERROR: --robust-selftest: attack='pgdd' is not a registered*"])
