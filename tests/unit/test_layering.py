"""The walls between the layers (docs/architecture.md): the core (everything in
pytest_robust/ but the pytest layer, plugin/, and the Hypothesis strategies) loads without
pytest and without Hypothesis, so the engine can be called from any program. ruff's banned-api
rule (TID251) stops a direct `import pytest` in the core; this test also catches an indirect
one (a core module importing plugin/, or the package's __init__ importing the marker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "pytest_robust"
# The only places allowed to import pytest or Hypothesis at module level.
OUTSIDE_THE_CORE = ("pytest_robust.plugin", "pytest_robust.strategies")
FORBIDDEN = ("pytest", "_pytest", "hypothesis")

# Imports the modules one by one and names the first that brought a forbidden module in.
PROBE = """
import importlib, json, sys
forbidden = {forbidden!r}
culprits = {{}}
for name in {modules!r}:
    importlib.import_module(name)
    for module in forbidden:
        if module in sys.modules and module not in culprits:
            culprits[module] = name
print(json.dumps(culprits))
"""


def core_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(OUTSIDE_THE_CORE):
            names.append(name)
    return names


def fresh_import(modules: list[str], forbidden: tuple[str, ...]) -> dict[str, str]:
    """{forbidden module: the first of `modules` whose import loaded it}, in a fresh
    interpreter (this one has pytest loaded already)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules, forbidden=forbidden)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    culprits: dict[str, str] = json.loads(done.stdout)
    return culprits


def test_the_core_is_found():
    # A guard on the guard: an empty list would pass the test below vacuously.
    modules = core_modules()
    assert {"pytest_robust", "pytest_robust.engine.evaluate", "pytest_robust.spec"} <= set(modules)
    assert not [m for m in modules if m.startswith(OUTSIDE_THE_CORE)]


def test_the_core_imports_neither_pytest_nor_hypothesis():
    assert fresh_import(core_modules(), FORBIDDEN) == {}
