"""Occlusion sweeps: a unit's activation for every position of a square patch over an image.

The patch is filled with the mean colour of the pixels it covers (quantized to 8 bits, so a saved
PNG is exactly the image that was measured). One sweep measures every channel of a layer at once.
The exact sweep evaluates all positions in batches, through an inference copy of the network that
stops at the layer and, where the model allows, recomputes its early stages only around the patch
(`vizprobe.incremental`); the fast search evaluates a coarse grid and every fine position around
the best and worst coarse candidates, with far fewer forward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vizprobe.device import default_batch_size
from vizprobe.errors import VizprobeError
from vizprobe.incremental import IncrementalChain, ceil_to
from vizprobe.models import LoadedModel
from vizprobe.models.optimize import ChannelMeans, checked_inference_copy, compile_or_eager


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


@dataclass
class OcclusionMap:
    """Activations (channels, ny, nx) for patch offsets `ys` x `xs`; `base` is the unoccluded activation."""

    activations: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    patch: int
    channels: list[int]
    base: np.ndarray

    def channel(self, channel: int) -> np.ndarray:
        return self.activations[self.channels.index(channel)]

    def extreme(self, channel: int, highest: bool) -> tuple[int, int, float]:
        """(y0, x0, activation) of the position with the highest (or lowest) activation; first on ties."""
        values = self.channel(channel)
        flat = int(np.argmax(values) if highest else np.argmin(values))
        iy, ix = divmod(flat, values.shape[1])
        return int(self.ys[iy]), int(self.xs[ix]), float(values[iy, ix])


@dataclass
class SearchResult:
    """Extreme positions per channel found by the fast search, and how many images it evaluated."""

    best: dict[int, tuple[int, int, float]]
    worst: dict[int, tuple[int, int, float]]
    evaluations: int


class Occluder:
    """Measures occluded copies of images on one layer of a model, in batches.

    The network is an inference copy (batch norms folded) cut after `layer`, in channels-last on
    the CPU; `compile=True` adds `torch.compile`, which pays off over a few thousand images. Where
    the model is a chain of local stages (`ModelSpec.chain`) and `layer` ends one, the early stages
    are recomputed only around the patch (`vizprobe.incremental`; `incremental=False` turns it off).
    """

    def __init__(
        self,
        model: LoadedModel,
        layer: str,
        *,
        batch_size: int | None = None,
        optimize: bool = True,
        compile: bool = False,
        incremental: bool = True,
    ):
        self.model = model
        self.info = model.layer(layer)
        self.batch_size = batch_size or (2 * default_batch_size(model.device))
        net = model.net
        if optimize:
            net = checked_inference_copy(net, [self.info.path], model.preprocessing.crop, model.device)
        self.channels_last = model.device.type == "cpu"
        if self.channels_last and optimize:  # only our own copy: never change the caller's network
            net = net.to(memory_format=torch.channels_last)
        self.forward: torch.nn.Module = ChannelMeans(net, [self.info.path])
        self.compiled = False
        self._stages = self._chain_to_layer(net) if incremental and optimize else None
        self._chains: dict[int, tuple[IncrementalChain, Callable]] = {}
        self._compile = compile
        if compile:
            size = model.preprocessing.crop
            example = torch.zeros(self.batch_size, 3, size, size, device=model.device)
            self.forward, self.compiled = compile_or_eager(self.forward, self._prepare(example))

    def _chain_to_layer(self, net: torch.nn.Module) -> list | None:
        """The model's stages up to the one that outputs the layer, or None (no chain, or not a stage)."""
        chain = self.model.spec.chain(net) if self.model.spec.chain else []
        paths = [path for path, _ in chain]
        return chain[: paths.index(self.info.path) + 1] if self.info.path in paths else None

    def incremental_chain(self, patch: int) -> IncrementalChain | None:
        """The windowed computation for this patch size, or None where nothing would be saved."""
        return self._incremental(patch)[0]

    def _incremental(self, patch: int) -> tuple[IncrementalChain | None, Callable | None]:
        """The chain for this patch size and the callable that runs it (compiled where asked)."""
        if self._stages is None:
            return None, None
        if patch not in self._chains:
            size = self.model.preprocessing.crop
            probe = self._prepare(torch.zeros(1, 3, size, size, device=self.model.device))
            chain = IncrementalChain(self._stages, patch, probe, self.channels_last)
            call = chain
            if self._compile and chain.windowed:  # one static shape: full batches of positions
                generator = torch.Generator().manual_seed(0)
                image = torch.rand(3, size, size, generator=generator).to(self.model.device)
                at = torch.randint(0, size - patch + 1, (self.batch_size, 2), generator=generator)
                at = at.to(self.model.device)
                with torch.inference_mode():
                    clean = chain.clean_maps(self._prepare(image[None]))
                    example = (self._prepare(occlude(image, at, patch)), at, clean)
                call, _ = compile_or_eager(chain, *example)
            self._chains[patch] = (chain, call)
        chain, call = self._chains[patch]
        return (chain, call) if chain.windowed else (None, None)

    def _full_batch(self, batch: torch.Tensor, *more: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`batch` (and `more`) padded with copies of their first row to the compiled batch size."""
        missing = self.batch_size - len(batch)
        return tuple(torch.cat([t, t[:1].expand(missing, *t.shape[1:])]) for t in (batch, *more))

    def _prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        batch = self.model.preprocessing.normalize(pixels)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    @torch.inference_mode()
    def activations(
        self, image: torch.Tensor, positions: torch.Tensor, patch: int, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N, C) activations of every channel of the layer for the image occluded at each position
        (or, with `source`, for `image` with the patch taken from `source`; see `occlude`)."""
        image = image.to(self.model.device)
        square = image.shape[-2] == image.shape[-1] == self.model.preprocessing.crop
        chain, call = self._incremental(patch) if square else (None, None)
        clean = chain.clean_maps(self._prepare(image[None])) if chain else None
        out = []
        for start in range(0, len(positions), self.batch_size):
            chunk = positions[start : start + self.batch_size]
            batch = occlude(image, chunk, patch, source)
            if chain is not None:
                at = chunk.to(device=self.model.device, dtype=torch.long)
                if call is not chain and len(chunk) < self.batch_size:  # the compiled call's one shape
                    batch, at = self._full_batch(batch, at)
                values = call(self._prepare(batch), at, clean)
            else:
                if self.compiled and len(chunk) < self.batch_size:  # one static shape
                    (batch,) = self._full_batch(batch)
                values = self.forward(self._prepare(batch))[0]
            out.append(values[: len(chunk)].float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.info.channels)

    @torch.inference_mode()
    def base(self, image: torch.Tensor) -> torch.Tensor:
        """(C,) activations of the unoccluded image."""
        batch = image[None].to(self.model.device)
        if self.compiled:
            batch = batch.expand(self.batch_size, -1, -1, -1)
        return self.forward(self._prepare(batch))[0][0].float().cpu()

    def sweep(self, image: torch.Tensor, channels: list[int], patch_frac: float = 0.4, stride: int = 2) -> OcclusionMap:
        """Exact: every position of the stride grid."""
        _, h, w = image.shape
        patch = patch_size(min(h, w), patch_frac)
        ys, xs = grid(h, patch, stride), grid(w, patch, stride)
        positions = torch.cartesian_prod(torch.from_numpy(ys), torch.from_numpy(xs))
        acts = self.activations(image, positions, patch)[:, channels]  # (ny*nx, U)
        maps = acts.T.reshape(len(channels), len(ys), len(xs)).numpy()
        return OcclusionMap(maps, ys, xs, patch, list(channels), self.base(image)[channels].numpy())

    def search(
        self,
        image: torch.Tensor,
        channels: list[int],
        patch_frac: float = 0.4,
        stride: int = 2,
        coarse: int = 8,
        candidates: int = 8,
        radius: int | None = None,
        source: torch.Tensor | None = None,
        extremes: str = "both",
    ) -> SearchResult:
        """Fast: see `coarse_to_fine`; a few hundred positions per channel instead of 4624 (stride 2)."""
        _, h, w = image.shape
        patch = patch_size(min(h, w), patch_frac)
        ys, xs = grid(h, patch, stride), grid(w, patch, stride)

        def evaluate(points: list[tuple[int, int]]) -> torch.Tensor:
            return self.activations(image, torch.tensor(points), patch, source)

        return coarse_to_fine(
            evaluate, ys, xs, channels, coarse=coarse, candidates=candidates, radius=radius, extremes=extremes
        )


def coarse_to_fine(
    evaluate,
    ys: np.ndarray,
    xs: np.ndarray,
    channels: list[int],
    coarse: int = 8,
    candidates: int = 8,
    radius: int | None = None,
    extremes: str = "both",
) -> SearchResult:
    """Extreme positions of each channel's occlusion map without measuring the whole map.

    `evaluate(points)` returns (N, C) activations for (y0, x0) points of the fine grid `ys` x `xs`.
    Measures a coarse grid (every `coarse` px, edges included), then every fine position within
    `radius` px of the `candidates` highest and lowest coarse points of each channel, and returns
    the best measured. The default radius is half the coarse spacing rounded up to the fine grid, so
    that a candidate's window reaches its neighbours' windows at any stride. Occlusion maps are
    smooth at the scale of a 90 px patch, which is what makes this work (its hit rate is measured
    in benchmarks/occlusion.py). `extremes="best"` (or `"worst"`) refines only around the highest
    (lowest) candidates, for callers that need one side; the other side is then the coarse one.
    """
    if extremes not in ("both", "best", "worst"):
        raise VizprobeError(f"extremes={extremes!r}: use both, best or worst")
    fine = {(int(y), int(x)) for y in ys for x in xs}
    ystep = int(ys[1] - ys[0]) if len(ys) > 1 else 1
    coarse = max(ystep, coarse - coarse % ystep)
    if radius is None:
        radius = ceil_to(coarse // 2, ystep)
    cy = np.unique(np.append(ys[:: coarse // ystep], ys[-1]))
    cx = np.unique(np.append(xs[:: coarse // ystep], xs[-1]))
    seen: dict[tuple[int, int], torch.Tensor] = {}

    def measure(points) -> None:
        new = sorted({p for p in points if p not in seen})
        if new:
            for p, row in zip(new, evaluate(new), strict=True):
                seen[p] = row

    measure((int(y), int(x)) for y in cy for x in cx)
    offsets = range(-radius, radius + 1)
    wanted = set()
    for c in channels:
        ranked = sorted(seen, key=lambda p, c=c: (float(seen[p][c]), p))
        chosen = (ranked[:candidates] if extremes != "best" else []) + (
            ranked[-candidates:] if extremes != "worst" else []
        )
        for y, x in chosen:
            wanted |= {(y + dy, x + dx) for dy in offsets for dx in offsets} & fine
    measure(wanted)
    best = {}
    worst = {}
    for c in channels:
        # Ties go to the first position in (y0, x0) order, as in OcclusionMap.extreme.
        hi = max(seen, key=lambda p, c=c: (float(seen[p][c]), -p[0], -p[1]))
        lo = min(seen, key=lambda p, c=c: (float(seen[p][c]), p[0], p[1]))
        best[c] = (*hi, float(seen[hi][c]))
        worst[c] = (*lo, float(seen[lo][c]))
    return SearchResult(best, worst, len(seen))
