"""The colour-statistics observer: an image's mean and standard deviation of R, G and B as its whole embedding.

The trivial baseline beside every score. A unit whose exemplars differ in global colour is "explained" by any
observer that sees colour, so a score means something about the unit's features only where it beats this one.
The six statistics are taken over the image's centre square at `SIDE` pixels (a fixed, cheap view: decoding a JPEG
at reduced size), centred and scaled by their spread over ImageNet photos (`CENTRE`, `SCALE`), and L2-normalized,
so that a dot product is a cosine similarity as for the network embedders and the same task code answers with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vizprobe.images import load_rgb

NAME = "colour-statistics"
SIDE = 64  # pixels of the centre square the statistics are taken over
# Median and interquartile range of each statistic over the 1000 ImageNet sample photos (one per class), at SIDE:
# mean R, G, B, then standard deviation R, G, B, in [0, 1] units.
CENTRE = np.array([0.481, 0.456, 0.402, 0.217, 0.210, 0.211])
SCALE = np.array([0.157, 0.151, 0.182, 0.085, 0.080, 0.092])


def colour_statistics(path: str | Path, side: int = SIDE) -> np.ndarray:
    """(6,) mean and standard deviation of R, G, B of the image's centre square at `side` pixels, in [0, 1]."""
    rgb = load_rgb(path, draft=(2 * side, 2 * side))
    short = min(rgb.size)
    left, top = (rgb.width - short) // 2, (rgb.height - short) // 2
    square = rgb.crop((left, top, left + short, top + short)).resize((side, side), Image.Resampling.BOX)
    pixels = np.asarray(square, dtype=np.float64).reshape(-1, 3) / 255.0
    return np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)])


def colour_embedding(statistics: np.ndarray) -> np.ndarray:
    """(N, 6) statistics -> (N, 6) unit vectors of the centred and scaled statistics."""
    z = (np.asarray(statistics, dtype=np.float64) - CENTRE) / SCALE
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.maximum(norms, 1e-9)).astype(np.float32)


class ColourEmbedder:
    """Embeds image files by their colour statistics; the same interface as the network embedders."""

    label = NAME

    def __init__(self, device: str = "cpu"):
        self._cache: dict[Path, np.ndarray] = {}

    @property
    def record(self) -> dict:
        return {"model": NAME, "layers": [], "weights": None, "same_as_model": False, "side": SIDE}

    def embed(self, paths: Sequence[str | Path], whole: bool = True, progress=None) -> np.ndarray:
        """(len(paths), 6) unit vectors; `whole` is accepted for the embedders' interface (the statistics are
        always taken over the centre square)."""
        paths = [Path(p) for p in paths]
        for path in dict.fromkeys(p for p in paths if p not in self._cache):
            self._cache[path] = colour_statistics(path)
            if progress is not None:
                progress.update(1)
        if not paths:
            return np.zeros((0, 6), dtype=np.float32)
        return colour_embedding(np.stack([self._cache[p] for p in paths]))
