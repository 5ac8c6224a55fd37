"""Regenerate every marked output block in README.md and docs/*.md from real runs.

    python docs/regenerate.py            # run everything, rewrite the blocks in place
    python docs/regenerate.py --check    # run the cheap runs, compare, rewrite nothing
    python docs/regenerate.py --list     # the runs and the blocks each one produces

A block is marked in the Markdown like this (the fence inside is rewritten, the markers and
the fence's language stay):

    <!-- output: quickstart-failure -->
    ```text
    ...
    ```
    <!-- /output -->

Each name is a `Block` below: which `Run` produces it and which part of the run's output it
shows. A run executes its steps (write files, run commands) in a fresh temporary directory
or in the repository, once, however many blocks show it. Paths of the temporary directory
are shown as the path the docs use (`/home/you/robust-demo`, ...).

The children of one session share the digits CNN they train (`MODEL_CACHE_HOOK`): the first
trains it, the others load its weights bit for bit and print what they would have printed.

`tests/docs/test_docs_outputs.py` runs every run marked `checked=True` and compares each of
its blocks with the committed one, ignoring times and the session header (`normalise`).
A run that takes more than a minute on a 2-core CI machine is `checked=False`: its blocks
are marked `<!-- output: NAME (generated, not checked) -->` in the Markdown, and only this
script rewrites them.

The commands run with `OMP_NUM_THREADS=2`, as a 2-core machine runs them by default. The
digits CNN's training sums in an order that depends on the number of threads, on the vector
instructions (AVX-512 and AVX2 train different weights) and on the kernels' blocking, so its
accuracies move in the third decimal from one kind of machine to another. The blocks show
what this project's machines print (the README's commands run natively, not with pinned
kernels); `outputs-machine.json` records that machine, and the docs test compares only on
a machine that matches it and says so when it skips.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"
QUICKSTART = ROOT / "docs" / "quickstart.md"

# Pinned so that the numbers do not depend on the machine's core count (see the docstring).
THREADS = "2"


# ---------------------------------------------------------------------------------------------
# Runs: what is executed


@dataclass(frozen=True)
class Cmd:
    """A command of a run, as `python ARGS...`; `rc` is its expected exit status."""

    label: str
    args: tuple[str, ...]
    rc: int = 0


@dataclass(frozen=True)
class Edit:
    """A file change between commands: `apply(workdir)`."""

    apply: Callable[[Path], None]


@dataclass(frozen=True)
class Run:
    name: str
    steps: tuple[Cmd | Edit, ...]
    # Where the commands run: the repository root, or a fresh temporary directory shown in the
    # docs as `shown_as`.
    in_repo: bool = False
    shown_as: str = "/home/you/robust-demo"
    checked: bool = True
    why_unchecked: str = ""


@dataclass
class RunOutput:
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # CPU time of the commands: on a busy machine a fairer measure of their cost than seconds.
    cpu_seconds: float = 0.0


def python_blocks(md: Path) -> dict[str, str]:
    """The ```python blocks of a page that start with `# FILENAME`, by file name."""
    found: dict[str, str] = {}
    for body in re.findall(r"```python\n(.*?)```", md.read_text(), re.S):
        first = body.split("\n", 1)[0]
        m = re.fullmatch(r"# (\S+\.py)", first)
        if m and m.group(1) not in found:
            found[m.group(1)] = body
    return found


def quickstart_project(workdir: Path) -> None:
    """Step 2-4 of the quick start: digits.py, pytest.ini, and the page's own conftest and test."""
    shutil.copy(DIGITS / "digits.py", workdir / "digits.py")
    (workdir / "pytest.ini").write_text("[pytest]\n")
    code = python_blocks(QUICKSTART)
    for name in ("conftest.py", "test_robustness.py", "reproduce.py"):
        (workdir / name).write_text(code[name])


FGSM_FAILING = '@robust(attack="fgsm", eps=0.1, min_acc=0.8)'
FGSM_PASSING = '@robust(attack="fgsm", eps=0.05, min_acc=0.8)'


def lower_the_budget(workdir: Path) -> None:
    """Step 6 of the quick start: the FGSM gate at eps=0.05 (the page shows this change)."""
    test = workdir / "test_robustness.py"
    text = test.read_text()
    if FGSM_FAILING not in text or FGSM_PASSING not in QUICKSTART.read_text():
        raise SystemExit("docs/quickstart.md no longer shows the FGSM budget change of step 6")
    test.write_text(text.replace(FGSM_FAILING, FGSM_PASSING))


def digits_copy(workdir: Path) -> None:
    """The example suite's robustness tests in a directory of their own."""
    for name in ("conftest.py", "digits.py", "test_robustness.py"):
        shutil.copy(DIGITS / name, workdir / name)


def baseline_on_a_gpu(workdir: Path) -> None:
    """Edit the saved baseline's device to cuda:0, to show the warning (docs/ci.md)."""
    path = workdir / "robust-baseline.json"
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["environment"]["device"] = "cuda:0"
    path.write_text(json.dumps(data, indent=1))


def page_script(page: str, block: str) -> Callable[[Path], None]:
    """The ```python block right before output block `block` of `page`, as script.py next to
    digits.py: the page's own code is what runs."""

    def write(workdir: Path) -> None:
        text = (ROOT / page).read_text()
        end = text.index(f"<!-- output: {block} -->")
        code = re.findall(r"```python\n(.*?)```", text[:end], re.S)[-1]
        shutil.copy(DIGITS / "digits.py", workdir / "digits.py")
        (workdir / "script.py").write_text(code)

    return write


def hooks_project(workdir: Path) -> None:
    """docs/hooks.md's example: its three files, the conftest next to the digits fixtures."""
    text = (ROOT / "docs" / "hooks.md").read_text()
    code = {
        m.group(1): m.group(0)
        for m in re.finditer(r"```python\n# (\S+\.py)[^\n]*\n.*?(?=```)", text, re.S)
    }
    digits_copy(workdir)
    (workdir / "test_robustness.py").unlink()
    (workdir / "pytest.ini").write_text("[pytest]\n")
    (workdir / "my_attacks.py").write_text(code["my_attacks.py"].removeprefix("```python\n"))
    (workdir / "test_hooks_demo.py").write_text(
        code["test_hooks_demo.py"].removeprefix("```python\n")
    )
    hooks = code["conftest.py"].removeprefix("```python\n")
    with (workdir / "conftest.py").open("a") as conftest:
        conftest.write("\n\n" + hooks)


PYTEST = ("-m", "pytest")

RUNS: dict[str, Run] = {
    run.name: run
    for run in (
        Run(
            "digits-main",
            (Cmd("main", (*PYTEST, "examples/digits", "--robust-report")),),
            in_repo=True,
        ),
        Run(
            "digits-collect",
            (Cmd("collect", (*PYTEST, "examples/digits", "--collect-only", "-q")),),
            in_repo=True,
        ),
        Run(
            "quickstart",
            (
                Edit(quickstart_project),
                Cmd("fail", PYTEST, rc=1),
                Edit(lower_the_budget),
                Cmd("pass", (*PYTEST, "--robust-report", "--robust-report=json:robust.json")),
                Cmd("reproduce", ("reproduce.py",)),
                Cmd("max-samples", (*PYTEST, "-q", "--robust-max-samples=100"), rc=1),
            ),
        ),
        *(
            Run(name, (Edit(page_script(page, name)), Cmd("script", ("script.py",))))
            for name, page in (
                ("reference-evaluate", "docs/reference.md"),
                ("semantics-cache", "docs/semantics.md"),
                ("semantics-three-thresholds", "docs/semantics.md"),
            )
        ),
        Run(
            "hooks",
            (
                Edit(hooks_project),
                Cmd("hooks", (*PYTEST, "--robust-report=json:r.json", "--robust-report=md:r.md")),
            ),
            shown_as="/tmp/hooks-demo",
        ),
        Run(
            "ci-baseline",
            (
                Edit(digits_copy),
                Cmd("save", (*PYTEST, "test_robustness.py", "--robust-baseline-save")),
                Edit(baseline_on_a_gpu),
                Cmd(
                    "compare",
                    (
                        *PYTEST,
                        "test_robustness.py",
                        "-n",
                        "2",
                        "--robust-compare-fail=robust_acc:0.02",
                        "--junitxml=junit.xml",
                    ),
                ),
                Cmd(
                    "strict",
                    (
                        *PYTEST,
                        "test_robustness.py",
                        "-n",
                        "2",
                        "--robust-strict",
                        "--robust-compare",
                        "--junitxml=junit.xml",
                    ),
                    rc=1,
                ),
                Cmd("junit", ("-c", "print(open('junit.xml').read())")),
            ),
            shown_as="/tmp/digits_demo",
            checked=False,
            why_unchecked="three runs of the suite, two under -n 2: about 450 s of CPU",
        ),
        Run(
            "ci-quick",
            (
                Edit(digits_copy),
                Cmd("quick", (*PYTEST, "test_robustness.py", "--robust-profile=quick")),
            ),
            shown_as="/tmp/digits_demo",
        ),
        Run(
            "ci-thorough",
            (
                Edit(digits_copy),
                Cmd("thorough", (*PYTEST, "test_robustness.py", "--robust-profile=thorough")),
            ),
            shown_as="/tmp/digits_demo",
            checked=False,
            why_unchecked="the full masking diagnosis on every check: minutes on 2 cores",
        ),
    )
}


# Environment variables that change what pytest prints, not what it measures.
OUTPUT_VARIABLES = ("CI", "BUILD_NUMBER", "PY_COLORS", "FORCE_COLOR", "NO_COLOR", "TERM")


# Every child that imports the example's `digits` module trains the same CNN (~9 s of CPU):
# ten times in the checked runs. A child started with `model_cache` set loads this
# sitecustomize first, which makes `digits.trained_cnn` keep each trained model's weights in
# that folder, keyed by digits.py's bytes and the seed: the first child trains, the others
# load bit-identical weights (the model built under fork_rng as trained_cnn builds it, so the
# global RNG is left as training leaves it) and print what they would have printed. The
# folder lives for one session (one docs test process, one run of this script), so a
# changed torch or machine can never hand a child weights it did not train itself.
MODEL_CACHE_HOOK = """\
import functools
import hashlib
import importlib.abc
import importlib.machinery
import os
import sys
from pathlib import Path

_CACHE = Path(os.environ["ROBUST_DOCS_MODEL_CACHE"])


def _cached(module):
    key = hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:16]
    train = module.trained_cnn

    @functools.wraps(train)
    def trained_cnn(seed=0):
        import torch

        path = _CACHE / f"digits-{key}-seed{seed}.pt"
        if not path.exists():
            model = train(seed=seed)
            part = path.with_name(f"{path.name}.{os.getpid()}")
            torch.save(model.state_dict(), part)
            os.replace(part, path)  # atomic: parallel children never read half a file
            return model
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = module.DigitsCNN()
        model.load_state_dict(torch.load(path))
        return model.eval()

    module.trained_cnn = trained_cnn


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _cached(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "digits":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
"""


def child_env(tmp: Path, model_cache: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # A pytest running this script (the docs test under xdist) must not leak its identity
        # into the child pytest: a child that believes it is an xdist worker splits threads.
        if not k.startswith(("PYTEST_", "PYTHONBREAKPOINT"))
    }
    # pytest prints differently on a CI runner (`CI`, `BUILD_NUMBER`: the short summary's
    # failure lines are not cut to the terminal width) and in colour when forced: the pages
    # show what a reader's terminal prints, so the children run as on one, wherever we are.
    for varies_output in OUTPUT_VARIABLES:
        env.pop(varies_output, None)
    env["OMP_NUM_THREADS"] = THREADS
    env["MKL_NUM_THREADS"] = THREADS
    # Under the docs test the children share CI's 2 cores with xdist's workers: threads that
    # spin while waiting burned 4x the CPU of the work there. Waiting does not touch numbers.
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    # Kernels are left as the machine picks them, as for a reader running the README:
    # the numbers are then those of this machine kind (`machine()`), not of a pinned ISA.
    for pinned in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"):
        env.pop(pinned, None)
    # A fresh pytest cache: every command runs as a first run (no transformation remembered
    # from an earlier one), and a run in the repository leaves no .pytest_cache behind.
    env["PYTEST_ADDOPTS"] = f"-o cache_dir={tmp / '.pytest_cache'}"
    env["COLUMNS"] = "80"  # pytest's banners are as wide as the terminal
    # The repository first, so that a checkout runs its own plugin (not an installed one).
    path = [str(ROOT), env.get("PYTHONPATH")]
    env.pop("ROBUST_DOCS_MODEL_CACHE", None)
    if model_cache is not None:
        hook = model_cache / "sitecustomize.py"
        if not hook.exists() or hook.read_text() != MODEL_CACHE_HOOK:
            # Atomically: another xdist worker's child may be reading it at its start-up.
            part = model_cache / f"sitecustomize.{os.getpid()}"
            part.write_text(MODEL_CACHE_HOOK)
            os.replace(part, hook)
        env["ROBUST_DOCS_MODEL_CACHE"] = str(model_cache)
        path.insert(0, str(model_cache))  # where Python looks for sitecustomize at start-up
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    return env


SAVED = Path(tempfile.gettempdir()) / "pytest-robust-docs"
MACHINE_FILE = ROOT / "docs" / "outputs-machine.json"


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _cpu_model() -> str:
    """The CPU's name and, since a virtual machine's name can be as vague as "AMD EPYC",
    its family and model numbers (the microarchitecture)."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or "unknown"
    if "cpu family" in info:
        name += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    return name


def _vector_flags() -> str:
    """The vector extensions the kernels may pick from (oneDNN and MKL choose by them)."""
    flags = _cpuinfo().get("flags", "").split()
    wanted = ("avx", "fma", "amx", "vnni", "bf16", "fp16", "sse4")
    return " ".join(sorted(f for f in flags if f.startswith(wanted) or "vnni" in f)) or "unknown"


def _cache_sizes() -> str:
    sizes = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            sizes.append(f"L{level} {kind} {(index / 'size').read_text().strip()}")
        except OSError:
            continue
    return ", ".join(sizes) or "unknown"


def machine() -> dict[str, str]:
    """What the printed numbers depend on besides the code and the thread count: the
    architecture, the kernels torch picks (AVX2 / AVX512), the CPU, its vector extensions
    and its caches (oneDNN picks kernels by them and blocks its loops by cache size),
    torch's version."""
    import torch

    return {
        "arch": platform.machine(),
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "cpu": _cpu_model(),
        "vector flags": _vector_flags(),
        "caches": _cache_sizes(),
        "torch": torch.__version__,
        "threads": THREADS,
    }


def recorded_machine() -> dict[str, str] | None:
    if not MACHINE_FILE.exists():
        return None
    recorded: dict[str, str] = json.loads(MACHINE_FILE.read_text())
    return recorded


def machine_mismatch() -> str | None:
    """None when this machine prints what the docs show; else what differs."""
    recorded, here = recorded_machine(), machine()
    if recorded is None:
        return f"{MACHINE_FILE.name} is missing: run `python docs/regenerate.py`"
    diff = [
        f"{key}: {recorded.get(key)!r} there, {value!r} here"
        for key, value in here.items()
        if recorded.get(key) != value
    ]
    return "; ".join(diff) or None


def save(name: str, out: RunOutput) -> None:
    """Keep a run's raw output, so that `--reuse` can render the blocks again without it."""
    SAVED.mkdir(exist_ok=True)
    (SAVED / f"{name}.json").write_text(json.dumps(out.outputs))


def load(name: str) -> RunOutput | None:
    path = SAVED / f"{name}.json"
    return RunOutput(outputs=json.loads(path.read_text())) if path.exists() else None


def shown(line: str, path: str, shown_as: str) -> str:
    """A line with the temporary path replaced; a banner is centred again as pytest does."""
    if path not in line:
        return line
    line = line.replace(path, shown_as)
    m = re.fullmatch(r"([=_-])\1+ (.*) \1+", line)
    if m is None:
        return line
    sep, title = m.group(1), m.group(2)
    fill = sep * max((80 - len(title) - 2) // 2, 1)
    line = f"{fill} {title} {fill}"
    return line + sep if len(line) + 1 <= 80 else line


def execute(run: Run, model_cache: Path | None = None) -> RunOutput:
    """Run `run`'s steps; with `model_cache`, its children share trained digits CNNs there."""
    out = RunOutput()
    start = time.perf_counter()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_start = children.ru_utime + children.ru_stime
    with tempfile.TemporaryDirectory(prefix=f"docs-{run.name}-") as tmp:
        workdir = ROOT if run.in_repo else Path(tmp).resolve()
        for step in run.steps:
            if isinstance(step, Edit):
                step.apply(workdir)
                continue
            proc = subprocess.run(
                [sys.executable, *step.args],
                cwd=workdir,
                env=child_env(Path(tmp), model_cache),
                capture_output=True,
                text=True,
                check=False,
            )
            text = proc.stdout + proc.stderr
            if proc.returncode != step.rc:
                raise RuntimeError(
                    f"run {run.name!r}, command {step.label!r} ({' '.join(step.args)}) exited "
                    f"with {proc.returncode}, expected {step.rc}:\n{text}"
                )
            if not run.in_repo:
                text = "\n".join(
                    shown(line, str(workdir), run.shown_as) for line in text.split("\n")
                )
            out.outputs[step.label] = text
    out.seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.cpu_seconds = children.ru_utime + children.ru_stime - cpu_start
    return out


# ---------------------------------------------------------------------------------------------
# Blocks: what the docs show of a run's output


def banner(title: str) -> re.Pattern[str]:
    """pytest's section line, `==== title ====` as wide as the terminal."""
    return re.compile(rf"=+ {re.escape(title)} =+$")


def from_line(
    text: str, start: str | re.Pattern[str], *, end: str | None = None, keep_end: bool = True
) -> str:
    """The lines from the first that starts with `start` (or matches it) to the first after it
    that starts with `end` (or to the end)."""
    lines = text.splitlines()

    def first(line: str) -> bool:
        return bool(start.match(line)) if isinstance(start, re.Pattern) else line.startswith(start)

    i = next(k for k, line in enumerate(lines) if first(line))
    j = len(lines)
    if end is not None:
        j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith(end))
        j += 1 if keep_end else 0
    return "\n".join(lines[i:j])


def line_after(text: str, marker: str) -> str:
    lines = text.splitlines()
    return lines[next(k for k, line in enumerate(lines) if marker in line) + 1]


def without_header(text: str) -> str:
    """The output from the first test line on: the session header left out."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("collected ")) + 2
    return "\n".join(lines[i:])


def failure_line(text: str, test: str) -> str:
    """The failure text of one test: the first line after its `___ test ___` header that is
    not xdist's `[gwN] ...` line."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if f" {test} " in line and line.startswith("_"))
    return next(line for line in lines[i + 1 :] if not line.startswith("[gw"))


def failure(text: str) -> str:
    return from_line(text, banner("FAILURES"), end="robust_acc")


def term_table(text: str) -> str:
    return from_line(text, banner("robustness"))


def invariance_rows(text: str) -> str:
    lines = term_table(text).splitlines()
    header = next(line for line in lines if line.lstrip().startswith("case "))
    rows = "\n".join(lines)
    part = from_line(rows, "test_invariance.py::", end="test_robustness.py::", keep_end=False)
    return header + "\n" + part


def as_console(command: str) -> Callable[[str], str]:
    return lambda text: f"$ {command}\n" + text.rstrip("\n")


def junit_properties(case: str) -> Callable[[str], str]:
    """The robust.* properties of one test case of a JUnit XML file, as pytest writes them."""

    def show(text: str) -> str:
        tree = ElementTree.fromstring(text)
        testcase = next(t for t in tree.iter("testcase") if t.get("name") == case)
        lines = []
        for prop in testcase.iter("property"):
            name, value = prop.get("name", ""), prop.get("value", "")
            if name.startswith("robust."):
                lines.append(f"<property name={quoteattr(name)} value={quoteattr(value)} />")
        return "\n".join(lines)

    return show


@dataclass(frozen=True)
class Block:
    run: str
    step: str
    show: Callable[[str], str]


BLOCKS: dict[str, Block] = {
    # README.md
    "readme-main-job": Block("digits-main", "main", without_header),
    "readme-failure": Block("quickstart", "fail", failure),
    # docs/reports.md, docs/invariance.md
    "reports-term": Block("digits-main", "main", term_table),
    "invariance-rows": Block("digits-main", "main", invariance_rows),
    # docs/quickstart.md
    "quickstart-collect": Block("digits-collect", "collect", lambda t: t.rstrip("\n")),
    "quickstart-fail": Block("quickstart", "fail", lambda t: t.rstrip("\n")),
    "quickstart-failure-line": Block("quickstart", "fail", lambda t: line_after(t, " test_fgsm ")),
    "quickstart-pass": Block("quickstart", "pass", without_header),
    "quickstart-reproduce": Block("quickstart", "reproduce", as_console("python reproduce.py")),
    "quickstart-max-samples": Block("quickstart", "max-samples", lambda t: from_line(t, "test ")),
    # docs/reference.md, docs/semantics.md: the page's own Python code, run
    "reference-evaluate": Block("reference-evaluate", "script", lambda t: t.rstrip("\n")),
    "reference-summary": Block(
        "quickstart",
        "fail",
        lambda t: from_line(t, banner("robustness"), end="=====", keep_end=False),
    ),
    "semantics-cache": Block("semantics-cache", "script", lambda t: t.rstrip("\n")),
    "semantics-three-thresholds": Block(
        "semantics-three-thresholds", "script", lambda t: t.rstrip("\n")
    ),
    # docs/hooks.md
    "hooks-summary": Block(
        "hooks",
        "hooks",
        lambda t: from_line(t, banner("robustness"), end="=====", keep_end=False),
    ),
    # docs/ci.md
    "ci-compare": Block(
        "ci-baseline",
        "compare",
        as_console(
            "pytest test_robustness.py -n 2 --robust-compare-fail=robust_acc:0.02"
            " --junitxml=junit.xml"
        ),
    ),
    "ci-junit": Block("ci-baseline", "junit", junit_properties("test_pgd_curve[pgd-eps=0.02]")),
    "ci-strict-line": Block(
        "ci-baseline",
        "strict",
        lambda t: failure_line(t, "test_pgd_curve[pgd-eps=0.02]"),
    ),
    "ci-quick": Block(
        "ci-quick", "quick", as_console("pytest test_robustness.py --robust-profile=quick")
    ),
    "ci-thorough": Block(
        "ci-thorough",
        "thorough",
        as_console("pytest test_robustness.py --robust-profile=thorough"),
    ),
}


# ---------------------------------------------------------------------------------------------
# The Markdown side: finding, comparing and rewriting blocks

MARKED = re.compile(
    r"(?P<open><!-- output: (?P<name>[\w-]+)(?P<note> \(generated, not checked\))? -->\n"
    r"```(?P<lang>\w*)\n)(?P<body>.*?)(?P<close>```\n<!-- /output -->)",
    re.S,
)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def marked_blocks(path: Path) -> list[tuple[str, str, bool]]:
    """(name, body, marked-unchecked) of each marked block in a page."""
    return [(m["name"], m["body"], bool(m["note"])) for m in MARKED.finditer(path.read_text())]


def all_marked() -> dict[str, tuple[Path, str, bool]]:
    found: dict[str, tuple[Path, str, bool]] = {}
    for path in doc_files():
        for name, body, unchecked in marked_blocks(path):
            if name not in BLOCKS:
                raise SystemExit(f"{path.relative_to(ROOT)}: unknown output block {name!r}")
            if name in found:
                raise SystemExit(f"{path.relative_to(ROOT)}: output block {name!r} twice")
            if unchecked == RUNS[BLOCKS[name].run].checked:
                want = "" if RUNS[BLOCKS[name].run].checked else " (generated, not checked)"
                raise SystemExit(f"{path.relative_to(ROOT)}: mark it <!-- output: {name}{want} -->")
            found[name] = (path, body, unchecked)
    return found


_TIME = re.compile(r"\b\d+(\.\d+)?s\b( \(\d+:\d\d:\d\d\))?|\d+(\.\d+)?/s\b")
_BANNER = re.compile(r"^[=_-]{3,} ?(.*?) ?[=_-]{3,}$")
_HEADER = ("platform ", "plugins: ", "cachedir: ", "rootdir: ", "configfile: ", "created: ")


def normalise(text: str) -> str:
    """What a comparison looks at: no times, no session header, no padding of banners and
    columns (both sides shift when a time gets a digit longer)."""
    kept = []
    for line in text.splitlines():
        if line.startswith(_HEADER):
            continue
        line = _TIME.sub("<t>", line)
        line = _BANNER.sub(r"== \1 ==", line.strip())
        kept.append(" ".join(line.split()))
    return "\n".join(kept).strip() + "\n"


# A table of test functions in the docs, checked against what pytest collects.
TESTS_TABLE = re.compile(r"<!-- tests: (?P<dir>\S+) -->\n(?P<body>.*?)<!-- /tests -->", re.S)
COLLECTED_BY = {"examples/digits": ("digits-collect", "collect")}


def prose_problems(outputs: dict[str, RunOutput]) -> list[str]:
    """What the docs say about the runs outside the output blocks: the test tables name every
    collected test function, and the README's quick-start code is the quick start's."""
    problems = []
    for path in doc_files():
        for m in TESTS_TABLE.finditer(path.read_text()):
            run, step = COLLECTED_BY[m["dir"]]
            if run not in outputs:
                continue
            ids = [line for line in outputs[run].outputs[step].splitlines() if "::" in line]
            collected = {re.sub(r"\[.*", "", i.rsplit("::", 1)[1]) for i in ids}
            named = set(re.findall(r"^\| `(test_\w+)`", m["body"], re.M))
            if named != collected:
                problems.append(
                    f"{path.relative_to(ROOT)}: the table of {m['dir']} names "
                    f"{sorted(named - collected)} that pytest does not collect and misses "
                    f"{sorted(collected - named)}"
                )
    readme, quickstart = python_blocks(ROOT / "README.md"), python_blocks(QUICKSTART)
    for name in ("conftest.py", "test_robustness.py"):
        if readme.get(name) != quickstart.get(name):
            problems.append(f"README.md's {name} differs from docs/quickstart.md's (which runs)")
    return problems


def rendered(name: str, outputs: dict[str, RunOutput]) -> str:
    block = BLOCKS[name]
    # pytest names the cache directory in its header when it is not the default one: ours is
    # (see child_env), the reader's is not.
    text = re.sub(r"^cachedir: .*\n", "", outputs[block.run].outputs[block.step], flags=re.M)
    return block.show(text).rstrip("\n") + "\n"


def stale(name: str, committed: str, outputs: dict[str, RunOutput]) -> str | None:
    """A diff when the committed block differs from the run's, None when it is current."""
    want, have = normalise(rendered(name, outputs)), normalise(committed)
    if want == have:
        return None
    diff = difflib.unified_diff(
        have.splitlines(), want.splitlines(), "committed", "produced now", lineterm=""
    )
    return f"output block {name!r} is stale:\n" + "\n".join(diff)


def rewrite(outputs: dict[str, RunOutput]) -> list[str]:
    """Rewrite the blocks whose runs ran; returns the names of the blocks that changed."""
    changed = []
    for path in doc_files():
        text = path.read_text()

        def sub(m: re.Match[str]) -> str:
            name = m["name"]
            if name not in BLOCKS or BLOCKS[name].run not in outputs:
                return m[0]
            body = rendered(name, outputs)
            if normalise(body) == normalise(m["body"]):
                # Only times (or paddings) moved: keep the committed block, so that a rerun
                # on a busy machine leaves no diff.
                return m[0]
            if body != m["body"]:
                changed.append(name)
            return m["open"] + body + m["close"]

        new = MARKED.sub(sub, text)
        if new != text:
            path.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, rewrite nothing")
    parser.add_argument("--only", action="append", metavar="RUN", help="only these runs")
    parser.add_argument("--skip-unchecked", action="store_true", help="skip the costly runs")
    parser.add_argument("--list", action="store_true", help="list runs and blocks")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"render from the outputs the last run of each kept in {SAVED} (for editing views)",
    )
    args = parser.parse_args(argv)
    marked = all_marked()
    unused = sorted(set(BLOCKS) - set(marked))
    if unused:
        print(f"warning: blocks defined but marked nowhere: {', '.join(unused)}")
    if args.list:
        for run in RUNS.values():
            names = [n for n, b in BLOCKS.items() if b.run == run.name]
            note = "" if run.checked else f"  (not checked: {run.why_unchecked})"
            print(f"{run.name}: {', '.join(names)}{note}")
        return 0
    wanted = [
        run
        for run in RUNS.values()
        if (args.only is None or run.name in args.only)
        and not ((args.check or args.skip_unchecked) and not run.checked)
    ]
    outputs: dict[str, RunOutput] = {}
    with tempfile.TemporaryDirectory(prefix="docs-models-") as models:
        for run in wanted:
            if args.reuse and (kept := load(run.name)) is not None:
                outputs[run.name] = kept
                continue
            print(f"running {run.name} ...", flush=True)
            outputs[run.name] = execute(run, Path(models))
            save(run.name, outputs[run.name])
            done = outputs[run.name]
            print(f"  {done.seconds:.0f} s, {done.cpu_seconds:.0f} s of CPU", flush=True)
    if args.check:
        if mismatch := machine_mismatch():
            print(f"warning: the docs were generated on another machine ({mismatch})")
        problems = [
            d
            for name, (_, body, _) in marked.items()
            if BLOCKS[name].run in outputs and (d := stale(name, body, outputs))
        ]
        problems += prose_problems(outputs)
        print("\n\n".join(problems) if problems else "every checked output block is current")
        return 1 if problems else 0
    # What was stale before the rewrite, as the docs test would have reported it.
    for name, (_, body, _) in marked.items():
        if BLOCKS[name].run in outputs and (diff := stale(name, body, outputs)):
            print(diff)
    changed = rewrite(outputs)
    mismatch = machine_mismatch()
    if changed or mismatch:
        if mismatch and len(outputs) < len(RUNS):
            print(
                "warning: the blocks of the runs not run now were made on another machine "
                f"({mismatch}); run everything again so that all of them come from this one"
            )
        MACHINE_FILE.write_text(json.dumps(machine(), indent=2) + "\n")
    for problem in prose_problems(outputs):
        print(f"fix by hand: {problem}")
    print(f"rewritten: {', '.join(changed) if changed else 'nothing changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
