"""The docs' output blocks are the output of the commands they show (issue 17, part 7).

docs/regenerate.py runs the commands and rewrites the marked blocks; these tests run the
same commands (each run once, however many blocks show it) and fail when a committed block
differs from what the command prints now, times and the session header aside. A change that
moves a number fails here until `python docs/regenerate.py` is run and its diff committed.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from trained_once import run_folder

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_regenerate", ROOT / "docs" / "regenerate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


regen = _load()
CHECKED = [name for name, run in regen.RUNS.items() if run.checked]


def test_every_marked_block_has_a_run_and_every_block_is_marked() -> None:
    marked = regen.all_marked()  # raises SystemExit on unknown, doubled or mislabelled blocks
    assert set(marked) == set(regen.BLOCKS)
    for name, (_, _, unchecked) in marked.items():
        assert unchecked == (not regen.RUNS[regen.BLOCKS[name].run].checked)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of trained digits CNNs for every run of this session (see MODEL_CACHE_HOOK):
    the first child that trains the CNN keeps it, the others load the same weights. Under
    xdist the workers' base folders sit in the session's own, fresh one: they share it (two
    workers training at once both write the same weights, each file atomically)."""
    folder = run_folder(tmp_path_factory) / "docs-models"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.mark.parametrize("run_name", CHECKED)
def test_output_blocks_are_current(run_name: str, model_cache: Path) -> None:
    if mismatch := regen.machine_mismatch():
        # Another CPU, kernel set or torch trains other digits weights: its numbers differ in
        # the third decimal without anything being stale (docs/regenerate.py's docstring).
        pytest.skip(f"the docs' outputs were made on another machine: {mismatch}")
    outputs = {run_name: regen.execute(regen.RUNS[run_name], model_cache)}
    problems = [
        diff
        for name, (_, body, _) in regen.all_marked().items()
        if regen.BLOCKS[name].run == run_name and (diff := regen.stale(name, body, outputs))
    ]
    problems += regen.prose_problems(outputs)
    assert not problems, (
        "\n\n".join(problems) + "\n\nrun `python docs/regenerate.py` and commit the docs"
    )


# The comparison itself, on the committed README table standing in for a fresh run.


def _committed(name: str) -> str:
    body: str = regen.all_marked()[name][1]
    return body


def _as_run(name: str, text: str) -> dict[str, object]:
    """`text` as the output of the block's run (the README table's run prints a header that
    the block leaves out; `without_header` cuts after its 'collected' line)."""
    block = regen.BLOCKS[name]
    return {block.run: regen.RunOutput(outputs={block.step: "collected 1 item\n\n" + text})}


def test_a_moved_number_is_stale() -> None:
    # The main job's output as it would be printed, with the first robust accuracy moved by
    # 0.002 (one sample of 450 is 0.0022).
    committed = _committed("readme-main-job")
    match = re.search(r" (\d\.\d{3}) \[", committed)
    assert match is not None
    moved = f"{float(match.group(1)) - 0.002:.3f}"
    produced = committed[: match.start(1)] + moved + committed[match.end(1) :]
    diff = regen.stale("readme-main-job", committed, _as_run("readme-main-job", produced))
    assert diff is not None
    assert f" {match.group(1)} [" in diff and f" {moved} [" in diff


def test_times_and_their_padding_are_not_compared() -> None:
    committed = _committed("readme-main-job")
    # Every time ten times longer: the column, the summary line and its '=' padding move.
    produced = regen._TIME.sub(lambda m: "1" + m.group(0), committed)
    assert produced != committed
    assert regen.stale("readme-main-job", committed, _as_run("readme-main-job", produced)) is None


def test_a_test_missing_from_the_quickstart_table_is_reported() -> None:
    collect = "examples/digits/test_robustness.py::test_new_gate\n1 test collected in 0.01s\n"
    problems = regen.prose_problems(
        {"digits-collect": regen.RunOutput(outputs={"collect": collect})}
    )
    assert any("misses ['test_new_gate']" in p for p in problems)


def test_the_machine_record_names_what_the_numbers_depend_on() -> None:
    recorded = regen.recorded_machine()
    assert recorded is not None, "docs/outputs-machine.json is missing"
    assert set(recorded) == set(regen.machine())
    assert recorded["threads"] == regen.THREADS


def test_another_machine_is_named_in_the_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    here = regen.machine()
    monkeypatch.setattr(regen, "machine", lambda: {**here, "kernels": "AVX2-elsewhere"})
    mismatch = regen.machine_mismatch()
    assert mismatch is not None and "'AVX2-elsewhere' here" in mismatch


def test_children_print_as_on_a_readers_terminal_on_a_ci_runner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # CI sets CI=true, and pytest then leaves the short summary's failure lines uncut: stop
    # 21's CI failed on the quick start's blocks though every number was equal.
    for name in regen.OUTPUT_VARIABLES:
        monkeypatch.setenv(name, "1")
    env = regen.child_env(tmp_path)
    assert not set(regen.OUTPUT_VARIABLES) & set(env)
    assert env["COLUMNS"] == "80"


FAKE_DIGITS = """\
import torch


class DigitsCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3))


def trained_cnn(seed=0):
    print("trained", flush=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsCNN()
    with torch.no_grad():
        model.w.mul_(2.0).add_(VERSION)  # training moves the weights away from the init
    return model.eval()
"""
SCRIPT = """\
import torch
from digits import trained_cnn

torch.manual_seed(0)
model = trained_cnn(seed=3)
print(model.w.tolist(), model.training, model.w.requires_grad, torch.rand(1).item())
"""


def test_children_share_a_trained_model_bit_for_bit(tmp_path: Path) -> None:
    """The second child loads the first one's weights instead of training, and prints what a
    child that trained would print (weights, mode, the global RNG after); a changed digits.py
    trains again."""
    cache = tmp_path / "models"
    cache.mkdir()
    (tmp_path / "script.py").write_text(SCRIPT)

    def child(version: float) -> str:
        (tmp_path / "digits.py").write_text(FAKE_DIGITS.replace("VERSION", str(version)))
        proc = subprocess.run(
            [sys.executable, "script.py"],
            cwd=tmp_path,
            env=regen.child_env(tmp_path, cache),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    # The first child trains as it would without a cache (the hook returns train's model).
    trained = child(1.0)
    assert trained.startswith("trained\n")
    assert child(1.0) == trained.removeprefix("trained\n")  # loaded, and nothing else moved
    assert child(2.0).startswith("trained\n")  # another digits.py
