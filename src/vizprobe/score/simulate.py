"""Simulated people on the exemplar task, whose decision rule is known: to rehearse and check a validation.

Each simulated participant answers `tasks` exemplar tasks of every unit, drawn as the score draws them (MIS's
design, `vizprobe.score.exemplar.draw_tasks`) from its own seed, so participants see different tasks of a unit.
A participant decides as an observer with embedder `embedder` would: on a task with margin m it is right with
probability logistic(m / temperature + noise * e) (e ~ N(0, 1) per task), or, with probability `lapse`, answers
by a fair coin. With the colour-statistics embedder the simulated people see only colour; with a network
embedder, what that network sees. The rows are in the responses format (one per answered task; `trial_id`
UNIT/PARTICIPANT/TASK, condition `natural`), with `simulated_from` naming the embedder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.special import expit

from vizprobe.score.exemplar import (
    ScoreSettings,
    as_rows,
    draw_tasks,
    pool_images,
    task_margins,
    unit_pools,
)


def simulate_exemplar(
    scan,
    units: Sequence,
    embedder,
    participants: int = 30,
    tasks: int = 10,
    temperature: float = 0.05,
    noise: float = 1.0,
    lapse: float = 0.05,
    settings: ScoreSettings | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Responses of `participants` simulated people to `tasks` exemplar tasks of each unit (see the module doc);
    `settings`: the task design (references, pool) as the score's."""
    units = [scan.resolve_unit(u) for u in units]
    drawn = replace(settings or ScoreSettings(), tasks=tasks)
    top, bottom, counts = unit_pools(scan, units, drawn.pool, drawn.needed)
    images = pool_images(top, bottom)
    vectors = embedder.embed([scan.image_path(int(i)) for i in images], whole=False)
    gram = vectors @ vectors.T
    rng = np.random.default_rng([seed, 21])
    frames = []
    for person in range(participants):
        own = draw_tasks(top, bottom, counts, replace(drawn, seed=seed * 1000 + person + 1), [str(u) for u in units])
        own = as_rows(own, images)
        margin = task_margins(gram, own)
        q = expit(margin / temperature + noise * rng.standard_normal(margin.shape))
        right = np.where(rng.random(q.shape) < lapse, rng.random(q.shape) < 0.5, rng.random(q.shape) < q)
        frames.append(_rows(units, right, f"sim-{person:03d}", embedder.label, rng))
    return pd.concat(frames, ignore_index=True)


def _rows(units: Sequence, right: np.ndarray, pid: str, label: str, rng) -> pd.DataFrame:
    """One participant's rows: every unit's tasks, the maximal query on a random side."""
    n_units, n_tasks = right.shape
    unit_names = np.repeat([str(u) for u in units], n_tasks)
    max_side = rng.integers(0, 2, right.size)
    correct = right.ravel().astype(int)
    return pd.DataFrame(
        {
            "participant_id": pid,
            "condition": "natural",
            "task_id": "exemplar",
            "trial_id": [
                f"{u}/{pid}/{t}" for u, t in zip(unit_names, np.tile(np.arange(n_tasks), n_units), strict=True)
            ],
            "unit": unit_names,
            "layer": np.repeat([u.layer for u in units], n_tasks),
            "image_set": np.tile(np.arange(n_tasks), n_units),
            "is_catch": 0,
            "is_practice": 0,
            "choice": np.where(correct == 1, max_side, 1 - max_side),
            "max_side": max_side,
            "correct": correct,
            "expertise": "lay",
            "simulated_from": label,
        }
    )
