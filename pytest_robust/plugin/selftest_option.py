"""`pytest --robust-selftest[=ATTACKS]`: run the known-answer self-test instead of the tests.

No torch at import: the engine is imported only when the option is given.
"""

from __future__ import annotations

import time

import pytest

from pytest_robust.errors import RobustConfigError


def run(config: pytest.Config) -> int:
    """Print one line per attack; exit status 0 when every attack passed (or was skipped
    with a reason), 1 when one failed, 4 for an unknown attack name."""
    from pytest_robust.known_answers.run import selftest

    value = config.getoption("robust_selftest")
    names = None if value == "all" else [n.strip() for n in value.split(",") if n.strip()]
    device = config.getoption("robust_device") or config.getini("robust_device") or "auto"
    # Before pytest_configure, so no terminal reporter yet: plain lines on stdout.
    print(f"pytest-robust self-test (device={device})", flush=True)
    started = time.perf_counter()
    try:
        outcomes = selftest(device=device, attacks=names)
    except RobustConfigError as error:
        print(f"ERROR: --robust-selftest: {error}", flush=True)
        return int(pytest.ExitCode.USAGE_ERROR)
    for outcome in outcomes:
        print(outcome.line(), flush=True)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("PASS", "FAIL", "SKIP")}
    summary = f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"
    failed = counts["FAIL"] > 0
    print(f"self-test: {summary} in {time.perf_counter() - started:.2f}s", flush=True)
    return int(pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK)
