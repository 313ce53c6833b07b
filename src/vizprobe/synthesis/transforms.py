"""Random transforms applied before every step, each image with its own randomness.

Plain torch, batched: a transform is a callable `(images, rng, step) -> images`. Jitter, scale and
rotation are `Affine` transforms: one matrix per image, so a batch of any size costs one
`grid_sample`, and `compose` multiplies the matrices of consecutive affine transforms so that a
whole jitter-scale-rotate-jitter chain is a single resampling (one bilinear interpolation instead
of four, a quarter of the resampling work; lucid resamples at every stage). Scaling keeps the
image size (a zoom about the centre), which is what lets images of different units share a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from vizprobe.synthesis.rng import ImageRNG

Transform = Callable[[torch.Tensor, ImageRNG, int], torch.Tensor]
Size = tuple[int, int]


def _pixel_to_grid(size: Size) -> torch.Tensor:
    """Pixel-centre coordinates (x, y, 1) -> grid_sample's normalized coordinates (align_corners=False)."""
    h, w = size
    return torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])


def _grid_to_pixel(size: Size) -> torch.Tensor:
    h, w = size
    return torch.tensor([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]])


def resample(images: torch.Tensor, matrices: torch.Tensor, size: Size) -> torch.Tensor:
    """Output pixel p of image i is input pixel `matrices[i] @ p` (bilinear, reflected at the borders)."""
    theta = (_pixel_to_grid(tuple(images.shape[-2:])) @ matrices @ _grid_to_pixel(size))[:, :2]
    grid = F.affine_grid(theta.to(images), [images.shape[0], images.shape[1], *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Affine:
    """A geometric transform as per-image matrices from output to input pixel coordinates."""

    def matrices(self, batch: int, size: Size, rng: ImageRNG, step: int) -> tuple[torch.Tensor, Size]:
        """(B, 3, 3) matrices and the output size, for inputs of `size`."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        matrices, size = self.matrices(images.shape[0], tuple(images.shape[-2:]), rng, step)
        return resample(images, matrices, size)


def _about_centre(linear: torch.Tensor, size: Size) -> torch.Tensor:
    """(B, 2, 2) linear maps -> (B, 3, 3) affine maps that keep the image centre fixed."""
    h, w = size
    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2])
    out = torch.eye(3).repeat(linear.shape[0], 1, 1)
    out[:, :2, :2] = linear
    out[:, :2, 2] = centre - linear @ centre
    return out


def pad(width: int, value: float | None = 0.5) -> Transform:
    """Pad every side by `width` pixels with a constant (lucid: 0.5 grey), or reflect if value is None."""

    def apply(images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        if value is None:
            return F.pad(images, (width,) * 4, mode="reflect")
        return F.pad(images, (width,) * 4, mode="constant", value=value)

    return apply


class jitter(Affine):  # noqa: N801 - a transform factory, named like the others
    """Crop each image by `d` pixels at a random integer offset (lucid's jitter): exact, no blur."""

    def __init__(self, d: int):
        self.d = d

    def matrices(self, batch, size, rng, step):
        offsets = (rng.uniform(step, 0, 2) * (self.d + 1)).floor().clamp_max(self.d)  # (B, 2) in 0..d
        out = torch.eye(3).repeat(batch, 1, 1)
        out[:, :2, 2] = offsets
        return out, (size[0] - self.d, size[1] - self.d)


class random_scale(Affine):  # noqa: N801
    """Zoom each image about its centre by a factor drawn from `scales`, keeping its size."""

    def __init__(self, scales: Sequence[float]):
        self.options = [float(s) for s in scales]

    def matrices(self, batch, size, rng, step):
        factor = rng.choice(step, 0, self.options)
        return _about_centre(torch.diag_embed((1 / factor)[:, None].expand(batch, 2)), size), size


class random_rotate(Affine):  # noqa: N801
    """Rotate each image about its centre by an angle (degrees) drawn from `degrees`."""

    def __init__(self, degrees: Sequence[float]):
        self.options = [float(a) for a in degrees]

    def matrices(self, batch, size, rng, step):
        angle = rng.choice(step, 0, self.options) * math.pi / 180
        cos, sin = torch.cos(angle), torch.sin(angle)
        linear = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        return _about_centre(linear, size), size


class CoarseToFine(Affine):
    """For the first `steps` steps the network sees the image at 1/`factor` of its size (a quarter of the
    pixels for 2), then at full size: the early steps, which settle the image's layout, cost less. An affine
    map, so it merges into the other geometric transforms' single resampling."""

    def __init__(self, steps: int, factor: float = 2.0):
        self.steps, self.factor = steps, factor

    def matrices(self, batch, size, rng, step):
        if step >= self.steps:
            return torch.eye(3).repeat(batch, 1, 1), size
        h, w = size
        out = (max(1, round(h / self.factor)), max(1, round(w / self.factor)))
        sy, sx = h / out[0], w / out[1]  # output pixel centre (x + 0.5) * s - 0.5 in the input
        scale = torch.tensor([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        return scale.repeat(batch, 1, 1), out


class BoxCrops:
    """`n` random square boxes of each image, each resampled to `out` px, with noise: the step of MACO
    (Horama's `optimization_step`) and of feature accentuation (faccent's `box_crop_2` and
    `uniform_gaussian_noise`). Image i's crops are rows i * n .. i * n + n - 1 of the output.

    Box sides are fractions of the image, uniform in `box`; `placement` "centred" puts centres at N(0.5, 0.15)
    (boxes may reach past the border, which reflects), "uniform" anywhere the box fits. Each box is sampled at
    twice `out` and average-pooled (an anti-aliased shrink, as Horama's double-size crop then resize). Noise is
    Gaussian plus uniform of std `noise`; channels beyond 3 (fixed companion images stacked on the channels)
    get the same noise as the first 3, as faccent gives its seed image the same noise.
    """

    def __init__(self, n: int, out: int, box: tuple[float, float], placement: str = "centred", noise: float = 0.0):
        self.n, self.out, self.box, self.placement, self.noise = n, out, box, placement, noise

    def matrices(self, batch: int, size: Size, rng: ImageRNG, step: int) -> torch.Tensor:
        """(B * n, 3, 3) maps from output pixels (of a 2 * out grid) to input pixels."""
        draws = rng.uniform(step, 0, 5 * self.n).reshape(batch * self.n, 5)
        low, high = self.box
        side = low + draws[:, 0] * (high - low)  # fraction of the image
        if self.placement == "centred":
            centre = 0.5 + 0.15 * torch.stack([_normal(draws[:, 1:3]), _normal(draws[:, 3:5])], -1)
        else:
            centre = side[:, None] / 2 + draws[:, 1:3] * (1 - side[:, None])
        h, w = size
        grid = 2 * self.out
        out = torch.zeros(batch * self.n, 3, 3)
        out[:, 0, 0], out[:, 1, 1] = side * w / grid, side * h / grid
        out[:, 0, 2] = (centre[:, 0] - side / 2) * w + 0.5 * side * w / grid - 0.5
        out[:, 1, 2] = (centre[:, 1] - side / 2) * h + 0.5 * side * h / grid - 0.5
        out[:, 2, 2] = 1
        return out

    def __call__(self, images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        batch, channels = images.shape[:2]
        matrices = self.matrices(batch, tuple(images.shape[-2:]), rng, step)
        crops = resample(images.repeat_interleave(self.n, dim=0), matrices, (2 * self.out, 2 * self.out))
        crops = F.avg_pool2d(crops, 2)
        if not self.noise:
            return crops
        shape = (self.n, 3, self.out, self.out)
        noise = torch.cat([_gaussian_plus_uniform(int(seed), shape) for seed in rng.fork(step).seeds]) * self.noise
        return crops + noise.repeat(1, channels // 3, 1, 1).to(crops)


def _normal(uniform: torch.Tensor) -> torch.Tensor:
    """Standard normal values from pairs of uniform ones (Box-Muller on the last axis, which must be 2)."""
    u1, u2 = uniform[..., 0].clamp_min(1e-12), uniform[..., 1]
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)


def _gaussian_plus_uniform(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """N(0, 1) + U(-0.5, 0.5) noise from a generator seeded per image and step (batch-independent, fast)."""
    generator = torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
    return torch.randn(shape, generator=generator) + torch.rand(shape, generator=generator) - 0.5


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply in order; the k-th transform draws from its own random stream `rng.fork(k)`.

    Runs of consecutive `Affine` transforms become one resampling with the product of their matrices.
    """

    def apply(images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        pending: torch.Tensor | None = None
        size: Size = tuple(images.shape[-2:])
        for k, transform in enumerate(transforms):
            stream = rng.fork(k + 1)
            if isinstance(transform, Affine):
                matrices, size = transform.matrices(images.shape[0], size, stream, step)
                pending = matrices if pending is None else pending @ matrices
                continue
            if pending is not None:
                images, pending = resample(images, pending, size), None
            images = transform(images, stream, step)
            size = tuple(images.shape[-2:])
        return images if pending is None else resample(images, pending, size)

    return apply


def standard() -> list[Transform]:
    """lucid's `standard_transforms`."""
    return [
        pad(12),
        jitter(8),
        random_scale([1 + (i - 5) / 50 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    ]


def paper() -> list[Transform]:
    """The transforms of Zimmermann et al. 2021 (and Borowski et al. 2021)."""
    return [
        pad(16),
        jitter(16),
        random_scale([1, 0.975, 1.025, 0.95, 1.05]),
        random_rotate(list(range(-5, 6))),
        jitter(8),
    ]


PRESETS: dict[str, Callable[[], list[Transform]]] = {"standard": standard, "paper": paper, "none": list}
