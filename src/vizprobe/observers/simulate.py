"""Simulated participants: an observer's choice probabilities plus noise and lapses, to rehearse an analysis.

Each simulated participant of a condition takes one of the package's tasks for that condition (in turn, so
tasks are used evenly) and answers its main and catch trials. On a trial with observer probability p the
participant's own probability is q = logistic(logit(p) + noise * e), e ~ N(0, 1) drawn per trial; with
probability `lapse` the answer is a fair coin instead, else it is drawn with probability q. Confidence
grows with |q - 1/2| (with jitter), response times are log-normal (faster when confident), and the timing
and practice columns are drawn so that most participants pass the default exclusion criteria.

Catch trials check attention, not understanding: they are occlusion trials of units picked to be easy, and
the paper's participants mostly passed them. By default (`catch="attentive"`) a simulated participant answers
them right but for its lapses; `catch="observer"` lets the observer answer them like main trials (a
similarity observer is no better on them than on main trials, so many of its participants then fail).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from vizprobe.errors import VizprobeError
from vizprobe.observers.answer import in_format_order, predict_package
from vizprobe.observers.base import Observer, as_manifest
from vizprobe.observers.registry import get_observer
from vizprobe.responses import validate_responses
from vizprobe.stimuli.manifest import Manifest, Task
from vizprobe.stimuli.sides import max_sides


def _participant(task: Task, pid: str, p_right: dict, key: dict, lapse: float, noise: float, rng) -> pd.DataFrame:
    """One simulated participant's answers to the trials of `task`, in task order, on sides drawn from `pid`
    as the server draws a session's (`p_right` and `key` are in the package's stored option order)."""
    ids = list(task.trial_ids)
    sides = np.array(max_sides(pid, len(ids)))
    stored = np.array([key[t] for t in ids])
    p = np.clip(np.array([p_right[t] for t in ids]), 1e-4, 1 - 1e-4)
    p = np.where(sides != stored, 1 - p, p)  # mirrored trials: the stored right option is shown on the left
    q = expit(np.log(p / (1 - p)) + noise * rng.standard_normal(len(ids)))
    coin = rng.random(len(ids)) < 0.5
    choice = np.where(rng.random(len(ids)) < lapse, coin, rng.random(len(ids)) < q).astype(int)
    sure = np.abs(q - 0.5)
    confidence = np.clip(np.rint(1 + 4 * sure + rng.normal(0, 0.6, len(ids))), 1, 3).astype(int)
    rt_ms = np.exp(rng.normal(np.log(3000) - 0.6 * sure, 0.45, len(ids)))
    attempts = int(min(5, rng.geometric(0.8)))
    instruction = float(np.exp(rng.normal(np.log(60), 0.4)))
    total = instruction + attempts * 3 * 4.0 + rt_ms.sum() / 1000 + float(rng.uniform(40, 120))
    return pd.DataFrame(
        {
            "task_id": task.task_id,
            "trial_id": ids,
            "choice": choice,
            "max_side": sides,
            "correct": (choice == sides).astype(int),
            "confidence": confidence,
            "rt_ms": rt_ms.round(1),
            "instruction_time_s": round(instruction, 2),
            "total_time_s": round(total, 2),
            "practice_attempts": attempts,
        }
    )


def simulate(
    package: str | Path | Manifest,
    observer: Observer | str,
    participants: int = 20,
    lapse: float = 0.05,
    noise: float = 0.5,
    seed: int = 0,
    conditions: Sequence[str] | None = None,
    catch: str = "attentive",
) -> pd.DataFrame:
    """Responses of `participants` simulated lay participants per condition (see the module doc)."""
    if catch not in ("attentive", "observer"):
        raise VizprobeError(f"catch must be 'attentive' or 'observer', got {catch!r}")
    if participants < 1:
        raise VizprobeError(f"participants must be at least 1, got {participants}")
    if not 0 <= lapse <= 1 or noise < 0:
        raise VizprobeError(f"lapse must lie in [0, 1] and noise be >= 0 (got lapse {lapse}, noise {noise})")
    manifest = as_manifest(package)
    observer = get_observer(observer, manifest=manifest)
    conditions = list(conditions) if conditions else manifest.conditions
    predicted = predict_package(manifest, observer, conditions, ("main", "catch"))
    trials = manifest.trials
    key = manifest.correct_answers()
    rng = np.random.default_rng(seed)
    frames = []
    for condition in conditions:
        tasks = manifest.tasks_of(condition)
        rows = predicted[predicted["condition"] == condition]
        p_right = dict(zip(rows["trial_id"], rows["p_right"], strict=True))
        if catch == "attentive":
            p_right |= {t: float(key[t]) for t in rows.loc[rows["kind"] == "catch", "trial_id"]}
        for k in range(participants):
            pid = f"sim:{condition}:{k:03d}"
            rows = _participant(tasks[k % len(tasks)], pid, p_right, key, lapse, noise, rng)
            if condition == "none":  # no practice in `none`, as in the paper (and the server's default)
                rows["practice_attempts"] = 0
            frames.append(rows.assign(participant_id=pid, condition=condition))
    out = pd.concat(frames, ignore_index=True)
    out["unit"] = out["trial_id"].map(lambda t: trials[t].unit)
    out["layer"] = out["unit"].map(manifest.layer_of)
    out["image_set"] = out["trial_id"].map(lambda t: trials[t].image_set)
    out["is_catch"] = out["trial_id"].map(lambda t: int(trials[t].kind == "catch"))
    out["is_practice"] = 0
    out["expertise"] = "lay"
    out["simulated_from"] = observer.name
    return validate_responses(in_format_order(out))
