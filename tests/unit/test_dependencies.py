"""What `pip install pytest-robust` pulls in (issue 17): torch, numpy, pytest and filelock
(locks the baseline during a save), nothing else. Hypothesis is the `hypothesis` extra:
only pytest_robust.strategies needs it, and as a hard dependency its own pytest plugin
would load in every project that installs ours."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent.parent
RUNTIME = {"torch", "numpy", "pytest", "filelock"}
INSTALL_HINT = 'pip install "pytest-robust[hypothesis]"'


def unconditional(requirements: list[str]) -> set[str]:
    """The names of the requirements that hold without an extra (no marker, or one that
    is true here)."""
    names = set()
    for text in requirements:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.add(req.name.lower())
    return names


def test_pyproject_runtime_dependencies_are_torch_numpy_pytest_filelock() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert unconditional(project["dependencies"]) == RUNTIME
    extras = project["optional-dependencies"]
    assert {Requirement(r).name for r in extras["hypothesis"]} == {"hypothesis"}
    # Our own tests use the strategies, so the dev extra brings Hypothesis too.
    assert "hypothesis" in {Requirement(r).name for r in extras["dev"]}


def test_installed_distribution_requires_only_the_runtime_set() -> None:
    requires = importlib.metadata.requires("pytest-robust") or []
    assert unconditional(requires) == RUNTIME, (
        "the installed pytest-robust metadata differs from pyproject.toml; if pyproject is "
        "right, reinstall (pip install -e '.[dev]')"
    )
    hypothesis_extra = [r for r in requires if Requirement(r).name == "hypothesis"]
    assert hypothesis_extra, "the hypothesis extra is missing from the installed metadata"
    assert all(Requirement(r).marker is not None for r in hypothesis_extra)


# One fresh interpreter where `import hypothesis` fails as if it were not installed (a None
# entry in sys.modules makes the import raise ModuleNotFoundError) answers both tests below:
# first everything but the strategies (the package, the public names, the engine and the
# pytest plugin, which pytest loads in every run), then the strategies. One interpreter
# instead of two: each start imports torch (about 2 s of CPU).
WITHOUT_HYPOTHESIS = """
import json, sys, traceback
sys.modules['hypothesis'] = None
out = {}
try:
    import pytest_robust, pytest_robust.plugin
    from pytest_robust import evaluate, robust
    import pytest_robust.engine.evaluate
    out['package'] = 'ok'
except BaseException:
    out['package'] = traceback.format_exc()
try:
    import pytest_robust.strategies
except ModuleNotFoundError as error:
    out['strategies'] = f"{type(error).__name__} {error.name} | {error}"
except BaseException:
    out['strategies'] = traceback.format_exc()
else:
    out['strategies'] = 'imported'
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def without_hypothesis() -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_HYPOTHESIS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    answers: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


def test_strategies_without_hypothesis_says_how_to_install_it(
    without_hypothesis: dict[str, str],
) -> None:
    said = without_hypothesis["strategies"]
    assert said.startswith("ModuleNotFoundError hypothesis |"), said
    assert INSTALL_HINT in said
    assert "pytest_robust.strategies" in said


def test_the_package_and_plugin_load_without_hypothesis(
    without_hypothesis: dict[str, str],
) -> None:
    assert without_hypothesis["package"] == "ok", without_hypothesis["package"]


def test_scipy_is_the_certify_extra_not_a_runtime_dependency() -> None:
    # Only randomized smoothing (its Clopper-Pearson and binomial statistics) needs scipy;
    # the error without it names the extra (tests/unit/test_certify_smoothing.py).
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {Requirement(r).name for r in extras["certify"]} == {"scipy"}
    assert "scipy" in {Requirement(r).name for r in extras["dev"]}
    assert "scipy" not in unconditional(project["dependencies"])
