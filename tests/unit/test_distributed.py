"""`torchrun --nproc_per_node 2 -m pytest` with gloo: each rank attacks its shard, and every
rank's result is exactly the single-process result; only rank 0 prints the summary and
writes reports."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from model_wrappers import CountingModel

from pytest_robust import EvaluationCache
from pytest_robust import evaluate

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)

CONFTEST = """
import sys
import pytest
import torch
sys.path[:0] = [{digits!r}, {tests!r}]
from digits import DigitsCNN, digits_split
# The class the single-process run below uses: the model fingerprint includes its name.
from model_wrappers import CountingModel


@pytest.fixture(scope="session")
def robust_model():
    torch.set_num_threads(1)
    model = DigitsCNN()
    model.load_state_dict(torch.load({weights!r}, weights_only=True))
    return CountingModel(model)


@pytest.fixture(scope="session")
def robust_data():
    _, _, x, y = digits_split()
    return x, y
"""

# Random starts, random targets and a worst case over two attacks, with batches that
# straddle the shard boundary (225).
CHECKS: dict[str, dict[str, Any]] = {
    "pgd": {"attack": "pgd", "eps": 0.1, "steps": 5, "batch_size": 64, "min_acc": 0.3},
    "targeted": {
        "attack": "pgd", "eps": 0.2, "steps": 5, "batch_size": 100, "target": "random",
        "max_success": 0.9,
    },
    "worst": {
        "attack": ["fgsm", "apgd-ce"], "eps": 0.3, "steps": 5, "batch_size": 50, "min_acc": 0.9,
    },
}  # fmt: skip

TEST = """
@robust(**{kwargs!r})
def test_{name}(robustness, robust_model):
    rank = os.environ.get("RANK", "single")
    record = robustness.to_dict()
    record.pop("duration_s")
    record["forwarded"] = robust_model.samples  # so far in this session, on this rank
    Path("{name}-" + rank + ".json").write_text(json.dumps(record))
"""


def torchrun(args: list[str], cwd: Path, log_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "--log-dir", str(log_dir), "--redirects", "3", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_pytest_matches_one_process_and_only_rank_zero_reports(
    digits_cnn, digits_data, tmp_path
):
    weights = tmp_path / "cnn.pt"
    torch.save(digits_cnn.state_dict(), weights)
    project = tmp_path / "project"
    project.mkdir()
    digits = str(ROOT / "examples" / "digits")
    conftest = CONFTEST.format(digits=digits, tests=str(ROOT / "tests"), weights=str(weights))
    (project / "conftest.py").write_text(conftest)
    source = "import json, os\nfrom pathlib import Path\nfrom pytest_robust import robust\n"
    source += "".join(TEST.format(name=name, kwargs=kw) for name, kw in CHECKS.items())
    (project / "test_gate.py").write_text(source)
    args = ["-m", "pytest", "-p", "no:cacheprovider", "--robust-device", "cpu"]
    args += ["--robust-report", "json:report.json", "test_gate.py"]
    done = torchrun(args, project, tmp_path / "logs")
    outputs = {int(p.parent.name): p.read_text() for p in (tmp_path / "logs").rglob("stdout.log")}
    assert sorted(outputs) == [0, 1], done.stderr[-3000:]
    assert done.returncode != 0  # test_worst fails, on every rank
    for text in outputs.values():
        assert "1 failed, 2 passed" in text, text[-3000:]
    assert "report written" in outputs[0] and "robustness" in outputs[0]
    assert "report written" not in outputs[1] and "= robustness =" not in outputs[1]
    assert len(json.loads((project / "report.json").read_text())["checks"]) == 3

    model, cache = CountingModel(digits_cnn), EvaluationCache()
    for name, kwargs in CHECKS.items():
        ranks = [json.loads((project / f"{name}-{r}.json").read_text()) for r in (0, 1)]
        # Each rank did about half of the work: it attacked its shard only.
        forwarded = [rank.pop("forwarded") for rank in ranks]
        assert ranks[0]["details"].pop("world_size") == 2
        assert ranks[1]["details"].pop("world_size") == 2
        # One process, same model, data and seed: exactly the same record.
        seed = ranks[0]["seed"]
        single = evaluate(model, digits_data, seed=seed, device="cpu", cache=cache, **kwargs)
        assert max(forwarded) < 0.7 * model.samples
        record = single.to_dict()
        record.pop("duration_s")
        record["provenance"] = ranks[0]["provenance"]  # marker vs argument: not a number
        assert ranks[0] == ranks[1] == json.loads(json.dumps(record))
        assert record["n"] == 450 and "1" in record["success"]


def test_shards_are_contiguous_cover_the_data_and_differ_by_at_most_one():
    from pytest_robust.engine.distributed import shard

    for n in (0, 1, 3, 450, 451):
        for size in (1, 2, 3, 8):
            bounds = [shard(n, rank, size) for rank in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            lengths = [stop - start for start, stop in bounds]
            assert max(lengths) - min(lengths) <= 1
