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


def stored_again(rtester: pytest.Pytester, *args: str) -> bool:
    """Whether the check ran (True) or was replayed from the cache (False)."""
    return run(rtester, *args)[0] > 0


def test_a_result_stored_at_one_sanity_level_is_not_replayed_at_another(rtester):
    rtester.makepyfile(test_gate=TEST.format(eps=0.1))
    assert stored_again(rtester, "--robust-sanity", "off")
    assert not stored_again(rtester, "--robust-sanity", "off")
    assert stored_again(rtester)  # the default level runs the cheap flags
    assert stored_again(rtester, "--robust-sanity", "full")  # the full diagnosis runs
    assert not stored_again(rtester, "--robust-sanity", "full")


def test_asking_for_the_masking_check_is_not_answered_by_a_result_without_it(rtester):
    rtester.makepyfile(test_gate=TEST.format(eps=0.1))
    assert stored_again(rtester)
    rtester.makepyfile(
        test_gate=TEST.format(eps=0.1).replace("min_acc=0.4", 'min_acc=0.4, check="masking"')
    )
    forwards, record, _ = run(rtester)
    assert forwards > 0 and "diagnosis" in record["details"]


CODE_CHANGES = {
    # forward's code, the same weights
    "forward": ("return torch.cat([torch.zeros_like(score), score], dim=1)",
                "return torch.cat([torch.zeros_like(score), score * 1.0001], dim=1)"),
    # a plain attribute the forward does not even read
    "attribute": ("self.seen = []", "self.seen = []\n        self.t = 2"),
    # a parameter-free module added
    "module": ("self.seen = []", "self.seen = []\n        self.pre = torch.nn.Identity()"),
    # a forward hook
    "hook": ("return Linear().eval()",
             "m = Linear().eval()\n    m.register_forward_hook(lambda *a: a[2] * 2)\n    return m"),
}  # fmt: skip


@pytest.mark.parametrize("change", sorted(CODE_CHANGES))
def test_a_result_is_not_replayed_after_the_models_code_or_structure_changes(rtester, change):
    rtester.makepyfile(test_gate=TEST.format(eps=0.1))
    assert stored_again(rtester)
    assert not stored_again(rtester)
    old, new = CODE_CHANGES[change]
    assert old in WORLD
    rtester.makeconftest(WORLD.replace(old, new))
    assert stored_again(rtester)
    assert not stored_again(rtester)


CUSTOM = """
import torch
from pytest_robust import robust
from pytest_robust.attacks import Attack, register_attack


class Nudge(Attack):
    name = "nudge"
    norms = ("linf",)

    def propose(self, batch):
        return batch.x + {step} * self.threat.eps


register_attack(Nudge, replace=True)


@robust(attack="nudge", eps=0.1, min_acc=0.0)
def test_gate(robustness, robust_model):
    from pathlib import Path
    Path("forwards.txt").write_text(str(len(robust_model.seen)))
    Path("result.json").write_text(__import__("json").dumps(robustness.to_dict()))
"""


def test_a_result_is_not_replayed_after_a_custom_attacks_code_changes(rtester, monkeypatch):
    from pytest_robust.attacks import registry

    # The in-process runs register "nudge"; keep it out of later tests (the self-test runs
    # every registered attack).
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    rtester.makepyfile(test_gate=CUSTOM.format(step="0.0"))
    assert stored_again(rtester)
    assert not stored_again(rtester)
    rtester.makepyfile(test_gate=CUSTOM.format(step="1.0"))
    forwards, record, _ = run(rtester)
    assert forwards > 0 and "cached" not in record["details"]


SURROGATES = """
import pytest
import torch


@pytest.fixture(scope="session")
def surrogate():
    torch.manual_seed({seed})
    return torch.nn.Sequential(torch.nn.Linear(10, 2))
"""

TRANSFER = """
from pathlib import Path
from pytest_robust import robust


@robust(attack="transfer", eps=0.1, surrogate="surrogate", min_acc=0.0)
def test_gate(robustness, robust_model):
    Path("forwards.txt").write_text(str(len(robust_model.seen)))
    Path("result.json").write_text(__import__("json").dumps(robustness.to_dict()))
"""


def test_a_transfer_result_is_not_replayed_with_another_surrogate(rtester):
    rtester.makeconftest(WORLD + SURROGATES.format(seed=0))
    rtester.makepyfile(test_gate=TRANSFER)
    assert stored_again(rtester)
    assert not stored_again(rtester)
    rtester.makeconftest(WORLD + SURROGATES.format(seed=1))
    assert stored_again(rtester)


def test_allow_masking_and_strict_are_judged_now_not_replayed(rtester):
    rtester.makepyfile(
        test_gate=TEST.format(eps=0.1).replace("min_acc=0.4", "min_acc=0.4, allow_masking=True")
    )
    _, first, _ = run(rtester)
    assert first["allow_masking"] is True
    rtester.makepyfile(test_gate=TEST.format(eps=0.1))
    forwards, second, _ = run(rtester)
    assert forwards == 0 and second["allow_masking"] is False
    rtester.makepyfile(
        test_gate=TEST.format(eps=0.1).replace("min_acc=0.4", "min_acc=0.3, strict=True")
    )
    forwards, third, _ = run(rtester)
    assert forwards == 0 and third["strict"] is True
