"""Borrow the user's model for an attack and give it back exactly as it was.

Inside the block the model is in eval mode (BatchNorm statistics frozen, dropout off), on
the evaluation device, with requires_grad off for every parameter (attacks need input
gradients only). On leaving, also by an exception, the device, every module's training
flag and every parameter's requires_grad flag are restored, and so is torch's global
random state (CPU, and the evaluation device's CUDA generator): a randomised model draws
from a fork of it, which engine/stochastic.py seeds. Also the check that a model handed
over has weights to borrow (`check_weights`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pytest_robust.errors import RobustConfigError


@contextmanager
def borrowed(model: torch.nn.Module, device: torch.device) -> Iterator[torch.nn.Module]:
    training = [(module, module.training) for module in model.modules()]
    requires_grad = [(param, param.requires_grad) for param in model.parameters()]
    devices = {t.device for t in [*model.parameters(), *model.buffers()]}
    # A model spread over several devices is left where it is (the user placed it).
    home = next(iter(devices)) if len(devices) == 1 else None
    move = home is not None and home != device
    try:
        if move:
            model.to(device)
        model.eval()
        for param, _ in requires_grad:
            param.requires_grad_(False)
        yield model
    finally:
        if move:
            model.to(home)
        for param, flag in requires_grad:
            param.requires_grad_(flag)
        for module, flag in training:
            module.training = flag


@contextmanager
def borrowed_all(
    model: torch.nn.Module, others: list[torch.nn.Module], device: torch.device
) -> Iterator[torch.nn.Module]:
    """borrowed() for the model under test and every other model a check runs (e.g. the
    transfer attack's surrogates); all come back, in reverse order, also on error."""
    with contextlib.ExitStack() as borrowing:
        cuda = (
            [torch.cuda.current_device() if device.index is None else device.index]
            if device.type == "cuda"
            else []
        )
        borrowing.enter_context(torch.random.fork_rng(devices=cuda))
        borrowing.enter_context(borrowed(model, device))
        for other in others:
            borrowing.enter_context(borrowed(other, device))
        yield model


def check_weights(model: torch.nn.Module, role: str) -> None:
    """A model on the meta device has shapes but no values: nothing to evaluate."""
    meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise RobustConfigError(
            f"{role} has {len(meta)} parameter(s) or buffer(s) on the meta device (first: "
            f"{meta[0]!r}): they have shapes but no values, e.g. a model built under "
            "torch.device('meta') or with empty weights. Load its weights before the check: "
            "model.load_state_dict(state, assign=True), or model.to_empty(device='cpu') "
            "followed by load_state_dict(state)"
        )
