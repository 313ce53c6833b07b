"""Incremental occlusion inference: recompute only the part of each feature map that a patch changes.

An occluding patch changes the input only under the patch, and a convolution spreads that change by
its kernel, so the early, expensive high-resolution stages of a network need to be recomputed only
in a window around the patch (the idea of Krypton, Nakandala et al. 2019). Each stage runs on a
window of its input that is the unoccluded image's features with the previous stage's recomputed
window pasted in; windows have one size per stage (shifted, never shrunk, at the image border), so a
batch of positions stays one tensor. Once a window would cover the whole map, the remaining stages
run on whole maps. A layer's spatial mean then needs only the window: the clean map's sum outside it
plus the window's sum. The result equals the full computation up to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Stage = tuple[str, nn.Module]


@dataclass(frozen=True)
class Geometry:
    """How a stage maps rows: output j reads only input rows within `reach` of j * stride (a bound)."""

    stride: int
    reach: int
    in_side: int
    out_side: int


def conv_reach(module: nn.Module) -> int:
    """A bound on how far (in input rows) the convolutions in `module` look around an output row."""
    reach, jump = 0, 1
    for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d)):
        reach += (conv.kernel_size[0] - 1) * jump  # not half: any padding split, e.g. TF "same" (0, 1)
        jump *= conv.stride[0]
    return max(reach, 1)


def ceil_to(value: int, step: int) -> int:
    """The smallest multiple of `step` that is >= `value`."""
    return -(-value // step) * step


@dataclass(frozen=True)
class Window:
    """A stage's window sides: its input window and the output window kept from it."""

    in_side: int
    out_side: int


def plan_windows(geometry: list[Geometry], patch: int, max_fraction: float = 0.85) -> list[Window]:
    """Windows for the leading stages, as long as each is clearly smaller than its map."""
    windows, changed = [], patch
    for g in geometry:
        out_side = -(-(changed + 2 * g.reach) // g.stride) + 2  # every output that can see a changed row
        in_side = ceil_to((out_side - 1) * g.stride + 1 + 2 * ceil_to(g.reach, g.stride), g.stride)
        aligned = (g.in_side - in_side) % g.stride == 0 and g.in_side == g.out_side * g.stride
        if not (aligned and in_side <= max_fraction * g.in_side and out_side < g.out_side):
            break
        windows.append(Window(in_side, out_side))
        changed = out_side
    return windows


def _gather(maps: torch.Tensor, starts: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, side, side) windows of `maps` ((1 or N), C, H, W) at per-sample (y, x) `starts`."""
    offsets = torch.arange(side, device=maps.device)
    rows = (starts[:, 0:1] + offsets)[:, :, None]  # (N, side, 1)
    cols = (starts[:, 1:2] + offsets)[:, None, :]  # (N, 1, side)
    if maps.shape[0] == 1:
        return maps[0][:, rows, cols].permute(1, 0, 2, 3)  # (C, N, s, s) -> (N, C, s, s)
    index = torch.arange(len(starts), device=maps.device)[:, None, None]
    return maps[index, :, rows, cols].permute(0, 3, 1, 2)


def _paste(base: torch.Tensor, window: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """`base` (N, C, S, S) with `window` (N, C, w, w) written at per-sample offsets `at` (may be partly outside)."""
    n, _, side, _ = base.shape
    w = window.shape[-1]
    offsets = torch.arange(side, device=base.device)
    rel_r = offsets[None] - at[:, 0:1]  # (N, S)
    rel_c = offsets[None] - at[:, 1:2]
    inside = ((rel_r >= 0) & (rel_r < w))[:, :, None] & ((rel_c >= 0) & (rel_c < w))[:, None, :]
    index = torch.arange(n, device=base.device)[:, None, None]
    picked = window[index, :, rel_r.clamp(0, w - 1)[:, :, None], rel_c.clamp(0, w - 1)[:, None, :]]
    return torch.where(inside[:, None], picked.permute(0, 3, 1, 2), base)


class IncrementalChain:
    """Spatial-mean activations of a chain's last stage for many occluded copies of one image.

    `stages` run one after the other (each the module whose output feeds the next); `probe` is a
    preprocessed (1, 3, H, W) image that fixes the map sides. `view`, a map of every position's channels
    (a unit's directions, `vizprobe.units.Directions.apply`), applies to the last stage's output before the mean.
    """

    def __init__(
        self,
        stages: list[Stage],
        patch: int,
        probe: torch.Tensor,
        channels_last: bool = False,
        view: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.stages = stages
        self.channels_last = channels_last
        self.view = view or (lambda maps: maps)
        self.geometry = []
        x = probe
        with torch.inference_mode():
            for _, stage in stages:
                y = stage(x)
                side, out = x.shape[-1], y.shape[-1]
                self.geometry.append(Geometry(side // out, conv_reach(stage), side, out))
                x = y
        self.windows = plan_windows(self.geometry, patch)

    @property
    def windowed(self) -> int:
        """How many leading stages run on windows."""
        return len(self.windows)

    def clean_maps(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(1, C, H, W) output of every stage for the unoccluded, preprocessed image (1, 3, H, W)."""
        maps, x = [], self._layout(image)
        for _, fn in self.stages:
            x = fn(x)
            maps.append(x)
        return maps

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def _starts(self, changed: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: where stage `k`'s input window and kept output window start, for a changed
        square starting at `changed` (its side is the previous window's)."""
        g, w = self.geometry[k], self.windows[k]
        out_start = torch.div(changed - g.reach, g.stride, rounding_mode="floor").clamp(0, g.out_side - w.out_side)
        in_start = (out_start * g.stride - ceil_to(g.reach, g.stride)).clamp(0, g.in_side - w.in_side)
        return in_start, out_start

    def __call__(self, images: torch.Tensor, patch_starts: torch.Tensor, clean: list[torch.Tensor]) -> torch.Tensor:
        """(N, C) spatial means of the last stage; `images` (N, 3, H, W) preprocessed, occluded at
        `patch_starts` (N, 2) (y0, x0) with this chain's patch; `clean` from `clean_maps`."""
        window, at = images, torch.zeros_like(patch_starts)
        changed = patch_starts
        for k, w in enumerate(self.windows):
            in_start, out_start = self._starts(changed, k)
            if k == 0:
                x = _gather(images, in_start, w.in_side)
            else:
                x = _paste(_gather(clean[k - 1], in_start, w.in_side), window, at - in_start)
            y = self.stages[k][1](self._layout(x))
            kept = out_start - torch.div(in_start, self.geometry[k].stride, rounding_mode="floor")
            window = _gather(y, kept, w.out_side)
            at = changed = out_start
        last = len(self.stages) - 1
        if self.windowed > last:  # the last stage is windowed too: clean sum outside the window + its sum
            full = self.view(clean[last])
            outside = full.sum(dim=(2, 3)) - _gather(full, at, window.shape[-1]).sum(dim=(2, 3))
            return (outside + self.view(window).sum(dim=(2, 3))) / (full.shape[2] * full.shape[3])
        x = images
        if self.windowed:
            x = _paste(clean[self.windowed - 1].expand(len(images), -1, -1, -1), window, at)
        for _, fn in self.stages[self.windowed :]:
            x = fn(self._layout(x))
        return self.view(x).mean(dim=(2, 3))
