"""Streaming evaluation (engine/lazy_data.py): a Dataset is read lazily by index and an
unshuffled DataLoader in order, batch by batch; nothing holds the whole data set, the
numbers are those of the same data handed over as tensors, and data that changes between
two reads is refused."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset

from pytest_robust import EvaluationCache
from pytest_robust import evaluate
from pytest_robust.checks.sanity import GRADIENT_SAMPLES
from pytest_robust.engine.data import InMemory
from pytest_robust.engine.data import load_samples
from pytest_robust.engine.lazy_data import LazyLoader
from pytest_robust.errors import RobustConfigError

ROOT = Path(__file__).resolve().parent.parent.parent


class Indexed(Dataset[tuple[torch.Tensor, int]]):
    """Items read from tensors by index, as a file-backed Dataset would; records reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    scale = 1.0  # of the stored values

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads.append(i)
        return self.x[i].float() * self.scale, int(self.y[i])


class Largest(torch.nn.Module):
    """Wraps a model; at its forward passes, records the most inputs held by one float
    tensor alive in the process: a data set held in memory would be one."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        LARGEST[1] += 1
        if LARGEST[1] % 4 == 1:  # a walk over every object is slow: every 4th pass
            live = [  # samples in each new float tensor shaped like a batch of inputs
                len(o) for o in _inputs_alive() if id(o) not in BEFORE
            ]
            LARGEST[0] = max(LARGEST[0], *live)
        return self.inner(x)


LARGEST = [0, 0]  # the most samples in one tensor, forward passes
BEFORE: set[int] = set()  # tensors alive before the check


def _inputs_alive() -> list[torch.Tensor]:
    return [
        o
        for o in gc.get_objects()
        if type(o) is torch.Tensor and o.is_floating_point() and o.shape[1:] == (1, 8, 8)
    ]


GATE: dict[str, Any] = {"attack": "pgd", "eps": 0.1, "steps": 3, "batch_size": 40}


@pytest.fixture
def data(digits_data):
    x, y = digits_data
    return x[:300], y[:300]


def test_a_lazy_dataset_is_never_held_in_memory(digits_cnn, data):
    x, y = data
    # 600 samples (each digit twice, more than the flags' GRADIENT_SAMPLES), kept by the
    # Dataset as an int8 table, so that the only float tensor of 600 x 64 values would be
    # the data set read into memory.
    source = Indexed(x.repeat_interleave(2, dim=0).mul(16).to(torch.int8), y.repeat_interleave(2))
    source.scale = 1 / 16
    samples = load_samples(source)
    assert not isinstance(samples.source, InMemory) and len(samples) == 600
    LARGEST[:] = [0, 0]
    BEFORE.clear()
    BEFORE.update(id(o) for o in _inputs_alive())
    evaluate(Largest(digits_cnn), source, **{**GATE, "steps": 1}, cache=EvaluationCache())
    # The most inputs one tensor made by the check held during its forward passes: the
    # sanity flags' sample (at most 512, whatever the data size), not the 600 of the data.
    assert LARGEST[1] > 0
    assert LARGEST[0] == GRADIENT_SAMPLES < len(source)
    LARGEST[:] = [0, 0]
    evaluate(
        Largest(digits_cnn), source, **{**GATE, "steps": 1}, sanity="off", cache=EvaluationCache()
    )
    assert LARGEST[0] == GATE["batch_size"]  # without the flags: the batch


@pytest.mark.parametrize(
    "form",
    ["dataset", "loader", "loader with workers"],
)
def test_streamed_data_gives_the_numbers_of_tensors(digits_cnn, data, form):
    x, y = data
    streamed = {
        "dataset": lambda: Indexed(x, y),
        "loader": lambda: DataLoader(Indexed(x, y), batch_size=7),
        "loader with workers": lambda: DataLoader(Indexed(x, y), batch_size=16, num_workers=2),
    }[form]()
    for gate in (GATE, {**GATE, "attack": ["fgsm", "pgd"], "keep_examples": 3}):
        keep = gate.get("keep_examples", 0)
        kwargs = {k: v for k, v in gate.items() if k != "keep_examples"}
        one = evaluate(digits_cnn, (x, y), **kwargs, keep_examples=keep)
        two = evaluate(digits_cnn, streamed, **kwargs, keep_examples=keep)
        assert two.data_fingerprint == one.data_fingerprint
        for field in ("clean_correct", "robust", "success", "attacked"):
            assert getattr(two, field) == getattr(one, field), field
        assert two.flags == one.flags
        assert [e.index for e in two.examples] == [e.index for e in one.examples]


def test_keep_adversarial_and_decide_early_stream_too(digits_cnn, data):
    x, y = data
    one = evaluate(digits_cnn, (x, y), **GATE, keep_adversarial=True)
    two = evaluate(digits_cnn, Indexed(x, y), **GATE, keep_adversarial=True)
    assert one.adversarial is not None and two.adversarial is not None
    assert torch.equal(one.adversarial, two.adversarial)
    early: dict[str, Any] = {**GATE, "min_acc": 0.99, "decide_early": True}
    assert evaluate(digits_cnn, Indexed(x, y), **early).n == evaluate(digits_cnn, (x, y), **early).n


def test_a_loader_is_read_a_few_times_per_check_not_once_per_batch(digits_cnn, data):
    x, y = data
    loader = DataLoader(Indexed(x, y), batch_size=7)
    cache = EvaluationCache()
    evaluate(digits_cnn, loader, **{**GATE, "attack": ["fgsm", "pgd"]}, cache=cache)
    source = cache.samples(loader, None).source
    assert isinstance(source, LazyLoader)
    # The scan, then the clean pass, the flags and the attack: each one pass in order.
    assert source.passes <= 4


class Augmented(Indexed):
    """Random noise on every read: a training-style Dataset used for evaluation."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        item, label = super().__getitem__(i)
        return (item + 0.01 * torch.rand_like(item)).clamp(0, 1), label


@pytest.mark.parametrize("wrap", [lambda d: d, lambda d: DataLoader(d, batch_size=16)])
def test_data_that_changes_between_reads_is_refused(digits_cnn, data, wrap):
    with pytest.raises(RobustConfigError, match="read again is not the sample read first"):
        evaluate(digits_cnn, wrap(Augmented(*data)), **GATE)


def test_a_shuffling_loader_is_read_once_and_kept(data):
    loader = DataLoader(Indexed(*data), batch_size=8, shuffle=True)
    with pytest.warns(UserWarning, match="shuffle=False"):
        samples = load_samples(loader)
    assert isinstance(samples.source, InMemory)


SHARDED = """
import json, os, sys
import torch
import torch.distributed as dist
sys.path[:0] = [{root!r}, {tests!r}]
from test_streaming import Indexed
from pytest_robust.engine.data import load_samples

dist.init_process_group("gloo")
torch.manual_seed(0)
x, y = torch.rand(45, 1, 4, 4), torch.randint(0, 3, (45,))
source = Indexed(x, y)
samples = load_samples(source)
read_first = sorted(set(source.reads))
samples.inputs(torch.arange(*{{0: (0, 22), 1: (22, 45)}}[dist.get_rank()]), "cpu", torch.float32)
out = {{"fingerprint": samples.fingerprint, "scan": read_first, "range": samples.value_range,
        "labels": samples.y.tolist()}}
open(os.environ["OUT"] + str(dist.get_rank()), "w").write(json.dumps(out))
dist.destroy_process_group()
"""


@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)
def test_each_rank_scans_only_its_shard_and_all_agree(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED.format(root=str(ROOT), tests=str(ROOT / "tests" / "unit")))
    env = {**os.environ, "OUT": str(tmp_path / "rank"), "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"], env["WORLD_SIZE"] = str(29500 + os.getpid() % 1000), "2"
    procs = [
        subprocess.Popen([sys.executable, str(script)], env={**env, "RANK": str(r)})
        for r in range(2)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{r}").read_text()) for r in range(2)]
    assert ranks[0]["scan"] == list(range(22)) and ranks[1]["scan"] == list(range(22, 45))
    torch.manual_seed(0)
    x, y = torch.rand(45, 1, 4, 4), torch.randint(0, 3, (45,))
    alone = load_samples(Indexed(x, y))
    for rank in ranks:
        assert rank["fingerprint"] == alone.fingerprint == load_samples((x, y)).fingerprint
        assert rank["labels"] == y.tolist()
        assert tuple(rank["range"]) == pytest.approx(alone.value_range)
