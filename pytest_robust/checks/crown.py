"""check="certify", method="crown": linear bounds propagated backwards (CROWN, Zhang et al.,
*Efficient Neural Network Robustness Certification with General Activation Functions*, 2018).

IBP bounds each layer by a box, and boxes forget how the neurons of one layer depend on
the same inputs. CROWN instead carries, from the output back to the input, a linear
function of the input that bounds the quantity of interest from below: an affine layer
passes it through exactly (its transpose), a ReLU whose input may have either sign is
replaced by two lines that enclose it on its pre-activation interval (the chord above,
the line through 0 of slope 0 or 1 below, CROWN's adaptive choice), and the result is
minimised over the eps-box in closed form. The pre-activation intervals themselves come
from the same backward pass run from each ReLU that IBP leaves undecided (intersected with
IBP's interval), so the cost grows with the number of such neurons.

The same chain of layers as IBP (checks/certify.py), with ReLU as the only activation:
ReLU is the one activation with this relaxation here; max pooling is not linear. The final
margin bound is the larger of CROWN's and IBP's (both are sound), so a sample IBP
certifies CROWN certifies too. Everything runs in float64 on copies of the layers (the
borrowed model is never cast). For norm="l2" the linear bound is minimised over the L2 ball
as well (eps times the row's L2 norm) and the larger of the two is kept.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

import torch
from torch import nn

from pytest_robust.checks import certify
from pytest_robust.checks.certify import Box
from pytest_robust.checks.certify import Layer
from pytest_robust.errors import RobustConfigError
from pytest_robust.modules import Normalize

# Affine (or linear) layers: CROWN passes a linear bound through them exactly, with the
# layer's own vector-Jacobian product (no per-layer transpose code to get wrong).
AFFINE = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    Normalize,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
)
# Elements of A x (rows x features, summed over the batch) one backward step may hold.
CHUNK = 2**22


def check_layers(layers: Sequence[Layer]) -> None:
    """Refuse what this CROWN does not relax (IBP may still bound it)."""
    for layer in layers:
        module = layer.module
        if not isinstance(module, (*AFFINE, nn.ReLU)):
            why = (
                "max pooling is not linear, and CROWN here relaxes no maximum"
                if "MaxPool" in type(module).__name__
                else "CROWN here relaxes ReLU activations only"
            )
            raise RobustConfigError(
                f"check='certify', method='crown' cannot bound layer {layer.path!r} "
                f"({type(module).__name__}): {why}. Use method='ibp', which bounds it"
            )


@dataclass
class Cost:
    """Rows of linear bounds carried back, as layer steps: one row through every layer of
    the chain is one backward pass (per sample)."""

    steps: int = 0
    samples: int = 0
    rows: list[int] = field(default_factory=list)

    def passes_per_sample(self, layers: int) -> float:
        return self.steps / max(1, layers * self.samples)


class Crown:
    """CROWN margins for one chain, with float64 copies of its layers made once."""

    def __init__(
        self, modules: Sequence[nn.Module], device: torch.device, with_ibp: bool = True
    ) -> None:
        self.modules = list(modules)
        self.copies = [_copy(m, device) for m in self.modules]
        self.cost = Cost()
        # False: plain CROWN, as auto_LiRPA's method="CROWN" (every ReLU neuron bounded by
        # CROWN alone, no IBP anywhere): for comparing with it in a peer test only.
        self.with_ibp = with_ibp

    def margin_lower_bounds(
        self, box: Box, labels: torch.Tensor, ball: tuple[torch.Tensor, float] | None = None
    ) -> torch.Tensor:
        """(B, K) lower bounds of z_y - z_j over the box (and the L2 ball `ball` = (x, eps)
        when given); +inf in the label's own column; never below IBP's."""
        lower = box[0]
        shapes = self._input_shapes(lower)
        relax: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        running = box
        for i, layer in enumerate(self.copies):
            if isinstance(layer, nn.ReLU):
                running = self._tighten(i, running, relax, shapes, box, ball)
                relax[i] = relaxation(*running)
            running = certify.propagate(layer, running)
        classes = int(running[0].shape[1])
        eye = torch.eye(classes, dtype=lower.dtype, device=lower.device)
        spec = eye[labels][:, None, :] - eye[None]  # (B, K, K): row j is e_y - e_j
        a, bias = self._backward(len(self.copies), spec, relax, shapes)
        margins = concretize(a, bias, box, ball)
        self.cost.samples += len(labels)
        self.cost.rows.append(classes)
        if self.with_ibp:
            margins = torch.maximum(margins, certify.margin_lower_bounds(self.modules, box, labels))
        return margins.scatter(1, labels[:, None], torch.inf)

    def _input_shapes(self, x: torch.Tensor) -> list[torch.Size]:
        shapes = []
        h = x[:1]
        with torch.no_grad():
            for layer in self.copies:
                shapes.append(h.shape[1:])
                h = layer(h.clone())
        return shapes

    def _tighten(
        self,
        i: int,
        running: Box,
        relax: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        shapes: list[torch.Size],
        box: Box,
        ball: tuple[torch.Tensor, float] | None,
    ) -> Box:
        """The pre-activation interval of ReLU i: IBP's, intersected with CROWN's bounds of
        the neurons IBP leaves undecided (either sign possible) in some sample."""
        low, high = running
        batch = low.shape[0]
        flat_low, flat_high = low.reshape(batch, -1).clone(), high.reshape(batch, -1).clone()
        undecided = ((flat_low < 0) & (flat_high > 0)).any(dim=0).nonzero().flatten()
        if not self.with_ibp:
            undecided = torch.arange(flat_low.shape[1], device=low.device)
        if len(undecided) == 0:
            return running
        width = max(int(s.numel()) for s in shapes[: i + 1])
        per = max(1, CHUNK // max(1, 2 * batch * width))
        eye = torch.eye(shapes[i].numel(), dtype=low.dtype, device=low.device)
        for start in range(0, len(undecided), per):
            ids = undecided[start : start + per]
            rows = eye[ids]  # (s, neurons): the neurons' own values
            spec = torch.cat([rows, -rows])[None].expand(batch, -1, -1)
            spec = spec.reshape(batch, 2 * len(ids), *shapes[i])
            a, bias = self._backward(i, spec, relax, shapes)
            bound = concretize(a, bias, box, ball)  # lower bounds of x_n and of -x_n
            if self.with_ibp:
                flat_low[:, ids] = torch.maximum(flat_low[:, ids], bound[:, : len(ids)])
                flat_high[:, ids] = torch.minimum(flat_high[:, ids], -bound[:, len(ids) :])
            else:
                flat_low[:, ids], flat_high[:, ids] = bound[:, : len(ids)], -bound[:, len(ids) :]
        return flat_low.reshape(low.shape), flat_high.reshape(high.shape)

    def _backward(
        self,
        end: int,
        a: torch.Tensor,
        relax: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        shapes: list[torch.Size],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A lower bound of a . (output of layers[:end]) as a_in . x + bias, for every x in
        the box: a is (B, S, *shape of that output); returns (a_in, bias (B, S))."""
        bias = torch.zeros(a.shape[:2], dtype=a.dtype, device=a.device)
        for i in reversed(range(end)):
            layer = self.copies[i]
            self.cost.steps += int(a.shape[0] * a.shape[1])
            if isinstance(layer, nn.ReLU):
                low_slope, up_slope, up_shift = (t.unsqueeze(1) for t in relax[i])
                positive, negative = a.clamp(min=0), a.clamp(max=0)
                bias = bias + (negative * up_shift).flatten(2).sum(2)
                a = positive * low_slope + negative * up_slope
            else:
                a, shift = affine_transpose(layer, a, shapes[i])
                bias = bias + shift
        return a, bias


def _copy(module: nn.Module, device: torch.device) -> nn.Module:
    """A float64 copy in eval mode, without parameter gradients (the model is not cast)."""
    if isinstance(module, nn.ReLU):
        return nn.ReLU()
    twin = copy.deepcopy(module).to(device=device, dtype=torch.float64).eval()
    return twin.requires_grad_(False)


def relaxation(
    low: torch.Tensor, high: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CROWN's lines around relu on [low, high], elementwise: (lower slope, upper slope,
    upper intercept); relu(x) >= lower slope * x and <= upper slope * x + intercept there."""
    active, dead = low >= 0, high <= 0
    unstable = ~active & ~dead
    one = active.to(low.dtype)
    chord = high / torch.where(unstable, high - low, torch.ones_like(low))
    up_slope = torch.where(unstable, chord, one)
    up_shift = torch.where(unstable, -chord * low, torch.zeros_like(low))
    # Slope 1 when the interval reaches further right than left, else 0 (the line with
    # the smaller area between it and relu): both lie below relu everywhere.
    low_slope = torch.where(unstable, (high > -low).to(low.dtype), one)
    return low_slope, up_slope, up_shift


def affine_transpose(
    layer: nn.Module, a: torch.Tensor, in_shape: torch.Size
) -> tuple[torch.Tensor, torch.Tensor]:
    """a . layer(x) = (a L) . x + a . layer(0) for an affine layer: a L by the layer's
    vector-Jacobian product at 0, a . layer(0) the constant part."""
    batch, rows = a.shape[:2]
    zero = torch.zeros((batch * rows, *in_shape), dtype=a.dtype, device=a.device)
    zero.requires_grad_(True)
    with torch.enable_grad():
        out = layer(zero)
        (grad,) = torch.autograd.grad(out, zero, grad_outputs=a.reshape(out.shape))
    constant = out.detach()[0].reshape(1, 1, -1)
    shift = (a.reshape(batch, rows, -1) * constant).sum(2)
    return grad.reshape(batch, rows, *in_shape), shift


def concretize(
    a: torch.Tensor, bias: torch.Tensor, box: Box, ball: tuple[torch.Tensor, float] | None
) -> torch.Tensor:
    """min of a . x + bias over the box (and over the L2 ball, keeping the larger bound)."""
    lower, upper = box
    centre = ((upper + lower) / 2).flatten(1)[:, None, :]
    radius = ((upper - lower) / 2).flatten(1)[:, None, :]
    flat = a.flatten(2)
    low = (flat * centre).sum(2) - (flat.abs() * radius).sum(2) + bias
    if ball is not None:
        x, eps = ball
        at = (flat * x.flatten(1)[:, None, :]).sum(2) - eps * flat.norm(dim=2) + bias
        low = torch.maximum(low, at)
    return low
