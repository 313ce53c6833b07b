"""Machine observers answer a stimulus package in the responses format, so `analyze` treats them like participants.

Rows: `participant_id` = `machine:NAME` (`machine:NAME:K` when several sampled participants are asked for),
`observer` = NAME, `expertise` = `machine`, `task_id` NA (a machine answers every trial, not a task), `choice`
the argmax of `p_right` (ties: a seeded coin per trial), `confidence` 1-3 from |p_right - 1/2|, and `correct`
from the manifest, which only this scorer reads, after the observer has answered.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from vizprobe.errors import VizprobeError
from vizprobe.observers.base import _OBSERVERS, Observer, get_observer, trial_views
from vizprobe.responses import COLUMN_NAMES, CONDITIONS, validate_responses
from vizprobe.stimuli.manifest import load_manifest


def package_conditions(manifest: dict) -> list[str]:
    """The conditions a package has tasks for, in the paper's order."""
    present = {task["condition"] for task in manifest["tasks"]}
    return [c for c in CONDITIONS if c in present]


def as_observer(observer: Observer | str, device: str | None = None) -> Observer:
    """An observer from an instance or a registered name; `device` goes to observers whose factory takes one."""
    if not isinstance(observer, str):
        return observer
    import vizprobe.analysis.baselines  # noqa: F401  (the built-in observers register on import)
    import vizprobe.observers.similarity  # noqa: F401

    factory = _OBSERVERS.get(observer)
    takes_device = factory is not None and "device" in inspect.signature(factory).parameters
    return get_observer(observer, **({"device": device} if device and takes_device else {}))


def in_format_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The responses columns in the format's order, extra columns after."""
    known = [name for name in COLUMN_NAMES if name in frame.columns]
    return frame[known + [name for name in frame.columns if name not in COLUMN_NAMES]]


def predict_package(
    package: str | Path,
    observer: Observer | str,
    conditions: Sequence[str] | None = None,
    kinds: Sequence[str] = ("main", "catch"),
    manifest: dict | None = None,
) -> pd.DataFrame:
    """P(choose right) of `observer` for every trial of `kinds` in every condition (one batch per condition)."""
    package = Path(package)
    manifest = manifest if manifest is not None else load_manifest(package)
    observer = as_observer(observer)
    conditions = list(conditions) if conditions else package_conditions(manifest)
    frames = []
    for condition in conditions:
        views = trial_views(package, condition, kinds, manifest=manifest)
        p = np.asarray(observer.predict(views), dtype=np.float64)
        if p.shape != (len(views),) or not np.all((p >= 0) & (p <= 1)):
            raise VizprobeError(f"observer {observer.name!r} must return one probability in [0, 1] per trial")
        frames.append(pd.DataFrame({
            "condition": condition, "trial_id": [v.trial_id for v in views], "kind": [v.kind for v in views],
            "unit": [v.unit for v in views], "layer": [v.layer for v in views],
            "image_set": [v.image_set for v in views], "p_right": p,
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def confidence_from_p(p: np.ndarray) -> np.ndarray:
    """Confidence 1-3 from the distance of P(right) to 1/2: below 1/6 -> 1, below 1/3 -> 2, else 3."""
    return 1 + np.minimum(2, np.floor(np.abs(np.asarray(p) - 0.5) * 6)).astype(int)


def correct_answers(manifest: dict) -> dict[str, int]:
    """The scorer's key: trial id -> the more activating option (0 left, 1 right)."""
    return {t["trial_id"]: int(t["correct"]) for t in manifest["trials"]}


def answer_package(
    package: str | Path,
    observer: Observer | str,
    conditions: Sequence[str] | None = None,
    kinds: Sequence[str] = ("main", "catch"),
    participants: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """The observer's answers to every trial and condition as responses rows (see the module doc).

    With `participants` > 1 each machine participant samples its choices from `p_right` (seeded) instead
    of taking the argmax, e.g. to give the error-consistency analysis several machine answers.
    """
    from vizprobe.analysis.baselines import choices_from_probabilities

    manifest = load_manifest(package)
    observer = as_observer(observer)
    predicted = predict_package(package, observer, conditions, kinds, manifest=manifest)
    key = correct_answers(manifest)
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(participants):
        p = predicted["p_right"].to_numpy()
        if participants == 1:
            choice = choices_from_probabilities(p, predicted["trial_id"].tolist(), seed=seed)
            pid = f"machine:{observer.name}"
        else:
            choice = (rng.random(len(p)) < p).astype(int)
            pid = f"machine:{observer.name}:{k}"
        rows = predicted.assign(
            participant_id=pid, task_id=pd.NA, is_catch=(predicted["kind"] == "catch").astype(int),
            is_practice=(predicted["kind"] == "practice").astype(int), choice=choice,
            correct=(choice == predicted["trial_id"].map(key).to_numpy()).astype(int),
            confidence=confidence_from_p(p), expertise="machine", observer=observer.name,
        )  # fmt: skip
        frames.append(rows.drop(columns="kind"))
    return validate_responses(in_format_order(pd.concat(frames, ignore_index=True)))


def predicted_accuracy(responses: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Accuracy per (observer, condition) on main trials, with a Wilson interval over trials."""
    main = responses[(responses["is_catch"] != 1) & (responses["is_practice"] != 1)]
    label = main["observer"] if "observer" in main.columns else main["participant_id"]
    rows = []
    for (name, condition), part in main.groupby([label, main["condition"]], sort=False):
        k, n = int(part["correct"].sum()), len(part)
        low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
        rows.append({"observer": name, "condition": condition, "accuracy": k / n, "n_trials": n,
                     "n_correct": k, "ci_low": float(low), "ci_high": float(high)})  # fmt: skip
    return pd.DataFrame(rows)
