"""The pytest_robust_* hooks (plugin/hookspecs.py, docs/hooks.md), each implemented in a
conftest.py: it changes what the run prints and writes, and a broken implementation fails
with a message that names the hook."""

from __future__ import annotations

import json

import pytest

from pytest_robust.attacks import get_attack
from pytest_robust.attacks import registered_attacks

SUITE = """
from pytest_robust import robust

@robust(attack="fgsm", eps=0.1, min_acc=0.4)
def test_gate():
    pass

@robust(attack="fgsm", eps=[0.03, 0.3])
def test_curve():
    pass
"""
UPDATE_RESULT = """

calls = []


def pytest_robust_update_result(item, result, record):
    calls.append(item.nodeid)
    record["model_name"] = "linear-" + item.name
    record["calls_so_far"] = len(calls)
    record["attack"] = result.attack.upper()
"""


def conftest_plus(rtester: pytest.Pytester, code: str) -> None:
    rtester.makeconftest((rtester.path / "conftest.py").read_text() + code)


def test_update_result_changes_every_report_once_per_check(rtester: pytest.Pytester) -> None:
    """Catches the hook not called, called twice for a check (once for the gate, once for
    the report), or its changes missing from the terminal table, the JSON report, the
    baseline the run saves or the JUnit properties."""
    conftest_plus(rtester, UPDATE_RESULT)
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest(
        "--robust-report=json:r.json", "--robust-baseline-save", "--junitxml=j.xml"
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["test_r.py::test_gate *FGSM*0.1*64*1.000*0.500*pass"])
    checks = json.loads((rtester.path / "r.json").read_text())["checks"]
    assert [c["model_name"] for c in checks] == [
        "linear-test_gate",
        "linear-test_curve[fgsm-eps=0.03]",
        "linear-test_curve[fgsm-eps=0.3]",
    ]
    assert [c["calls_so_far"] for c in checks] == [1, 2, 3]
    assert {c["attack"] for c in checks} == {"FGSM"}
    entries = json.loads((rtester.path / "robust-baseline.json").read_text())["entries"]
    assert {e["attack"] for e in entries.values()} == {"FGSM"}
    assert '<property name="robust.attack" value="FGSM" />' in (rtester.path / "j.xml").read_text()


def test_update_result_does_not_change_the_verdict(rtester: pytest.Pytester) -> None:
    """Catches a verdict read from the edited record: a hook that rewrites the numbers
    changes what the reports say, not whether the gate held."""
    conftest_plus(
        rtester,
        "\n\ndef pytest_robust_update_result(record):\n"
        "    record['robust_acc'] = 1.0\n    record['status'] = 'pass'\n",
    )
    rtester.makepyfile(
        test_r="from pytest_robust import robust\n\n"
        "@robust(attack='fgsm', eps=0.1, min_acc=0.9)\ndef test_gate():\n    pass\n"
    )
    result = rtester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*robust_acc 0.500 < min_acc 0.900*"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    del record['robust']\n",
            "*test_gate: pytest_robust_update_result: removed 'robust' from the record; "
            "the plugin needs the keys it wrote*",
        ),
        (
            "    record['model'] = object()\n",
            "*test_gate: pytest_robust_update_result: record[[]'model'] holds a value of type "
            "object, which JSON cannot hold*",
        ),
    ],
    ids=["removed-key", "not-json"],
)
def test_a_broken_record_fails_the_test_naming_the_hook(
    rtester: pytest.Pytester, body: str, message: str
) -> None:
    """Catches a record the hook broke reaching the xdist transport or the report writer
    (an INTERNALERROR there, or a lost report) instead of failing its own test."""
    conftest_plus(rtester, "\n\ndef pytest_robust_update_result(record):\n" + body)
    rtester.makepyfile(
        test_r="from pytest_robust import robust\n\n"
        "@robust(attack='fgsm', eps=0.1)\ndef test_gate():\n    pass\n"
    )
    result = rtester.runpytest("--robust-report=json:r.json")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
    assert "INTERNALERROR" not in result.stdout.str()


ENVIRONMENT = """

class Opaque:
    def __str__(self):
        return "opaque-thing"


def pytest_robust_update_environment(config, environment):
    environment["gpu_driver"] = "535.1"
    environment["lab"] = {"rack": 7}
    environment["opaque"] = Opaque()
    environment["python"] = "python-" + environment["python"]
"""


def test_update_environment_adds_to_the_reports_environment(rtester: pytest.Pytester) -> None:
    """Catches the hook not called, its keys missing from the JSON, Markdown or HTML report,
    a value JSON cannot hold losing the report instead of being written as its str(),
    and a change to a measured key not kept."""
    conftest_plus(rtester, ENVIRONMENT)
    rtester.makepyfile(test_r=SUITE)
    result = rtester.runpytest(
        "--robust-report=json:r.json", "--robust-report=md:r.md", "--robust-report=html:r.html"
    )
    result.assert_outcomes(passed=3)
    environment = json.loads((rtester.path / "r.json").read_text())["environment"]
    assert environment["gpu_driver"] == "535.1"
    assert environment["lab"] == {"rack": 7}
    assert environment["opaque"] == "opaque-thing"
    assert environment["python"].startswith("python-3.")
    markdown = (rtester.path / "r.md").read_text()
    assert "- gpu_driver: `535.1`" in markdown
    assert "- opaque: `opaque-thing`" in markdown
    assert "<dt>gpu_driver</dt><dd>535.1</dd>" in (rtester.path / "r.html").read_text()


PLUGIN_ATTACK = """

from pytest_robust.attacks import Attack


class Nudge(Attack):
    '''Adds eps to every feature: the tiny world's score moves by exactly +10 eps.'''

    name = "{name}"
    norms = ("linf",)

    def propose(self, batch):
        return batch.x + self.threat.eps


def pytest_robust_register_attacks(config, register):
    (config.rootpath / "registered.txt").write_text("yes")
    register(Nudge, replace={replace})
"""


def test_register_attacks_adds_an_attack_for_this_run_only(rtester: pytest.Pytester) -> None:
    """Catches a hook-registered attack that is unknown to the marker, does not run, or
    stays registered after the run (a second in-process run would see it); the numbers
    are the tiny world's closed form: +0.1 on all 10 features flips exactly the 16 weak
    class-0 samples, robust_acc 48/64 = 0.75."""
    conftest_plus(rtester, PLUGIN_ATTACK.format(name="nudge-plugin", replace=False))
    rtester.makepyfile(
        test_r="from pytest_robust import robust\n\n"
        "@robust(attack='nudge-plugin', eps=0.1, min_acc=0.7)\ndef test_gate():\n    pass\n"
    )
    result = rtester.runpytest("--robust-report=json:r.json")
    result.assert_outcomes(passed=1)
    (check,) = json.loads((rtester.path / "r.json").read_text())["checks"]
    assert check["attack"] == "nudge-plugin"
    assert check["robust_acc"] == 0.75
    assert "nudge-plugin" not in registered_attacks()


def test_register_attacks_can_replace_a_built_in_until_the_run_ends(
    rtester: pytest.Pytester,
) -> None:
    """Catches replace=True not reaching the registry, or the built-in attack not coming
    back after the run."""
    fgsm = get_attack("fgsm")
    conftest_plus(rtester, PLUGIN_ATTACK.format(name="fgsm", replace=True))
    rtester.makepyfile(
        test_r="from pytest_robust import robust\n\n"
        "@robust(attack='fgsm', eps=0.1)\ndef test_gate():\n    pass\n"
    )
    result = rtester.runpytest("--robust-report=json:r.json")
    result.assert_outcomes(passed=1)
    (check,) = json.loads((rtester.path / "r.json").read_text())["checks"]
    assert check["robust_acc"] == 0.75  # the nudge, not FGSM (0.5)
    assert get_attack("fgsm") is fgsm


def test_register_attacks_waits_for_the_first_lookup(rtester: pytest.Pytester) -> None:
    """Catches the hook called at start-up (it would import torch in every run of every
    project): a run that checks nothing never calls it."""
    conftest_plus(rtester, PLUGIN_ATTACK.format(name="nudge-plugin", replace=False))
    rtester.makepyfile(test_r="def test_plain():\n    pass\n")
    rtester.runpytest().assert_outcomes(passed=1)
    assert not (rtester.path / "registered.txt").exists()
    assert "nudge-plugin" not in registered_attacks()


def test_a_bad_registration_names_the_hook(rtester: pytest.Pytester) -> None:
    """Catches a plugin's clash with a built-in name surfacing as a bare ValueError from
    the registry."""
    conftest_plus(rtester, PLUGIN_ATTACK.format(name="fgsm", replace=False))
    rtester.makepyfile(
        test_r="from pytest_robust import robust\n\n"
        "@robust(attack='fgsm', eps=0.1)\ndef test_gate():\n    pass\n"
    )
    result = rtester.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*pytest_robust_register_attacks: an attack named 'fgsm' is already registered*"]
    )


def test_update_result_in_a_subdirectory_conftest_applies_to_its_tests_only(
    rtester: pytest.Pytester,
) -> None:
    """Catches the hook called through config.hook (every conftest.py for every test)
    instead of the item's, which pytest scopes by directory."""
    test = (
        "from pytest_robust import robust\n\n"
        "@robust(attack='fgsm', eps=0.1)\ndef test_x():\n    pass\n"
    )
    (rtester.path / "sub").mkdir()
    (rtester.path / "sub" / "conftest.py").write_text(
        "def pytest_robust_update_result(record):\n    record['team'] = 'sub'\n"
    )
    (rtester.path / "sub" / "test_in_sub.py").write_text(test)
    rtester.makepyfile(test_top=test)
    rtester.runpytest("--robust-report=json:r.json").assert_outcomes(passed=2)
    checks = json.loads((rtester.path / "r.json").read_text())["checks"]
    assert {c["nodeid"]: c.get("team") for c in checks} == {
        "test_top.py::test_x": None,
        "sub/test_in_sub.py::test_x": "sub",
    }
