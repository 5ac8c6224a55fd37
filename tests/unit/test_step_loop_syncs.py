"""The step loop synchronises with the host once per step (the count of unbroken samples),
not once per masked write: on CUDA every `nonzero` and every `.item()`/`bool()` waits for
the device."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_robust.attacks import AttackBatch
from pytest_robust.attacks import ThreatModel
from pytest_robust.attacks import get_attack

SYNCS = {torch.ops.aten.nonzero.default, torch.ops.aten._local_scalar_dense.default}
# Indexing with a boolean mask runs a nonzero inside the kernel: a sync too.
MASKABLE = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default}


class CountSyncs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        masked = func in MASKABLE and any(i is not None and i.dtype == torch.bool for i in args[1])
        if func in SYNCS or masked:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("attack", "steps"), [("pgd", 20), ("apgd-ce", 20)])
def test_one_host_sync_per_step(attack, steps, digits_cnn, digits_data):
    x, y = digits_data[0][:64], digits_data[1][:64]
    threat = ThreatModel(0.05, "linf", (0.0, 1.0))
    cls = get_attack(attack)
    atk = cls(threat, **cls.finalize({"steps": steps, "restarts": 1}, threat))
    model = digits_cnn.eval().requires_grad_(False)
    try:
        batch = AttackBatch(model, x, y, None, torch.arange(len(x)), 0)
        with CountSyncs() as counter:
            atk.run(batch)
    finally:
        digits_cnn.requires_grad_(True)
    # One per step, plus a few per run (which samples a restart attacks).
    assert 0 < counter.syncs <= steps + 3
