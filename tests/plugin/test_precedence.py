"""Run settings: marker > command line > ini > default, with provenance; bad values are
usage errors that name the option or ini key; per-test seeds are derived and stable.

The world's model records the batch size of every forward pass (`robust_model.seen`), so
the batch size actually used is checked, not only the provenance label.
"""

from __future__ import annotations

import json

import pytest


def run_layers(
    rtester: pytest.Pytester, ini: str, cli: list[str], marker: str, body: str
) -> pytest.RunResult:
    if ini:
        rtester.makeini(f"[pytest]\n{ini}\n")
    rtester.makepyfile(
        f"""
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.1{marker})
        def test_layers(robustness, robust_model):
            {body}
        """
    )
    return rtester.runpytest(*cli)


@pytest.mark.parametrize(
    ("ini", "cli", "marker", "size", "source"),
    [
        ("", [], "", 64, "default"),  # default 256, capped by the 64 samples
        ("robust_batch_size = 32", [], "", 32, "ini robust_batch_size"),
        ("robust_batch_size = 32", ["--robust-batch-size=16"], "", 16, "--robust-batch-size"),
        ("robust_batch_size = 32", ["--robust-batch-size=16"], ", batch_size=8", 8, "marker"),
    ],
    ids=["default", "ini", "cli-over-ini", "marker-over-cli"],
)
def test_batch_size_precedence(
    rtester: pytest.Pytester, ini: str, cli: list[str], marker: str, size: int, source: str
) -> None:
    """Catches a layer that is ignored or wins out of turn, and a provenance label that
    disagrees with the batch size the model actually saw."""
    body = (
        f"assert max(robust_model.seen) == {size}, robust_model.seen\n"
        f"            assert robustness.provenance['batch_size'] == {source!r}"
    )
    run_layers(rtester, ini, cli, marker, body).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("ini", "cli", "marker", "n", "source"),
    [
        ("", [], "", 64, "default"),
        ("", ["--robust-max-samples=16"], "", 16, "--robust-max-samples"),
        ("robust_max_samples = 10", [], "", 10, "ini robust_max_samples"),
        ("robust_max_samples = 10", ["--robust-max-samples=16"], "", 16, "--robust-max-samples"),
        ("", ["--robust-max-samples=16"], ", max_samples=8", 8, "marker"),
        ("", ["--robust-max-samples=16"], ", max_samples=32", 16, "--robust-max-samples"),
        ("robust_max_samples = 10", [], ", max_samples=32", 10, "ini robust_max_samples"),
    ],
    ids=[
        "default",
        "cli",
        "ini",
        "cli-over-ini",
        "marker-below-cli-cap",
        "cli-caps-marker",
        "ini-caps-marker",
    ],
)
def test_max_samples_precedence_and_cap(
    rtester: pytest.Pytester, ini: str, cli: list[str], marker: str, n: int, source: str
) -> None:
    """Catches --robust-max-samples not applied, not acting as a cap on a marker's larger
    max_samples, or raising a marker's smaller one; and ini losing to nothing."""
    body = (
        f"assert robustness.n == {n}\n"
        f"            assert robustness.provenance['max_samples'] == {source!r}"
    )
    run_layers(rtester, ini, cli, marker, body).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("ini", "cli", "marker", "source"),
    [
        ("", [], "", "default"),
        ("robust_seed = 7", [], "", "ini robust_seed"),
        ("robust_seed = 7", ["--robust-seed=5"], "", "--robust-seed"),
        ("robust_seed = 7", ["--robust-seed=5"], ", seed=3", "marker"),
    ],
    ids=["default", "ini", "cli-over-ini", "marker-over-cli"],
)
def test_seed_precedence(
    rtester: pytest.Pytester, ini: str, cli: list[str], marker: str, source: str
) -> None:
    """Catches the seed's source being reported (or chosen) out of turn."""
    body = f"assert robustness.provenance['seed'] == {source!r}"
    run_layers(rtester, ini, cli, marker, body).assert_outcomes(passed=1)


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="[tool.pytest] TOML tables: pytest 9")
def test_toml_ini_values_arrive_typed(rtester: pytest.Pytester) -> None:
    """Catches ini keys declared as text: in a native [tool.pytest] table the numbers and
    booleans are TOML's own types, which a text key warns about (and pytest 10 rejects),
    and a string where a number belongs must be a usage error naming the key."""
    rtester.makepyprojecttoml(
        "[tool.pytest]\nrobust_batch_size = 32\nrobust_seed = 7\nrobust_strict = false\n"
    )
    rtester.makepyfile("def test_plain():\n    pass\n")
    result = rtester.runpytest("-v", "-W", "error")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["robust: *seed=7 *batch_size=32*"])
    rtester.makepyprojecttoml('[tool.pytest]\nrobust_batch_size = "32"\n')
    result = rtester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini robust_batch_size: must be an integer*"])


def test_run_settings_shown_in_the_verbose_header(rtester: pytest.Pytester) -> None:
    """Catches the -v header reporting settings other than those in force."""
    rtester.makeini("[pytest]\nrobust_batch_size = 32\nrobust_seed = 7\n")
    rtester.makepyfile("def test_plain():\n    pass\n")
    result = rtester.runpytest("-v", "--robust-seed=5", "--robust-max-samples=16")
    result.stdout.fnmatch_lines(["robust: *seed=5 max_samples=16 batch_size=32*"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--robust-batch-size=0", "*--robust-batch-size*'0' must be >= 1*"),
        ("--robust-batch-size=abc", "*--robust-batch-size*'abc' is not an integer*"),
        ("--robust-seed=abc", "*--robust-seed*'abc' is not an integer seed*"),
        ("--robust-seed=-1", "*--robust-seed*must be >= 0*"),
        ("--robust-max-samples=0", "*--robust-max-samples*'0' must be >= 1*"),
        ("--robust-device=gpu", "*--robust-device*'gpu' is not a device*"),
    ],
)
def test_bad_command_line_value_is_a_usage_error(
    rtester: pytest.Pytester, option: str, message: str
) -> None:
    """Catches a bad option value that is accepted (and fails later in every test, or
    silently falls back to the default) instead of stopping the run with a usage error."""
    rtester.makepyfile("def test_plain():\n    pass\n")
    result = rtester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("robust_batch_size = abc", "*robust_batch_size*'abc'*"),
        ("robust_batch_size = 0", "*robust_batch_size*must be >= 1*"),
        ("robust_seed = -1", "*robust_seed*must be >= 0*"),
        ("robust_max_samples = many", "*robust_max_samples*'many'*"),
        ("robust_device = gpu", "*robust_device*'gpu'*"),
        # Typed keys (pytest converts them): the error still names the key and the value.
        ("robust_seed = 1.5", "*ini robust_seed: must be an integer*'1.5'*"),
        ("robust_strict = maybe", "*ini robust_strict: must be true or false*'maybe'*"),
    ],
)
def test_bad_ini_value_is_a_usage_error(rtester: pytest.Pytester, line: str, message: str) -> None:
    """Catches a bad ini value that is accepted and only fails later, test by test (or
    never), instead of a usage error naming the ini key -- consistent with the CLI."""
    rtester.makeini(f"[pytest]\n{line}\n")
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.1)
        def test_check():
            pass
        """
    )
    result = rtester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([message])


SEED_SUITE = """
import json
from pathlib import Path
from pytest_robust import robust

def record(request, result):
    Path(request.node.name + ".json").write_text(
        json.dumps({"seed": result.seed, "robust": result.robust})
    )

@robust(attack="pgd", eps=0.1, steps=2)
def test_a(robustness, request):
    record(request, robustness)

@robust(attack="pgd", eps=0.1, steps=2)
def test_b(robustness, request):
    record(request, robustness)
"""


def test_per_test_seeds_are_derived_from_base_seed_and_node_id(
    rtester: pytest.Pytester,
) -> None:
    """Catches one shared seed for every test (identical markers would draw identical
    random starts), seeds that depend on run order (selecting one test changes its seed),
    results that differ between identical runs, and a base seed that is ignored."""
    rtester.makepyfile(test_seeds=SEED_SUITE)

    def run(*args: str) -> dict[str, dict[str, object]]:
        for name in ("test_a", "test_b"):
            (rtester.path / f"{name}.json").unlink(missing_ok=True)
        rtester.runpytest(*args).assert_outcomes(passed=2 if "test_seeds.py" in args else 1)
        return {p.stem: json.loads(p.read_text()) for p in rtester.path.glob("test_*.json")}

    first = run("test_seeds.py")
    assert first["test_a"]["seed"] != first["test_b"]["seed"]
    assert run("test_seeds.py") == first
    only_b = run("test_seeds.py::test_b")
    assert only_b["test_b"] == first["test_b"]
    other_base = run("test_seeds.py", "--robust-seed=1")
    assert other_base["test_a"]["seed"] != first["test_a"]["seed"]
    assert other_base["test_b"]["seed"] != first["test_b"]["seed"]


@pytest.mark.parametrize(
    ("ini", "cli", "fixture", "source"),
    [
        ("", [], False, "default"),
        ("robust_device = cpu", [], False, "ini robust_device"),
        ("robust_device = auto", ["--robust-device=cpu"], False, "--robust-device"),
        ("", [], True, "robust_device fixture"),
    ],
    ids=["default", "ini", "cli-over-ini", "fixture"],
)
def test_device_comes_from_cli_ini_or_the_robust_device_fixture(
    rtester: pytest.Pytester, ini: str, cli: list[str], fixture: bool, source: str
) -> None:
    """Catches the device setting or a user's robust_device fixture override being
    ignored, or its provenance misreported. (The device itself is never a marker
    argument: see test_marker_validation.)"""
    if ini:
        rtester.makeini(f"[pytest]\n{ini}\n")
    override = (
        "@pytest.fixture(scope='session')\ndef robust_device():\n    return 'cpu'\n"
        if fixture
        else ""
    )
    rtester.makepyfile(
        "import pytest\nimport torch\nfrom pytest_robust import robust\n"
        + override
        + f"""
@robust(attack="fgsm", eps=0.1)
def test_device(robustness):
    assert robustness.provenance["device"] == {source!r}
    if {source!r} != "default" or not torch.cuda.is_available():
        assert robustness.device == "cpu"
"""
    )
    rtester.runpytest(*cli).assert_outcomes(passed=1)


def test_unavailable_device_is_a_setup_error(rtester: pytest.Pytester) -> None:
    """Catches a silent fallback to the CPU when CUDA was asked for but is absent: the
    numbers would be reported as if measured on the requested device."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    rtester.makepyfile(
        """
        from pytest_robust import robust

        @robust(attack="fgsm", eps=0.1)
        def test_device():
            pass
        """
    )
    result = rtester.runpytest("--robust-device=cuda")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*device='cuda' but CUDA is not available*"])
