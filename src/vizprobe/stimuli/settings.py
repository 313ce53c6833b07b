"""The stimulus builder's settings, with the paper's values as defaults (no torch: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vizprobe.exclusion import ExclusionCriteria
from vizprobe.stimuli.manifest import CONDITIONS

SEARCHES = ("exact", "fast")  # occlusion: the whole map, or the coarse-to-fine search
PRACTICE_PER_ROUND = 4  # a practice round as the authors showed it: 1 obvious trial + 3 others, drawn from the pool


@dataclass(frozen=True)
class BuildSettings:
    """Every number of the paper's stimuli, as a parameter with the paper's default."""

    conditions: tuple[str, ...] = CONDITIONS
    tasks_per_condition: int = 50
    image_sets: int = 10
    query_ranks: tuple[int, int] = (1, 20)
    reference_ranks: tuple[int, int] = (21, 200)
    references: int = 9
    mixed_natural: int = 5
    patch_frac: float = 0.4
    stride: int = 2
    search: str = "exact"
    # Catch and practice trials come from units that are not main units (`vizprobe.stimuli.protocol`):
    # every task has one catch trial of each catch unit; the practice pool has one trial per practice unit, the
    # `practice_obvious` largest gaps first, and each round shows one obvious trial and others drawn from the pool
    # (the authors: a pool of 10, 1 obvious + 3 per round).
    catch_units: int = 3
    practice_units: int = 10
    practice_obvious: int = 3
    protocol_candidates: int = 24  # units measured to pick them from
    # `vizprobe inspect` flags a catch trial whose gap (Manifest.trial_gap) is below this: not clearly easy, so a
    # missed one would exclude an attentive participant. The authors checked theirs by eye.
    min_catch_gap: float = 1.0
    blur_kernel: int = 21
    seed: int = 0
    # What participants judge (`vizprobe.tasks`): the occlusion task, or the exemplar task, whose queries lie right
    # after its references (IMI's and Borowski's design) or, with `query_quantile` q, at the q-quantile (IMI's
    # harder variants: 0.99, 0.95, 0.85).
    task: str = "occlusion"
    query_quantile: float | None = None
    protocol: str = "zimmermann2021"  # the named protocol these settings started from (recorded in the manifest)
    # Who is excluded (recorded in the manifest): the server re-posts a task and `analyze` excludes by these.
    exclusion: ExclusionCriteria = field(default_factory=ExclusionCriteria)
