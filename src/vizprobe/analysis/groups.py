"""Who is who in a responses table: human participants by condition, machine observers by label.

A row is a machine observer's when its `expertise` is `machine` or it has an `observer` value. Such rows
are kept out of the human conditions and form their own group, labelled by `observer` (else by
`participant_id`); an observer that answered in several conditions gets one group per condition,
labelled `OBSERVER [CONDITION]`.
"""

from __future__ import annotations

import pandas as pd

from vizprobe.responses import human_rows
from vizprobe.stimuli.manifest import ordered_conditions


def main_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """Main trials only: drop catch and practice trials where those columns exist (missing = main)."""
    keep = pd.Series(True, index=frame.index)
    for column in ("is_catch", "is_practice"):
        if column in frame.columns:
            keep &= (frame[column] != 1).fillna(True).astype(bool)
    return frame[keep]


def machine_labels(frame: pd.DataFrame) -> pd.Series:
    """The group label of each machine row (index = the machine rows of `frame`)."""
    rows = frame[~human_rows(frame)]
    label = rows["participant_id"].astype("string")
    if "observer" in rows.columns:
        label = rows["observer"].astype("string").fillna(label)
    conditions = rows.groupby(label)["condition"].nunique()
    several = label.map(conditions) > 1
    return label.where(~several, label + " [" + rows["condition"].astype("string") + "]")


def with_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `group` (a condition for humans, a label for machines) and `is_human`."""
    out = frame.copy()
    human = human_rows(frame)
    out["group"] = out["condition"].astype("string")
    out.loc[~human, "group"] = machine_labels(frame)
    out["is_human"] = human
    return out


def group_order(groups: pd.Series) -> list[str]:
    """Human conditions in the paper's order first, then the machine labels sorted."""
    return ordered_conditions(groups.dropna().astype(str))
