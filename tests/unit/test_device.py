"""Device tests: run with `--robust-device=cuda` (benchmarks/gpu.sh); skipped without it.

The device comes from the command line, so CI on a CPU never depends on a GPU; with
`--robust-device=cuda` and no CUDA they fail instead of skipping (a GPU run that silently
checked nothing would look like a pass). `--robust-device=cpu` runs them on the CPU,
which checks the tests themselves (the amp test needs CUDA and skips there).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_wrappers import AutocastRecorder

from pytest_robust import evaluate

KW: dict[str, Any] = {"eps": 0.1, "seed": 0, "batch_size": 128}


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    name = request.config.getoption("robust_device")
    if not name or name == "auto":
        pytest.skip("device tests run with --robust-device=cuda (benchmarks/gpu.sh)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"--robust-device={name} but torch.cuda.is_available() is False")
    return str(name)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_outcomes_on_the_device_are_those_on_the_cpu(device, attack, digits_cnn, digits_data):
    """Catches a device path that attacks a different model or data (a missed .to(), a
    CPU generator for random starts on the device): the per-sample outcomes must agree
    with the CPU's, up to a few borderline samples that float rounding may flip."""
    on_device = evaluate(digits_cnn, digits_data, attack=attack, device=device, **KW)
    on_cpu = evaluate(digits_cnn, digits_data, attack=attack, device="cpu", **KW)
    assert on_device.device.startswith(device.split(":")[0])
    assert on_device.clean_correct == on_cpu.clean_correct
    differ = sum(a != b for a, b in zip(on_device.robust, on_cpu.robust, strict=True))
    assert differ <= 3, f"{differ} of 450 samples differ between {device} and cpu"


def test_the_model_comes_back_where_it_was(device, digits_cnn, digits_data):
    """Catches a borrowed model left on the attack's device, or changed there."""
    before = {k: v.clone() for k, v in digits_cnn.state_dict().items()}
    evaluate(digits_cnn, digits_data, attack="pgd", steps=3, device=device, **KW)
    after = digits_cnn.state_dict()
    assert all(
        after[k].device.type == "cpu" and torch.equal(after[k], v) for k, v in before.items()
    )
    # A model that already lives on the device stays there.
    moved = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).to(device)
    evaluate(moved, digits_data, attack="fgsm", device=device, **KW)
    assert all(p.device.type == torch.device(device).type for p in moved.parameters())


def test_amp_attacks_in_float16_and_verifies_in_float32(device, digits_cnn, digits_data):
    """amp=True on CUDA: the attack's passes under float16 autocast, the clean pass and the
    re-verification of every final point in float32, and the outcome close to float32's."""
    if not device.startswith("cuda"):
        pytest.skip("autocast runs on CUDA only (tests/unit/test_amp.py covers the CPU stand-in)")
    kw: dict[str, Any] = {**KW, "attack": "pgd", "steps": 3, "batch_size": 500, "sanity": "off"}
    model = AutocastRecorder(digits_cnn, "cuda")
    result = evaluate(model, digits_data, amp=True, device=device, **kw)
    clean, *attack, verify = model.calls
    assert clean == (False, torch.float32)
    assert attack and all(call == (True, torch.float16) for call in attack)
    assert verify == (False, torch.float32)
    assert result.details["amp"].startswith("float16 autocast")
    reference = evaluate(digits_cnn, digits_data, device=device, **kw)
    assert abs(result.robust_acc - reference.robust_acc) < 0.05
