"""Fit the similarity observer's decision rule to people: `vizprobe observe --fit responses.csv`.

The rule is P(right) = logistic(margin / temperature + bias), where `margin` is the right option's similarity to
the references minus the left one's, as the participant saw the trial (`max_side` says which side the maximal
option was shown on). Temperature and bias are fitted by maximum likelihood to the human participants' choices on
the package's main trials (a logistic regression of choice on margin: slope 1 / temperature, intercept bias), with
Wald intervals. Cross-validation over participants (each fold's participants held out, the rule fitted on the others)
gives, per condition, the held-out log-likelihood per trial, the agreement with the humans' majority choice per
trial, and the error consistency (kappa) with each held-out participant, for the fitted rule and the unfitted one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import expit

from vizprobe.errors import VizprobeError
from vizprobe.observers.base import as_manifest, trial_views
from vizprobe.observers.rule import DecisionRule

MIN_PARTICIPANTS = 4  # cross-validation over participants needs a few to hold out


def human_main_rows(responses: pd.DataFrame, manifest) -> pd.DataFrame:
    """The human participants' main-trial rows, checked against the package (clear errors, nothing written)."""
    from vizprobe.analysis.groups import human_rows, main_trials

    for column in ("choice", "max_side"):
        if column not in responses.columns or responses[column].isna().all():
            raise VizprobeError(f"the responses lack {column!r}: the fit needs each participant's choice and sides")
    rows = main_trials(responses[human_rows(responses)]).dropna(subset=["choice", "max_side"])
    if rows.empty:
        raise VizprobeError("the responses hold no human participants' main trials to fit the rule to")
    unknown = sorted(set(rows["trial_id"]) - set(manifest.trials))
    if unknown:
        raise VizprobeError(
            f"{len(unknown)} trial ids of the responses (e.g. {unknown[0]}) are not in the stimulus package "
            f"{manifest.package}: fit to responses of the same package"
        )
    participants = rows[["condition", "participant_id"]].drop_duplicates()
    if len(participants) < MIN_PARTICIPANTS:
        raise VizprobeError(
            f"the responses hold {len(participants)} participant(s); fitting with cross-validation over "
            f"participants needs at least {MIN_PARTICIPANTS}"
        )
    return rows


def shown_margins(rows: pd.DataFrame, manifest, observer) -> np.ndarray:
    """Each row's margin (right minus left similarity) as that participant saw the trial."""
    stored: dict[tuple[str, str], float] = {}
    for condition in rows["condition"].unique():
        views = trial_views(manifest, condition, ("main",))
        stored |= {(condition, v.trial_id): m for v, m in zip(views, observer.margins(views), strict=True)}
    correct = rows["trial_id"].map(lambda t: manifest.trials[t].correct).to_numpy()
    keys = zip(rows["condition"], rows["trial_id"], strict=True)
    margins = np.array([stored[key] for key in keys], dtype=np.float64)
    return np.where(rows["max_side"].to_numpy(int) == correct, margins, -margins)


def fit_logistic(margins: np.ndarray, choices: np.ndarray, level: float = 0.95) -> dict:
    """Maximum-likelihood slope and intercept of P(choice = 1) = logistic(slope * margin + intercept)."""
    design = sm.add_constant(np.asarray(margins, dtype=np.float64), has_constant="add")
    try:
        result = sm.Logit(np.asarray(choices, dtype=np.float64), design).fit(disp=0, method="newton", maxiter=100)
    except np.linalg.LinAlgError as exc:
        raise VizprobeError(f"the rule cannot be fitted to these choices ({exc})") from None
    (b_low, s_low), (b_high, s_high) = result.conf_int(1 - level)[:, 0], result.conf_int(1 - level)[:, 1]
    return {
        "slope": float(result.params[1]),
        "intercept": float(result.params[0]),
        "slope_ci": [s_low, s_high],
        "intercept_ci": [b_low, b_high],
    }


def _rule_from(fitted: dict, embedder: str | None) -> DecisionRule:
    if fitted["slope"] <= 0:
        raise VizprobeError(
            "people chose against the similarity margin (fitted slope <= 0): the observer's evidence does not "
            "predict them, so no temperature can be fitted"
        )
    return DecisionRule(1 / fitted["slope"], fitted["intercept"], embedder)


def _kappa(machine: np.ndarray, human: np.ndarray) -> float:
    from vizprobe.analysis.consistency import error_consistency

    return float(error_consistency(machine, human))


def evaluate(rows: pd.DataFrame, margins: np.ndarray, p_right: np.ndarray) -> dict:
    """Per condition: mean log-likelihood per trial of the choices, agreement of the rule's argmax with the
    humans' majority choice per trial (ties left out), and mean kappa with each participant."""
    frame = rows.assign(p=np.clip(p_right, 1e-9, 1 - 1e-9), margin=margins)
    choice = frame["choice"].to_numpy(int)
    frame["loglik"] = np.where(choice == 1, np.log(frame["p"]), np.log(1 - frame["p"]))
    frame["machine_correct"] = ((frame["p"] > 0.5).astype(int) == frame["max_side"].astype(int)).astype(int)
    out = {}
    for condition, part in frame.groupby("condition", sort=False):
        per_trial = part.groupby("trial_id").agg(human=("correct", "mean"), machine=("machine_correct", "mean"))
        decided = per_trial[per_trial["human"] != 0.5]
        agree = ((decided["human"] > 0.5) == (decided["machine"] > 0.5)).mean() if len(decided) else float("nan")
        kappas = [
            _kappa(p["machine_correct"].to_numpy(), p["correct"].to_numpy(int))
            for _, p in part.groupby("participant_id")
        ]
        out[str(condition)] = {
            "loglik_per_trial": float(part["loglik"].mean()),
            "majority_agreement": float(agree),
            "kappa": float(np.nanmean(kappas)) if kappas else float("nan"),
            "trials": len(part),
            "participants": int(part["participant_id"].nunique()),
        }
    return out


def participant_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold: participants shuffled (seeded) and dealt into `folds` folds (at most one per participant)."""
    names = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of_name = dict(zip(names[order], np.arange(len(names)) % min(folds, len(names)), strict=True))
    return np.array([fold_of_name[g] for g in groups])


def fit_rule(
    package, responses: pd.DataFrame | str | Path, observer, folds: int = 5, seed: int = 0
) -> tuple[DecisionRule, dict]:
    """The rule fitted to all human participants of `responses`, and its cross-validated comparison with the
    observer's current (unfitted) rule, per condition (see the module doc)."""
    from vizprobe.responses import read_responses, validate_responses

    if not hasattr(observer, "rule"):
        raise VizprobeError(f"--fit fits the similarity observer's rule; observer {observer.name!r} has none")
    manifest = as_manifest(package)
    frame = read_responses(responses) if isinstance(responses, str | Path) else validate_responses(responses)
    rows = human_main_rows(frame, manifest).reset_index(drop=True)
    margins = shown_margins(rows, manifest, observer)
    choices = rows["choice"].to_numpy(int)
    fitted = fit_logistic(margins, choices)
    rule = _rule_from(fitted, observer.embedder_label)
    groups = (rows["condition"].astype(str) + "/" + rows["participant_id"].astype(str)).to_numpy()
    held_out = np.empty(len(rows))
    fold_of = participant_folds(groups, folds, seed)
    for fold in np.unique(fold_of):
        train, test = fold_of != fold, fold_of == fold
        part = fit_logistic(margins[train], choices[train])
        held_out[test] = expit(part["slope"] * margins[test] + part["intercept"])
    report = {
        "fitted": evaluate(rows, margins, held_out),
        "unfitted": evaluate(rows, margins, observer.rule.p_right(margins)),
        "unfitted_rule": {"temperature": observer.rule.temperature, "bias": observer.rule.bias},
    }
    details = {
        "task": manifest.task,
        "units": sorted(rows["unit"].dropna().astype(str).unique().tolist()) if "unit" in rows.columns else [],
        "package": str(manifest.package),
        "participants": int(len(set(groups))),
        "trials": len(rows),
        "folds": int(len(np.unique(fold_of))),
        "seed": seed,
        "slope": fitted["slope"],
        "slope_ci": fitted["slope_ci"],
        "temperature_ci": sorted(1 / s if s > 0 else float("inf") for s in fitted["slope_ci"]),
        "bias_ci": fitted["intercept_ci"],
        "cross_validated": report,
    }
    return replace(rule, fitted=details), report
