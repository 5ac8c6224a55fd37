"""Fault injection for every file the plugin writes: the json, md and html reports, the
baseline and the cache entries (--robust-cache results). For each: a destination that
cannot be written, a destination that is a directory, a process killed during the write
(the old file stays byte-identical, or the new one is complete) and concurrent writers.

Runs that must be killed or run side by side are subprocesses; the kill is a SIGKILL sent
by the process to itself from a patched os.replace (the moment before the new file takes
the old one's place), so it lands at the same point every time."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_robust import files

ROOT = Path(__file__).resolve().parents[2]
# eps 0.03 breaks no sample of the tiny world, so the HTML report has no fooled samples to
# draw (a picture costs a second or more; the writing of the files is under test here).
SUITE = """
from pytest_robust import robust

@robust(attack="fgsm", eps=0.03, min_acc=0.4)
def test_gate():
    pass
"""
OTHER = SUITE.replace("test_gate", "test_other")
REPORTS = {"json": "r.json", "md": "r.md", "html": "r.html"}

# Appended to the conftest of a run that is to be killed: SIGKILL when os.replace is
# about to put a file named $KILL_AT in place (for the cache: any name ending so).
KILLER = """

import os
import signal

_replace = os.replace


def _killing_replace(src, dst, *args, **kwargs):
    if os.fspath(dst).endswith(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)


os.replace = _killing_replace
"""
# Appended to the conftest of concurrent runs: each waits at the critical moment ($WAIT_IN:
# 'load' = the baseline save's read, 'replace' = the rename) until the other got there
# too, or, at a moment under the baseline's lock, until the other waits for that lock
# (it cannot get there until we are done), or a few seconds passed.
BARRIER = """

import os
import time
from pathlib import Path

import pytest
import pytest_robust.report.baseline as _baseline

UNDER_LOCK = ("load", "b.json")


def _barrier(name):
    me, other = os.environ["ME"], os.environ["OTHER"]
    Path(f"{me}.{name}.here").touch()
    for _ in range(50):
        if Path(f"{other}.{name}.here").exists():
            return
        if name in UNDER_LOCK and Path(f"{other}.lock.here").exists():
            return
        time.sleep(0.1)


_FileLock = _baseline.FileLock


def _announced_lock(*args, **kwargs):
    Path(f"{os.environ['ME']}.lock.here").touch()
    return _FileLock(*args, **kwargs)


_baseline.FileLock = _announced_lock


if os.environ["WAIT_IN"] == "replace":
    _replace = os.replace

    def _waiting_replace(src, dst, *args, **kwargs):
        _barrier(os.path.basename(dst))
        return _replace(src, dst, *args, **kwargs)

    os.replace = _waiting_replace


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    if os.environ["WAIT_IN"] != "load":
        return
    load = _baseline.load

    def waiting_load(path):  # patched after start-up: only the save's read waits
        entries = load(path)
        _barrier("load")
        return entries

    _baseline.load = waiting_load
"""


def _args(kind: str) -> list[str]:
    if kind == "baseline":
        return ["--robust-baseline-save", "--robust-baseline=b.json"]
    if kind == "cache":
        return ["--robust-cache"]
    return [f"--robust-report={kind}:{REPORTS[kind]}"]


def _target(tester: pytest.Pytester, kind: str) -> Path:
    if kind == "baseline":
        return tester.path / "b.json"
    if kind == "cache":
        (entry,) = (tester.path / ".pytest_cache" / "d").rglob("results/*.json")
        return entry
    return tester.path / REPORTS[kind]


def _complete(kind: str, text: str) -> bool:
    if kind in ("json", "baseline", "cache"):
        try:
            json.loads(text)
        except ValueError:
            return False
        return True
    if kind == "html":
        return text.rstrip().endswith("</html>")
    return "test_gate" in text


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, **extra}
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _start(cwd: Path, args: list[str], **env: str) -> subprocess.Popen[str]:
    """A pytest run in a fresh interpreter (one that can be killed, or run side by side)."""
    command = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:xdist", *args]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(run: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = run.communicate()
    return run.returncode, out


KINDS = ["json", "md", "html", "baseline", "cache"]
FILE_KINDS = ["json", "md", "html", "baseline"]


# --- a destination that cannot be written: a usage error at start-up --------------------


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("where", ["missing device", "under a file", "a directory"])
def test_unwritable_destination_is_a_usage_error_at_start_up(
    rtester: pytest.Pytester, kind: str, where: str
) -> None:
    """Catches a report or baseline path that cannot be written ending the run in a
    traceback after every test ran: exit 4 before any test, naming the option and path."""
    rtester.makepyfile(test_r=SUITE)
    (rtester.path / "afile").write_text("x")
    path = {
        "missing device": "/proc/no-such-process/r.out",
        "under a file": "afile/sub/r.out",
        "a directory": "adir",
    }[where]
    (rtester.path / "adir").mkdir()
    option = "--robust-baseline" if kind == "baseline" else "--robust-report"
    value = path if kind == "baseline" else f"{kind}:{path}"
    extra = ["--robust-baseline-save"] if kind == "baseline" else []
    result = rtester.runpytest(f"{option}={value}", *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "pytest-robust:" in err and "Traceback" not in err
    expected = {"missing device": "cannot create", "under a file": "is not a directory"}
    assert expected.get(where, "is a directory") in err
    assert "passed" not in result.stdout.str()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_directory_is_a_usage_error(rtester: pytest.Pytester) -> None:
    """Catches the start-up check trusting a directory's existence over its permissions."""
    rtester.makepyfile(test_r=SUITE)
    locked = rtester.path / "locked"
    locked.mkdir(mode=0o500)
    result = rtester.runpytest("--robust-report=json:locked/r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot write in" in result.stderr.str()


# --- a write that fails at the end: one line, the rest written, exit status 1 -----------

# Turns the destination into a directory once the start-up check has passed.
SABOTEUR = """

import os


def pytest_sessionstart(session):
    os.mkdir(os.environ["SABOTAGE"])
"""


@pytest.mark.parametrize("lost", ["json", "md", "html", "baseline"])
def test_a_report_lost_at_the_end_keeps_the_rest_and_fails_the_run(
    rtester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    """Catches a write failure at the end skipping the summary and the other reports in a
    traceback, or passing silently (a failed baseline save exited 0): one red line, every
    other file written, the table printed, exit status 1."""
    rtester.makepyfile(test_r=SUITE)
    rtester.makeconftest((rtester.path / "conftest.py").read_text() + SABOTEUR)
    monkeypatch.setenv("SABOTAGE", "b.json" if lost == "baseline" else REPORTS[lost])
    args = [f"--robust-report={k}:{REPORTS[k]}" for k in REPORTS]
    result = rtester.runpytest(*args, "--robust-baseline-save", "--robust-baseline=b.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "1 passed" in out and "Traceback" not in out
    result.stdout.fnmatch_lines(["*robustness*", "*test_gate*pass*"])
    if lost == "baseline":
        result.stdout.fnmatch_lines(["baseline NOT saved: *b.json*"])
    else:
        result.stdout.fnmatch_lines([f"{lost} report NOT written to *{REPORTS[lost]}: *"])
        assert json.loads((rtester.path / "b.json").read_text())["entries"]
    for kind, name in REPORTS.items():
        if kind != lost:
            assert _complete(kind, (rtester.path / name).read_text()), kind
            result.stdout.fnmatch_lines([f"report written: *{name}"])


def test_a_lost_report_keeps_a_failed_runs_status(rtester: pytest.Pytester) -> None:
    """Catches the lost-file status hiding a real failure's status (it only turns 0 into 1)."""
    rtester.makepyfile(test_r=SUITE + "\n\ndef test_broken():\n    assert False\n")
    rtester.makeconftest((rtester.path / "conftest.py").read_text() + SABOTEUR)
    os.environ["SABOTAGE"] = "r.json"
    try:
        result = rtester.runpytest("--robust-report=json:r.json", "-p", "no:cacheprovider")
    finally:
        del os.environ["SABOTAGE"]
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["json report NOT written to *"])


def test_cache_that_cannot_be_written_warns_and_the_run_passes(rtester: pytest.Pytester) -> None:
    """Catches an unwritable cache (here: a cache directory under /proc) breaking the
    run: pytest's own cache warns and goes on, and so does the plugin's."""
    rtester.makepyfile(test_r=SUITE)
    cache_dir = "cache_dir=/proc/no-such-process/c"
    result = rtester.runpytest("--robust-cache", "-o", cache_dir, "-W", "default")
    assert result.ret == pytest.ExitCode.OK
    assert "pytest-robust could not write the cache entry" in result.stdout.str()


def test_cache_entry_that_is_a_directory_is_a_miss(rtester: pytest.Pytester) -> None:
    """Catches a cache entry replaced by a directory breaking the next run: the check runs
    again, with a warning that the entry could not be written."""
    rtester.makepyfile(test_r=SUITE)
    rtester.runpytest("--robust-cache").assert_outcomes(passed=1)
    entry = _target(rtester, "cache")
    entry.unlink()
    entry.mkdir()
    result = rtester.runpytest("--robust-cache", "-W", "default")
    assert result.ret == pytest.ExitCode.OK
    assert "could not write the cache entry" in result.stdout.str()


# --- killed during the write --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_killed_during_the_write_leaves_the_old_file(
    rtester: pytest.Pytester, kind: str
) -> None:
    """Catches a kill during the write leaving half a file: the old file stays
    byte-identical (and readable by the next run); the killed run's temporary is removed by
    a later write once it is old, and the next write is complete with the umask's mode."""
    rtester.makepyfile(test_r=SUITE)
    assert rtester.runpytest(*_args(kind)).ret == 0
    target = _target(rtester, kind)
    before = target.read_bytes()
    conftest = (rtester.path / "conftest.py").read_text()
    rtester.makepyfile(test_r=SUITE.replace("eps=0.03", "eps=0.02"))  # another content
    rtester.makeconftest(conftest + KILLER)
    kill_at = ".json" if kind == "cache" else target.name
    status, out = _finish(_start(rtester.path, _args(kind), KILL_AT=kill_at))
    assert status == -9, out
    assert target.read_bytes() == before
    pattern = files.temporary_pattern(target)
    (temporary,) = [p for p in target.parent.iterdir() if pattern.match(p.name)]
    assert _complete(kind, temporary.read_text())  # it was killed at the rename
    old = time.time() - files.STALE_AFTER_S - 60
    os.utime(temporary, (old, old))
    rtester.makeconftest(conftest)
    assert rtester.runpytest(*_args(kind)).ret == 0
    assert target.read_bytes() != before and _complete(kind, target.read_text())
    assert not temporary.exists()
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~files.umask()


def test_the_mode_of_a_replaced_file_is_kept(tmp_path: Path) -> None:
    """Catches the atomic write resetting a file's mode (mkstemp makes 0600) when it
    replaces one the user made group-writable or private."""
    for mode in (0o664, 0o600, 0o644):
        target = tmp_path / "r.json"
        target.write_text("{}")
        target.chmod(mode)
        files.write_atomic(target, "[]")
        assert stat.S_IMODE(target.stat().st_mode) == mode
        assert target.read_text() == "[]"
        target.unlink()
    files.write_atomic(target, "[]")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~files.umask()


def test_only_old_temporaries_of_the_same_file_are_removed(tmp_path: Path) -> None:
    """Catches the cleanup removing a concurrent writer's live temporary, another file's
    temporary or a user's file that merely looks alike."""
    target = tmp_path / "r.json"
    names = [
        ".r.json.abcd1234.tmp",
        ".r.json.live0000.tmp",
        ".other.json.abcd1234.tmp",
        "r.json.tmp",
    ]
    old = time.time() - files.STALE_AFTER_S - 60
    for name in names:
        (tmp_path / name).write_text("x")
        if "live" not in name:
            os.utime(tmp_path / name, (old, old))
    files.write_atomic(target, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names[1:], "r.json"])


# --- concurrent writers -------------------------------------------------------------------


def test_concurrent_baseline_saves_merge(rtester: pytest.Pytester) -> None:
    """Catches the read-modify-write race of two runs saving to one baseline: both read
    the file before either writes (forced by a barrier after the read), and the second
    write dropped the first one's entry. Under the lock the second reads after the first
    wrote, so both entries are kept."""
    rtester.makepyfile(test_a=SUITE, test_b=OTHER)
    rtester.makeconftest((rtester.path / "conftest.py").read_text() + BARRIER)
    args = ["--robust-baseline-save", "--robust-baseline=b.json"]
    runs = [
        _start(rtester.path, [*args, f"test_{me}.py"], ME=me, OTHER=other, WAIT_IN="load")
        for me, other in (("a", "b"), ("b", "a"))
    ]
    for run in runs:
        status, out = _finish(run)
        assert status == 0, out
    entries = json.loads((rtester.path / "b.json").read_text())["entries"]
    assert sorted(entries) == ["test_a.py::test_gate", "test_b.py::test_other"]
    assert not list(rtester.path.glob(".b.json.*.tmp"))


def test_concurrent_writers_leave_complete_files(rtester: pytest.Pytester) -> None:
    """Catches two runs writing the same files at once (every report, the baseline and a
    cache entry) interleaving them or leaving temporaries behind: both reach each rename
    together (a barrier), and each file is one run's complete output, with the umask's
    mode (not mkstemp's 0600)."""
    rtester.makepyfile(test_r=SUITE)
    rtester.makeconftest((rtester.path / "conftest.py").read_text() + BARRIER)
    args = [a for kind in KINDS for a in _args(kind)]
    runs = [
        _start(rtester.path, args, ME=me, OTHER=other, WAIT_IN="replace")
        for me, other in (("a", "b"), ("b", "a"))
    ]
    for run in runs:
        status, out = _finish(run)
        assert status == 0, out
    for kind in KINDS:
        target = _target(rtester, kind)
        assert _complete(kind, target.read_text()), kind
        pattern = files.temporary_pattern(target)
        assert not [p for p in target.parent.iterdir() if pattern.match(p.name)], kind
        mode = stat.S_IMODE(target.stat().st_mode)
        assert mode == 0o666 & ~files.umask(), (kind, oct(mode))
    # Every rename waited for the other run's (so the writes really overlapped).
    assert {p.name for p in rtester.path.glob("*.here")} >= {
        f"{me}.{name}.here" for me in "ab" for name in ("r.json", "r.md", "r.html", "b.json")
    }
