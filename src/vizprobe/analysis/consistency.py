"""Error consistency (Geirhos et al. 2020): do two observers get the same trials wrong?

For two observers over the trials both answered: c_obs = fraction of trials both got right or both got
wrong; with accuracies p1, p2 on those trials, c_exp = p1 p2 + (1 - p1)(1 - p2) is the agreement expected
by chance; kappa = (c_obs - c_exp) / (1 - c_exp), which is Cohen's kappa of the correct/incorrect vectors.
Degenerate cases (c_exp = 1): kappa = 1 when c_obs = 1 (both observers all right, or both all wrong: they
agree perfectly). c_exp = 1 with c_obs < 1 cannot arise when p1, p2 are taken on the shared trials (c_exp = 1
forces p1 = p2 in {0, 1}, hence c_obs = 1); `kappa` returns NaN for it, as undefined.
Between groups, kappa is averaged over pairs of participants (one from each group; the diagonal pairs different
participants of the same group). By default a pair counts only when one's main trials are all among the
other's: two participants who did the same task, or a participant and a machine observer that answered every
trial (kappa over the participant's trials). Pairs that share only a few trials would inflate kappa by chance
(two independent observers sharing one trial average about 0.6); `min_shared` instead counts every pair
sharing at least that many trials (matched by trial_id). The SEM is over pairs (pairs share participants, so
it understates the uncertainty); a cell without pairs says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def kappa(c_obs: np.ndarray | float, c_exp: np.ndarray | float) -> np.ndarray:
    """(c_obs - c_exp) / (1 - c_exp), with 1 where c_obs = c_exp = 1 and NaN where only c_exp = 1."""
    c_obs, c_exp = np.asarray(c_obs, dtype=float), np.asarray(c_exp, dtype=float)
    degenerate = np.isclose(c_exp, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (c_obs - c_exp) / (1.0 - c_exp)
    return np.where(degenerate, np.where(np.isclose(c_obs, 1.0), 1.0, np.nan), value)


def error_consistency(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Kappa of two observers' correct (1) / incorrect (0) answers on the same trials, in the same order."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("error consistency needs two non-empty vectors over the same trials")
    p1, p2 = a.mean(), b.mean()
    return float(kappa(np.mean(a == b), p1 * p2 + (1 - p1) * (1 - p2)))


def _pair_kappas(x: np.ndarray, y: np.ndarray, min_shared: int | None, same: bool) -> np.ndarray:
    """Kappas of the counted row pairs of x (n, T) and y (m, T) holding 1/0/NaN, over their shared trials."""
    mx, my = ~np.isnan(x), ~np.isnan(y)
    rx, ry = (x == 1).astype(float), (y == 1).astype(float)
    wx, wy = (x == 0).astype(float), (y == 0).astype(float)
    shared = mx.astype(float) @ my.T.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        c_obs = (rx @ ry.T + wx @ wy.T) / shared
        p1 = (rx @ my.T.astype(float)) / shared
        p2 = (mx.astype(float) @ ry.T) / shared
    values = kappa(c_obs, p1 * p2 + (1 - p1) * (1 - p2))
    if min_shared is None:  # nested trial sets: one has no trial the other lacks
        only_x = mx.astype(float) @ (~my).T.astype(float)
        only_y = (~mx).astype(float) @ my.T.astype(float)
        valid = (shared > 0) & ((only_x == 0) | (only_y == 0))
    else:
        valid = shared >= min_shared
    if same:
        valid &= np.triu(np.ones_like(valid, dtype=bool), k=1)
    return values[valid & ~np.isnan(values)]


def kappa_matrix(
    frame: pd.DataFrame, groups: Sequence[str], min_shared: int | None = None
) -> dict[str, dict[str, dict]]:
    """`kappa[a][b]` = mean, SEM, n_pairs (and `why` where there are none) over participant pairs counted as in
    the module doc; `frame` holds main trials with `group`."""
    table = frame.assign(correct=frame["correct"].astype(float)).pivot_table(
        index=["group", "participant_id"], columns="trial_id", values="correct", aggfunc="mean", observed=True
    )
    table = table.where(table.isna() | (table == 0) | (table == 1), np.nan)  # a trial answered twice, differently
    blocks = {g: table.xs(g, level="group").to_numpy(float) for g in groups if g in table.index.get_level_values(0)}
    out: dict[str, dict[str, dict]] = {}
    for a in groups:
        out[a] = {}
        for b in groups:
            values = (
                _pair_kappas(blocks[a], blocks[b], min_shared, a == b) if a in blocks and b in blocks else np.array([])
            )
            out[a][b] = {
                "mean": float(np.mean(values)) if values.size else float("nan"),
                "sem": float(stats.sem(values)) if values.size > 1 else float("nan"),
                "n_pairs": int(values.size),
            }
            if not values.size:
                out[a][b]["why"] = _no_pairs(blocks, a, b, min_shared)
    return out


def _no_pairs(blocks: dict[str, np.ndarray], a: str, b: str, min_shared: int | None) -> str:
    """Why a cell of the kappa matrix has no pairs."""
    if a not in blocks or b not in blocks:
        return "no main trials in one of the groups"
    if a == b and len(blocks[a]) < 2:
        return "fewer than two participants"
    if min_shared is None:
        return "no two participants answered the same main trials (relax with --min-shared-trials)"
    return f"no pair shares {min_shared} or more main trials"
