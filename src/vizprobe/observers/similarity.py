"""The similarity observer: the option that looks more like the references is judged more activating.

Follows the form of the machine interpretability score (Zimmermann, Klindt & Brendel 2024): embed the images in a
perceptual feature space of a network other than the studied one (`vizprobe.observers.embedding`), compare each
option to the references by mean cosine similarity, and choose with probability
logistic((sim_right - sim_left) / temperature + bias) (`vizprobe.observers.rule`). Without references (condition
`none`) it compares each option to the unoccluded query: the occlusion that changes the image less is taken to hurt
the unit less. In the exemplar task each query's evidence is its similarity to the strong references minus its
similarity to the weak ones (MIS's delta); without references it has none (p = 0.5, shifted by the bias).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vizprobe.errors import VizprobeError
from vizprobe.observers.base import Observer, TrialView
from vizprobe.observers.embedding import EmbedderChoice, FeatureEmbedder, make_embedder
from vizprobe.observers.rule import DEFAULT_TEMPERATURE, DecisionRule


class SimilarityObserver(Observer):
    """Chooses by perceptual similarity of the options to what the participant is shown."""

    name = "similarity"
    uses_references = True

    def __init__(
        self,
        embedder: FeatureEmbedder | EmbedderChoice | str | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        studied_model: str | None = None,
        same_as_model: bool = False,
        device: str = "auto",
        rule: DecisionRule | str | None = None,
        bias: float = 0.0,
    ):
        """`studied_model`: the network whose units are judged (embedding with it is refused unless
        `same_as_model`); `rule` (a DecisionRule or its JSON file) replaces `temperature` and `bias`."""
        if isinstance(rule, str):
            rule = DecisionRule.load(rule)
        self.embedder = make_embedder(studied_model, embedder, same_as_model, device)
        self.rule = rule or DecisionRule(temperature, bias, self.embedder.label)
        if self.rule.embedder not in (None, self.embedder.label):
            raise VizprobeError(
                f"the decision rule was fitted to margins of {self.rule.embedder}, not {self.embedder.label}; "
                f"use --embedder {self.rule.embedder} or fit the rule again"
            )

    @property
    def temperature(self) -> float:
        return self.rule.temperature

    @property
    def embedder_label(self) -> str:
        return self.embedder.label

    def similarities(self, views: Sequence[TrialView]) -> np.ndarray:
        """(n, 2) similarity of the left and right option to the references (or, without, the query); in the
        exemplar task, each option's similarity to the strong references minus that to the weak ones."""
        files = {p for v in views for p in (*v.references, *v.min_references, v.query, *v.options) if p is not None}
        order = sorted(files)
        vectors = dict(zip(order, self.embedder.embed(order), strict=True))
        out = np.zeros((len(views), 2), dtype=np.float64)
        for i, view in enumerate(views):
            if view.task == "exemplar":
                if view.references and view.min_references:
                    strong = np.stack([vectors[p] for p in view.references])
                    weak = np.stack([vectors[p] for p in view.min_references])
                    for side, option in enumerate(view.options):
                        out[i, side] = float((strong @ vectors[option]).mean() - (weak @ vectors[option]).mean())
                continue
            targets = np.stack([vectors[p] for p in (view.references or (view.query,))])
            for side, option in enumerate(view.options):
                out[i, side] = float((targets @ vectors[option]).mean())
        return out

    def margins(self, views: Sequence[TrialView]) -> np.ndarray:
        """Right minus left similarity per view: the evidence the rule turns into P(right)."""
        if not views:
            return np.zeros(0)
        sims = self.similarities(views)
        return sims[:, 1] - sims[:, 0]

    def predict(self, views: Sequence[TrialView]) -> np.ndarray:
        return self.rule.p_right(self.margins(views))
