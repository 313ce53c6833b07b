"""Machine observers answer a stimulus package in the responses format, so `analyze` treats them like participants.

Rows: `participant_id` = `machine:NAME` (`machine:NAME:K` when several sampled participants are asked for),
`observer` = NAME, `expertise` = `machine`, `task_id` NA (a machine answers every trial, not a task), `max_side`
the side the maximal option was shown on (balanced per condition, drawn from the observer's name, as the server
draws a participant's), `choice` the argmax of `p_right` (ties: a seeded coin per trial), `confidence` 1-3 from
|p_right - 1/2|, and `correct` from the manifest, which only this scorer reads, after the observer has answered.

Baselines (`run_baselines`) are observers answering the main trials of one condition, labelled
`baseline:NAME` (participant and observer), in the condition `none` when the package has it: they ignore
references, so their answers are the same in every condition. `analyze` shows each as its own group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from vizprobe.errors import VizprobeError
from vizprobe.observers.base import Observer, as_manifest, control_donors, control_views, trial_views
from vizprobe.observers.baselines import BASELINES, SaliencyModel, choices_from_probabilities
from vizprobe.observers.registry import get_observer
from vizprobe.responses import COLUMN_NAMES, validate_responses
from vizprobe.stimuli.manifest import Manifest
from vizprobe.stimuli.sides import max_sides


def in_format_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The responses columns in the format's order, extra columns after."""
    known = [name for name in COLUMN_NAMES if name in frame.columns]
    return frame[known + [name for name in frame.columns if name not in COLUMN_NAMES]]


def predict_package(
    package: str | Path | Manifest,
    observer: Observer | str,
    conditions: Sequence[str] | None = None,
    kinds: Sequence[str] = ("main", "catch"),
    sides_seed: str | None = None,
    controls: bool = False,
    control_seed: int = 0,
) -> pd.DataFrame:
    """P(choose right) of `observer` for every trial of `kinds` in every condition (one batch per condition).

    With `sides_seed` the options of each condition's trials are shown on balanced sides drawn from it, as
    the server does per participant (`max_side` says where the maximal option was); else in stored order.
    With `controls` (and an observer that reads references) each trial with references is also answered with
    another unit's references (`control_donors(manifest, control_seed)`): rows with `control` 1 and
    `control_unit`."""
    manifest = as_manifest(package)
    observer = get_observer(observer, manifest=manifest)
    donors = control_donors(manifest, control_seed) if controls and observer.uses_references else {}
    frames = []
    for condition in list(conditions) if conditions else manifest.conditions:
        trials = manifest.trials_in(condition, kinds)
        sides = (
            max_sides(f"{sides_seed}:{condition}", len(trials))
            if sides_seed is not None
            else [t.correct for t in trials]
        )
        views = trial_views(manifest, condition, kinds, sides)
        frames.append(_answer(observer, views, condition, sides, control=0))
        if donors:
            shown = dict(zip([v.trial_id for v in views], sides, strict=True))
            swapped = control_views(manifest, views, donors)
            frame = _answer(observer, swapped, condition, [shown[v.trial_id] for v in swapped], control=1)
            frames.append(frame.assign(control_unit=frame["unit"].map(donors)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _answer(observer: Observer, views: list, condition: str, sides: Sequence[int], control: int) -> pd.DataFrame:
    """One batch of the observer's answers as rows (see `predict_package`)."""
    p = np.asarray(observer.predict(views), dtype=np.float64) if views else np.zeros(0)
    if p.shape != (len(views),) or not np.all((p >= 0) & (p <= 1)):
        raise VizprobeError(f"observer {observer.name!r} must return one probability in [0, 1] per trial")
    return pd.DataFrame(
        {
            "condition": condition,
            "trial_id": [v.trial_id for v in views],
            "kind": [v.kind for v in views],
            "unit": [v.unit for v in views],
            "layer": [v.layer for v in views],
            "image_set": [v.image_set for v in views],
            "p_right": p,
            "max_side": list(sides),
            "control": control,
        }
    )


def confidence_from_p(p: np.ndarray) -> np.ndarray:
    """Confidence 1-3 from the distance of P(right) to 1/2: below 1/6 -> 1, below 1/3 -> 2, else 3."""
    return 1 + np.minimum(2, np.floor(np.abs(np.asarray(p) - 0.5) * 6)).astype(int)


def answer_package(
    package: str | Path | Manifest,
    observer: Observer | str,
    conditions: Sequence[str] | None = None,
    kinds: Sequence[str] = ("main", "catch"),
    participants: int = 1,
    seed: int = 0,
    label: str | None = None,
    controls: bool = True,
) -> pd.DataFrame:
    """The observer's answers to every trial and condition as responses rows (see the module doc).

    With `participants` > 1 each machine participant samples its choices from `p_right` (seeded) instead
    of taking the argmax, e.g. to give the error-consistency analysis several machine answers. `label`
    replaces `machine:NAME` as participant id and observer name (the baselines use `baseline:NAME`).
    `controls`: also answer each trial with another unit's references (rows with `control` 1, drawn from
    `seed`), for observers whose answers depend on the references; `analyze` reports them beside the real ones.
    """
    manifest = as_manifest(package)
    observer = get_observer(observer, manifest=manifest)
    predicted = predict_package(
        manifest, observer, conditions, kinds, sides_seed=label or observer.name, controls=controls, control_seed=seed
    )
    if observer.embedder_label is not None:
        predicted["embedder"] = observer.embedder_label
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(participants):
        p = predicted["p_right"].to_numpy()
        if participants == 1:
            choice = choices_from_probabilities(p, predicted["trial_id"].tolist(), seed=seed)
            pid = label or f"machine:{observer.name}"
        else:
            choice = (rng.random(len(p)) < p).astype(int)
            pid = f"{label or f'machine:{observer.name}'}:{k}"
        rows = predicted.assign(
            participant_id=pid,
            task_id=pd.NA,
            is_catch=(predicted["kind"] == "catch").astype(int),
            is_practice=(predicted["kind"] == "practice").astype(int),
            choice=choice,
            correct=(choice == predicted["max_side"].to_numpy()).astype(int),
            confidence=confidence_from_p(p),
            expertise="machine",
            observer=label or observer.name,
        )
        frames.append(rows.drop(columns="kind"))
    return validate_responses(in_format_order(pd.concat(frames, ignore_index=True)))


def baseline_condition(manifest: Manifest) -> str:
    """`none` if the package has it, else its first condition (baselines ignore references)."""
    return "none" if "none" in manifest.conditions or not manifest.conditions else manifest.conditions[0]


def run_baselines(
    package: str | Path | Manifest,
    names: Sequence[str] = BASELINES,
    seed: int = 0,
    saliency_model: SaliencyModel | None = None,
) -> pd.DataFrame:
    """Responses rows: every named baseline's answer to every main trial of `package` (see the module doc)."""
    manifest = as_manifest(package)
    condition = baseline_condition(manifest)
    if not manifest.trials_of(["main"]):
        raise VizprobeError(f"stimulus package {manifest.package} has no main trials for the baselines")
    frames = []
    for name in names:
        options = {"seed": seed} if name == "random" else {}
        if name == "saliency" and saliency_model is not None:
            options = {"model": saliency_model}
        observer = get_observer(name, manifest=manifest, **options)
        frames.append(answer_package(manifest, observer, [condition], ("main",), seed=seed, label=f"baseline:{name}"))
    return pd.concat(frames, ignore_index=True)


def predicted_accuracy(responses: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Accuracy per (observer, condition) on main trials, with a Wilson interval over trials; where the observer
    answered control trials (another unit's references), their accuracy and interval beside it."""
    main = responses[(responses["is_catch"] != 1) & (responses["is_practice"] != 1)]
    control = pd.Series(False, index=main.index)
    if "control" in main.columns:
        control = (main["control"] == 1).fillna(False).astype(bool)
    label = main["observer"] if "observer" in main.columns else main["participant_id"]
    rows = []
    for (name, condition), part in main[~control].groupby(
        [label[~control], main.loc[~control, "condition"]], sort=False
    ):
        row = {"observer": name, "condition": condition, **_wilson(part["correct"], level)}
        twins = main[control & (label == name) & (main["condition"] == condition)]
        if len(twins):
            row |= {f"control_{key}": value for key, value in _wilson(twins["correct"], level).items()}
        rows.append(row)
    return pd.DataFrame(rows)


def _wilson(correct: pd.Series, level: float) -> dict:
    k, n = int(correct.sum()), len(correct)
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return {"accuracy": k / n, "n_trials": n, "n_correct": k, "ci_low": float(low), "ci_high": float(high)}
