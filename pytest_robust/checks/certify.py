"""check="certify", method="ibp": interval bound propagation (Gowal et al. 2018).

For every input in the eps-box around a sample (intersected with the input bounds) IBP
computes, layer by layer, elementwise lower and upper bounds that hold for every point of
the box: an affine layer maps the box's centre and radius exactly (`c' = W c + b`,
`r' = |W| r`), a monotone non-decreasing function maps the two corners (`f(l)`, `f(u)`).
The last Linear layer is not bounded on its own: its rows are folded into the margins
`z_y - z_j` first ("elision", Gowal et al. section 3), which is tighter. A sample is
certified when it is classified correctly and the lower bound of each margin is > 0: then
no input in the box changes the prediction, whatever attack is tried.

An L2 ball of radius eps lies inside the L-inf box of the same radius, so bounding the box
also bounds the ball (sound, but looser than an L2-specific method).

Soundness rests on knowing exactly what the model computes, so only a chain of the layers
below is accepted (an nn.Sequential, nested or not, or a module whose forward traces with
torch.fx to such a chain), and the extracted chain must reproduce the model's clean logits.
Bounds are computed in float64 on copies of the weights: they bound the real-valued
function; the float32 model differs from it by rounding, far below the margins reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pytest_robust.errors import RobustConfigError
from pytest_robust.modules import Normalize

Box = tuple[torch.Tensor, torch.Tensor]  # elementwise (lower, upper)

# Elementwise and monotone non-decreasing (for the parameters checked in _monotone), so
# f(l) and f(u) bound f over [l, u]. GELU, SiLU, Mish, Softsign-like bumps are not.
MONOTONE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Softplus,
)
# Refused activations, with the reason the message gives.
NOT_MONOTONE = {
    name: "it is not monotone, so its values at the box's corners do not bound it"
    for name in ("GELU", "SiLU", "Mish", "Softsign", "Hardswish", "Tanhshrink", "Softshrink")
}
# Monotone in every input (max and mean of non-negative weights), so they map corners too.
POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
# Shape-only layers, or layers that are the identity in eval mode.
SHAPES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, Normalize)
SUPPORTED = (*AFFINE, *MONOTONE, *POOLS, *SHAPES)
SUPPORTED_TEXT = (
    "Linear, Conv1d/Conv2d, BatchNorm1d/2d (eval, running statistics), "
    "pytest_robust.Normalize, ReLU, ReLU6, LeakyReLU (slope >= 0), ELU/CELU/SELU, Sigmoid, "
    "Tanh, Hardtanh, Hardsigmoid, Softplus, Max/Avg/AdaptiveAvg/AdaptiveMax pooling (1d, 2d), "
    "Flatten, Unflatten, Identity, Dropout, and nn.Sequential of them"
)


@dataclass(frozen=True)
class Layer:
    """One step of the chain: where it sits in the model and the module that computes it."""

    path: str
    module: nn.Module


def chain_of(model: nn.Module) -> list[Layer]:
    """The model as a straight chain of supported layers; RobustConfigError naming the
    first module (or operation) that is not one, and why."""
    _refuse_hooks(model)
    if isinstance(model, SUPPORTED):
        layers = [Layer(type(model).__name__, model)]
    elif type(model) is nn.Sequential:
        layers = _flatten_sequential(model, "")
    else:
        layers = _traced_chain(model)
    for layer in layers:
        _check_layer(layer)
    if not layers:
        raise RobustConfigError(
            "check='certify': the model has no layers to bound (an empty nn.Sequential)"
        )
    return layers


def _refuse_hooks(model: nn.Module) -> None:
    """A forward hook can change what a module computes, unseen by the chain."""
    hooks = nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
        raise RobustConfigError(
            "check='certify': a global forward hook (torch.nn.modules.module."
            "register_module_forward_hook) is registered; it can change what every layer "
            "computes, so the bounds would describe another function. Remove it for the check"
        )
    for path, module in model.named_modules():
        if module._forward_hooks or module._forward_pre_hooks:
            raise _unsupported(
                path or "(the model)", module, "a forward hook changes what it computes"
            )


def _flatten_sequential(seq: nn.Sequential, prefix: str) -> list[Layer]:
    out: list[Layer] = []
    for name, child in seq.named_children():
        path = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            out.extend(_flatten_sequential(child, f"{path}."))
        elif isinstance(child, SUPPORTED):
            out.append(Layer(path, child))
        elif type(child).__module__.startswith("torch.nn"):
            raise _unsupported(path, child, NOT_MONOTONE.get(type(child).__name__, ""))
        else:
            out.extend(_traced_chain(child, f"{path}."))
    return out


class _Tracer(torch.fx.Tracer):
    """torch.fx tracing that stops at the layers IBP knows (Normalize included)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, SUPPORTED) or super().is_leaf_module(m, module_qualified_name)


# Functions a traced forward may call between layers, as the layer they stand for.
def _functional_layer(node: torch.fx.Node) -> nn.Module | None:
    args = node.args[1:]
    relu = node.op == "call_function" and node.target in (F.relu, torch.relu)
    if relu and not args and set(node.kwargs) <= {"inplace"}:
        return nn.ReLU()
    flatten = (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    )
    dims = [a for a in args if isinstance(a, int)]
    if flatten and len(dims) == len(args) <= 2 and not node.kwargs:
        return nn.Flatten(*dims) if dims else nn.Flatten(0)
    return None


def _traced_chain(model: nn.Module, prefix: str = "") -> list[Layer]:
    """The layers of a custom module whose forward is a straight chain of layers."""
    what = f"{prefix.rstrip('.') or 'the model'} ({type(model).__name__})"
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # any failure to trace: not a chain
        raise RobustConfigError(
            f"check='certify' cannot read the structure of {what}: torch.fx could not trace "
            f"its forward ({type(error).__name__}: {error}). A certificate bounds "
            f"{SUPPORTED_TEXT}; "
            "write the model as such a chain"
        ) from None
    layers: list[Layer] = []
    previous: torch.fx.Node | None = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                raise _not_a_chain(what, "its forward takes more than one input")
            previous = node
            continue
        if node.op == "output":
            if node.args[0] is not previous:
                raise _not_a_chain(what, "its output is not the last layer's output")
            continue
        if previous is None or not node.args or node.args[0] is not previous:
            raise _not_a_chain(what, f"{_node_text(node)} does not take the previous output")
        previous = node
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            path = f"{prefix}{node.target}"
            if len(node.args) != 1 or node.kwargs:
                raise _not_a_chain(what, f"layer {path} is called with extra arguments")
            if not isinstance(module, SUPPORTED):
                raise _unsupported(path, module)
            layers.append(Layer(path, module))
            continue
        functional = _functional_layer(node)
        if functional is None:
            raise _not_a_chain(what, f"its forward calls {_node_text(node)}")
        layers.append(Layer(f"{prefix}{node.name}", functional))
    uses = [n for n in graph.nodes if n.op not in ("placeholder", "output") and len(n.users) != 1]
    if uses:
        raise _not_a_chain(what, f"the output of {_node_text(uses[0])} is used more than once")
    return layers


def _node_text(node: torch.fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    if node.op == "call_module":
        return f"layer {target}"
    return f".{target}()" if node.op == "call_method" else f"{name}()"


def _not_a_chain(what: str, why: str) -> RobustConfigError:
    return RobustConfigError(
        f"check='certify' cannot bound {what}: {why}. A certificate (ibp, crown) bounds a "
        f"straight chain of {SUPPORTED_TEXT}"
    )


def _unsupported(path: str, module: nn.Module, why: str = "") -> RobustConfigError:
    reason = why or "no certificate here has a sound bound for it"
    return RobustConfigError(
        f"check='certify' cannot bound layer {path!r} ({type(module).__name__}): {reason}. "
        f"method='ibp' bounds {SUPPORTED_TEXT}"
    )


def _check_layer(layer: Layer) -> None:
    """Refuse what would make the bounds describe another function than the model's."""
    module, path = layer.module, layer.path
    kind = next(k for k in SUPPORTED if isinstance(module, k))
    if type(module).forward is not kind.forward or "forward" in vars(module):
        raise _unsupported(path, module, "its forward is not the standard one")
    if isinstance(module, nn.LeakyReLU) and module.negative_slope < 0:
        raise _unsupported(path, module, "a negative slope makes it non-monotone")
    if isinstance(module, nn.ELU) and module.alpha < 0:
        raise _unsupported(path, module, "a negative alpha makes it non-monotone")
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)) and module.return_indices:
        raise _unsupported(path, module, "it returns indices, not values")
    divisor = getattr(module, "divisor_override", None)
    if isinstance(module, nn.AvgPool2d) and divisor is not None and divisor <= 0:
        raise _unsupported(path, module, "a non-positive divisor makes it non-monotone")
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.running_mean is None:
        raise _unsupported(
            path,
            module,
            "without running statistics it normalises by the batch's own, so a "
            "sample's output depends on the other samples",
        )


def _affine_scale(module: nn.Module, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of a BatchNorm in eval mode or a Normalize, in the dtype
    and on the device of `like`."""
    if isinstance(module, Normalize):
        std = module.std.to(like).reshape(-1)
        return 1 / std, -module.mean.to(like).reshape(-1) / std
    assert isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))
    assert module.running_mean is not None and module.running_var is not None
    var, mean = module.running_var.to(like), module.running_mean.to(like)
    scale = 1 / torch.sqrt(var + module.eps)
    if module.weight is not None:
        scale = scale * module.weight.to(like)
    shift = -mean * scale + (module.bias.to(like) if module.bias is not None else 0)
    return scale, shift


def _per_channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape((1, -1) + (1,) * (like.dim() - 2))


def _conv(module: nn.Conv1d | nn.Conv2d) -> Callable[..., torch.Tensor]:
    # The module's own padding (zeros, reflect, circular), stride, dilation and groups.
    return module._conv_forward


def propagate(layer: nn.Module, box: Box) -> Box:
    """Bounds of layer(x) over every x in the box (float64 in, float64 out)."""
    lower, upper = box
    if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        centre, radius = (upper + lower) / 2, (upper - lower) / 2
        weight = layer.weight.to(lower)
        bias = layer.bias.to(lower) if layer.bias is not None else None
        if isinstance(layer, nn.Linear):
            centre, radius = F.linear(centre, weight, bias), F.linear(radius, weight.abs())
        else:
            conv = _conv(layer)
            centre, radius = conv(centre, weight, bias), conv(radius, weight.abs(), None)
        return centre - radius, centre + radius
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, Normalize)):
        scale, shift = _affine_scale(layer, lower)
        scale, shift = _per_channel(scale, lower), _per_channel(shift, lower)
        a, b = lower * scale + shift, upper * scale + shift
        return torch.minimum(a, b), torch.maximum(a, b)
    if isinstance(layer, (nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
        return lower, upper  # identity in eval mode (the model is borrowed in eval mode)
    # Monotone non-decreasing maps (activations, pooling) and shape changes: the corners.
    # An in-place activation must not write into a bound some other step still holds.
    return layer(lower.clone()), layer(upper.clone())


def input_box(x: torch.Tensor, eps: float, bounds: tuple[float, float]) -> Box:
    """The eps-box around x intersected with the valid input range, in float64."""
    x = x.to(torch.float64)
    lo, hi = bounds
    return (x - eps).clamp(min=lo), (x + eps).clamp(max=hi)


def bounds_of(layers: Sequence[nn.Module], box: Box) -> Box:
    for layer in layers:
        box = propagate(layer, box)
    return box


def margin_lower_bounds(
    layers: Sequence[nn.Module], box: Box, labels: torch.Tensor
) -> torch.Tensor:
    """(B, K) lower bounds of z_y - z_j over the box; +inf in the label's own column.

    A final Linear layer is elided: its rows are folded into the margins before bounding,
    w_y - w_j applied to the penultimate box, which is exact for that last step."""
    last = layers[-1]
    if isinstance(last, nn.Linear):
        lower, upper = bounds_of(layers[:-1], box)
        centre, radius = (upper + lower) / 2, (upper - lower) / 2
        weight = last.weight.to(centre)
        bias = last.bias.to(centre) if last.bias is not None else torch.zeros_like(weight[:, 0])
        logits = F.linear(centre, weight, bias)  # the margins' value at the centre
        central = logits.gather(1, labels[:, None]) - logits
        # |w_y - w_j| . r, in sample chunks so that B x K x H stays small.
        per = max(1, 2**22 // max(1, weight.numel()))
        spread = torch.cat(
            [
                torch.einsum(
                    "bkh,bh->bk",
                    (weight[labels[i : i + per]][:, None, :] - weight[None]).abs(),
                    radius[i : i + per],
                )
                for i in range(0, len(labels), per)
            ]
        )
        margins = central - spread
    else:
        lower, upper = bounds_of(layers, box)
        margins = lower.gather(1, labels[:, None]) - upper
    return margins.scatter(1, labels[:, None], math.inf)


def forward_chain(layers: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """The chain's float64 output at x (the box of radius 0)."""
    lower, _ = bounds_of(layers, (x.to(torch.float64), x.to(torch.float64).clone()))
    return lower


def check_chain(layers: Sequence[Layer], chain: torch.Tensor, clean: torch.Tensor) -> None:
    """The extracted chain must compute what the model computed on the clean inputs: a
    layer the extraction misread (a patched method, an operation fx did not see) would
    otherwise give bounds of another function. `chain` is the chain's output at the clean
    inputs, `clean` the model's own logits (float32)."""
    if chain.shape != clean.shape:
        raise RobustConfigError(
            f"check='certify': the layers read from the model ({_layer_names(layers)}) give "
            f"outputs of shape {tuple(chain.shape[1:])} where the model gives "
            f"{tuple(clean.shape[1:])}; its forward does more than this chain of layers"
        )
    scale = 1 + clean.abs().amax(dim=1, keepdim=True)
    off = ((chain - clean).abs() / scale).amax(dim=1)
    if bool((off > 1e-4).any()):
        first = int((off > 1e-4).nonzero()[0])
        raise RobustConfigError(
            f"check='certify': the layers read from the model ({_layer_names(layers)}) do not "
            f"reproduce its logits (sample {first}: off by {float(off[first]):.3g} of the "
            "logits' scale); its forward computes something else than this chain, so no "
            "certificate can bound it"
        )


def _layer_names(layers: Sequence[Layer]) -> str:
    names = [f"{layer.path}: {type(layer.module).__name__}" for layer in layers]
    return ", ".join(names if len(names) <= 8 else [*names[:7], "...", names[-1]])
