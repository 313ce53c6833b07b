"""The observers' perceptual feature space: pooled intermediate features of a network other than the studied one.

A feature visualization is made to drive its unit, so in the studied network's own feature space it looks like
whatever keeps the unit active: an observer embedding with that network reads the answer off the unit instead of
seeing what a person sees. So the observers embed with another registered network, by default EfficientNet-Lite2
(EfficientNet-Lite0 when Lite2 is the studied network), and refuse the studied one unless asked explicitly
(`same_as_model=True`, then every output marks its numbers as reading the unit).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vizprobe.device import default_batch_size, resolve_device
from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb
from vizprobe.models import get_spec, list_models, load_model

DEFAULT_EMBEDDER = "efficientnet-lite2"
FALLBACK_EMBEDDER = "efficientnet-lite0"  # when the studied network is the default embedder itself


@dataclass(frozen=True)
class EmbedderChoice:
    """Which network embeds the observers' images, at which layers (empty: the network's defaults)."""

    model: str
    layers: tuple[str, ...] = ()
    weights: str | None = None
    same_as_model: bool = False  # the studied network itself: its numbers read the unit

    @classmethod
    def parse(cls, text: str, weights: str | None = None) -> EmbedderChoice:
        """`MODEL` or `MODEL:LAYER,LAYER` (layer paths or aliases)."""
        model, _, layers = text.strip().partition(":")
        return cls(model.strip(), tuple(x.strip() for x in layers.split(",") if x.strip()), weights)


def choose_embedder(
    studied_model: str | None,
    embedder: str | EmbedderChoice | None = None,
    same_as_model: bool = False,
    weights: str | None = None,
) -> EmbedderChoice:
    """The embedding network for judging units of `studied_model`: the given one, checked, or the default.

    An unknown name lists the models; the studied network itself is refused unless `same_as_model`."""
    if embedder is None:
        name = FALLBACK_EMBEDDER if studied_model == DEFAULT_EMBEDDER else DEFAULT_EMBEDDER
        choice = EmbedderChoice(name)
    else:
        choice = embedder if isinstance(embedder, EmbedderChoice) else EmbedderChoice.parse(embedder, weights)
        try:
            get_spec(choice.model)
        except VizprobeError:
            raise VizprobeError(
                f"unknown embedder {choice.model!r}; choose one of {', '.join(list_models())} (MODEL[:LAYER,...])"
            ) from None
    same = studied_model is not None and choice.model == studied_model
    if same and not same_as_model:
        raise VizprobeError(
            f"embedder {choice.model} is the studied network: its features read the unit's answer off the network; "
            "pick another with --embedder MODEL, or pass --embedder-same-as-model to accept that"
        )
    return EmbedderChoice(choice.model, choice.layers, choice.weights, same)


def default_layers(model) -> list[str]:
    """The network's embedding layers: its registry entry's, else four at 40-90 % of its depth."""
    if model.spec.embedding_layers:
        return list(model.spec.embedding_layers)
    paths = [li.path for li in model.layers]
    picks = sorted({min(len(paths) - 1, int(f * len(paths))) for f in (0.4, 0.55, 0.7, 0.9)})
    return [paths[i] for i in picks]


class FeatureEmbedder:
    """Embeds image files as the concatenation of L2-normalized, spatially averaged layer outputs (each layer
    weighted equally), so the dot product of two embeddings is their mean cosine similarity over layers.

    Each distinct file is embedded once (cached by path and fit), in batches sized for the device.
    """

    def __init__(
        self,
        model: str | EmbedderChoice = DEFAULT_EMBEDDER,
        layers: Sequence[str] | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        weights: str | None = None,
    ):
        choice = model if isinstance(model, EmbedderChoice) else EmbedderChoice(model, tuple(layers or ()), weights)
        self.choice = choice
        self.device = resolve_device(device)
        self.model = load_model(choice.model, weights=choice.weights, device=self.device)
        self.layers = [self.model.layer(name).path for name in (choice.layers or default_layers(self.model))]
        self.batch_size = batch_size or max(default_batch_size(self.device), 16)
        self._cache: dict[tuple[Path, bool], np.ndarray] = {}
        self._forward = None

    @property
    def record(self) -> dict:
        """What embeds: written beside every observer answer (`embedder` in responses, results.json, reports)."""
        return {
            "model": self.model.name,
            "layers": list(self.layers),
            "weights": self.model.weights,
            "same_as_model": self.choice.same_as_model,
        }

    @property
    def label(self) -> str:
        """`MODEL:LAYER,...`, the responses' `embedder` column."""
        return f"{self.model.name}:{','.join(self.layers)}"

    def _load(self, path: Path, whole: bool) -> torch.Tensor:
        """An image file as a uint8 (crop, crop, 3) tensor. `whole`: the whole image resized (stimuli are already
        model-sized, so a resize-and-centre-crop would cut off their edges); else the network's own crop (photos)."""
        rgb = load_rgb(path)
        if not whole:
            return self.model.preprocessing.to_pixels(rgb)  # the scan's decoding, with this network's geometry
        side = self.model.preprocessing.crop
        if rgb.size != (side, side):
            rgb = rgb.resize((side, side), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy())

    @torch.no_grad()
    def _embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        if self._forward is None:  # the scan's forward pass: ONNX Runtime on the CPU, an inference copy on a GPU
            from vizprobe.scan.forward import forward_pass

            self._forward = forward_pass(self.model, self.layers, self.batch_size, "auto", "off", 0, optimize=True)[0]
        means = self._forward(self.model.preprocessing.normalize_uint8(pixels.to(self.device)))
        parts = [torch.nn.functional.normalize(m.float(), dim=1) for m in means]
        return (torch.cat(parts, dim=1) / len(parts) ** 0.5).cpu().numpy()

    def embed(self, paths: Sequence[str | Path], whole: bool = True, progress=None) -> np.ndarray:
        """(len(paths), D) unit-norm embeddings; files already seen come from the cache. `whole=False` embeds
        photos through the network's resize and centre crop (as a scan sees them). `progress`: a tqdm bar."""
        paths = [Path(p) for p in paths]
        todo = list(dict.fromkeys(p for p in paths if (p, whole) not in self._cache))
        batches = [todo[s : s + self.batch_size] for s in range(0, len(todo), self.batch_size)]
        with ThreadPoolExecutor(max_workers=2) as pool, ThreadPoolExecutor(max_workers=1) as ahead:

            def decode(chunk: list[Path]) -> list[torch.Tensor]:
                return list(pool.map(lambda p: self._load(p, whole), chunk))

            next_batch = ahead.submit(decode, batches[0]) if batches else None
            for k, chunk in enumerate(batches):  # the next batch decodes while this one computes
                pixels = next_batch.result()
                if k + 1 < len(batches):
                    next_batch = ahead.submit(decode, batches[k + 1])
                for path, vector in zip(chunk, self._embed_pixels(torch.stack(pixels)), strict=True):
                    self._cache[(path, whole)] = vector
                if progress is not None:
                    progress.update(len(chunk))
        if not paths:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[(p, whole)] for p in paths])


def make_embedder(
    studied_model: str | None,
    embedder: str | EmbedderChoice | FeatureEmbedder | None = None,
    same_as_model: bool = False,
    device: str = "auto",
) -> FeatureEmbedder:
    """A FeatureEmbedder for judging units of `studied_model` (see `choose_embedder`); an embedder given as an
    instance is checked against the studied network too."""
    if isinstance(embedder, FeatureEmbedder):
        embedder.choice = choose_embedder(studied_model, embedder.choice, same_as_model)
        return embedder
    return FeatureEmbedder(choose_embedder(studied_model, embedder, same_as_model), device=device)
