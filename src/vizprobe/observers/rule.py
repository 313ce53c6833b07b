"""The similarity observer's decision rule: P(right) = logistic(margin / temperature + bias), saved as JSON.

`margin` is the right option's similarity to the references minus the left one's (see
`vizprobe.observers.similarity`); `bias` > 0 leans to the right-hand option. The defaults are not fitted to
people; `vizprobe observe --fit` fits both to a package's human responses and saves the rule for `--rule`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit

from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_json

RULE_FORMAT = "vizprobe-observer-rule"
RULE_VERSION = 1
DEFAULT_TEMPERATURE = 0.02  # in units of mean cosine similarity (the margins' spread on the demo's trials)
# The exemplar task's (`vizprobe.score.exemplar`): a third of the median |delta+ - delta-| of the tasks of every unit
# of lite0's _blocks.8 and _blocks.12 on the 1000 ImageNet sample photos, embedded with Lite2 (0.145), so a typical
# task gives p = logistic(3) = 0.95. Its margins are ~15x the occlusion task's (whole images against two occlusions
# of one image), so it has its own temperature; neither is fitted to people.
EXEMPLAR_TEMPERATURE = 0.05


@dataclass(frozen=True)
class DecisionRule:
    """Temperature and side bias of the logistic choice on the similarity margin, with where they came from."""

    temperature: float = DEFAULT_TEMPERATURE
    bias: float = 0.0
    embedder: str | None = None  # `MODEL:LAYER,...` the margins were measured with (a fitted rule needs the same)
    fitted: dict = field(default_factory=dict)  # package, participants, trials, CIs, cross-validated figures

    def p_right(self, margins: np.ndarray) -> np.ndarray:
        return expit(np.asarray(margins, dtype=np.float64) / self.temperature + self.bias)

    @property
    def task(self) -> str | None:
        """The task whose answers the rule was fitted to (None: not fitted; occlusion for rules fitted before it was
        recorded)."""
        return self.fitted.get("task", "occlusion") if self.fitted else None

    def save(self, path: str | Path) -> Path:
        atomic_write_json(path, {"format": RULE_FORMAT, "version": RULE_VERSION, **asdict(self)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> DecisionRule:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise VizprobeError(
                f"cannot read decision rule {path} ({exc}); write one with vizprobe observe --fit"
            ) from None
        if data.get("format") != RULE_FORMAT:
            raise VizprobeError(f"{path} is not a vizprobe observer rule; write one with vizprobe observe --fit")
        if not data.get("temperature", 0) > 0:
            raise VizprobeError(f"{path}: temperature must be > 0")
        return cls(
            float(data["temperature"]),
            float(data.get("bias", 0.0)),
            data.get("embedder"),
            dict(data.get("fitted") or {}),
        )
