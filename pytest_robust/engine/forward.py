"""The model's forward pass as the engine calls it: clear errors, the input passed by
keyword where the model takes it so (Hugging Face style, `model(pixel_values=x)`), and the
output= adapter (a dict or an object with a `logits` entry is read by that name)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from pytest_robust.engine.backoff import OUT_OF_MEMORY
from pytest_robust.engine.targets import describe
from pytest_robust.errors import RobustConfigError


def input_keyword(model: torch.nn.Module, key: str | None) -> str | None:
    """The keyword the model takes its input by: the data's inputs= key when forward() has
    a parameter of that name (`forward(self, pixel_values=None, ...)`), else None (the
    input goes first, positionally: `model(x)`)."""
    if key is None:
        return None
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): positional
        return None
    takes = parameters.get(key)
    by_name = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return key if takes is not None and takes.kind in by_name else None


def forward_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    output: Any = None,
    after_clean: bool = False,
    keyword: str | None = None,
) -> torch.Tensor:
    """The model's logits for `x`, passed as `keyword=x` when given. `after_clean`: the
    model already gave logits for the clean inputs (same shapes, same dtype), so a failure
    now is not about input shapes."""
    try:
        out = model(**{keyword: x}) if keyword is not None else model(x)
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
        out = _named_logits(out)
    if not out.is_floating_point():
        raise RobustConfigError(
            f"model returned logits of dtype {out.dtype}; attacks follow the gradient of a "
            "loss on the logits, which needs floating-point logits. Return the raw scores "
            "(drop a final .argmax(), .round() or integer cast)"
        )
    if out.shape[0] == x.shape[0] and (out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1)):
        raise RobustConfigError(
            f"model returned shape {tuple(out.shape)} for {x.shape[0]} inputs: one score per "
            "input. If it is a binary classifier's logit z (not a probability), pass "
            "output=lambda z: torch.cat([torch.zeros_like(z), z], dim=1) (the logits (0, z): "
            "softmax gives sigmoid(z), labels 0 and 1); the attacks need logits of shape "
            "(batch, classes)"
        )
    if out.dim() != 2 or out.shape[0] != x.shape[0] or out.shape[1] < 2:
        raise RobustConfigError(
            f"model returned shape {tuple(out.shape)} for {x.shape[0]} inputs; it must return "
            "logits of shape (batch, classes) with at least 2 classes"
        )
    return out


def _named_logits(out: Any) -> torch.Tensor:
    """The `logits` entry of a dict or an object (a Hugging Face ModelOutput): the one
    output read without output=, because its name says what it holds."""
    if isinstance(out, Mapping) and "logits" in out:
        selected = out["logits"]
    elif not isinstance(out, (tuple, list, Mapping)) and hasattr(out, "logits"):
        selected = out.logits
    else:
        raise RobustConfigError(
            f"model returned a {type(out).__name__}; it must return one tensor of logits, "
            "shape (batch, classes), or a dict or object holding them as 'logits'. Say which "
            "part holds the logits with output=: a tuple index (output=0), a dict key or "
            "attribute (output='scores') or a callable"
        )
    if not isinstance(selected, torch.Tensor):
        raise RobustConfigError(
            f"model returned a {type(out).__name__} whose 'logits' is a "
            f"{type(selected).__name__}, not a tensor; say where the logits are with output="
        )
    return selected


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
