"""The model's forward pass as the engine calls it: clear errors, and the output= adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pytest_robust.engine.backoff import OUT_OF_MEMORY
from pytest_robust.engine.targets import describe
from pytest_robust.errors import RobustConfigError


def forward_logits(model: torch.nn.Module, x: torch.Tensor, output: Any = None) -> torch.Tensor:
    try:
        out = model(x)
    except OUT_OF_MEMORY:
        raise  # handled by the batch-size back-off
    except RuntimeError as exc:
        raise RobustConfigError(
            f"model failed on a batch of inputs of shape {tuple(x.shape)} ({x.dtype}, "
            f"{x.device}): {str(exc).splitlines()[0]}. Check that the data's inputs have "
            "the shape and type the model expects"
        ) from exc
    if output is not None:
        out = _select_output(out, output)
    elif not isinstance(out, torch.Tensor):
        raise RobustConfigError(
            f"model returned a {type(out).__name__}; it must return one tensor of logits, "
            "shape (batch, classes). Say which part holds the logits with output=: a tuple "
            "index (output=0), a dict key or attribute (output='logits') or a callable"
        )
    if out.dim() != 2 or out.shape[0] != x.shape[0] or out.shape[1] < 2:
        raise RobustConfigError(
            f"model returned shape {tuple(out.shape)} for {x.shape[0]} inputs; it must return "
            "logits of shape (batch, classes) with at least 2 classes"
        )
    return out


def _select_output(out: Any, output: Any) -> torch.Tensor:
    """Apply the documented output= adapter; never guess."""
    try:
        if callable(output):
            selected = output(out)
        elif isinstance(output, int) or isinstance(out, Mapping):
            selected = out[output]
        else:
            selected = getattr(out, output)
    except (IndexError, KeyError, AttributeError, TypeError) as exc:
        raise RobustConfigError(
            f"output={describe(output)} does not fit the model's output "
            f"({type(out).__name__}): {exc!r}"
        ) from None
    if not isinstance(selected, torch.Tensor):
        raise RobustConfigError(
            f"output={describe(output)} selected a {type(selected).__name__}, not a tensor of "
            "logits"
        )
    return selected
