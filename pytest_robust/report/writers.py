"""Write the report files that --robust-report / robust_report asked for (controller only)."""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_robust.files import append
from pytest_robust.files import unwritable
from pytest_robust.files import write_atomic
from pytest_robust.report import json_report

DEFAULT_PATHS = {
    "json": "robust-report.json",
    "md": "robust-report.md",
    "html": "robust-report.html",
}
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


def destination(kind: str, dest: str, root: Path) -> tuple[Path, bool]:
    """(path, append?): `md` without a path appends to $GITHUB_STEP_SUMMARY when it is set."""
    if kind == "md" and not dest and os.environ.get(STEP_SUMMARY):
        return Path(os.environ[STEP_SUMMARY]), True
    return root / (dest or DEFAULT_PATHS[kind]), False


def unwritable_reports(targets: Sequence[str], root: Path) -> list[str]:
    """Why each file report cannot be written (checked at start-up); [] when all can."""
    problems = []
    for kind, _, dest in (t.partition(":") for t in targets):
        if kind != "term":
            path, appending = destination(kind, dest, root)
            problem = unwritable(path, appending)
            if problem:
                problems.append(f"report {kind}:{dest or path.name}: {problem}")
    return problems


def write_reports(
    targets: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    run: Mapping[str, Any],
    root: Path,
    update_environment: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[Path], list[str]]:
    """Write each 'TYPE[:DEST]' target (term is printed, not written): the paths written and
    a line for each report lost (one that fails does not stop the others).
    `update_environment` may change the reports' environment block in place (the
    pytest_robust_update_environment hook)."""
    files = [t.partition(":") for t in targets if t.partition(":")[0] != "term"]
    if not files:
        return [], []
    commit = json_report.git_commit(root)
    report = json_report.build_report(records, run, commit)
    if update_environment is not None:
        update_environment(report["environment"])
    written, lost = [], []
    for kind, _, dest in files:
        path, appending = destination(kind, dest, root)
        try:
            if kind == "json":
                json_report.write_json(path, report)
            elif kind == "md":
                from pytest_robust.report.markdown import build_markdown

                text = build_markdown(
                    records, report["environment"], run, commit, report["plugin_version"]
                )
                (append if appending else write_atomic)(path, text)
            else:
                from pytest_robust.report.html import build_html

                write_atomic(path, build_html(records, _facts(report), report["plugin_version"]))
        except OSError as error:
            lost.append(f"{kind} report NOT written to {path}: {error.strerror or error}")
            continue
        written.append(path)
    return written, lost


def _facts(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    env, run, commit = report["environment"], report["run"], report.get("commit")
    facts = [
        ("settings", run.get("settings")),
        ("torch", env.get("torch")),
        ("devices", ", ".join(env.get("devices") or [])),
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        ("commit", commit and commit["id"] + (" (dirty)" if commit["dirty"] else "")),
    ]
    # What a pytest_robust_update_environment hook added.
    facts += [(k, v) for k, v in env.items() if k not in json_report.ENVIRONMENT_KEYS]
    return [(name, str(value)) for name, value in facts if value]
