"""Fixtures: robust_model / robust_data (override them), robust_device, robustness.

`_robust_check` is autouse: for a test with a robust marker it runs the attack during
setup (a broken model or data is an ERROR); for any other test it does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import pytest

from pytest_robust.plugin.custom_hooks import updated_record
from pytest_robust.plugin.keys import RECORD_KEY
from pytest_robust.plugin.keys import RESULT_KEY
from pytest_robust.plugin.keys import SESSION_KEY
from pytest_robust.plugin.session import DATA_HOWTO
from pytest_robust.plugin.session import MODEL_HOWTO

if TYPE_CHECKING:
    from pytest_robust.engine import RobustnessResult

CASE_FIXTURE = "_robust_case"


@pytest.fixture(scope="session")
def robust_model() -> Any:
    """The model under test. Override in conftest.py; this default explains how."""
    pytest.fail(MODEL_HOWTO, pytrace=False)


@pytest.fixture(scope="session")
def robust_data() -> Any:
    """The evaluation data. Override in conftest.py; this default explains how."""
    pytest.fail(DATA_HOWTO, pytrace=False)


@pytest.fixture(scope="session")
def robust_device(pytestconfig: pytest.Config) -> str:
    """The device attacks run on: --robust-device, else ini robust_device, else 'auto'."""
    return str(pytestconfig.stash[SESSION_KEY].setting("device"))


@pytest.fixture
def _robust_case(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture(autouse=True)
def _robust_check(request: pytest.FixtureRequest) -> RobustnessResult | None:
    marker = request.node.get_closest_marker("robust")
    if marker is None:
        return None
    session = request.config.stash[SESSION_KEY]
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and CASE_FIXTURE in callspec.params:
        case = callspec.params[CASE_FIXTURE]
    else:
        (case,) = session.cases(marker)
    result = session.run(request, case)
    request.node.stash[RECORD_KEY] = updated_record(request.node, result)
    request.node.stash[RESULT_KEY] = result
    return result


@pytest.fixture
def robustness(_robust_check: RobustnessResult | None) -> RobustnessResult:
    """The RobustnessResult of this test's @robust check, for extra assertions."""
    if _robust_check is None:
        pytest.fail("the robustness fixture needs a @robust(...) marker on the test", pytrace=False)
    return _robust_check
