"""A perceptual feature space for observers: pooled intermediate features of a registered model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vizprobe import DEFAULT_MODEL
from vizprobe.device import default_batch_size, resolve_device
from vizprobe.models import load_model

# Middle-to-late blocks of EfficientNet-Lite0: textures and parts, where people's judgements of
# "looks like the references" live more than in edges (early) or classes (head).
DEFAULT_LAYERS = ("_blocks.5", "_blocks.8", "_blocks.12")


class FeatureEmbedder:
    """Embeds image files as the concatenation of L2-normalized, spatially averaged layer outputs.

    Each distinct file is embedded once (cached by path), in batches sized for the device.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        layers: Sequence[str] = DEFAULT_LAYERS,
        device: str = "auto",
        batch_size: int | None = None,
        weights: str | None = None,
    ):
        self.device = resolve_device(device)
        self.model = load_model(model, weights=weights, device=self.device)
        self.layers = [self.model.layer(name).path for name in layers]
        self.batch_size = batch_size or max(default_batch_size(self.device), 16)
        self._cache: dict[Path, np.ndarray] = {}

    def _load(self, path: Path) -> torch.Tensor:
        """A stimulus file as a uint8 (crop, crop, 3) tensor: the whole image, resized (stimuli are already
        model-sized, so the model's resize-and-centre-crop would cut off their edges)."""
        side = self.model.preprocessing.crop
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (side, side):
                rgb = rgb.resize((side, side), Image.Resampling.BICUBIC)
            return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy())

    @torch.no_grad()
    def _embed_batch(self, paths: list[Path]) -> np.ndarray:
        pixels = torch.stack([self._load(p) for p in paths]).to(self.device)
        outputs = self.model.tap(self.layers)(self.model.preprocessing.normalize_uint8(pixels))
        parts = [torch.nn.functional.normalize(outputs[p].float().mean(dim=(2, 3)), dim=1) for p in self.layers]
        return (torch.cat(parts, dim=1) / len(parts) ** 0.5).cpu().numpy()

    def embed(self, paths: Sequence[str | Path]) -> np.ndarray:
        """(len(paths), D) unit-norm embeddings; files already seen come from the cache."""
        paths = [Path(p) for p in paths]
        todo = list(dict.fromkeys(p for p in paths if p not in self._cache))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for path, vector in zip(chunk, self._embed_batch(chunk), strict=True):
                self._cache[path] = vector
        if not paths:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[p] for p in paths])
