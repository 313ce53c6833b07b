"""Units for a calibration study, spread over the score range (MIS's design: the easiest, the hardest, at random).

A study of a few dozen units calibrates a whole model's scores only if its units span the range the scores take:
`stratified_units` takes a third of the units with the highest scores, a third with the lowest and the rest at
random from those between (seeded), so that people see easy, hard and typical units alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vizprobe.errors import VizprobeError


def stratified_units(scores: pd.DataFrame, n: int, seed: int = 0) -> list[str]:
    """`n` units of a scores table: n // 3 highest, n // 3 lowest, the rest drawn at random from the middle; in
    descending order of score."""
    if n < 3:
        raise VizprobeError(f"--stratify {n}: pick at least 3 units (highest, lowest and random ones)")
    if n > len(scores):
        raise VizprobeError(f"--stratify {n}: the scores hold {len(scores)} units; pick at most that many")
    ranked = scores.sort_values(["score", "unit"], ascending=[False, True], kind="stable")["unit"].astype(str).tolist()
    third = n // 3
    middle = ranked[third : len(ranked) - third]
    drawn = np.random.default_rng([seed, 31]).choice(len(middle), n - 2 * third, replace=False)
    chosen = set(ranked[:third]) | set(ranked[len(ranked) - third :]) | {middle[i] for i in drawn}
    return [unit for unit in ranked if unit in chosen]
