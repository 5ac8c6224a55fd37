"""attack="autoattack": AutoAttack's members with the reference's settings (Croce & Hein
2020; fra31/auto-attack), each only on the samples still robust. The peer comparison with
torchattacks' AutoAttack is in test_peers.py."""

from __future__ import annotations

from typing import Any
from typing import cast

import pytest
import torch

from pytest_robust import evaluate
from pytest_robust.attacks import Attack
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import registered_attacks
from pytest_robust.checks.flags import MASKING
from pytest_robust.checks.sanity import black_box_share_flag
from pytest_robust.engine.members import build_members
from pytest_robust.errors import RobustConfigError
from pytest_robust.spec import PRESETS
from pytest_robust.spec import resolve
from pytest_robust.spec import validate
from pytest_robust.spec.attack_arg import attack_params

# fra31/auto-attack, autoattack.py (version='standard') and the constructors it calls:
# APGD n_iter=100, n_restarts=1; APGD-T n_iter=100, n_restarts=1, n_target_classes=9;
# FAB-T n_iter=100, n_restarts=1, n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9;
# Square n_queries=5000 (plus the initial query: 5001 of ours), p_init=0.8,
# resc_schedule=False.
REFERENCE: dict[str, dict[str, Any]] = {
    "apgd-ce": {"steps": 100, "restarts": 1},
    "apgd-t": {"steps": 100, "restarts": 1, "n_target_classes": 9},
    "fab-t": {
        "steps": 100,
        "restarts": 1,
        "n_target_classes": 9,
        "alpha_max": 0.1,
        "eta": 1.05,
        "beta": 0.9,
    },
    "square": {"queries": 5001, "p_init": 0.8, "rescale_schedule": False},
}
ORDER = ["apgd-ce", "apgd-t", "fab-t", "square"]


def _members(**kwargs):
    attacks = registered_attacks()
    case = validate({"attack": "autoattack", "eps": 0.1, **kwargs}, attacks, "argument")
    spec = resolve(case, attack_params(case["attack"], attacks, case), case_where="argument")
    return spec, build_members(spec, ThreatModel(0.1, spec.norm, spec.bounds))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_standard_runs_the_reference_members_with_the_reference_settings(norm):
    spec, members = _members(norm=norm)
    assert spec.attack == "autoattack" and spec.attack_params["version"] == "standard"
    assert [name for name, _ in members] == ORDER
    for name, attack in members:
        # Every setting the reference fixes is ours too; the rest are the member's defaults.
        assert {k: attack.config[k] for k in REFERENCE[name]} == REFERENCE[name], name
    square = dict(members)["square"]
    assert square.config["queries"] == 5001  # ours counts the initial query


def test_strong_stays_the_open_cheaper_preset():
    strong = PRESETS["strong"]
    assert not strong.fixed and strong.members() == ("apgd-ce", "apgd-dlr", "square")
    case = validate(
        {"attack": "strong", "eps": 0.1, "steps": 10, "queries": 50}, registered_attacks()
    )
    assert case["attack"] == ("apgd-ce", "apgd-dlr", "square") and case["steps"] == 10


@pytest.mark.parametrize("name", ["steps", "queries", "restarts", "n_target_classes", "p_init"])
def test_member_parameters_are_refused_with_the_fix(name):
    with pytest.raises(RobustConfigError) as error:
        _members(**{name: 3})
    message = str(error.value)
    assert f"{name}= is not an argument of attack='autoattack'" in message
    assert f"attack={ORDER!r}, {name}=..." in message  # the fix: list the members


def test_version_belongs_to_the_preset_only():
    with pytest.raises(RobustConfigError, match="is a parameter of the 'autoattack' preset"):
        validate({"attack": "pgd", "eps": 0.1, "version": "standard"}, registered_attacks())
    with pytest.raises(RobustConfigError, match="is a parameter of the 'autoattack' preset"):
        validate({"attack": "strong", "eps": 0.1, "version": "standard"}, registered_attacks())
    with pytest.raises(RobustConfigError, match="did you mean 'standard'"):
        _members(version="standrad")
    with pytest.raises(RobustConfigError, match="one version per test"):
        _members(version=["standard"])


def test_rand_runs_apgd_ce_and_dlr_with_eot_over_20_draws():
    """version='rand' (the reference's, for randomised defences): APGD-CE and APGD-DLR,
    100 steps, 1 restart, gradients averaged over 20 draws; its judge takes 10 draws."""
    spec, members = _members(version="rand")
    assert spec.attack_params["version"] == "rand"
    assert [name for name, _ in members] == ["apgd-ce", "apgd-dlr"]
    for _, attack in members:
        assert {k: attack.config[k] for k in ("steps", "restarts", "eot")} == {
            "steps": 100,
            "restarts": 1,
            "eot": 20,
        }


def test_a_user_eot_reaches_every_member_that_takes_it():
    _, members = _members(eot=4)
    eot = {name: attack.config.get("eot") for name, attack in members}
    assert eot["apgd-ce"] == 4 and eot["apgd-t"] == 4
    _, members = _members(version="rand", eot=5)
    assert {attack.config["eot"] for _, attack in members} == {5}


def test_target_is_refused_the_preset_is_untargeted():
    with pytest.raises(RobustConfigError, match="untargeted, like the reference"):
        _members(target=3)


def test_the_result_names_the_preset_and_its_settings():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    x = torch.rand(8, 1, 4, 4)
    y = model(x).argmax(1)
    # eps=0: nothing can break and Square has nothing to search, so this is cheap.
    result = evaluate(model, (x, y), attack="autoattack", eps=0.0)
    assert result.attack == "autoattack"
    assert result.params["version"] == "standard"
    assert list(result.params["attacks"]) == ORDER
    assert result.details["broken_by"] == dict.fromkeys(ORDER, 0)
    assert result.robust_acc == 1.0


class _Fake:
    def __init__(self, loss, black_box=False):
        self.loss, self.black_box = loss, black_box

    def gradient_loss(self):
        return self.loss


# Stand-ins with only what black_box_share_flag reads (black_box, gradient_loss()).
MEMBERS = cast(
    "list[tuple[str, Attack]]",
    [
        ("apgd-ce", _Fake("ce")),
        ("apgd-t", _Fake("logits")),
        ("square", _Fake(None, black_box=True)),
    ],
)


@pytest.mark.parametrize(
    ("square_broke", "evaluated", "flagged"),
    [(0, 450, False), (1, 500, False), (1, 450, True), (1, 100, True), (3, 1000, True)],
)
def test_square_beating_the_gradient_members_is_autoattacks_check(square_broke, evaluated, flagged):
    """The reference's check_square_sr: Square lowering robust accuracy by more than 0.2
    points of the evaluated samples after the gradient members (1 of 500 is exactly 0.2%:
    not more)."""
    broken_by = {"apgd-ce": 200, "apgd-t": 10, "square": square_broke}
    flags = black_box_share_flag(broken_by, MEMBERS, evaluated, 0.002)
    assert bool(flags) == flagged
    if flagged:
        (flag,) = flags
        assert flag.name == "black_box_beats_white_box" and flag.severity == MASKING
        assert f"square broke {square_broke} of the {evaluated} samples" in flag.message


class Quantised(torch.nn.Module):
    """A linear classifier behind round(4x)/4: every input gradient is exactly zero."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((torch.round(4 * x) / 4).flatten(1))


def test_a_masked_model_raises_the_flag_in_a_real_run():
    model = Quantised()
    x = torch.rand(24, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    result = evaluate(model, (x, y), attack="autoattack", eps=0.25, allow_masking=True)
    names = {flag["name"]: flag for flag in result.details["flags"]}
    assert result.details["broken_by"]["square"] > 0.002 * len(x)
    assert names["black_box_beats_white_box"]["severity"] == MASKING


class NoisyLinear(torch.nn.Module):
    """A linear classifier with Gaussian noise on its input in eval mode: a randomised
    defence, the model version='rand' is made for."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x + 0.05 * torch.randn_like(x)).flatten(1))


def test_rand_on_a_randomised_model_is_seeded_and_not_refused_as_masked():
    model = NoisyLinear()
    x = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model.linear(x.flatten(1)).argmax(1)
    before = torch.get_rng_state()
    runs = [
        evaluate(model, (x, y), attack="autoattack", version="rand", eps=0.05, seed=3)
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), before)
    assert (runs[0].clean_correct, runs[0].robust) == (runs[1].clean_correct, runs[1].robust)
    assert runs[0].details["draws"] == 10  # judged on every one of 10 seeded draws
    assert list(runs[0].params["attacks"]) == ["apgd-ce", "apgd-dlr"]
    assert {a["eot"] for a in runs[0].params["attacks"].values()} == {20}
    # With EOT the model's randomness is driven by the seed: nondeterministic is
    # information here, not a masking verdict.
    assert all(f["severity"] != MASKING for f in runs[0].details["flags"])
