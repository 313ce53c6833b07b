"""Occlusion sweeps: a unit's activation for every position of a square patch over an image.

One sweep measures every channel of a layer at once.
The exact sweep evaluates all positions in batches, through an inference copy of the network that
stops at the layer and, where the model allows, recomputes its early stages only around the patch
(`vizprobe.occlusion.incremental`); the fast search evaluates a coarse grid and every fine position around
the best and worst coarse candidates, with far fewer forward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vizprobe.device import default_batch_size, exact_convolutions
from vizprobe.models import LoadedModel
from vizprobe.models.optimize import ChannelMeans, checked_inference_copy, compile_or_eager
from vizprobe.occlusion.incremental import IncrementalChain
from vizprobe.occlusion.patches import grid, occlude, patch_size
from vizprobe.occlusion.search import SearchResult, coarse_to_fine
from vizprobe.units import split_layer


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


class Occluder:
    """Measures occluded copies of images on one layer of a model, in batches.

    The network is an inference copy (batch norms folded) cut after `layer`, in channels-last on
    the CPU; `compile=True` adds `torch.compile`, which pays off over a few thousand images. Where
    the model is a chain of local stages (`ModelSpec.chain`) and `layer` ends one, the early stages
    are recomputed only around the patch (`vizprobe.occlusion.incremental`; `incremental=False` turns it off).
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
        if self.channels_last and net is not model.net:  # only our own copy: never change the caller's network
            net = net.to(memory_format=torch.channels_last)
        self.forward: torch.nn.Module = ChannelMeans(net, [self.info.path], model.directions)
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
        base = split_layer(self.info.path)[0]  # a direction layer: its directions apply to the chain's output
        return chain[: paths.index(base) + 1] if base in paths else None

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
            name = split_layer(self.info.path)[1]
            view = self.model.directions[name].apply if name else None
            chain = IncrementalChain(self._stages, patch, probe, self.channels_last, view)
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

    @exact_convolutions()
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

    @exact_convolutions()
    @torch.inference_mode()
    def base(self, image: torch.Tensor) -> torch.Tensor:
        """(C,) activations of the unoccluded image."""
        batch = image[None].to(self.model.device)
        if self.compiled:
            batch = batch.expand(self.batch_size, -1, -1, -1)
        return self.forward(self._prepare(batch))[0][0].float().cpu()

    def sweep(
        self,
        image: torch.Tensor,
        channels: list[int],
        patch_frac: float = 0.4,
        stride: int = 2,
        source: torch.Tensor | None = None,
    ) -> OcclusionMap:
        """Exact: every position of the stride grid (with `source`, the patch is taken from it; see `occlude`)."""
        _, h, w = image.shape
        patch = patch_size(min(h, w), patch_frac)
        ys, xs = grid(h, patch, stride), grid(w, patch, stride)
        positions = torch.cartesian_prod(torch.from_numpy(ys), torch.from_numpy(xs))
        acts = self.activations(image, positions, patch, source)[:, channels]  # (ny*nx, U)
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
