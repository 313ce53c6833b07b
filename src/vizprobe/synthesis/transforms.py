"""Random transforms applied before every step, each image with its own randomness.

Plain torch, batched: a transform is a callable `(images, rng, step) -> images`. Jitter, scale and
rotation are affine resamplings with one matrix per image, so a batch of any size costs one
`grid_sample`. Scaling keeps the image size (a zoom about the centre), which is what lets images of
different units share a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from vizprobe.synthesis.rng import ImageRNG

Transform = Callable[[torch.Tensor, ImageRNG, int], torch.Tensor]


def _affine(images: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    grid = F.affine_grid(theta.to(images), [images.shape[0], images.shape[1], *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def pad(width: int, value: float | None = 0.5) -> Transform:
    """Pad every side by `width` pixels with a constant (lucid: 0.5 grey), or reflect if value is None."""

    def apply(images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        if value is None:
            return F.pad(images, (width,) * 4, mode="reflect")
        return F.pad(images, (width,) * 4, mode="constant", value=value)

    return apply


def jitter(d: int) -> Transform:
    """Crop each image by `d` pixels at a random integer offset (lucid's jitter)."""

    def apply(images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        b, _, h, w = images.shape
        offsets = (rng.uniform(step, 0, 2) * (d + 1)).floor().clamp_max(d)  # (B, 2) in 0..d
        # Integer shifts of a crop, expressed in grid_sample's normalized coordinates: exact, no blur.
        oh, ow = h - d, w - d
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = ow / w
        theta[:, 1, 1] = oh / h
        theta[:, 0, 2] = (2 * offsets[:, 0] + ow - w) / w
        theta[:, 1, 2] = (2 * offsets[:, 1] + oh - h) / h
        return _affine(images, theta, (oh, ow))

    return apply


def random_scale(scales: Sequence[float]) -> Transform:
    """Zoom each image about its centre by a factor drawn from `scales`, keeping its size."""
    options = [float(s) for s in scales]

    def apply(images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        factor = rng.choice(step, 0, options)
        theta = torch.zeros(images.shape[0], 2, 3)
        theta[:, 0, 0] = 1 / factor
        theta[:, 1, 1] = 1 / factor
        return _affine(images, theta, tuple(images.shape[-2:]))

    return apply


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Rotate each image about its centre by an angle (degrees) drawn from `degrees`."""
    options = [float(a) for a in degrees]

    def apply(images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        angle = rng.choice(step, 0, options) * math.pi / 180
        theta = torch.zeros(images.shape[0], 2, 3)
        theta[:, 0, 0] = torch.cos(angle)
        theta[:, 0, 1] = -torch.sin(angle)
        theta[:, 1, 0] = torch.sin(angle)
        theta[:, 1, 1] = torch.cos(angle)
        return _affine(images, theta, tuple(images.shape[-2:]))

    return apply


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply in order; the k-th transform draws from its own random stream `rng.fork(k)`."""

    def apply(images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        for k, transform in enumerate(transforms):
            images = transform(images, rng.fork(k + 1), step)
        return images

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
