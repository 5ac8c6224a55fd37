"""Borrow the user's model for an attack and give it back exactly as it was.

Inside the block the model is in eval mode (BatchNorm statistics frozen, dropout off), on
the evaluation device, with requires_grad off for every parameter (attacks need input
gradients only). On leaving, also by an exception, the device, every module's training
flag and every parameter's requires_grad flag are restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


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
