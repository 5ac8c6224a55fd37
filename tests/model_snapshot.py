"""Snapshots of a model's whole state, to prove it comes back bit-for-bit unchanged
(import as `model_snapshot`)."""

from __future__ import annotations

import torch


def snapshot(model: torch.nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "device": [t.device for t in [*model.parameters(), *model.buffers()]],
    }


def assert_unchanged(before: dict[str, object], model: torch.nn.Module) -> None:
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()  # type: ignore[attr-defined]
    for key, value in before["state"].items():  # type: ignore[attr-defined]
        assert torch.equal(value, after["state"][key]), f"{key} changed"  # type: ignore[index]
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    for g0, g1 in zip(before["grad"], after["grad"], strict=True):  # type: ignore[call-overload]
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    assert before["device"] == after["device"]
