"""Baselines: save -> compare round trips on the tiny world (tests/plugin/conftest.py).

The world's model is linear, so a weaker model (bias -5.5 instead of -5, chosen by the
environment variable WEAK) has a known set of flipped samples: at eps=0.03 the even
("weak", margin 0.5) samples of class 1 fall from score 0.5 to 0.0 and break.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_robust.report import baseline

TESTS = """
from pytest_robust import robust

@robust(attack="fgsm", eps=0.03, min_acc=0.4)
def test_small():
    pass

@robust(attack="fgsm", eps=[0.1, 0.3])
def test_curve():
    pass
"""
# Appended to the world's conftest: WEAK=1 weakens the model, FEWER=1 changes the data.
KNOBS = """

import os


@pytest.fixture(scope="session")
def robust_model():
    model = Linear().eval()
    if os.environ.get("WEAK"):
        with torch.no_grad():
            model.linear.bias.fill_(-5.5)
    return model


@pytest.fixture(scope="session")
def robust_data():
    return make_data(48 if os.environ.get("FEWER") else 64)
"""
SMALL = "test_bl.py::test_small"
CURVE = ["test_bl.py::test_curve[fgsm-eps=0.1]", "test_bl.py::test_curve[fgsm-eps=0.3]"]
COMPARE = ("-p", "no:cacheprovider", "--robust-compare-fail=robust_acc:0.02")


@pytest.fixture
def bl(rtester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The tiny world with the knobs and a saved baseline of the unchanged model."""
    monkeypatch.delenv("WEAK", raising=False)
    monkeypatch.delenv("FEWER", raising=False)
    conftest = rtester.path / "conftest.py"
    conftest.write_text(conftest.read_text() + KNOBS)
    rtester.makepyfile(test_bl=TESTS)
    saved = rtester.runpytest("-p", "no:cacheprovider", "--robust-baseline-save")
    saved.assert_outcomes(passed=3)
    saved.stdout.fnmatch_lines(["baseline saved: 3 entries -> *robust-baseline.json"])
    return rtester


def entries(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "robust-baseline.json").read_text())["entries"]


def test_save_writes_entries_with_fingerprints_and_flags(bl: pytest.Pytester) -> None:
    """Catches a missing key or fingerprint, and flags that do not round-trip."""
    saved = entries(bl)
    assert sorted(saved) == sorted([SMALL, *CURVE])
    entry = saved[CURVE[0]]
    assert entry["robust_acc"] == 0.5 and entry["n"] == 64
    for key in ("spec_fingerprint", "data_fingerprint", "model_fingerprint"):
        assert len(entry[key]) == 32
    # eps=0.1 breaks exactly the even ("weak") samples of the world.
    assert baseline.unpack_flags(entry["robust"], 64) == "01" * 32
    assert entry["environment"]["device"] == "cpu" and entry["environment"]["torch"]


def test_unchanged_model_passes_with_delta_zero(bl: pytest.Pytester) -> None:
    """Catches a comparison that fails (or shifts) an unchanged model."""
    result = bl.inline_run(*COMPARE)
    result.assertoutcome(passed=3)
    records = [r.robust_result for r in result.getreports() if hasattr(r, "robust_result")]
    assert [r["baseline"]["status"] for r in records] == ["ok"] * 3
    assert [r["baseline"]["delta"] for r in records] == [0.0] * 3
    assert all(r["baseline"]["flipped"] == [] for r in records)


def test_weaker_model_fails_its_own_test_with_flipped_samples(
    bl: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches a regression that fails the session instead of its test, a missing or
    wrong list of flipped samples, and a weaker model that passes."""
    monkeypatch.setenv("WEAK", "1")
    result = bl.runpytest(*COMPARE, "-rf")
    # eps=0.3 breaks everything either way; at eps=0.1 the class-0 weak samples move
    # further from the boundary and now survive (ties go to class 0): an improvement.
    result.assert_outcomes(passed=2, failed=1)
    # Class-1 weak samples (indices 2, 6, 10, ...) now sit on the boundary and break.
    flipped = list(range(2, 64, 4))
    shown = ", ".join(map(str, flipped[:10]))
    result.stdout.fnmatch_lines(
        [
            "*_ test_small _*",
            "regressed vs baseline: robust_acc 0.750 vs baseline 1.000 (-0.250, tolerance "
            f"robust_acc:0.02); 16 sample(s) flipped from robust to broken: [{shown}, ...]",
        ]
    )
    result.stdout.fnmatch_lines(["FAILED test_bl.py::test_small - Failed: regressed*"])
    result.stdout.fnmatch_lines(
        [
            "compared with *: improved 1, ok 1, regressed 1",
            "regressed: test_bl.py::test_small",
            "improved: test_bl.py::test_curve?fgsm-eps=0.1? (robust_acc +0.250; *",
        ]
    )
    result.stdout.fnmatch_lines(["test_bl.py::test_small * regressed"])
    assert (
        baseline.unpack_flags(entries(bl)[SMALL]["robust"], 64) == "1" * 64
    )  # compare never writes


def test_relative_tolerance_and_improvement(bl: pytest.Pytester) -> None:
    """Catches a relative tolerance read as absolute (a 0.25 drop of 1.0 is 25%)."""
    entry_path = bl.path / "robust-baseline.json"
    data = json.loads(entry_path.read_text())
    data["entries"][SMALL]["robust_acc"] = 0.9  # measured now: 1.0, i.e. +0.1
    entry_path.write_text(json.dumps(data))
    result = bl.runpytest("-p", "no:cacheprovider", "--robust-compare-fail=robust_acc:3%")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["improved: test_bl.py::test_small (robust_acc +0.100; *"])
    data["entries"][SMALL]["robust_acc"] = 1.0
    data["entries"][CURVE[0]]["robust_acc"] = 0.52  # now 0.5: -3.8% > 3%
    entry_path.write_text(json.dumps(data))
    result = bl.runpytest("-p", "no:cacheprovider", "--robust-compare-fail=robust_acc:3%")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*robust_acc 0.500 vs baseline 0.520 (-0.020, tolerance*3%)*"])
    result = bl.runpytest("-p", "no:cacheprovider", "--robust-compare-fail=robust_acc:5%")
    result.assert_outcomes(passed=3)


def test_different_data_is_refused(bl: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches numbers compared across different data (a delta that means nothing)."""
    monkeypatch.setenv("FEWER", "1")
    result = bl.runpytest("-p", "no:cacheprovider", "--robust-compare")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ["*the data differ from the baseline's (fingerprint * n=48 vs 64)*re-save*"]
    )


def test_missing_and_stale_entries_warn_and_fail_under_strict(bl: pytest.Pytester) -> None:
    """Catches missing or stale entries that go unmentioned, and a strict mode that lets
    them pass (exit status 0)."""
    bl.makepyfile(
        test_bl=TESTS.replace("def test_small", "def test_renamed").replace("min_acc=0.4", "")
    )
    result = bl.runpytest("-p", "no:cacheprovider", "--robust-compare")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "compared with *: missing 1, ok 2",
            "missing entry: test_bl.py::test_renamed (fails under strict mode)",
            "stale entry (no such test ran): test_bl.py::test_small (fails under strict mode)",
        ]
    )
    bl.makeini("[pytest]\nrobust_strict = true\n")
    result = bl.runpytest("-p", "no:cacheprovider", "--robust-compare")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAIL robustness gate: missing or stale baseline entries*"])
    # A -k run is partial: what it left out is not stale.
    result = bl.runpytest("-p", "no:cacheprovider", "--robust-compare", "-k", "curve")
    result.stdout.no_fnmatch_line("*stale entry*")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "*is not readable JSON*"),
        ('{"kind": "pytest-robust baseline", "schema": 99, "entries": {}}', "*has schema 99*"),
        ("[1, 2]", "*is not a pytest-robust baseline*"),
        (
            '{"kind": "pytest-robust baseline", "schema": 1, "entries": {"t": {"n": "64"}}}',
            "*entry 't': 'n' is '64', expected int*",
        ),
        (
            '{"kind": "pytest-robust baseline", "schema": 1, "entries": {"t": {"n": NaN}}}',
            "*entry 't': 'n' is NaN, expected a finite number*",
        ),
    ],
)
def test_corrupted_baseline_is_a_clear_usage_error(
    bl: pytest.Pytester, content: str, expected: str
) -> None:
    """Catches a traceback (or a silent reset) on a broken or hand-edited file, and a save
    that overwrites it."""
    path = bl.path / "robust-baseline.json"
    path.write_text(content)
    for option in ("--robust-compare", "--robust-baseline-save"):
        result = bl.runpytest("-p", "no:cacheprovider", option)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            [f"ERROR: pytest-robust: baseline *robust-baseline.json{expected}"]
        )
        result.stderr.no_fnmatch_line("*Traceback*")
        assert path.read_text() == content


def test_bad_tolerance_is_a_usage_error(bl: pytest.Pytester) -> None:
    result = bl.runpytest("--robust-compare-fail=robust:0.02")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--robust-compare-fail*FIELD:AMOUNT*robust_acc:3%*"])


def test_save_is_atomic_and_merges(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches a save that drops other tests' entries, or leaves a partial file when the
    write fails half-way."""
    from pathlib import Path

    path = Path(tmp_path) / "b.json"
    record = {
        "nodeid": "t.py::a",
        "attack": "fgsm",
        "eps": 0.1,
        "norm": "linf",
        "bounds": [0, 1],
        "params": {},
        "targeted": False,
        "n": 3,
        "clean_acc": 1.0,
        "robust_acc": 2 / 3,
        "success_rate": 1 / 3,
        "robust": "101",
        "data_fingerprint": "d" * 32,
        "model_fingerprint": "m" * 32,
        "device": "cpu",
    }
    baseline.save(path, [record])
    baseline.save(path, [{**record, "nodeid": "t.py::b"}])
    assert sorted(baseline.load(path)) == ["t.py::a", "t.py::b"]
    before = path.read_text()

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C between writing and renaming

    from pytest_robust import files

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        baseline.save(path, [{**record, "nodeid": "t.py::c"}])
    assert path.read_text() == before
    # No temporary file left behind (the lock file of concurrent saves stays).
    assert sorted(Path(tmp_path).iterdir()) == sorted([path, baseline.lock_path(path)])


@pytest.mark.parametrize("flags", ["", "1", "0", "10110", "1" * 64, "01" * 37 + "1"])
def test_flags_pack_round_trip(flags: str) -> None:
    assert baseline.unpack_flags(baseline.pack_flags(flags), len(flags)) == flags


def test_a_result_decided_early_is_neither_saved_nor_compared(bl: pytest.Pytester) -> None:
    """Catches a prefix of the data (decide_early=True) saved as a baseline or compared
    with one as if it were the whole data set."""
    bl.makepyfile(
        test_early="""
from pytest_robust import robust

@robust(attack="fgsm", eps=0.03, min_acc=0.5, decide_early=True, batch_size=8)
def test_early():
    pass
"""
    )
    saved = bl.runpytest("-p", "no:cacheprovider", "--robust-baseline-save", "test_early.py")
    saved.stdout.fnmatch_lines(["baseline saved: 0 entries -> *"])
    assert "test_early.py::test_early" not in entries(bl)
    result = bl.runpytest("-p", "no:cacheprovider", "--robust-compare", "test_early.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["decided early after 8 of 64 samples: a partial result is not compared*"]
    )


def _entry_text(field: str, raw: str) -> str:
    """A valid one-entry baseline document with `field` set to the raw JSON text `raw`."""
    from pytest_robust.report import baseline

    entry = {
        "attack": "pgd",
        "eps": 0.1,
        "n": 4,
        "clean_acc": 0.75,
        "robust_acc": 0.5,
        "success_rate": 1 / 3,
        "robust": baseline.pack_flags("1100"),
        "spec_fingerprint": "s",
        "data_fingerprint": "d",
        "model_fingerprint": "m",
        "environment": {"torch": "2", "device": "cpu"},
        field: "@@",
    }
    document = {"kind": baseline.KIND, "schema": baseline.SCHEMA, "entries": {"t::a": entry}}
    return json.dumps(document).replace('"@@"', raw)


NUMBERS = {  # each numeric field of an entry, and values that are not what it means
    "robust_acc": ["NaN", "Infinity", "-Infinity", "1e999", "-0.1", "1.5", "0.9"],
    "clean_acc": ["NaN", "Infinity", "-0.25", "1.0001", "0.25"],
    "success_rate": ["NaN", "-Infinity", "-1e-9", "2"],
    "n": ["NaN", "Infinity", "-1", "4.0", "true"],
    "eps": ["NaN", "Infinity", "1e999", "-0.1", '"0.1"', "true"],
}


@pytest.mark.parametrize(
    ("field", "raw"), [(f, r) for f, values in NUMBERS.items() for r in values]
)
def test_every_number_of_an_entry_is_checked_by_its_meaning(
    tmp_path: Path, field: str, raw: str
) -> None:
    """Catches a hand-edited NaN, infinity or out-of-range rate that loads and then compares
    as 'ok' (NaN fails every comparison, so no regression is ever found)."""
    from pytest_robust.report import baseline

    path = tmp_path / "b.json"
    path.write_text(_entry_text("eps", "0.1"))
    assert baseline.load(path)["t::a"]["robust_acc"] == 0.5  # the unedited entry is fine
    path.write_text(_entry_text(field, raw))
    with pytest.raises(baseline.BaselineError, match=rf"entry 't::a': .*'{field}'.*; fix it"):
        baseline.load(path)
