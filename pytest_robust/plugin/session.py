"""RobustSession: the run's settings, the shared evaluation cache and the gathered results.

One per pytest run, kept in `config.stash`. Torch is imported only when a check runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from argparse import ArgumentTypeError
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import pytest

from pytest_robust.errors import RobustConfigError
from pytest_robust.plugin.custom_hooks import environment_updater
from pytest_robust.plugin.keys import REPORT_KEY
from pytest_robust.plugin.options import SETTING_LABELS
from pytest_robust.plugin.options import TYPED_INI
from pytest_robust.plugin.options import ini_key
from pytest_robust.plugin.options import parse_device
from pytest_robust.plugin.options import parse_report
from pytest_robust.plugin.options import typed_ini
from pytest_robust.plugin.outputs import cache_store
from pytest_robust.plugin.outputs import lose_file
from pytest_robust.plugin.outputs import writes_files
from pytest_robust.plugin.summary import write_robustness
from pytest_robust.plugin.workers import cpu_threads
from pytest_robust.plugin.workers import is_controller
from pytest_robust.plugin.workers import is_xdist_worker
from pytest_robust.plugin.workers import launched_world_size
from pytest_robust.plugin.workers import worker_device
from pytest_robust.plugin.workers import xdist_worker
from pytest_robust.spec.attack_arg import attack_params
from pytest_robust.spec.cases import Case
from pytest_robust.spec.cases import expand
from pytest_robust.spec.profiles import Profile
from pytest_robust.spec.profiles import choose_profile
from pytest_robust.spec.profiles import parse_profiles
from pytest_robust.spec.resolve import Spec
from pytest_robust.spec.resolve import derive_seed
from pytest_robust.spec.resolve import resolve
from pytest_robust.spec.schema import COMMON_PARAMS
from pytest_robust.spec.schema import RUN_SETTINGS

if TYPE_CHECKING:
    from pytest_robust.engine import EvaluationCache
    from pytest_robust.engine import RobustnessResult

EXAMPLES_PER_CHECK = 4  # fooled samples pictured per check in the HTML report

MODEL_HOWTO = (
    "no robust_model fixture: define one in conftest.py that returns your torch.nn.Module "
    "(returning logits), e.g.\n\n"
    "    @pytest.fixture(scope='session')\n"
    "    def robust_model():\n"
    "        return load_my_classifier()\n\n"
    "or name another fixture on the marker: @robust(..., model='my_model')"
)
DATA_HOWTO = (
    "no robust_data fixture: define one in conftest.py that returns the evaluation data, "
    "as an (x, y) pair of tensors, a Dataset or a DataLoader, e.g.\n\n"
    "    @pytest.fixture(scope='session')\n"
    "    def robust_data():\n"
    "        return x_val, y_val\n\n"
    "or name another fixture on the marker: @robust(..., data='my_data')"
)


def _profile(config: pytest.Config) -> Profile | None:
    """The run's profile (--robust-profile, else ini robust_profile), after checking every
    profile in ini robust_profiles; a UsageError (exit 4) names the profile and the key."""
    option = config.getoption("robust_profile")
    chosen = option or str(config.getini("robust_profile")).strip()
    chosen_where = "--robust-profile" if option else "ini robust_profile"
    lines = list(config.getini("robust_profiles"))
    if not chosen and not lines:
        return None  # no profile in play: attacks (and torch) stay unloaded here
    from pytest_robust.attacks import registered_attacks

    try:
        user = parse_profiles(lines, "ini robust_profiles")
        attacks = registered_attacks()
        return choose_profile(chosen or None, user, attacks, "ini robust_profiles", chosen_where)
    except RobustConfigError as error:
        raise pytest.UsageError(f"pytest-robust: {error}") from None


def named_models(params: Mapping[str, Any], fixtures: Mapping[str, tuple[str, ...]]) -> Any:
    """A result's params with each model parameter (transfer's surrogate=) given as the
    fixture name(s) the marker named, also inside a worst case's members."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in fixtures:
            names = fixtures[key]
            out[key] = names[0] if len(names) == 1 else "[" + ", ".join(names) + "]"
        elif key == "attacks" and isinstance(value, Mapping):
            out[key] = {m: named_models(config, fixtures) for m, config in value.items()}
        else:
            out[key] = value
    return out


class RobustSession:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        if config.getoption("robust_cache") and getattr(config, "cache", None) is None:
            raise pytest.UsageError(
                "pytest-robust: --robust-cache keeps results in pytest's cache, which is "
                "disabled (-p no:cacheprovider); enable it or drop --robust-cache"
            )
        self.cli = {name: config.getoption(f"robust_{name}") for name in RUN_SETTINGS}
        self.ini: dict[str, Any] = {}
        for name in RUN_SETTINGS:
            key = ini_key(name)
            if key in TYPED_INI:  # converted by pytest: range checks are left
                raw = typed_ini(config, key)
                text = False
            else:  # device and sanity: text, checked against their choices
                raw = str(config.getini(key)).strip() or None
                text = True
            if raw is not None:
                try:
                    value = COMMON_PARAMS[name].parse(name, raw, f"ini {key}", text=text)
                    if name == "device":
                        parse_device(raw)
                except (RobustConfigError, ArgumentTypeError) as error:
                    raise pytest.UsageError(f"pytest-robust: ini {key}: {error}") from None
                self.ini[name] = value
        self.profile = _profile(config)
        raw_reports = list(config.getoption("robust_report") or []) + list(
            config.getini("robust_report")
        )
        try:
            self.reports = [parse_report(value) for value in raw_reports]
        except ArgumentTypeError as error:
            raise pytest.UsageError(f"pytest-robust: robust_report {error}") from None
        if writes_files(config):
            from pytest_robust.report.writers import unwritable_reports

            problems = unwritable_reports(self.reports, config.invocation_params.dir)
            if problems:
                raise pytest.UsageError(
                    "pytest-robust: " + "; ".join(problems) + "; pass a path that can be "
                    "written (--robust-report TYPE:PATH or ini robust_report)"
                )
        # The HTML report (ours or pytest-html's) shows each check's most fooled samples.
        wants_html = any(r.partition(":")[0] == "html" for r in self.reports)
        wants_html = wants_html or bool(config.getoption("htmlpath", None))
        self.keep_examples = EXAMPLES_PER_CHECK if wants_html else 0
        # strict is a marker argument too, so it resolves like a run setting (marker first).
        self.cli["strict"] = config.getoption("robust_strict", None)
        strict = typed_ini(config, "robust_strict")
        if strict is not None:
            self.ini["strict"] = bool(strict)
        self.records: list[dict[str, Any]] = []
        self.written: list[Path] = []
        self.lost: list[str] = []
        self._cache: EvaluationCache | None = None
        self._threads_set = False

    # --- settings -------------------------------------------------------------------

    def setting(self, name: str) -> Any:
        """A run setting after CLI > ini > default (what a test without a marker value gets)."""
        if self.cli.get(name) is not None:
            return self.cli[name]
        if name in self.ini:
            return COMMON_PARAMS[name].parse(name, self.ini[name], text=True)
        if self.profile is not None and name in self.profile.settings:
            return COMMON_PARAMS[name].parse(name, self.profile.settings[name], text=True)
        return COMMON_PARAMS[name].default

    def describe(self) -> str:
        settings = " ".join(f"{name}={self.setting(name)}" for name in RUN_SETTINGS)
        return settings if self.profile is None else f"profile={self.profile.name} {settings}"

    # --- collection -----------------------------------------------------------------

    def cases(self, marker: pytest.Mark) -> list[Case]:
        """Validated, expanded cases of a marker (validated once per mark, see
        marker.validated_arguments); RobustConfigError when it is bad."""
        from pytest_robust.plugin.marker import validated_arguments

        if marker.args:
            raise RobustConfigError(
                f"robust takes keyword arguments only, got positional {marker.args!r}; "
                "write robust(attack='pgd', eps=0.1, ...)"
            )
        return expand(validated_arguments(marker))

    # --- running --------------------------------------------------------------------

    def run(self, request: pytest.FixtureRequest, case: Case) -> RobustnessResult:
        from pytest_robust.attacks import registered_attacks

        params = attack_params(case.kwargs["attack"], registered_attacks(), case.kwargs)
        spec = resolve(
            case.kwargs, params, self.cli, self.ini, labels=SETTING_LABELS, profile=self.profile
        )
        device, provenance = self._device(request, spec.provenance)
        spec = dataclasses.replace(
            spec,
            seed=derive_seed(spec.seed, request.node.nodeid),
            device=device,
            provenance=provenance,
        )
        model = self._fixture(request, spec.model, "model")
        data = self._fixture(request, spec.data, "data")
        # Parameters that name model fixtures (transfer's surrogate=) get the models.
        fixtures = {
            name: tuple(spec.attack_params[name])
            for name, param in params.items()
            if param.kind == "models" and spec.attack_params.get(name)
        }
        models = {
            name: tuple(self._fixture(request, fixture, name) for fixture in names)
            for name, names in fixtures.items()
        }
        spec = dataclasses.replace(spec, attack_params={**spec.attack_params, **models})
        result = self._check(request, model, data, spec)
        if not fixtures:
            return result
        # The engine saw only the models (and describes them by class); the record names
        # the fixtures, as the marker did.
        return dataclasses.replace(result, params=named_models(result.params, fixtures))

    def _check(
        self, request: pytest.FixtureRequest, model: Any, data: Any, spec: Spec
    ) -> RobustnessResult:
        """run_check with this session's cache, the test's remembered counterexamples and
        the live progress line; a RobustConfigError fails the test naming the fixture."""
        from pytest_robust.engine import EvaluationCache
        from pytest_robust.engine import run_check
        from pytest_robust.engine.progress import reporting
        from pytest_robust.engine.stores.counterexamples import CounterexampleMemory
        from pytest_robust.plugin.progress_display import TerminalProgress

        if self._cache is None:
            self._cache = EvaluationCache()
        # Counterexamples found by this test's last run are tried first (-p no:cacheprovider
        # leaves no cache, and nothing is remembered).
        store = cache_store(self.config)
        memory = CounterexampleMemory(store, request.node.nodeid) if store is not None else None
        if launched_world_size() > 1:  # under torchrun: shard each check over the ranks
            from pytest_robust.engine.distributed import join_launched_group

            join_launched_group()
        live = TerminalProgress.for_config(self.config, request.node.nodeid)
        try:
            with reporting(live):
                return run_check(
                    model,
                    data,
                    spec,
                    cache=self._cache,
                    memory=memory,
                    keep_examples=self.keep_examples,
                    **self._reuse(request),
                )
        except RobustConfigError as error:
            message = str(error)
        finally:
            if live is not None:
                live.close()
        # Failed outside the except block, so no chained traceback is printed.
        if message.startswith("data:"):
            message = f"fixture {spec.data!r}:{message[len('data:') :]}"
        elif message.startswith("model"):
            message = f"fixture {spec.model!r}: {message}"
        pytest.fail(message, pytrace=False)

    def _device(
        self, request: pytest.FixtureRequest, provenance: Mapping[str, str]
    ) -> tuple[str, dict[str, str]]:
        """The check's device and the provenance that says where it came from: an
        overridden robust_device fixture, or on an xdist worker a share of the machine."""
        device = str(request.getfixturevalue("robust_device"))
        provenance = dict(provenance)
        if device != str(self.setting("device")):
            provenance["device"] = "robust_device fixture"
        elif is_xdist_worker(self.config):  # not a torchrun rank: ranks take LOCAL_RANK
            device = self._worker_device(device, provenance)
        return device, provenance

    def _worker_device(self, device: str, provenance: dict[str, str]) -> str:
        """Under xdist: auto spreads workers over the visible GPUs; CPU workers share the
        cores (once per worker, at its first check, unless the user set a thread count)."""
        from pytest_robust.engine.device import share_cpu_threads
        from pytest_robust.engine.device import visible_cuda_count

        workerid, workercount = xdist_worker(self.config)
        if device == "auto":
            chosen = worker_device(workerid, visible_cuda_count())
            if chosen is not None:
                provenance["device"] = f"auto, xdist worker {workerid}"
                device = chosen
        if not self._threads_set and not device.startswith(("cuda", "mps")):
            self._threads_set = True
            share_cpu_threads(cpu_threads(os.cpu_count() or 1, workercount))
        return device

    def _reuse(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        """run_check's store and slot for --robust-cache: one slot per test in pytest's cache."""
        if not self.config.getoption("robust_cache"):
            return {}
        digest = hashlib.blake2b(request.node.nodeid.encode(), digest_size=12).hexdigest()
        store = cache_store(self.config)  # not None: checked at start-up
        return {"store": store, "slot": f"robust/results/{digest}"} if store else {}

    @staticmethod
    def _fixture(request: pytest.FixtureRequest, name: str, role: str) -> Any:
        try:
            return request.getfixturevalue(name)
        except pytest.FixtureLookupError as error:
            if error.argname != name:
                raise  # the fixture exists but something it needs is missing: pytest says what
        pytest.fail(
            f"{role}={name!r} names no fixture: define a fixture {name!r} in conftest.py, "
            "or fix the name on the marker",
            pytrace=False,
        )

    # --- results and reports (hooks: this object is registered as a plugin) -------------

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if launched_world_size() > 1 and "torch" in sys.modules:
            from pytest_robust.engine.distributed import leave_group

            leave_group()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record: Mapping[str, Any] | None = getattr(report, REPORT_KEY, None)
        if record is None:
            return
        status = str(record["status"])
        compared = (record.get("baseline") or {}).get("status")
        if compared in ("regressed", "data changed", "spec changed", "partial"):
            status = compared  # the baseline failed the test, whatever the threshold said
        if hasattr(report, "wasxfail"):
            status += " (xfail)"
        elif report.skipped:  # the body skipped before the gate was checked
            status += " (skipped)"
        self.records.append({**record, "row_status": status})

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not is_controller(self.config):
            return
        self.records.sort(key=lambda r: (r["order"], r["nodeid"]))
        if any(t.partition(":")[0] != "term" for t in self.reports):
            from pytest_robust.report.writers import write_reports

            run = {
                "settings": self.describe(),
                "seed": self.setting("seed"),
                "args": [str(a) for a in self.config.invocation_params.args],
            }
            root = self.config.invocation_params.dir
            update = environment_updater(self.config)
            written, lost = write_reports(self.reports, self.records, run, root, update)
            self.written += written
            self.lost += lost
            if lost:
                lose_file(session)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not is_controller(self.config) or not (self.records or self.written or self.lost):
            return
        full = any(t.partition(":")[0] == "term" for t in self.reports)
        files = (self.written, self.lost)
        write_robustness(terminalreporter, self.records, self.describe(), full, files)
