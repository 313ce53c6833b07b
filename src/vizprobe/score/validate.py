"""`vizprobe validate`: does a machine score predict which units people find easy? Per unit, against people.

For the units that both the scores and the human responses hold (units the score's rule was fitted on left out),
people's per-unit accuracy on the main trials is set beside the machine's score:
* `machine`: the Spearman correlation of the score with people's accuracy over units, with a bootstrap interval
  (units resampled);
* `colour`: the same for the colour-statistics baseline's score (`colour_score`), and the difference
  machine - colour with a paired bootstrap interval: a score that does not beat colour statistics says nothing
  about the unit's features;
* `noise_ceiling`: how well people predict people: participants split at random into halves, the Spearman
  correlation of the halves' per-unit accuracies, Spearman-Brown corrected to the whole group (2r / (1 + r)); the
  mean over random splits, with the 2.5 and 97.5 percentiles of the splits. No score can be expected above it.
Written to OUT: validation.json, units.csv (per unit: people's accuracy and count, the scores) and validation.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_json, atomic_write_text, staged_dir

VALIDATION_FORMAT = "vizprobe-validation"
VALIDATION_VERSION = 1
MIN_PARTICIPANTS = 2  # per unit: fewer leaves no split half and no accuracy worth ranking


def _centred_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ranks (ties get mean ranks), centred, and their norms."""
    ranks = rankdata(values, axis=-1)
    ranks -= ranks.mean(axis=-1, keepdims=True)
    return ranks, np.sqrt((ranks**2).sum(axis=-1))


def _correlate(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    denominator = a[1] * b[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a[0] * b[0]).sum(axis=-1) / denominator, np.nan)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of x with the same row of y (ties get mean ranks); NaN where constant."""
    return _correlate(_centred_ranks(x), _centred_ranks(y))


def bootstrap_spearman(
    columns: dict[str, np.ndarray], human: np.ndarray, resamples: int, seed: int, level: float
) -> tuple[dict, np.ndarray]:
    """Each column's Spearman with `human` and its percentile interval over units resampled with replacement; the
    same resamples for every column (so differences are paired). Returns the summaries and the (columns, B) draws."""
    rng = np.random.default_rng([seed, 11])
    idx = rng.integers(0, len(human), (resamples, len(human)))
    tail = (1 - level) / 2 * 100
    people = _centred_ranks(human[idx])  # ranked once for every column
    out, draws = {}, []
    for name, values in columns.items():
        drawn = _correlate(_centred_ranks(values[idx]), people)
        draws.append(drawn)
        low, high = np.nanpercentile(drawn, [tail, 100 - tail])
        out[name] = {"spearman": float(spearman_rows(values, human)), "ci_low": float(low), "ci_high": float(high)}
    return out, np.stack(draws)


def noise_ceiling(correct: pd.DataFrame, splits: int, seed: int, level: float) -> dict:
    """Split-half reliability of people's per-unit accuracy (see the module doc) from rows of unit, participant
    and correct."""
    unit_of, unit_names = pd.factorize(correct["unit"].astype(str))
    person_of, person_names = pd.factorize(correct["participant_id"].astype(str))
    right = np.zeros((len(unit_names), len(person_names)))
    total = np.zeros_like(right)
    np.add.at(right, (unit_of, person_of), correct["correct"].to_numpy(dtype=float))
    np.add.at(total, (unit_of, person_of), 1.0)
    rng = np.random.default_rng([seed, 12])
    half = len(person_names) // 2
    masks = np.zeros((splits, len(person_names)))
    for k in range(splits):
        masks[k, rng.permutation(len(person_names))[:half]] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        first = (right @ masks.T) / (total @ masks.T)  # (units, splits)
        second = (right @ (1 - masks).T) / (total @ (1 - masks).T)
    if np.isfinite(first).all() and np.isfinite(second).all():  # every unit answered in both halves of every split
        r = spearman_rows(first.T, second.T)
    else:
        r = np.array([_spearman_valid(first[:, k], second[:, k]) for k in range(splits)])
    corrected = 2 * r / (1 + r)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(corrected, [tail, 100 - tail])
    return {
        "spearman_brown": float(np.nanmean(corrected)),
        "split_low": float(low),
        "split_high": float(high),
        "split_half_r": float(np.nanmean(r)),
        "splits": splits,
        "participants": len(person_names),
    }


def _spearman_valid(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    return float(spearman_rows(a[keep], b[keep])) if keep.sum() > 2 else float("nan")


def _read_scores(scores) -> tuple[pd.DataFrame, dict]:
    if isinstance(scores, pd.DataFrame):
        return scores, dict(scores.attrs.get("record", {}))
    folder = Path(scores)
    table, marker = folder / "scores.csv", folder / "scores.json"
    if not (table.is_file() and marker.is_file()):
        raise VizprobeError(f"{scores} is not a scores folder (scores.csv, scores.json); run `vizprobe score` first")
    return pd.read_csv(table), json.loads(marker.read_text())


def human_unit_rows(responses, record: dict) -> pd.DataFrame:
    """The human participants' main-trial rows with a unit (catch, practice and machine rows left out); answers of
    another package than the scored one are an error."""
    from vizprobe.analysis.groups import main_trials
    from vizprobe.responses import human_rows, read_responses, validate_responses

    if isinstance(responses, str | Path):
        frame = read_responses(responses)
    elif "invalid_values" in responses.attrs:  # read or checked by the responses format already (its marker)
        frame = responses
    else:
        frame = validate_responses(responses)
    if "unit" not in frame.columns:
        raise VizprobeError("the responses have no 'unit' column: validation compares units")
    rows = main_trials(frame[human_rows(frame)]).dropna(subset=["unit"])
    if rows.empty:
        raise VizprobeError("the responses hold no human participants' main trials")
    if record.get("stimuli"):
        from vizprobe.stimuli.manifest import Manifest

        manifest = Manifest.load(record["stimuli"])
        unknown = sorted(set(rows["trial_id"].astype(str)) - set(manifest.trials))
        if unknown:
            raise VizprobeError(
                f"{len(unknown)} trial ids of the responses (e.g. {unknown[0]}) are not in the scored package "
                f"{record['stimuli']}: validate with answers to the package the scores were made from"
            )
    return rows


def per_unit(rows: pd.DataFrame, scores: pd.DataFrame, fitted_units: set[str]) -> pd.DataFrame:
    """People's accuracy and participants per unit (and condition, when the scores have one) beside the scores,
    for the units both hold, less those the rule was fitted on; too few participants is a one-line error."""
    keys = ["unit", "condition"] if "condition" in scores.columns else ["unit"]
    rows = rows.assign(unit=rows["unit"].astype(str), correct=rows["correct"].astype(float))
    if "condition" in keys:
        rows = rows.assign(condition=rows["condition"].astype(str))
    people = rows.groupby(keys).agg(
        human_accuracy=("correct", "mean"), answers=("correct", "size"), participants=("participant_id", "nunique")
    )
    columns = [c for c in ("score", "accuracy", "colour_score", "colour_accuracy", "control") if c in scores.columns]
    machine = scores.assign(unit=scores["unit"].astype(str)).set_index(keys)[columns]
    joined = people.join(machine, how="inner").reset_index()
    joined = joined[~joined["unit"].isin(fitted_units)]
    if joined.empty:
        raise VizprobeError(
            "the responses and the scores have no units in common (outside those the rule was fitted on): "
            "score the units people answered"
        )
    few = joined[joined["participants"] < MIN_PARTICIPANTS]
    if len(few):
        raise VizprobeError(
            f"{len(few)} unit(s) (e.g. {few['unit'].iloc[0]}) were answered by fewer than {MIN_PARTICIPANTS} "
            "participants: collect more answers per unit, or score only the units people answered enough"
        )
    return joined


def validate(
    responses,
    scores,
    out: str | Path | None = None,
    resamples: int = 2000,
    splits: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Validate a scores folder (or frame) against human `responses` (see the module doc); write OUT when given."""
    table, record = _read_scores(scores)
    if "colour_score" not in table.columns:
        raise VizprobeError(
            "these scores carry no colour baseline (colour_score): score again with this vizprobe version"
        )
    rows = human_unit_rows(responses, record)
    fitted = set((record.get("calibration") or {}).get("fitted", {}).get("units", []))
    units = per_unit(rows, table, fitted)
    if len(units) < 3:
        raise VizprobeError(f"{len(units)} unit(s) in common: a correlation over units needs at least 3")
    human = units["human_accuracy"].to_numpy(float)
    correlations, draws = bootstrap_spearman(
        {"machine": units["score"].to_numpy(float), "colour": units["colour_score"].to_numpy(float)},
        human,
        resamples,
        seed,
        level,
    )
    tail = (1 - level) / 2 * 100
    difference = draws[0] - draws[1]
    low, high = np.nanpercentile(difference, [tail, 100 - tail])
    kept = rows[rows["unit"].astype(str).isin(set(units["unit"]))]
    result = {
        "format": VALIDATION_FORMAT,
        "version": VALIDATION_VERSION,
        "units": len(units),
        "units_fitted_left_out": len(fitted),
        "participants": int(kept["participant_id"].nunique()),
        "answers": int(len(kept)),
        "machine": correlations["machine"],
        "colour": correlations["colour"],
        "machine_minus_colour": {
            "difference": correlations["machine"]["spearman"] - correlations["colour"]["spearman"],
            "ci_low": float(low),
            "ci_high": float(high),
        },
        "noise_ceiling": noise_ceiling(kept, splits, seed, level),
        "calibration": record.get("calibration", {}),
        "embedder": record.get("embedder") or [s.get("embedder") for s in record.get("scans", [])],
        "resamples": resamples,
        "level": level,
    }
    if out is not None:
        write_validation(result, units, out)
    return result


def write_validation(result: dict, units: pd.DataFrame, out: str | Path) -> Path:
    """OUT/validation.json, units.csv and validation.png, written as one folder."""
    out = Path(out)
    with staged_dir(out, "validation.json", "validation folder") as staging:
        atomic_write_text(staging / "units.csv", units.to_csv(index=False, float_format="%.6g"))
        figure(result, units, staging / "validation.png")
        atomic_write_json(staging / "validation.json", result)
    return out


def figure(result: dict, units: pd.DataFrame, path: Path) -> None:
    """Machine score and colour baseline against people's per-unit accuracy, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceiling = result["noise_ceiling"]["spearman_brown"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    for ax, (column, name) in zip(axes, (("score", "machine"), ("colour_score", "colour")), strict=True):
        found = result[name]
        ax.scatter(
            units[column],
            units["human_accuracy"],
            s=18,
            alpha=0.75,
            color="#1f77b4" if name == "machine" else "#d62728",
        )
        ax.set_xlabel(f"{name} score")
        ax.set_title(
            f"{name}: Spearman {found['spearman']:.2f} [{found['ci_low']:.2f}, {found['ci_high']:.2f}]", fontsize=10
        )
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel("people's accuracy per unit")
    fig.suptitle(f"{result['units']} units, {result['participants']} participants; noise ceiling {ceiling:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
