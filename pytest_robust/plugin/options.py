"""Command-line options and ini keys. No torch here: pytest loads this on every run."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

import pytest

from pytest_robust.errors import RobustConfigError
from pytest_robust.params import Param
from pytest_robust.report.baseline import parse_tolerance
from pytest_robust.spec.resolve import SourceLabels
from pytest_robust.spec.schema import COMMON_PARAMS

DEVICE_OPTION = "--robust-device"
SEED_OPTION = "--robust-seed"
MAX_SAMPLES_OPTION = "--robust-max-samples"
BATCH_SIZE_OPTION = "--robust-batch-size"
REPORT_OPTION = "--robust-report"
SANITY_OPTION = "--robust-sanity"
SELFTEST_OPTION = "--robust-selftest"
BASELINE_OPTION = "--robust-baseline"
BASELINE_SAVE_OPTION = "--robust-baseline-save"
COMPARE_OPTION = "--robust-compare"
COMPARE_FAIL_OPTION = "--robust-compare-fail"
STRICT_OPTION = "--robust-strict"
CACHE_OPTION = "--robust-cache"
PROFILE_OPTION = "--robust-profile"


def option_name(setting: str) -> str:
    """'max_samples' -> '--robust-max-samples'."""
    return f"--robust-{setting.replace('_', '-')}"


def ini_key(setting: str) -> str:
    """'max_samples' -> 'robust_max_samples'."""
    return f"robust_{setting}"


# Where a run setting came from, in the plugin's words (the spec core knows no option names).
SETTING_LABELS = SourceLabels(cli=option_name, ini=lambda setting: f"ini {ini_key(setting)}")

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
REPORT_TYPES = ("term", "json", "md", "html")


# The ini keys that pytest converts (typed addini), and what a value must be, for errors.
TYPED_INI = {
    "robust_seed": "an integer",
    "robust_max_samples": "an integer",
    "robust_batch_size": "an integer",
    "robust_strict": "true or false (True or False; also yes/no, on/off, 1/0)",
}


def typed_ini(config: pytest.Config, key: str) -> Any:
    """config.getini(key) of a typed key: its value, or None when unset. A value pytest
    cannot convert is a usage error that names the key (pytest's own message names only
    the value, and pytest 8.4 raises a bare ValueError)."""
    try:
        return config.getini(key)
    except (ValueError, TypeError, pytest.UsageError) as error:
        raise pytest.UsageError(
            f"pytest-robust: ini {key}: must be {TYPED_INI[key]} ({error})"
        ) from None


def parse_device(value: str) -> str:
    if not _DEVICE_PATTERN.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a device: use auto, cpu, cuda, cuda:N or mps"
        )
    return value


def setting_type(name: str, noun: str = "") -> Callable[[str], Any]:
    """The argparse type of run setting `name`: converted and checked by its Param (the
    schema's one declaration of its kind, bounds and choices), in the command line's words
    ('abc' is not an integer seed)."""
    param = COMMON_PARAMS[name]

    def parse(value: str) -> Any:
        try:
            return param.parse(name, value, text=True)
        except RobustConfigError:
            raise argparse.ArgumentTypeError(_option_problem(param, value, noun)) from None

    return parse


def _option_problem(param: Param, value: str, noun: str) -> str:
    the = f": the {noun}" if noun else ""
    if param.choices:
        return f"{value!r}{the} must be one of {', '.join(param.choices)}"
    try:
        number = param.convert(value)
    except (TypeError, ValueError):
        return f"{value!r} is not an integer{' ' + noun if noun else ''}"
    if param.minimum is not None and number < param.minimum:
        return f"{value!r}{the} must be >= {param.minimum:g}"
    return f"{value!r}{the} must be <= {param.maximum:g}"  # the one check left


parse_seed = setting_type("seed", "seed")
parse_batch_size = setting_type("batch_size")
parse_max_samples = setting_type("max_samples")
parse_sanity = setting_type("sanity", "sanity level")


def parse_report(value: str) -> str:
    kind, _, dest = value.partition(":")
    if kind not in REPORT_TYPES:
        raise argparse.ArgumentTypeError(
            f"{value!r}: report type must be one of {', '.join(REPORT_TYPES)} "
            "(term, json[:PATH], md[:PATH], html[:PATH])"
        )
    if kind == "term" and dest:
        raise argparse.ArgumentTypeError(f"{value!r}: the term report takes no destination")
    return value


# Declarations only, one addoption per option: long, but a list to read, not logic.
def add_options(parser: pytest.Parser) -> None:
    # Over 60 lines: declarations only, one addoption per option in --help order.
    group = parser.getgroup("robust", "adversarial robustness testing (pytest-robust)")
    group.addoption(
        DEVICE_OPTION,
        dest="robust_device",
        metavar="DEVICE",
        type=parse_device,
        help="device for attacks: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps. "
        "Default: ini robust_device, else auto",
    )
    group.addoption(
        SEED_OPTION,
        dest="robust_seed",
        metavar="N",
        type=parse_seed,
        help="base seed; each test's seed is derived from it and the test id. "
        "Default: ini robust_seed, else 0",
    )
    group.addoption(
        MAX_SAMPLES_OPTION,
        dest="robust_max_samples",
        metavar="N",
        type=parse_max_samples,
        help="evaluate at most N samples per check (a cap, for smoke runs). Default: all",
    )
    group.addoption(
        BATCH_SIZE_OPTION,
        dest="robust_batch_size",
        metavar="N",
        type=parse_batch_size,
        help="samples per forward/backward pass. Default: ini robust_batch_size, else 256",
    )
    group.addoption(
        SANITY_OPTION,
        dest="robust_sanity",
        metavar="LEVEL",
        type=parse_sanity,
        help="gradient-masking sanity checks: 'cheap' (flags from one gradient pass, with "
        "every check), 'full' (the whole diagnosis for every check, several extra attack "
        "runs) or 'off'. Default: ini robust_sanity, else cheap",
    )
    group.addoption(
        REPORT_OPTION,
        dest="robust_report",
        metavar="TYPE[:DEST]",
        action="append",
        nargs="?",
        const="term",
        type=parse_report,
        help="report what was measured: 'term' (the full table, the default when given "
        "bare), 'json[:PATH]', 'md[:PATH]' (no PATH: appends to $GITHUB_STEP_SUMMARY when "
        "set) or 'html[:PATH]' (with pictures). Repeatable",
    )
    group.addoption(
        SELFTEST_OPTION,
        dest="robust_selftest",
        metavar="ATTACKS",
        nargs="?",
        const="all",
        default=None,
        help="run the known-answer self-test of every registered attack (or of the "
        "comma-separated ATTACKS) instead of the tests; one line per attack, exit 1 on a FAIL",
    )
    group.addoption(
        PROFILE_OPTION,
        dest="robust_profile",
        metavar="NAME",
        default=None,
        help="a bundle of defaults for this run: 'quick' (200 samples, 10 steps, 200 square "
        "queries: a pull-request gate), 'default' (nothing changed), 'thorough' (3 restarts, "
        "5000 square queries, sanity=full: a nightly gate) or one from ini robust_profiles. "
        "Markers, options and ini keys win over it. Default: ini robust_profile, else none",
    )
    add_baseline_options(group, parser)
    group.addoption(
        CACHE_OPTION,
        dest="robust_cache",
        action="store_true",
        default=False,
        help="reuse a check's result from pytest's cache only when everything it depends on "
        "is unchanged: the model's code, structure, attributes, hooks and weights, the data, "
        "attack code and parameters, sanity level, seed, device, versions (docs/scaling.md)",
    )
    parser.addini("robust_device", "device for attacks (see --robust-device)", default="")
    # Typed keys: pytest converts the text (and checks a TOML value's type); None when unset.
    parser.addini("robust_seed", "base seed (see --robust-seed)", type="int", default=None)
    parser.addini("robust_max_samples", "sample cap per check", type="int", default=None)
    parser.addini(
        "robust_batch_size", "samples per forward/backward pass", type="int", default=None
    )
    parser.addini("robust_sanity", "sanity level: off, cheap or full", default="")
    parser.addini("robust_profile", "profile to run with (see --robust-profile)", default="")
    parser.addini(
        "robust_profiles",
        "user profiles, one a line: 'NAME: key=value key=value' (see --robust-profile)",
        type="linelist",
        default=[],
    )
    parser.addini("robust_report", "reports, as for --robust-report", type="linelist", default=[])


def add_baseline_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    group.addoption(
        BASELINE_OPTION,
        dest="robust_baseline",
        metavar="PATH",
        default=None,
        help="the baseline file (JSON). Default: ini robust_baseline, else "
        "robust-baseline.json in the rootdir",
    )
    group.addoption(
        BASELINE_SAVE_OPTION,
        dest="robust_baseline_save",
        action="store_true",
        default=False,
        help="write or update the baseline entries of the robustness tests that ran",
    )
    group.addoption(
        COMPARE_OPTION,
        dest="robust_compare",
        action="store_true",
        default=False,
        help="compare each robustness test with its baseline entry (delta, flipped samples)",
    )
    group.addoption(
        COMPARE_FAIL_OPTION,
        dest="robust_compare_fail",
        metavar="FIELD:TOL[%]",
        action="append",
        type=parse_tolerance,
        default=None,
        help="fail a test whose FIELD (robust_acc, clean_acc, success_rate) regressed vs the "
        "baseline by more than TOL (absolute, e.g. robust_acc:0.02) or TOL%% (relative, "
        "robust_acc:3%%); implies --robust-compare. Repeatable",
    )
    group.addoption(
        STRICT_OPTION,
        dest="robust_strict",
        action="store_const",
        const=True,
        default=None,
        help="thresholds must be cleared by the 95%% confidence interval, not just the "
        "measured value; missing or stale baseline entries fail the run. Default: ini "
        "robust_strict, else off",
    )
    parser.addini("robust_baseline", "the baseline file (see --robust-baseline)", default="")
    parser.addini(
        "robust_compare_fail",
        "regression tolerances, as for --robust-compare-fail",
        type="linelist",
        default=[],
    )
    parser.addini(
        "robust_strict",
        "strict statistical gating (see --robust-strict)",
        type="bool",
        default=None,
    )
