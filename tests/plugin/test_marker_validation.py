"""Marker validation: a bad @robust(...) is a collection error that names the test, the
argument and the fix, before any model is loaded or any attack runs.

Both spellings are checked: the typed helper `robust(...)` (which validates when the test
module is imported) and the raw `pytest.mark.robust(...)` (validated by the plugin during
collection).
"""

from __future__ import annotations

import pytest

HELPER = "from pytest_robust import robust as mark\n"
RAW = "import pytest\nmark = pytest.mark.robust\n"

CASES = [
    # (marker arguments, expected message pattern)
    ('attack="fgsm", eps=-0.1', "*eps=-0.1*must be >= 0*"),
    ('attack="pgdd", eps=0.1', "*attack='pgdd' is not a registered attack (did you mean 'pgd'?)*"),
    ('attack="fgsm", eps=0.1, min_accuracy=0.9', "*min_accuracy= *(did you mean 'min_acc'?)*"),
    ('attack="fgsm", eps=0.1, min_acc=1.5', "*min_acc=1.5*must be <= 1*"),
    ('attack="fgsm", eps=[0.1, 0.2], min_acc=[0.9]', "*same length (eps has 2, min_acc has 1)*"),
    (
        'attack="fgsm", eps=0.1, device="cpu"',
        "*device cannot be set on the marker*--robust-device*",
    ),
    ('attack="pgd", eps=0.1, stepz=5', "*stepz=*(did you mean 'steps'?)*"),
    ('attack="pgd", eps=0.1, steps=0', "*steps=0*must be >= 1*"),
    ('attack="fgsm", eps=0.1, steps=5', "*steps= is not an argument of attack 'fgsm'*"),
    ('attack="fgsm", eps=0.1, norm="l3"', "*norm='l3'*'linf' or 'l2'*"),
    ("eps=0.1", "*attack is missing*"),
    # Strings are not numbers on the marker (ini files and the command line are text).
    ('attack="fgsm", eps="0.1"', "*eps='0.1' is a str; pass a number: eps=0.1*"),
    (
        'attack="fgsm", eps=0.1, min_acc="0.8"',
        "*min_acc='0.8' is a str; pass a number: min_acc=0.8*",
    ),
    ('attack="pgd", eps=0.1, steps="10"', "*steps='10' is a str; pass an integer: steps=10*"),
    ('attack="pgd", eps=0.1, steps=True', "*steps=True*must be an integer*"),
    ('attack="fgsm", eps=True', "*eps=True*must be a number*"),
    ('attack="fgsm", eps=0.1, bounds="(0, 1)"', "*bounds='(0, 1)' is a str*bounds=(0, 1)*"),
    ('attack="fgsm"', "*eps is missing*"),
]


@pytest.mark.parametrize("form", ["helper", "raw"])
@pytest.mark.parametrize(("args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_marker_is_a_collection_error(
    rtester: pytest.Pytester, form: str, args: str, message: str
) -> None:
    """Catches a bad argument that is accepted (and only fails, or silently misbehaves, when
    the attack runs), or an error that does not name the test and the argument."""
    header = HELPER if form == "helper" else RAW
    rtester.makepyfile(
        test_marker=header
        + f"""
@mark({args})
def test_bad():
    pass

def test_unrelated():
    pass
"""
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting test_marker.py*", message])
    # The test is named, and the argument error is on the same line.
    result.stdout.fnmatch_lines(["*test_bad*" + message.lstrip("*")])
    result.stdout.no_fnmatch_line("*site-packages/torch*")


def test_positional_arguments_are_rejected(rtester: pytest.Pytester) -> None:
    """Catches pytest.mark.robust("fgsm", 0.1) being accepted with its arguments dropped."""
    rtester.makepyfile(
        """
        import pytest

        @pytest.mark.robust("fgsm", 0.1)
        def test_bad():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_bad*keyword arguments only*"])


def test_two_markers_on_one_test_are_rejected(rtester: pytest.Pytester) -> None:
    """Catches a second @robust being silently ignored (only the closest would run)."""
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.1, min_acc=0.9)
        @robust(attack="pgd", eps=0.1, min_acc=0.4)
        def test_bad():
            pass
        """
    )
    result = rtester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_bad*one @robust marker per test*"])


def test_validation_runs_at_collection_before_any_fixture(pytester: pytest.Pytester) -> None:
    """Catches validation deferred to setup: with --collect-only and no model fixture at
    all, a bad marker must still be reported."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.robust(attack="fgsm", eps=-1)
        def test_bad():
            pass
        """
    )
    result = pytester.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_bad*eps=-1*must be >= 0*"])


def _numeric_params() -> list[tuple[str, str, object]]:
    """(attack, parameter, its kind) for every typed parameter of every registered attack
    and every common (marker-wide) parameter."""
    from pytest_robust.attacks import registered_attacks
    from pytest_robust.spec import COMMON_PARAMS

    rows: list[tuple[str, str, object]] = []
    for attack, schema in sorted(registered_attacks().items()):
        rows += [(attack, n, p.kind) for n, p in sorted(schema.params.items())]
    rows += [("pgd", n, p.kind) for n, p in sorted(COMMON_PARAMS.items())]
    return [(a, n, k) for a, n, k in rows if k in (int, float, bool, "bounds")]


def _marker(attack: str, name: str, value: object) -> dict[str, object]:
    from pytest_robust.attacks import registered_attacks
    from pytest_robust.spec import GRADIENT_THRESHOLDS

    if name in GRADIENT_THRESHOLDS:  # thresholds of check="gradients", which runs no attack
        return {"check": "gradients", name: value}
    kwargs: dict[str, object] = {"attack": attack}
    if registered_attacks()[attack].eps_ball and name != "eps":
        kwargs["eps"] = 0.1
    return {**kwargs, name: value}


@pytest.mark.parametrize(("attack", "name", "kind"), _numeric_params())
def test_every_numeric_parameter_refuses_strings_and_bools(
    attack: str, name: str, kind: object
) -> None:
    """Catches a parameter that converts a string (or takes True as 1) on the marker: the
    typo'd or quoted value would run a check the user did not write."""
    from pytest_robust.attacks import registered_attacks
    from pytest_robust.errors import RobustConfigError
    from pytest_robust.spec import validate

    attacks = registered_attacks()
    text = {int: "3", float: "0.5", bool: "true", "bounds": "0, 1"}[kind]
    with pytest.raises(RobustConfigError, match=rf"^{name}='{text}' is a str; pass "):
        validate(_marker(attack, name, text), attacks)
    if kind in (int, float):
        with pytest.raises(RobustConfigError, match=rf"^{name}=True: must be "):
            validate(_marker(attack, name, True), attacks)


def test_ini_and_command_line_values_still_parse_from_text() -> None:
    """Catches the strict marker types leaking into ini/CLI values, which are always text."""
    from pytest_robust.attacks.iterative import PGD
    from pytest_robust.plugin.options import SETTING_LABELS
    from pytest_robust.spec.resolve import resolve

    spec = resolve(
        {"attack": "pgd", "eps": 0.1},
        PGD.params,
        cli={"seed": "7", "batch_size": "16"},
        ini={"max_samples": "40", "strict": "true"},
        labels=SETTING_LABELS,
    )
    assert (spec.seed, spec.batch_size, spec.max_samples, spec.strict) == (7, 16, 40, True)


@pytest.mark.parametrize("form", ["helper", "raw"])
def test_marker_arguments_are_validated_once(
    rtester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """Catches validation repeated (issue 13): robust() at decoration, then collection, then
    the check again at run time. Each mark's arguments go through validation once."""
    from pytest_robust.plugin import marker

    validated: list[list[str]] = []
    real = marker.validate_marker

    def counting(kwargs: dict[str, object]) -> dict[str, object]:
        validated.append(sorted(kwargs))
        return real(kwargs)

    monkeypatch.setattr(marker, "validate_marker", counting)
    rtester.makepyfile(
        test_once=(HELPER if form == "helper" else RAW)
        + """
@mark(attack="fgsm", eps=0.1, min_acc=0.4)
def test_one_case(robustness):
    pass

@mark(attack="fgsm", eps=[0.03, 0.1], min_acc=0.4)
def test_two_cases(robustness):
    pass
"""
    )
    result = rtester.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert validated == [["attack", "eps", "min_acc"]] * 2
