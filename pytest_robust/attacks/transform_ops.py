"""Natural transformations of image batches, in torch: batched, per-sample, differentiable.

A transformation is a row of PARAMS numbers (one row per image), applied in this order:

- rotate (degrees, positive = counter-clockwise as displayed), scale (zoom by 1 + scale)
  and translate_x / translate_y (pixels, positive = right / down), about the image centre,
  by one `affine_grid` + bilinear `grid_sample`; pixels moved in from outside the image
  take the lower bound (0 for inputs in [0, 1]: black background);
- blur: a Gaussian of that standard deviation in pixels (0 = none), as a separable
  convolution with replicated borders;
- contrast: (x - mean) * (1 + contrast) + mean, the mean per image;
- brightness: x + brightness;
- noise: x + noise * z, z standard normal, keyed by (seed, sample index), so the same
  sample gets the same noise pattern on every run and in every batch;

and the result is clipped to `bounds`. Inputs are (N, C, H, W) images; brightness,
contrast and noise also take inputs of any other shape. Everything is
differentiable in the parameters except the clipping at the bounds (and blur near 0, where
the Gaussian is flat), which is what a gradient search over transformations needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pytest_robust.attacks.sampling import normal
from pytest_robust.attacks.threat import per_sample

PARAMS = (
    "rotate",
    "translate_x",
    "translate_y",
    "scale",
    "brightness",
    "contrast",
    "blur",
    "noise",
)
ROTATE, TX, TY, SCALE, BRIGHTNESS, CONTRAST, BLUR, NOISE = range(len(PARAMS))
ONE_SIDED = frozenset({BLUR, NOISE})  # these range over [0, max], the others [-max, max]
SPATIAL = [ROTATE, TX, TY, SCALE, BLUR]  # these need images; the others take any shape
NOISE_STREAM = 104729  # the noise pattern's stream in attacks.sampling


def identity(n: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.Tensor:
    """n rows of identity parameters."""
    return torch.zeros(n, len(PARAMS), dtype=dtype, device=device)


def apply(
    x: torch.Tensor,
    params: torch.Tensor,
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    sample_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Transform each image x[i] by the parameters params[i] (shape (N, len(PARAMS)))."""
    if params.shape != (len(x), len(PARAMS)):
        raise ValueError(f"params must have shape ({len(x)}, {len(PARAMS)})")
    params = params.to(dtype=x.dtype, device=x.device)
    low, high = bounds
    tracking = params.requires_grad
    image = x.dim() == 4
    if not image and bool((params[:, SPATIAL] != 0).any()):
        raise ValueError(
            f"rotate, translate, scale and blur need images (N, C, H, W), got {tuple(x.shape)}"
        )
    out = x
    if image and (tracking or bool((params[:, [ROTATE, TX, TY, SCALE]] != 0).any())):
        out = _affine(out, params, low)
    if image and (tracking or bool((params[:, BLUR] > 0).any())):
        out = _blur(out, params[:, BLUR])
    if tracking or bool((params[:, CONTRAST] != 0).any()):
        mean = out.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        out = (out - mean) * per_sample(1 + params[:, CONTRAST], x) + mean
    out = out + per_sample(params[:, BRIGHTNESS], x)
    if tracking or bool((params[:, NOISE] != 0).any()):
        ids = sample_ids if sample_ids is not None else torch.arange(len(x), device=x.device)
        z = normal(seed, ids, x.shape, NOISE_STREAM, x.dtype).to(x.device)
        out = out + per_sample(params[:, NOISE], x) * z
    return out.clamp(low, high)


def _affine(x: torch.Tensor, params: torch.Tensor, low: float) -> torch.Tensor:
    """Rotate, scale and translate about the centre, in pixel units (square pixels also on
    non-square images: the matrix is built in pixels and conjugated to grid units)."""
    _, _, h, w = x.shape
    angle = params[:, ROTATE] * (math.pi / 180)
    zoom = 1 + params[:, SCALE]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # Output pixel p samples the input at A (p - t), A = R(-angle) / zoom in display
    # coordinates (y down); grid units are pixels * (2 / W, 2 / H) (align_corners=False).
    a00, a01, a10, a11 = cos, -sin * (h / w), sin * (w / h), cos
    tx, ty = params[:, TX] * (2 / w), params[:, TY] * (2 / h)
    row0 = torch.stack([a00, a01, -(a00 * tx + a01 * ty)], dim=1)
    row1 = torch.stack([a10, a11, -(a10 * tx + a11 * ty)], dim=1)
    theta = torch.stack([row0, row1], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x - low, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved + low


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur of standard deviation sigma[i] pixels (0 leaves it as is)."""
    n, c, h, w = x.shape
    radius = max(1, math.ceil(3 * float(sigma.detach().max())))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.clamp_min(1e-3).view(-1, 1)
    kernel = torch.exp(-(t**2) / (2 * s**2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    flat = x.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, -1), groups=n * c)
    flat = F.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return flat.reshape(n, c, h, w)


def maxima(ranges: dict[str, float]) -> torch.Tensor:
    """The largest magnitude of each parameter (0 = not used), in PARAMS order.
    `ranges` uses the marker's names: translate covers both translate_x and translate_y."""
    values = [float(ranges.get(name, 0.0)) for name in PARAMS]
    translate = float(ranges.get("translate", 0.0))
    values[TX] = values[TX] or translate
    values[TY] = values[TY] or translate
    return torch.tensor(values, dtype=torch.float64)


def sizes(params: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """How far each row is from the identity: the L2 norm of the parameters, each divided
    by its largest allowed magnitude (parameters not in use count 0)."""
    scale = torch.where(top > 0, top, torch.ones_like(top)).to(params)
    return (params / scale).pow(2).sum(dim=-1).sqrt()


def inside(params: torch.Tensor, top: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """Per row: within the allowed ranges (one-sided ones not negative)."""
    top = top.to(params)
    low = -top.clone()
    for j in ONE_SIDED:
        low[j] = 0.0
    return ((params >= low - tol) & (params <= top + tol)).all(dim=-1)


def grid(top: torch.Tensor, points: int) -> torch.Tensor:
    """Every combination of evenly spaced values of the parameters in use, smallest first
    (by `sizes`), without the identity. Translations step by whole pixels where the range
    is a whole number; other ranges get `points` values (one-sided ones points // 2 + 1)."""
    axes = []
    for j, value in enumerate(top.tolist()):
        if value <= 0:
            axes.append(torch.zeros(1, dtype=torch.float64))
        elif j in (TX, TY) and float(value).is_integer():
            axes.append(torch.arange(-value, value + 1, dtype=torch.float64))
        elif j in ONE_SIDED:
            axes.append(torch.linspace(0, value, points // 2 + 1, dtype=torch.float64))
        else:
            axes.append(torch.linspace(-value, value, points, dtype=torch.float64))
    combos = torch.cartesian_prod(*axes).reshape(-1, len(PARAMS))
    combos = combos[(combos != 0).any(dim=1)]
    order = torch.sort(sizes(combos, top), stable=True).indices
    return combos[order]


def describe(row: list[float], digits: int | None = 6) -> dict[str, float]:
    """The parameters of one transformation that are not at the identity, rounded to
    `digits` decimals (None: exact, for replaying)."""
    return {
        name: (v if digits is None else round(v, digits))
        for name, v in zip(PARAMS, row, strict=True)
        if v != 0
    }
