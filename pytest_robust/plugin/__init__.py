"""The pytest layer: the only package that imports pytest.

This package is the plugin's pytest11 entry point (`robust = "pytest_robust.plugin"`):
pytest registers this module on every run of every project that has pytest-robust
installed, so the hooks are named here and nothing at module level imports torch, numpy or
hypothesis (a linter rule); the engine is imported inside the hook that runs a check.
"""

from pytest_robust.plugin.hooks import pytest_addhooks
from pytest_robust.plugin.hooks import pytest_addoption
from pytest_robust.plugin.hooks import pytest_cmdline_main
from pytest_robust.plugin.hooks import pytest_collection_modifyitems
from pytest_robust.plugin.hooks import pytest_configure
from pytest_robust.plugin.hooks import pytest_generate_tests
from pytest_robust.plugin.hooks import pytest_report_header
from pytest_robust.plugin.hooks import pytest_runtest_call
from pytest_robust.plugin.hooks import pytest_runtest_makereport

__all__ = [
    "pytest_addhooks",
    "pytest_addoption",
    "pytest_cmdline_main",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_runtest_call",
    "pytest_runtest_makereport",
]
