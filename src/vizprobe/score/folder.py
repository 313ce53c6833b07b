"""The scores folder's format (`vizprobe-scores`): scores.csv and scores.json, and what a score's probability means.

Every scores.json carries `calibration`: whether the decision rule that turns the observer's evidence into a
probability was fitted to people, with its temperature and bias. Until it was (`vizprobe observe --fit` on human
answers, applied with `vizprobe score --rule`), a score ranks units but its value is not a probability that people
are right; readers (the explorer, reports) say so and show the observer's accuracy beside it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vizprobe.files import atomic_write_json, atomic_write_text, staged_dir

SCORES_FORMAT = "vizprobe-scores"
SCORES_VERSION = 1
MARKER = "scores.json"


def calibration(temperature: float, bias: float = 0.0, fitted: dict | None = None) -> dict:
    """The record of how a score's probability is made: `calibrated` only for a rule fitted to people."""
    calibrated = bool(fitted)
    note = (
        f"calibrated to people: temperature {temperature:.4g} and bias {bias:+.3g} fitted to "
        f"{fitted.get('participants', '?')} participants' answers"
        if calibrated
        else f"uncalibrated: temperature {temperature:.4g} was set, not fitted to people; the score ranks units, "
        "its value is not the probability that people answer right (see accuracy beside it)"
    )
    return {"calibrated": calibrated, "temperature": temperature, "bias": bias, "fitted": fitted or {}, "note": note}


def calibration_note(record: dict) -> str:
    """The sentence a reader shows beside a scores folder's numbers (older folders: uncalibrated)."""
    found = record.get("calibration")
    if found:
        return found["note"]
    temperature = (record.get("settings") or {}).get("temperature")
    return calibration(float(temperature) if temperature else float("nan"))["note"]


def write_scores(frame: pd.DataFrame, out: str | Path, record: dict) -> Path:
    """OUT/scores.csv and OUT/scores.json (format, settings, embedder, source, calibration), written as one folder."""
    out = Path(out)
    with staged_dir(out, MARKER, "scores folder") as staging:
        atomic_write_text(staging / "scores.csv", frame.to_csv(index=False, float_format="%.6g"))
        atomic_write_json(staging / MARKER, {"format": SCORES_FORMAT, "version": SCORES_VERSION, **record})
    return out
