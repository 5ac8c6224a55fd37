"""pytest hooks for pytest-robust, each a few lines that hand off to a named piece.

Loaded on every pytest run of every project that has the plugin installed, so nothing
here imports torch: the engine is imported when a marked test runs.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_robust.errors import RobustConfigError
from pytest_robust.plugin import fixtures
from pytest_robust.plugin.baseline_gate import BaselineGate
from pytest_robust.plugin.custom_hooks import queue_plugin_attacks
from pytest_robust.plugin.fixtures import CASE_FIXTURE
from pytest_robust.plugin.keys import BASELINE_KEY
from pytest_robust.plugin.keys import GATE_KEY
from pytest_robust.plugin.keys import ORDER_KEY
from pytest_robust.plugin.keys import RECORD_KEY
from pytest_robust.plugin.keys import REPORT_KEY
from pytest_robust.plugin.keys import RESULT_KEY
from pytest_robust.plugin.keys import SESSION_KEY
from pytest_robust.plugin.options import add_options
from pytest_robust.plugin.results import fail_or_warn
from pytest_robust.plugin.results import report_record
from pytest_robust.plugin.session import RobustSession
from pytest_robust.report.junit import junit_properties

MARKER_HELP = (
    "robust(attack, eps, min_acc=None, max_success=None, max_drop=None, norm='linf', "
    "bounds=(0, 1), model='robust_model', data='robust_data', **attack_params): run an "
    "adversarial attack on the model and data fixtures before the test and fail when a "
    "threshold is missed; list arguments expand into one test per value"
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_robust.plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("robust_selftest", None) is None:
        return None
    from pytest_robust.plugin import selftest_option

    return selftest_option.run(config)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    session = RobustSession(config)
    config.stash[SESSION_KEY] = session
    # The session's own hooks gather results and print the summary (controller only).
    config.pluginmanager.register(session, "pytest_robust.session")
    gate = BaselineGate(config)
    config.stash[GATE_KEY] = gate
    config.pluginmanager.register(gate, "pytest_robust.baseline")
    if not config.pluginmanager.has_plugin("pytest_robust.fixtures"):
        config.pluginmanager.register(fixtures, "pytest_robust.fixtures")
    queue_plugin_attacks(config)
    # pytest-html's hooks exist only when it is loaded: the columns and pictures for its
    # report are a separate plugin, registered only then.
    if config.pluginmanager.has_plugin("html") and not config.pluginmanager.has_plugin(
        "pytest_robust.html"
    ):
        from pytest_robust.plugin import pytest_html_hooks

        config.pluginmanager.register(pytest_html_hooks, "pytest_robust.html")


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.get_verbosity() > 0:
        return f"robust: {config.stash[SESSION_KEY].describe()}{config.stash[GATE_KEY].describe()}"
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("robust")
    if marker is None:
        return
    __tracebackhide__ = True
    own = [m for m in metafunc.definition.own_markers if m.name == "robust"]
    if len(own) > 1:
        pytest.fail(
            f"{metafunc.definition.nodeid}: one @robust marker per test; use list arguments "
            "(eps=[...]) or separate tests for several checks",
            pytrace=False,
        )
    try:
        cases = metafunc.config.stash[SESSION_KEY].cases(marker)
    except RobustConfigError as error:
        problem = str(error)
    else:
        problem = ""
    if problem:  # failed outside the except block, so no chained traceback is printed
        pytest.fail(f"{metafunc.definition.nodeid}: @robust: {problem}", pytrace=False)
    if len(cases) > 1 or cases[0].id:
        metafunc.fixturenames.append(CASE_FIXTURE)
        metafunc.parametrize(CASE_FIXTURE, cases, indirect=True, ids=[c.id for c in cases])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Collection order, so the summary lists checks in file order also under xdist.
    for index, item in enumerate(items):
        item.stash[ORDER_KEY] = index


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    outcome = yield  # the test body runs first; a failure there propagates unchanged
    result = item.stash.get(RESULT_KEY, None)
    if result is None:
        return outcome
    comparison = item.config.stash[GATE_KEY].check(item.stash[RECORD_KEY])
    item.stash[BASELINE_KEY] = comparison
    fail_or_warn(item, result, comparison)
    return outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    result = item.stash.get(RESULT_KEY, None)
    if result is not None and report.when == "call":
        keep_examples = item.config.stash[SESSION_KEY].keep_examples
        comparison = item.stash.get(BASELINE_KEY, None)
        record = report_record(item.stash[RECORD_KEY], result, keep_examples, comparison)
        setattr(report, REPORT_KEY, record)
        item.user_properties.extend(junit_properties(record))
    return report
