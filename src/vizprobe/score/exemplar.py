"""The exemplar task answered by an observer, as matrix work on the images' similarities (MIS's design).

Exemplar task (the machine interpretability score, MIS: Zimmermann, Klindt & Brendel, NeurIPS 2024): for each unit,
`tasks` tasks; each draws `references` + 1 images at random from the unit's `pool` most activating scan images and
as many from its `pool` least activating ones; on each side the most extreme `references` are the references and
the remaining one is the query (as the authors' code draws them). With s(q, E) the mean cosine similarity of query q
to the references E in an embedding, the observer's probability of picking the maximal query is
logistic((delta_plus - delta_minus) / temperature), delta_plus = s(q+, E+) - s(q+, E-),
delta_minus = s(q-, E+) - s(q-, E-); the score is the mean over tasks, with a bootstrap interval over tasks.
`accuracy` is the share of tasks the observer gets right (MIS without its sigmoid). `control` scores the same
queries against the references of another unit of the same layer: near 0.5 when the score comes from the unit.
`colour_score` and `colour_accuracy` answer the same tasks with the colour-statistics observer (each image's mean
and standard deviation of R, G, B as its embedding, `vizprobe.observers.colour`): the trivial baseline a score
has to beat before it says anything about the unit's features.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.special import expit
from tqdm.auto import tqdm

from vizprobe.errors import VizprobeError
from vizprobe.observers.rule import EXEMPLAR_TEMPERATURE


@dataclass(frozen=True)
class ScoreSettings:
    """The exemplar task's design (MIS's defaults: K = 9 references a side, 20 tasks per unit)."""

    references: int = 9  # K: references on each side of a task
    tasks: int = 20  # N: tasks per unit
    pool: int = 20  # the unit's most (and least) activating scan images that references and queries come from
    # of the logistic choice on the margin; None: EXEMPLAR_TEMPERATURE, or the observer's rule in the occlusion task
    temperature: float | None = None
    # a side bias of a rule fitted to people (`--rule`): the score averages the two sides the maximal query can be
    # shown on, 0.5 * (logistic(m / T + bias) + logistic(m / T - bias))
    bias: float = 0.0
    seed: int = 0  # of the tasks' draws, the control's donor units and the bootstrap
    resamples: int = 2000  # bootstrap resamples of the tasks
    level: float = 0.95

    def check(self) -> None:
        if self.references < 1 or self.tasks < 1 or (self.temperature or 1) <= 0 or not 0 < self.level < 1:
            raise VizprobeError("need --references >= 1, --tasks >= 1, a temperature > 0 and a level in (0, 1)")
        if self.pool < self.needed:
            raise VizprobeError(f"--pool {self.pool} is below references + tasks / 2 = {self.needed}; raise it")

    @property
    def exemplar_temperature(self) -> float:
        return self.temperature if self.temperature is not None else EXEMPLAR_TEMPERATURE

    @property
    def needed(self) -> int:
        """Distinct images each side of a unit's ranking must offer: K + N/2 (and at least K + 1)."""
        return max(self.references + math.ceil(self.tasks / 2), self.references + 1)


@dataclass
class ExemplarTasks:
    """Image indices (into the embedded images) of every unit's tasks: references (U, N, K) and queries (U, N)."""

    top_refs: np.ndarray
    bottom_refs: np.ndarray
    top_query: np.ndarray
    bottom_query: np.ndarray


def draw_tasks(
    top: np.ndarray, bottom: np.ndarray, counts: np.ndarray, settings: ScoreSettings, names: Sequence[str] = ()
) -> ExemplarTasks:
    """Tasks from each unit's ranked pools `top`, `bottom` (U, P) of image indices, strongest (weakest) first, of
    which the first `counts[u]` (per side: (U, 2)) are valid: K + 1 drawn without replacement per side and task,
    the K most extreme as references, the least extreme as the query. Each unit draws from its own generator,
    seeded by `settings.seed` and its name (`names`; else its row), so its tasks are the same whichever other
    units are scored with it (a layer at a time, resumed, on another machine)."""
    k, n = settings.references, settings.tasks
    names = list(names) or [str(row) for row in range(top.shape[0])]
    refs: tuple[list, list] = ([], [])
    queries: tuple[list, list] = ([], [])
    for u, name in enumerate(names):
        rng = np.random.default_rng([settings.seed, zlib.crc32(name.encode())])
        for side, pool in enumerate((top, bottom)):
            keys = rng.random((n, pool.shape[1]))
            keys[:, counts[u, side] :] = np.inf
            picked = np.sort(np.argsort(keys, axis=1)[:, : k + 1], axis=1)  # rank positions, most extreme first
            images = pool[u][picked]
            refs[side].append(images[:, :k])
            queries[side].append(images[:, k])
    return ExemplarTasks(*(np.stack(x) for x in (refs[0], refs[1], queries[0], queries[1])))


def as_rows(tasks: ExemplarTasks, images: np.ndarray) -> ExemplarTasks:
    """The tasks with scan image indices replaced by their rows in `images` (sorted indices, as embedded)."""
    position = np.full(int(images.max()) + 1 if len(images) else 0, -1, dtype=np.int64)
    position[images] = np.arange(len(images))
    return ExemplarTasks(
        *(position[a] for a in (tasks.top_refs, tasks.bottom_refs, tasks.top_query, tasks.bottom_query))
    )


def task_margins(gram: np.ndarray, tasks: ExemplarTasks) -> np.ndarray:
    """(U, N) evidence for the maximal query, delta_plus - delta_minus, from the images' similarity matrix."""

    def s(query: np.ndarray, refs: np.ndarray) -> np.ndarray:
        return gram[query[..., None], refs].mean(axis=-1)

    delta_plus = s(tasks.top_query, tasks.top_refs) - s(tasks.top_query, tasks.bottom_refs)
    delta_minus = s(tasks.bottom_query, tasks.top_refs) - s(tasks.bottom_query, tasks.bottom_refs)
    return delta_plus - delta_minus


def task_probabilities(
    gram: np.ndarray, tasks: ExemplarTasks, temperature: float, bias: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(U, N) probability that the observer picks the maximal query (averaged over the side it is shown on when
    the rule has a side `bias`), and (U, N) whether it would (margin > 0)."""
    margin = task_margins(gram, tasks)
    if bias == 0:
        return expit(margin / temperature), margin > 0
    return 0.5 * (expit(margin / temperature + bias) + expit(margin / temperature - bias)), margin > 0


def bootstrap_interval(p: np.ndarray, settings: ScoreSettings) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each row's mean over its columns (tasks or trials), resampling columns."""
    rng = np.random.default_rng([settings.seed, 1])
    idx = rng.integers(0, p.shape[1], (settings.resamples, p.shape[1]))
    means = p[:, idx].mean(axis=2)
    tail = (1 - settings.level) / 2 * 100
    return np.percentile(means, tail, axis=1), np.percentile(means, 100 - tail, axis=1)


def control_donor_rows(layers: Sequence[str], seed: int) -> np.ndarray:
    """For each unit (row), another row of the same layer (a seeded derangement within each layer); a layer with
    one unit borrows from the other layers."""
    rng = np.random.default_rng([seed, 2])
    layers = np.asarray(layers)
    donors = np.arange(len(layers))
    for layer in dict.fromkeys(layers.tolist()):
        rows = np.flatnonzero(layers == layer)
        if len(rows) > 1:
            shift = rng.permutation(len(rows))
            donors[rows[shift]] = rows[np.roll(shift, 1)]
    lonely = np.flatnonzero(donors == np.arange(len(layers)))
    for row in lonely:
        others = np.flatnonzero(np.arange(len(layers)) != row)
        if len(others):
            donors[row] = rng.choice(others)
    return donors


def unit_pools(scan, units: Sequence, pool: int, needed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each unit's top and bottom scan image indices (U, P; -1 past the valid ones), disjoint within a unit, and
    how many are valid (U, 2);
    a unit short of `needed` on either side is an error that says how many images the scan needs."""
    size = min(pool, scan.rank_limit)
    rankings = (([e.index for e in scan.top(u, size)], [e.index for e in scan.bottom(u, size)]) for u in units)
    return pack_pools(units, rankings, size, needed)


def pack_pools(units: Sequence, rankings, size: int, needed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`unit_pools`' arrays from each unit's (top, bottom) image indices, strongest (weakest) first: images on
    both sides are dropped from both; a unit short of `needed` on either side is a one-line error."""
    top = np.full((len(units), size), -1, dtype=np.int64)  # -1: no image (past a unit's valid count)
    bottom = np.full_like(top, -1)
    counts = np.zeros((len(units), 2), dtype=np.int64)
    for u, (unit, (high, low)) in enumerate(zip(units, rankings, strict=True)):
        shared = set(high) & set(low)
        high, low = [i for i in high if i not in shared], [i for i in low if i not in shared]
        if min(len(high), len(low)) < needed:
            raise VizprobeError(
                f"unit {unit} has {min(len(high), len(low))} distinct images on one side of its ranking; the "
                f"exemplar task needs {needed} a side (references + tasks / 2): scan at least {2 * needed} images "
                "(or lower --references / --tasks)"
            )
        top[u, : len(high)], bottom[u, : len(low)] = high, low
        counts[u] = len(high), len(low)
    return top, bottom, counts


def exemplar_scores(
    scan, units: Sequence, embedder, settings: ScoreSettings = ScoreSettings(), progress: bool = True
) -> tuple[pd.DataFrame, dict]:
    """Every unit's exemplar-task score, with the colour baseline's (see the module doc), and the run's details
    (images embedded, seconds)."""
    from vizprobe.observers.colour import ColourEmbedder

    settings.check()
    started = time.perf_counter()
    units = [scan.resolve_unit(u) for u in units]
    top, bottom, counts = unit_pools(scan, units, settings.pool, settings.needed)
    used = pool_images(top, bottom)
    paths = [scan.image_path(int(i)) for i in used]
    with tqdm(total=len(used), desc="embedding", unit="img", disable=not progress) as bar:
        vectors = embedder.embed(paths, whole=False, progress=bar)
    colour = ColourEmbedder().embed(paths)
    embedded = time.perf_counter()
    frame = score_pools(units, top, bottom, counts, used, vectors, settings, colour)
    details = {
        "images_embedded": int(len(used)),
        "embedding_s": round(embedded - started, 3),
        "scoring_s": round(time.perf_counter() - embedded, 3),
    }
    return frame, details


def pool_images(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """The scan image indices the pools use, sorted, once each."""
    used = np.unique(np.concatenate([top.ravel(), bottom.ravel()]))
    return used[used >= 0]


def score_pools(
    units: Sequence,
    top: np.ndarray,
    bottom: np.ndarray,
    counts: np.ndarray,
    images: np.ndarray,
    vectors: np.ndarray,
    settings: ScoreSettings,
    colour: np.ndarray | None = None,
) -> pd.DataFrame:
    """The units' scores, intervals and controls from their pools (`unit_pools`) and the embeddings `vectors` of
    the scan images `images` (sorted indices, covering the pools): matrix work only. `colour`: the same images'
    colour-statistics embeddings, which answer the same tasks as the baseline (`colour_score`, `colour_accuracy`)."""
    tasks = as_rows(draw_tasks(top, bottom, counts, settings, [str(u) for u in units]), images)
    temperature, bias = settings.exemplar_temperature, settings.bias
    gram = vectors @ vectors.T
    p, right = task_probabilities(gram, tasks, temperature, bias)
    low, high = bootstrap_interval(p, settings)
    donors = control_donor_rows([u.layer for u in units], settings.seed)
    swapped = replace(tasks, top_refs=tasks.top_refs[donors], bottom_refs=tasks.bottom_refs[donors])
    control, _ = task_probabilities(gram, swapped, temperature, bias)
    control_low, control_high = bootstrap_interval(control, settings)
    frame = pd.DataFrame(
        {
            "unit": [str(u) for u in units],
            "layer": [u.layer for u in units],
            "score": p.mean(axis=1),
            "ci_low": low,
            "ci_high": high,
            "tasks": settings.tasks,
            "accuracy": right.mean(axis=1),
            "control": control.mean(axis=1),
            "control_ci_low": control_low,
            "control_ci_high": control_high,
            "control_unit": [str(units[d]) for d in donors],
        }
    )
    if colour is not None:
        colour_p, colour_right = task_probabilities(colour @ colour.T, tasks, temperature, bias)
        frame["colour_score"] = colour_p.mean(axis=1)
        frame["colour_accuracy"] = colour_right.mean(axis=1)
    return frame
