"""The similarity observer: the option that looks more like the references is judged more activating.

Follows the form of the machine interpretability score (Zimmermann et al. 2023): embed the images in a
perceptual feature space, compare each option to the references by mean cosine similarity, and choose
with probability logistic((sim_right - sim_left) / temperature). Without references (condition `none`)
it compares each option to the unoccluded query: the occlusion that changes the image less is taken to
hurt the unit less.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit

from vizprobe import DEFAULT_MODEL
from vizprobe.observers.base import Observer, TrialView
from vizprobe.observers.embedding import DEFAULT_LAYERS, FeatureEmbedder


class SimilarityObserver(Observer):
    """Chooses by perceptual similarity of the options to what the participant is shown."""

    name = "similarity"

    def __init__(
        self,
        embedder: FeatureEmbedder | None = None,
        temperature: float = 0.02,
        model: str = DEFAULT_MODEL,
        layers: Sequence[str] = DEFAULT_LAYERS,
        device: str = "auto",
    ):
        self.embedder = embedder or FeatureEmbedder(model, layers, device)
        self.temperature = temperature

    def similarities(self, views: Sequence[TrialView]) -> np.ndarray:
        """(n, 2) similarity of the left and right option to the references (or, without, the query)."""
        files = {p for v in views for p in (*v.references, v.query, *v.options)}
        order = sorted(files)
        vectors = dict(zip(order, self.embedder.embed(order), strict=True))
        out = np.empty((len(views), 2), dtype=np.float64)
        for i, view in enumerate(views):
            targets = np.stack([vectors[p] for p in (view.references or (view.query,))])
            for side, option in enumerate(view.options):
                out[i, side] = float((targets @ vectors[option]).mean())
        return out

    def predict(self, views: Sequence[TrialView]) -> np.ndarray:
        if not views:
            return np.zeros(0)
        sims = self.similarities(views)
        return expit((sims[:, 1] - sims[:, 0]) / self.temperature)
