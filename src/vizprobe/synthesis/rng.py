"""Per-image random numbers that depend only on (image seed, step, stream), never on the batch.

So an image renders the same whether it shares a batch with 1 or 143 others, and every image of a
rendering can be reproduced from its seed alone. A vectorized SplitMix64 hash, no generator state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


class ImageRNG:
    """Counter-based randomness for a batch of images, one seed each."""

    def __init__(self, seeds: list[int] | np.ndarray):
        self.seeds = np.asarray(seeds, dtype=np.uint64)

    def fork(self, stream: int) -> ImageRNG:
        """An independent generator for the same images (e.g. one per transform)."""
        with np.errstate(over="ignore"):
            return ImageRNG(_splitmix64(self.seeds ^ _splitmix64(np.full_like(self.seeds, stream + 0x5EED))))

    def __getitem__(self, index) -> ImageRNG:
        return ImageRNG(self.seeds[index])

    def __len__(self) -> int:
        return len(self.seeds)

    def uniform(self, step: int, stream: int, k: int = 1) -> torch.Tensor:
        """(B, k) floats in [0, 1), a function of each image's seed, the step and the stream id."""
        with np.errstate(over="ignore"):
            key = _splitmix64(self.seeds * np.uint64(1_000_003) + np.uint64(stream))
            key = _splitmix64(key ^ np.uint64(step))
            counters = key[:, None] + np.arange(k, dtype=np.uint64)[None, :]
        bits = _splitmix64(counters) >> np.uint64(11)  # 53 random bits
        return torch.from_numpy(bits.astype(np.float64) / float(1 << 53)).float()

    def choice(self, step: int, stream: int, options: list[float]) -> torch.Tensor:
        """(B,) values drawn uniformly from `options`."""
        index = (self.uniform(step, stream)[:, 0] * len(options)).long().clamp_max(len(options) - 1)
        return torch.tensor(options, dtype=torch.float32)[index]

    def normal(self, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
        """(B, *shape) standard normal values (Box-Muller), for initializing parameters."""
        n = int(np.prod(shape))
        u = self.uniform(step=0, stream=stream, k=2 * n).double()
        u1, u2 = u[:, :n].clamp_min(1e-12), u[:, n:]
        z = torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * torch.pi * u2)
        return z.float().reshape(len(self), *shape)


def image_seed(model: str, unit: str, index: int, base_seed: int) -> int:
    """The seed of image `index` of a unit: sha256 of `model|unit|index|base_seed`, as a 63-bit integer.

    `unit` is the canonical `LAYER_PATH:CHANNEL`, so every spelling of a unit gets the same images
    and no two units or images share a seed.
    """
    digest = hashlib.sha256(f"{model}|{unit}|{index}|{base_seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def image_seeds(model: str, units: Sequence[str], per_unit: int, base_seed: int) -> list[int]:
    """Seeds of images 0..per_unit-1 of each unit, unit by unit."""
    return [image_seed(model, str(unit), j, base_seed) for unit in units for j in range(per_unit)]
