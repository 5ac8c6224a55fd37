"""Public nn.Module wrappers: Normalize (input normalisation inside the model, so attacks
work in raw input units) and BPDA (gradients through a non-differentiable step)."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from pytest_robust.errors import RobustConfigError


class Normalize(torch.nn.Module):
    """(x - mean) / std over the channel dimension (dim 1).

    Use it as the first layer: ``nn.Sequential(Normalize(mean, std), model)``. Then inputs,
    ``bounds`` and ``eps`` are all in raw units (for images usually [0, 1]).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1)
        if bool((std_t <= 0).any()):
            raise ValueError(f"Normalize: std must be positive, got {std}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.reshape(shape)) / self.std.reshape(shape)


class BPDA(torch.nn.Module):
    """Backward Pass Differentiable Approximation (Athalye, Carlini and Wagner 2018).

    Wrap the non-differentiable step of a model (rounding, quantisation, JPEG) in it:
    ``nn.Sequential(BPDA(quantise), classifier)``. The forward pass is exactly
    ``module(x)``, so what is evaluated is still the real model; only the backward pass
    changes: the identity (straight-through, the default, for steps with ``f(x) ~ x``), or
    the gradient of ``backward(x)``, a differentiable approximation of the step.

    ``module`` and ``backward`` may be modules (they become submodules: moved with the
    model, part of its state_dict) or plain callables. Only for evaluation: parameters
    inside ``module`` get no gradient through the wrapper, and there is no double backward.
    """

    def __init__(
        self,
        module: Callable[[torch.Tensor], torch.Tensor],
        backward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not callable(module):
            raise TypeError(f"BPDA: module must be an nn.Module or a callable, got {module!r}")
        if backward is not None and not callable(backward):
            raise TypeError(
                f"BPDA: backward must be None (identity) or a callable, got {backward!r}"
            )
        self.module = module
        self.backward = backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad):
            return self.module(x)
        out: torch.Tensor = _BPDAFunction.apply(x, self)
        return out

    def extra_repr(self) -> str:
        return "backward=identity" if self.backward is None else ""


class _BPDAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, owner: BPDA) -> torch.Tensor:
        out = owner.module(x)  # autograd is off here: the forward values are module(x)'s
        if not isinstance(out, torch.Tensor):
            raise RobustConfigError(
                f"BPDA: the wrapped module returned {type(out).__name__}, not a tensor"
            )
        if owner.backward is None and out.shape != x.shape:
            raise RobustConfigError(
                f"BPDA: the wrapped step maps shape {tuple(x.shape)} to {tuple(out.shape)}, "
                "so the identity cannot stand in for its gradient; pass "
                "backward=<a differentiable approximation with the same output shape>"
            )
        ctx.owner = owner
        ctx.save_for_backward(x)
        return out.clone() if out is x else out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (x,) = ctx.saved_tensors
        owner: BPDA = ctx.owner
        if owner.backward is None:
            return grad.to(x.dtype), None
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            approx = owner.backward(xx)
            if not isinstance(approx, torch.Tensor) or approx.shape != grad.shape:
                shape = tuple(approx.shape) if isinstance(approx, torch.Tensor) else type(approx)
                raise RobustConfigError(
                    f"BPDA: backward= returned {shape}, but the wrapped step's output has "
                    f"shape {tuple(grad.shape)}; the approximation must map the step's input "
                    "to an output of the same shape as the step's"
                )
            if not approx.requires_grad:  # it ignores its input: its gradient is zero
                return torch.zeros_like(x), None
            (gx,) = torch.autograd.grad(approx, xx, grad.to(approx.dtype), allow_unused=True)
        return (torch.zeros_like(x) if gx is None else gx.to(x.dtype)), None
