"""Every file the plugin writes (reports, the baseline, cached results) goes through here.

- atomic: a temporary file in the same directory, then os.replace, so a reader, a crashed
  or killed run and a concurrent writer see the old file or the new one, never half of one;
- the mode of a file the user would have made: the umask's (not mkstemp's 0600), or the
  mode of the file being replaced, so CI artifact uploaders and other users can read it;
- temporaries left by a killed run (`.NAME.xxxxxxxx.tmp`) are removed by a later write
  once they are older than any write can take;
- destinations are checked before the run, so a path that cannot be written is a usage
  error at start-up rather than a lost report at the end.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A temporary of ours older than this belongs to a killed run (a write takes milliseconds).
STALE_AFTER_S = 600.0


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, with the umask's mode (or the replaced file's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not outlive the data after a crash
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    remove_stale_temporaries(path)


def append(path: Path, text: str) -> None:
    """Append in one write (for $GITHUB_STEP_SUMMARY, which other steps also append to)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def _mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)  # keep the mode of the file we replace
    except OSError:
        return 0o666 & ~umask()


def umask() -> int:
    """The process's umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(current)
    return current


def temporary_pattern(path: Path) -> re.Pattern[str]:
    """The names mkstemp gives write_atomic's temporaries for `path`."""
    return re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp$")


def remove_stale_temporaries(path: Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temporaries of `path` left by killed runs (older than `older_than_s`, so a
    concurrent writer's live temporary is never touched); the paths removed."""
    pattern, now, removed = temporary_pattern(path), time.time(), []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > older_than_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def unwritable(path: Path, appending: bool = False) -> str:
    """Why `path` cannot be written ('' when it can), checked without touching it: a
    directory, a parent that is a file or cannot be created, a directory without write
    permission (probed with a real temporary file, so it also holds for root and for
    read-only mounts)."""
    if path.is_dir():
        return f"{path} is a directory; name a file"
    if appending and path.exists():
        try:
            with path.open("a", encoding="utf-8"):
                return ""
        except OSError as error:
            return f"cannot append to {path} ({error.strerror or error})"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot create {path.parent}: {ancestor} is not a directory"
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".pytest-robust-probe.", suffix=".tmp")
    except OSError as error:
        reason = error.strerror or str(error)
        if ancestor != path.parent:
            return f"cannot create {path.parent}: {ancestor} is not writable ({reason})"
        return f"cannot write in {ancestor} ({reason})"
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    return ""


class JsonStore:
    """Plain JSON values under keys ('a/b/c'), one file each below a directory, written
    atomically: the store for --robust-cache results and remembered counterexamples
    (pytest's own config.cache.set writes in place, so a killed run could leave half an
    entry). Reading never fails (a missing or broken entry is a miss); a failed write
    calls `warn` and the run goes on, as pytest's cache does."""

    def __init__(self, directory: Callable[[], Path], warn: Callable[[str], None]) -> None:
        self._directory = directory
        self._root: Path | None = None
        self._warn = warn

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"bad store key {key!r}")
        if self._root is None:
            self._root = self._directory()
        return self._root.joinpath(*parts[:-1], parts[-1] + ".json")

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return default

    def set(self, key: str, value: Any) -> None:
        try:
            write_atomic(self._path(key), json.dumps(value, indent=1))
        except OSError as error:
            self._warn(f"pytest-robust could not write the cache entry {key}: {error}")
