"""The model's forward pass as the engine calls it: clear errors, and the output= adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pytest_robust.engine.backoff import OUT_OF_MEMORY
from pytest_robust.engine.targets import describe
from pytest_robust.errors import RobustConfigError


def forward_logits(
    model: torch.nn.Module, x: torch.Tensor, output: Any = None, after_clean: bool = False
) -> torch.Tensor:
    """The model's logits for `x`. `after_clean`: the model already gave logits for the
    clean inputs (same shapes, same dtype), so a failure now is not about input shapes."""
    try:
        out = model(x)
    except OUT_OF_MEMORY:
        raise  # handled by the batch-size back-off
    except RobustConfigError:
        raise
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        raised = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if after_clean:
            raise RobustConfigError(
                f"model raised {raised}, part-way through the check, on a batch of inputs of "
                f"shape {tuple(x.shape)} ({x.dtype}, {x.device}). It gave logits for every "
                "clean input, in batches of the same shape and type, so the cause is in the "
                "model: it fails on some inputs inside the bounds the attack may try, on "
                "inputs that require gradients, or on a later call (state kept between "
                "calls). Make the model accept every input inside the bounds"
            ) from exc
        raise RobustConfigError(
            f"model failed on a batch of inputs of shape {tuple(x.shape)} ({x.dtype}, "
            f"{x.device}): {raised}. Check that the data's inputs have "
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
    if not out.is_floating_point():
        raise RobustConfigError(
            f"model returned logits of dtype {out.dtype}; attacks follow the gradient of a "
            "loss on the logits, which needs floating-point logits. Return the raw scores "
            "(drop a final .argmax(), .round() or integer cast)"
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
