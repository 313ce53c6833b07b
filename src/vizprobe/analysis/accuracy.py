"""Accuracy with honest uncertainty: participant means, SEM, bootstrap CIs and corrected pairwise tests.

Accuracy of a group is the mean over its participants of each participant's accuracy on main trials
(so every participant weighs the same). Uncertainty: SEM (`scipy.stats.sem`, ddof 1), +-2 SEM, and a 95 %
bootstrap CI over participants (`scipy.stats.bootstrap`, percentile method by default, fixed seed). A machine
observer is one "participant"; its interval is the Wilson interval over its trials instead.
Pairwise differences between human conditions: two-sided permutation test on participant means
(`scipy.stats.permutation_test`), Holm-corrected (`statsmodels`), with Cohen's d (pooled SD) and the
difference in accuracy.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint


@dataclass(frozen=True)
class StatsSettings:
    """Resampling settings shared by the bootstrap and the permutation tests."""

    n_resamples: int = 10_000
    ci_level: float = 0.95
    ci_method: str = "percentile"  # or "BCa" (unstable when all participants score alike)
    seed: int = 0


def participant_accuracy(frame: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (group, *by, participant): accuracy and trial count. `frame` holds main trials with `group`."""
    keys = ["group", *by, "participant_id"]
    grouped = frame.assign(correct=frame["correct"].astype(float)).groupby(keys, observed=True)["correct"]
    return grouped.agg(accuracy="mean", n_trials="size").reset_index()


def summarize(values: np.ndarray, settings: StatsSettings = StatsSettings()) -> dict:
    """Mean over participants, SEM, +-2 SEM and the bootstrap CI (NaN where fewer than 2 participants)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(np.mean(values)) if n else float("nan")
    sem = float(stats.sem(values)) if n > 1 else float("nan")
    low = high = float("nan")
    if n > 1 and np.ptp(values) == 0:
        low = high = mean  # every resample has the same mean
    elif n > 1:
        ci = stats.bootstrap(
            (values,),
            np.mean,
            n_resamples=settings.n_resamples,
            confidence_level=settings.ci_level,
            method=settings.ci_method,
            rng=np.random.default_rng(settings.seed),
        ).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return {
        "mean": mean,
        "sem": sem,
        "two_sem_low": mean - 2 * sem,
        "two_sem_high": mean + 2 * sem,
        "ci_low": low,
        "ci_high": high,
        "n_participants": n,
    }


def machine_summary(correct: pd.Series, level: float = 0.95) -> dict:
    """A single observer's accuracy over its trials, with the Wilson interval."""
    k, n = int(correct.astype(int).sum()), len(correct)
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson") if n else (float("nan"),) * 2
    return {
        "accuracy": k / n if n else float("nan"),
        "n_trials": n,
        "n_correct": k,
        "ci_low": float(low),
        "ci_high": float(high),
        "ci": "wilson over trials",
    }


def accuracy_table(
    frame: pd.DataFrame, by: Sequence[str] = (), settings: StatsSettings = StatsSettings()
) -> dict[str, dict]:
    """Summaries per group (and per `by` values, nested) from main trials with a `group` column."""
    per = participant_accuracy(frame, by)
    out: dict[str, dict] = {}
    for keys, part in per.groupby(["group", *by], observed=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        node = out
        for key in keys[:-1]:
            node = node.setdefault(str(key), {})
        node[str(keys[-1])] = summarize(part["accuracy"].to_numpy(), settings) | {
            "n_trials": int(part["n_trials"].sum())
        }
    return out


def cohens_d(x: np.ndarray, y: np.ndarray) -> float:
    """Standardized mean difference with the pooled standard deviation (ddof 1)."""
    nx, ny = len(x), len(y)
    pooled = np.sqrt(((nx - 1) * np.var(x, ddof=1) + (ny - 1) * np.var(y, ddof=1)) / (nx + ny - 2))
    return float((np.mean(x) - np.mean(y)) / pooled) if pooled > 0 else float("nan")


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def pairwise_tests(
    per_participant: pd.DataFrame, groups: Sequence[str], settings: StatsSettings = StatsSettings()
) -> list[dict]:
    """Permutation tests between every pair of `groups` on participant accuracies, Holm-corrected."""
    values = {g: per_participant.loc[per_participant["group"] == g, "accuracy"].to_numpy(float) for g in groups}
    rows = []
    for a, b in itertools.combinations(groups, 2):
        x, y = values[a], values[b]
        if len(x) < 2 or len(y) < 2:
            continue
        test = stats.permutation_test(
            (x, y),
            _mean_difference,
            permutation_type="independent",
            vectorized=True,
            n_resamples=settings.n_resamples,
            alternative="two-sided",
            rng=np.random.default_rng(settings.seed),
        )
        rows.append(
            {
                "a": a,
                "b": b,
                "difference": float(np.mean(x) - np.mean(y)),
                "cohens_d": cohens_d(x, y),
                "p": float(test.pvalue),
                "n_a": len(x),
                "n_b": len(y),
            }
        )
    if rows:
        reject, corrected, _, _ = multipletests([r["p"] for r in rows], alpha=0.05, method="holm")
        for row, p, significant in zip(rows, corrected, reject, strict=True):
            row.update(p_holm=float(p), significant=bool(significant))
    return rows
