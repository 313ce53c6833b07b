"""The raw data of the predecessor study, read as responses: Borowski, Zimmermann, Schepers, Geirhos, Wallis,
Bethge & Brendel, ICLR 2021, "Exemplary Natural Images Explain CNN Activations Better than State-of-the-Art
Feature Visualization" (bethgelab/testing_visualizations, `data_from_human_experiments/*_preprocessed.csv`).

`analyze --responses experiment_II_main_practice_catch_trials_preprocessed.csv --protocol borowski2021` reads such
a file as it is: a file with their columns is recognised and converted row by row (their README describes each
column). Their task was a two-alternative choice between an upper (`a`) and a lower (`b`) query image; vizprobe's
`choice`/`max_side` 0 stand for `a`, 1 for `b`. Experiment I's `repeated` trials (shown a second time to measure a
participant's consistency) are left out, as they were in the study's accuracies.
"""

from __future__ import annotations

import re

import pandas as pd

# The columns that identify their files (every one of them is in both experiments' files).
COLUMNS = ("subject_id", "instr_type", "trial_type", "catch_trial", "correct", "conf_rating", "correct_response")
# Their names of the reference conditions, as vizprobe's.
CONDITIONS = {"optimized": "synthetic", "natural": "natural", "none_pre": "none-pre", "none_post": "none-post"}
SIDES = {"a": 0, "b": 1}


def is_borowski2021(frame: pd.DataFrame) -> bool:
    """Whether a table has the columns of their preprocessed files."""
    return all(c in frame.columns for c in COLUMNS)


def _condition(row: pd.Series) -> str:
    """Experiment I: the reference condition; experiment II: its grid and number of references too, e.g.
    `Max-9/synthetic` (characters outside a condition name's alphabet become `-`)."""
    kind = CONDITIONS.get(str(row["instr_type"]).strip(), str(row["instr_type"]).strip())
    design = str(row.get("condition_name", "") or "").strip()
    name = f"{design}/{kind}" if design and design.lower() != "nan" else kind
    return re.sub(r"[^A-Za-z0-9_/-]", "-", name)


def from_borowski2021(raw: pd.DataFrame) -> pd.DataFrame:
    """Their rows (strings, as read) as a responses table (not yet validated)."""
    rows = raw[raw["trial_type"].str.strip() != "repeated"]
    out = pd.DataFrame(index=rows.index)
    out["participant_id"] = "s" + rows["subject_id"].str.strip()
    out["condition"] = rows.apply(_condition, axis=1)
    out["task_id"] = out["participant_id"]
    unit_parts = ["layer", "kernel_size", "channel"]
    block = rows["batch_block"].str.strip() + "/" if "batch_block" in rows.columns else ""
    out["trial_id"] = block + rows[unit_parts].agg("/".join, axis=1) + "/batch_" + rows["batch"].str.strip()
    named = "unit_name" in rows.columns
    out["unit"] = rows["unit_name"].str.strip() if named else rows[unit_parts].agg("/".join, axis=1)
    out["layer"] = rows["layer"].str.strip()
    out["image_set"] = rows["batch"]
    out["is_catch"] = rows["catch_trial"]
    out["is_practice"] = (rows["trial_type"].str.strip() == "practice").astype(int)
    out["choice"] = rows["response"].str.strip().map(SIDES) if "response" in rows.columns else pd.NA
    out["max_side"] = rows["correct_response"].str.strip().map(SIDES)
    out["correct"] = rows["correct"]
    out["confidence"] = rows["conf_rating"].map(lambda v: abs(int(float(v))) if str(v).strip() else pd.NA)
    out["rt_ms"] = pd.to_numeric(rows["RT"], errors="coerce") * 1000 if "RT" in rows.columns else pd.NA
    if "expert_level" in rows.columns:
        out["expertise"] = rows["expert_level"].str.strip().map({"expert": "expert", "naive": "lay"})
    out["session_status"] = "completed"  # a lab session: every file is a finished one
    return out.reset_index(drop=True)
