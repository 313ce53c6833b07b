"""Square occlusion patches: their size, the grid of their offsets, and occluded copies of an image.

The patch is filled with the mean colour of the pixels it covers (quantized to 8 bits, so a saved
PNG is exactly the image that was measured).
"""

from __future__ import annotations

import numpy as np
import torch

from vizprobe.errors import VizprobeError


def patch_size(image_size: int, frac: float = 0.4) -> int:
    """Side of the square patch in pixels (the paper: 40 % of 224 px = 90 px)."""
    size = int(round(frac * image_size))
    if not 0 < size <= image_size:
        raise VizprobeError(
            f"patch fraction {frac} gives a {size} px patch on a {image_size} px image; use 0 < frac <= 1"
        )
    return size


def grid(image_size: int, patch: int, stride: int) -> np.ndarray:
    """Top-left offsets along one axis: 0, stride, ... up to image_size - patch (the paper: 68 of them)."""
    if patch > image_size:
        raise VizprobeError(f"patch of {patch} px does not fit in a {image_size} px image; lower --patch-frac")
    return np.arange(0, image_size - patch + 1, stride)


def patch_means(image: torch.Tensor, positions: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, 3) mean colour under each patch (positions (N, 2) as (y0, x0)), by an integral image."""
    c, h, w = image.shape
    integral = torch.zeros(c, h + 1, w + 1, dtype=torch.float64, device=image.device)
    integral[:, 1:, 1:] = image.double().cumsum(1).cumsum(2)
    y0, x0 = positions[:, 0], positions[:, 1]
    y1, x1 = y0 + patch, x0 + patch
    total = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]
    return (total / (patch * patch)).T.float()


def occlude(
    image: torch.Tensor, positions: torch.Tensor, patch: int, source: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, 3, H, W): `image` (3, H, W) in [0, 1] with the patch at each position filled by its mean
    colour, or, given `source` (3, H, W), by the pixels of `source` there (a "retention" image)."""
    positions = positions.to(image.device)
    if source is not None:
        fill = source.to(image.device)[None]
    else:
        fill = (torch.round(patch_means(image, positions, patch) * 255) / 255)[:, :, None, None]  # 8-bit exact
    _, h, w = image.shape
    rows = torch.arange(h, device=image.device)
    cols = torch.arange(w, device=image.device)
    inside_y = (rows[None] >= positions[:, :1]) & (rows[None] < positions[:, :1] + patch)  # (N, H)
    inside_x = (cols[None] >= positions[:, 1:]) & (cols[None] < positions[:, 1:] + patch)  # (N, W)
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]  # (N, 1, H, W)
    return torch.where(mask, fill, image[None])
