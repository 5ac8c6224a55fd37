"""The JSON report: every check with its full parameters, versioned from the start."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_robust.files import write_atomic
from pytest_robust.report.intervals import intervals

SCHEMA = 1
# Kept off the JSON report: the HTML report's pictures (base64 pixels).
NOT_IN_JSON = ("examples",)
# What environment() measures; any other key was added by a pytest_robust_update_environment
# hook, and the Markdown and HTML reports list it too.
ENVIRONMENT_KEYS = ("python", "platform", "torch", "devices", "cuda", "device_name")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Python, platform, torch (and CUDA when torch is loaded) and the devices the checks ran on."""
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": _version("torch"),
        "devices": sorted({str(r["device"]) for r in records if "device" in r}),
    }
    torch = sys.modules.get("torch")  # never imported here just to ask
    if torch is not None:
        env["cuda"] = getattr(torch.version, "cuda", None)
        if any(d.startswith("cuda") for d in env["devices"]) and torch.cuda.is_available():
            env["device_name"] = torch.cuda.get_device_name()
    return env


def git_commit(directory: Path, timeout: float = 5.0) -> dict[str, Any] | None:
    """{'id': sha, 'dirty': bool} of the repository holding `directory`; None outside one
    (or without git)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"id": sha, "dirty": dirty}


def build_report(
    records: Sequence[Mapping[str, Any]],
    run: Mapping[str, Any],
    commit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "plugin_version": _version("pytest-robust"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(records),
    }
    if commit is not None:
        report["commit"] = dict(commit)
    report["run"] = dict(run)
    report["checks"] = [{k: v for k, v in r.items() if k not in NOT_IN_JSON} for r in records]
    # Robust accuracy in [certified, attacked] per model, data, norm and eps measured both ways.
    report["intervals"] = intervals(records)
    return report


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    """Write atomically: a reader never sees half a report."""
    write_atomic(path, json.dumps(report, indent=2, sort_keys=False) + "\n")
