"""The observers' perceptual feature space: pooled intermediate features of a network other than the studied one.

A feature visualization is made to drive its unit, so in the studied network's own feature space it looks like
whatever keeps the unit active: an observer embedding with that network reads the answer off the unit instead of
seeing what a person sees. So the observers embed with another registered network, by default EfficientNet-Lite2
(EfficientNet-Lite0 when Lite2 is the studied network), and refuse the studied one unless asked explicitly
(`same_as_model=True`, then every output marks its numbers as reading the unit).

Embedders beyond the model registry (`build_embedder`): the built-in colour-statistics baseline
(`vizprobe.observers.colour`), a package's `vizprobe.embedders` entry point (name = the embedder's name, value = a
factory), or `--embedder module.path:factory`. A factory takes the device (a string such as "cpu" or "cuda") and
returns an `EmbeddingFunction`: a callable from a (N, 3, S, S) float RGB batch in [0, 1] to (N, D) vectors, with
its side S. That is how a network trained on human similarity judgements (DreamSim, MIS's embedder) or CLIP
plugs in (docs/observers.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from vizprobe.device import default_batch_size, resolve_device
from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb
from vizprobe.models import Preprocessing, get_spec, list_models, load_model
from vizprobe.models.plugins import FACTORY
from vizprobe.observers.colour import NAME as COLOUR_EMBEDDER
from vizprobe.observers.colour import ColourEmbedder
from vizprobe.plugins import EMBEDDER_GROUP, import_factory, plugin_entries

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
        """`MODEL` or `MODEL:LAYER,LAYER` (layer paths or aliases), an embedder's name, or `module.path:factory`."""
        text = text.strip()
        model, _, layers = text.partition(":")
        if FACTORY.fullmatch(text) and not _is_model(model):
            return cls(text, (), weights)
        return cls(model.strip(), tuple(x.strip() for x in layers.split(",") if x.strip()), weights)


class ImageEmbedder(Protocol):
    """What an observer embeds images with: unit-norm vectors, so that a dot product is a cosine similarity."""

    label: str  # the responses' `embedder` column

    @property
    def record(self) -> dict: ...

    def embed(self, paths: Sequence[str | Path], whole: bool = True, progress=None) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbeddingFunction:
    """What an embedder plugin's factory returns: `function` maps a (N, 3, size, size) float RGB batch in [0, 1]
    (on the device the factory was given) to (N, D) vectors; images are resized and centre-cropped to `size`."""

    function: Callable
    size: int = 224
    name: str = ""
    batch_size: int = 16


def _is_model(name: str) -> bool:
    try:
        get_spec(name)
    except VizprobeError:
        return False
    return True


def embedder_factory(name: str) -> Callable | None:
    """The factory of a non-network embedder (built-in, entry point, or `module.path:factory`), or None when `name`
    is a network of the model registry; a broken plugin is a one-line error."""
    if name == COLOUR_EMBEDDER:
        return ColourEmbedder
    for ep in plugin_entries(EMBEDDER_GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as error:  # the plugin's own failure, reported with its name
                raise VizprobeError(f"embedder plugin {name!r} ({ep.value}) failed to load: {error}") from None
    if FACTORY.fullmatch(name) and "@" not in name:
        module_name, attr = name.split(":")
        return import_factory(module_name, attr, f"--embedder {name}")
    return None


class FunctionEmbedder:
    """An `EmbeddingFunction` applied to image files: decoded, resized and centre-cropped to its side, batched,
    L2-normalized; each file embedded once."""

    def __init__(self, name: str, made: EmbeddingFunction | Callable, device: torch.device):
        self.function = made if isinstance(made, EmbeddingFunction) else EmbeddingFunction(made)
        if not callable(self.function.function):
            raise VizprobeError(f"embedder {name}: its factory returned no callable (an EmbeddingFunction is needed)")
        self.name, self.device, self.label = name, device, name
        self._cache: dict[tuple[Path, bool], np.ndarray] = {}

    @property
    def record(self) -> dict:
        return {"model": self.name, "layers": [], "weights": None, "same_as_model": False, "size": self.function.size}

    def _load(self, path: Path, whole: bool) -> torch.Tensor:
        """(3, S, S) float in [0, 1]: the whole image resized (stimuli), or its short side resized to S and the
        centre square cut (photos), with the registry's geometry (`Preprocessing.pil_geometry`, bicubic)."""
        side = self.function.size
        if whole:
            rgb = load_rgb(path).resize((side, side), Image.Resampling.BICUBIC)
        else:
            rgb = Preprocessing(resize=side, crop=side, interpolation="bicubic").pil_geometry()(load_rgb(path))
        return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)

    @torch.no_grad()
    def embed(self, paths: Sequence[str | Path], whole: bool = True, progress=None) -> np.ndarray:
        paths = [Path(p) for p in paths]
        todo = list(dict.fromkeys(p for p in paths if (p, whole) not in self._cache))
        step = self.function.batch_size
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            batch = torch.stack([self._load(p, whole) for p in chunk]).to(self.device)
            vectors = torch.as_tensor(self.function.function(batch)).float().reshape(len(chunk), -1)
            vectors = torch.nn.functional.normalize(vectors, dim=1).cpu().numpy()
            self._cache.update({(p, whole): v for p, v in zip(chunk, vectors, strict=True)})
            if progress is not None:
                progress.update(len(chunk))
        if not paths:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[(p, whole)] for p in paths])


def build_embedder(choice: EmbedderChoice, device: str = "auto") -> ImageEmbedder:
    """The embedder `choice` names: a registered network (`FeatureEmbedder`) or a non-network embedder."""
    factory = embedder_factory(choice.model)
    if factory is None:
        return FeatureEmbedder(choice, device=device)
    if factory is ColourEmbedder:
        return ColourEmbedder()
    resolved = resolve_device(device)
    try:
        made = factory(str(resolved))
    except Exception as error:  # the plugin's own failure, reported with its name
        raise VizprobeError(f"embedder {choice.model}: its factory failed ({error})") from None
    return FunctionEmbedder(choice.model, made, resolved)


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
    if embedder is not None and embedder_factory(choice.model) is not None:
        if choice.layers or choice.weights:
            raise VizprobeError(
                f"embedder {choice.model} is not a network of the registry: it takes no layers or weights"
            )
        return choice
    if embedder is not None:
        try:
            get_spec(choice.model)
        except VizprobeError:
            raise VizprobeError(
                f"unknown embedder {choice.model!r}; choose one of {', '.join(list_models())} (MODEL[:LAYER,...]), "
                f"{COLOUR_EMBEDDER}, an installed embedder plugin or module.path:factory"
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
    embedder: str | EmbedderChoice | ImageEmbedder | None = None,
    same_as_model: bool = False,
    device: str = "auto",
) -> ImageEmbedder:
    """The embedder for judging units of `studied_model` (see `choose_embedder`); a FeatureEmbedder given as an
    instance is checked against the studied network too; another embedder instance is used as it is."""
    if isinstance(embedder, FeatureEmbedder):
        embedder.choice = choose_embedder(studied_model, embedder.choice, same_as_model)
        return embedder
    if embedder is not None and not isinstance(embedder, str | EmbedderChoice):
        return embedder
    return build_embedder(choose_embedder(studied_model, embedder, same_as_model), device=device)
