"""Computational baselines, as registered observers (Zimmermann et al. 2021, Sec. 4).

Center, Variance and Saliency see, like a participant, the query and where each option is occluded (never
activations), and predict that the option whose occluded patch matters less keeps the higher activation.
Random answers by a seeded coin per trial. Oracle is privileged: it is made with the manifest and answers
with its `correct` field, an upper bound for the plots.

`run_baselines` (in `vizprobe.observers.answer`) has them answer a package's main trials in the responses
format, labelled `baseline:NAME`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import fft, ndimage

from vizprobe.errors import VizprobeError
from vizprobe.observers.base import Observer, TrialView
from vizprobe.stimuli.manifest import Manifest

SaliencyModel = Callable[[np.ndarray], np.ndarray]  # (H, W, 3) float image in [0, 1] -> (H, W) saliency
BASELINES = ("center", "variance", "saliency", "random", "oracle")


@lru_cache(maxsize=64)
def load_image(path: Path) -> np.ndarray:
    """(H, W, 3) float image in [0, 1]."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def _coin(seed: int, trial_id: str, salt: str = "random") -> int:
    """A reproducible fair coin per (seed, trial), independent of trial order.

    A hash, not numpy's generator: the stimulus builder draws which side is correct from
    `default_rng([seed, crc32(trial_id)])`, and a coin from the same kind of generator copied (or inverted)
    those answers.
    """
    return hashlib.sha256(f"vizprobe-baseline-{salt}:{seed}:{trial_id}".encode()).digest()[0] & 1


class PatchScoreObserver(Observer):
    """Predicts that occluding the patch with the lower score leaves the higher activation."""

    def score(self, view: TrialView, patch: tuple[int, int, int]) -> float:
        raise NotImplementedError

    def predict(self, views: Sequence[TrialView]) -> np.ndarray:
        out = np.full(len(views), 0.5)
        for i, view in enumerate(views):
            if None in view.patches:
                continue  # an unoccluded option (catch trials): no basis for a guess
            left, right = (self.score(view, p) for p in view.patches)
            out[i] = 1.0 if right < left else 0.0 if left < right else 0.5
        return out


class CenterObserver(PatchScoreObserver):
    """Occlusions near the image centre hurt more: the option occluded farther from the centre wins."""

    name = "center"

    def score(self, view: TrialView, patch: tuple[int, int, int]) -> float:
        x, y, size = patch
        centre = view.image_size / 2
        return -float(np.hypot(x + size / 2 - centre, y + size / 2 - centre))


class VarianceObserver(PatchScoreObserver):
    """Occluding a busy patch hurts more: the option whose occluded patch had lower pixel variance wins."""

    name = "variance"

    def score(self, view: TrialView, patch: tuple[int, int, int]) -> float:
        x, y, size = patch
        return float(np.var(load_image(view.query)[y : y + size, x : x + size]))


def spectral_residual(image: np.ndarray, width: int = 64, sigma: float = 2.5, centre_sigma: float = 0.0) -> np.ndarray:
    """Spectral residual saliency (Hou & Zhang 2007), optionally times a Gaussian centre bias, at the image's size.

    The grey image is shrunk to `width` px; the residual of its log amplitude spectrum after a 3x3 mean
    filter, recombined with the phase, gives the saliency map, smoothed by `sigma` px and scaled back up.
    `centre_sigma` is the centre bias's standard deviation as a fraction of the image side (0: none, the
    default: the paper's DeepGaze II baseline used a uniform centre bias on purpose, since occlusions near the
    centre are what the Center baseline already measures).
    """
    grey = image.mean(axis=2) if image.ndim == 3 else image
    small = ndimage.zoom(grey, width / grey.shape[1], order=1)
    spectrum = fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-12)
    residual = log_amplitude - ndimage.uniform_filter(log_amplitude, size=3, mode="nearest")
    saliency = np.abs(fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = ndimage.gaussian_filter(saliency, sigma)
    saliency = ndimage.zoom(saliency, (grey.shape[0] / small.shape[0], grey.shape[1] / small.shape[1]), order=1)
    if centre_sigma > 0:
        ys, xs = np.mgrid[0 : grey.shape[0], 0 : grey.shape[1]]
        h, w = grey.shape
        bias = np.exp(-(((ys - h / 2) / (centre_sigma * h)) ** 2 + ((xs - w / 2) / (centre_sigma * w)) ** 2) / 2)
        saliency = saliency * bias
    return saliency / saliency.max() if saliency.max() > 0 else saliency


class SaliencyObserver(PatchScoreObserver):
    """Occluding a salient patch hurts more. `model` maps an image to a saliency map (default: spectral
    residual with a uniform centre prior, which needs no weights; a learned model such as DeepGaze plugs in
    here). `centre_bias` (a fraction of the image side) multiplies the default map by a Gaussian centre bias."""

    name = "saliency"

    def __init__(self, model: SaliencyModel | None = None, centre_bias: float = 0.0):
        self.model = model or (lambda image: spectral_residual(image, centre_sigma=centre_bias))
        if centre_bias:
            self.name = "saliency-centre"
        self._maps: dict[Path, np.ndarray] = {}

    def saliency_map(self, path: Path) -> np.ndarray:
        if path not in self._maps:
            image = load_image(path)
            smap = np.asarray(self.model(image), dtype=float)
            if smap.shape != image.shape[:2]:
                raise VizprobeError(f"saliency model returned shape {smap.shape} for a {image.shape[:2]} image")
            self._maps[path] = smap
        return self._maps[path]

    def score(self, view: TrialView, patch: tuple[int, int, int]) -> float:
        x, y, size = patch
        return float(self.saliency_map(view.query)[y : y + size, x : x + size].mean())


class RandomObserver(Observer):
    """Chooses each option with probability 1/2, reproducibly per (seed, trial)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def predict(self, views: Sequence[TrialView]) -> np.ndarray:
        return np.array([float(_coin(self.seed, v.trial_id)) for v in views])


class OracleObserver(Observer):
    """Privileged baseline: answers from the manifest's `correct` field (what no observer can see)."""

    name = "oracle"

    def __init__(self, manifest: Manifest):
        self.best = {t.trial_id: manifest.path(t.options[t.correct].image) for t in manifest.trials.values()}

    def predict(self, views: Sequence[TrialView]) -> np.ndarray:
        return np.array([float(v.options[1] == self.best[v.trial_id]) for v in views])


def choices_from_probabilities(p: np.ndarray, trial_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """Choice 1 where p > 1/2, 0 where p < 1/2, a seeded coin per trial at a tie."""
    ties = np.array([_coin(seed, t, salt="tie") for t in trial_ids], dtype=int)
    return np.where(p > 0.5, 1, np.where(p < 0.5, 0, ties))
