"""Closed-form checks of the torch transformations (pytest_robust.attacks.transform_ops)."""

from __future__ import annotations

import pytest
import torch

import pytest_robust.attacks.transform_ops as T


def params(n: int, **values: float) -> torch.Tensor:
    p = T.identity(n)
    for name, value in values.items():
        p[:, T.PARAMS.index(name)] = value
    return p


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 2, 7, 9, generator=torch.Generator().manual_seed(0))


def test_the_identity_changes_nothing(images: torch.Tensor) -> None:
    assert torch.equal(T.apply(images, T.identity(3)), images)
    # Through the warp too (a rotation by 0 degrees is still a grid_sample).
    warped = T.apply(images, params(3, rotate=0.0).requires_grad_(True))
    assert torch.allclose(warped, images, atol=1e-6)


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (-1, 0), (0, 1), (0, -1), (2, -1)])
def test_a_whole_pixel_shift_is_torch_roll_on_the_interior(
    images: torch.Tensor, dx: int, dy: int
) -> None:
    shifted = T.apply(images, params(3, translate_x=dx, translate_y=dy))
    rolled = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
    h, w = images.shape[2:]
    rows = slice(max(dy, 0), h + min(dy, 0))
    cols = slice(max(dx, 0), w + min(dx, 0))
    assert torch.allclose(shifted[..., rows, cols], rolled[..., rows, cols], atol=1e-6)
    # What moved in from outside the image is the lower bound.
    outside = torch.ones_like(shifted, dtype=torch.bool)
    outside[..., rows, cols] = False
    assert torch.all(shifted[outside] == 0)


def test_moved_in_pixels_take_the_lower_bound() -> None:
    x = torch.full((1, 1, 4, 4), 0.5)
    shifted = T.apply(x, params(1, translate_x=1), bounds=(-1.0, 1.0))
    assert torch.all(shifted[..., 0] == -1.0) and torch.allclose(shifted[..., 1:], x[..., 1:])


def test_a_quarter_turn_is_rot90_counter_clockwise() -> None:
    x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    turned = T.apply(x, params(2, rotate=90))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_brightness_adds_exactly_and_contrast_scales_about_the_mean() -> None:
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.25
    assert torch.equal(T.apply(x, params(2, brightness=0.125)), x + 0.125)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    expected = (x - mean) * 1.5 + mean
    assert torch.allclose(T.apply(x, params(2, contrast=0.5), bounds=(-9, 9)), expected)
    assert float(T.apply(x, params(2, brightness=1.0)).max()) == 1.0  # clipped to bounds


def test_blur_keeps_a_constant_image_and_spreads_a_point_symmetrically() -> None:
    flat = torch.full((1, 1, 6, 6), 0.3)
    assert torch.allclose(T.apply(flat, params(1, blur=1.0)), flat)
    point = torch.zeros(1, 1, 9, 9)
    point[..., 4, 4] = 1.0
    blurred = T.apply(point, params(1, blur=0.8))[0, 0]
    assert torch.allclose(blurred.sum(), torch.tensor(1.0), atol=1e-5)  # no mass lost
    assert torch.allclose(blurred, blurred.T) and torch.allclose(blurred, blurred.flip(0))
    assert float(blurred[4, 4]) == float(blurred.max()) < 1.0


def test_noise_depends_on_seed_and_sample_index_only() -> None:
    x = torch.full((4, 1, 3, 3), 0.5)
    ids = torch.tensor([7, 8, 9, 10])
    noisy = T.apply(x, params(4, noise=0.1), seed=3, sample_ids=ids)
    alone = T.apply(x[2:3], params(1, noise=0.1), seed=3, sample_ids=ids[2:3])
    assert torch.equal(noisy[2:3], alone)
    assert not torch.equal(noisy[0], noisy[1])
    other_seed = T.apply(x, params(4, noise=0.1), seed=4, sample_ids=ids)
    assert not torch.equal(noisy, other_seed)


def test_every_parameter_has_a_gradient() -> None:
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.6 + 0.2
    p = torch.full((2, len(T.PARAMS)), 0.1, requires_grad=True)
    weights = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    (T.apply(x, p) * weights).sum().backward()
    assert p.grad is not None and bool((p.grad.abs() > 0).all())


def test_spatial_transformations_need_images_but_the_others_do_not() -> None:
    x = torch.rand(3, 10)
    assert torch.equal(T.apply(x, params(3, brightness=0.0)), x)
    with pytest.raises(ValueError, match="need images"):
        T.apply(x, params(3, rotate=5))


def test_the_grid_starts_with_the_smallest_transformations() -> None:
    top = T.maxima({"translate": 2, "rotate": 10})
    grid = T.grid(top, 5)
    assert len(grid) == 5 * 5 * 5 - 1  # shifts -2..2 twice, 5 angles, no identity
    sizes = T.sizes(grid, top)
    assert bool((sizes[1:] >= sizes[:-1]).all())
    first = {tuple(row) for row in grid[:6].tolist()}  # the six of size 1/2
    assert (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0) in first
    assert (5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0) in first
    blur_only = T.grid(T.maxima({"blur": 1.0}), 5)
    assert blur_only[:, T.BLUR].tolist() == [0.5, 1.0]  # one-sided: no negative sigma
