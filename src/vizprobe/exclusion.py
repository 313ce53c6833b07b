"""Exclusion of inattentive participants (Zimmermann et al. 2021), every threshold a parameter: the one definition.

It sits below the stages that use it: the stimulus package records its criteria (`BuildSettings.exclusion`, from
the protocol), the experiment server re-posts a task by them, and `analyze` excludes by them.

Each criterion is checked per participant on the human rows only (machine observers are never excluded).
A criterion whose column is missing from the responses is skipped, with the reason recorded. A participant
without any value for a criterion's column (e.g. no catch trials) is not removed by that criterion.
Answer variability (one side only, one confidence button only) is judged on all trials but practice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING

from vizprobe.condition_names import ordered_conditions
from vizprobe.errors import VizprobeError

if TYPE_CHECKING:  # pandas is imported where the criteria are applied, so the CLI starts without it
    import pandas as pd

KEY = ["condition", "participant_id"]


def _paper_per_condition() -> dict[str, dict[str, float]]:
    # The paper's `none` condition had shorter instructions and no references to study (docs/protocol.md).
    return {"none": {"min_instruction_time_s": 15.0, "min_total_time_s": 40.0}}


@dataclass(frozen=True)
class ExclusionCriteria:
    """Thresholds; the defaults are the paper's (docs/protocol.md). `per_condition` replaces some thresholds in
    some conditions (the paper: 15 s of instructions and 40-900 s in `none`); `{}` applies the same everywhere."""

    min_catch_accuracy: float = 2 / 3
    min_instruction_time_s: float = 20.0
    min_total_time_s: float = 90.0
    max_total_time_s: float = 900.0
    max_practice_attempts: int = 5
    require_both_sides: bool = True  # exclude who chose only the left or only the right option
    # Not in the paper: excludes who pressed only one confidence button (people who, without references,
    # rationally answer "unsure" throughout), so it is opt-in.
    require_two_confidence_levels: bool = False
    per_condition: dict[str, dict[str, float]] = field(default_factory=_paper_per_condition)

    def for_condition(self, condition: str) -> ExclusionCriteria:
        """The thresholds that apply in `condition`."""
        return replace(self, **self.per_condition.get(condition, {}), per_condition={})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ExclusionCriteria:
        """Criteria as a package or results.json records them; an unknown field is a one-line error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise VizprobeError(f"exclusion criteria: unknown field {unknown[0]!r}; known: {', '.join(sorted(names))}")
        return cls(**data)


@dataclass
class ExclusionResult:
    """Who was removed by which criterion, and what remains."""

    kept: pd.DataFrame  # the responses without the excluded participants' rows
    criteria: dict[str, dict] = field(default_factory=dict)  # name -> threshold, excluded count, ids, skipped
    excluded: list[str] = field(default_factory=list)
    per_condition: dict[str, dict[str, int]] = field(default_factory=dict)  # condition -> before, excluded, after

    def summary(self) -> dict:
        """JSON-ready numbers for results.json."""
        return {
            "criteria": self.criteria,
            "n_before": sum(c["before"] for c in self.per_condition.values()),
            "n_excluded": len(self.excluded),
            "n_after": sum(c["after"] for c in self.per_condition.values()),
            "per_condition": self.per_condition,
            "excluded_participants": self.excluded,
        }


def _per_participant(humans: pd.DataFrame, column: str, how: str = "max") -> pd.Series:
    """One value per participant (timings and attempts repeat on every row of a participant)."""
    values = humans[KEY + [column]].dropna(subset=[column])
    return values.groupby(KEY)[column].agg(how).astype(float)


def _checks(humans: pd.DataFrame, c: ExclusionCriteria) -> dict[str, tuple[str, object, pd.Series | str]]:
    """Per criterion: (column, threshold, boolean Series over participants: True = fails) or a skip reason."""
    import pandas as pd

    cols = set(humans.columns)
    out: dict[str, tuple[str, object, pd.Series | str]] = {}
    if "is_catch" in cols:
        catch = humans[humans["is_catch"] == 1]
        acc = catch.groupby(KEY)["correct"].mean().astype(float)
        out["catch_accuracy"] = ("is_catch", f">= {c.min_catch_accuracy:.4g}", acc < c.min_catch_accuracy)
    else:
        out["catch_accuracy"] = ("is_catch", f">= {c.min_catch_accuracy:.4g}", "no is_catch column")
    specs = [
        (
            "instruction_time",
            "instruction_time_s",
            f">= {c.min_instruction_time_s:g} s",
            lambda s: s < c.min_instruction_time_s,
        ),
        (
            "total_time",
            "total_time_s",
            f"{c.min_total_time_s:g}-{c.max_total_time_s:g} s",
            lambda s: (s < c.min_total_time_s) | (s > c.max_total_time_s),
        ),
        (
            "practice_attempts",
            "practice_attempts",
            f"<= {c.max_practice_attempts}",
            lambda s: s > c.max_practice_attempts,
        ),
    ]
    for name, column, threshold, fails in specs:
        out[name] = (
            column,
            threshold,
            fails(_per_participant(humans, column)) if column in cols else f"no {column} column",
        )
    main = humans
    if "is_practice" in cols:
        main = main[main["is_practice"] != 1]
    for name, column, wanted in (
        ("same_side", "choice", c.require_both_sides),
        ("same_confidence", "confidence", c.require_two_confidence_levels),
    ):
        if not wanted:
            out[name] = (column, "off", pd.Series(False, dtype=bool))  # a setting, not a skipped check
        elif column not in cols:
            out[name] = (column, "> 1 distinct value", f"no {column} column")
        else:
            out[name] = (column, "> 1 distinct value", _per_participant(main, column, "nunique") < 2)
    return out


def apply_exclusion(frame: pd.DataFrame, criteria: ExclusionCriteria | None = None) -> ExclusionResult:
    """Remove the human participants who fail any criterion; report counts per criterion and condition."""
    import pandas as pd

    from vizprobe.responses import human_rows

    criteria = criteria or ExclusionCriteria()
    humans = frame[human_rows(frame)]
    participants = humans[KEY].drop_duplicates()
    failed: set[tuple[str, str]] = set()
    result = ExclusionResult(kept=frame)
    conditions = ordered_conditions(humans["condition"].dropna().astype(str).unique()) or ["(none)"]
    for condition in conditions:
        rows = humans[humans["condition"] == condition] if len(humans) else humans
        for name, (column, threshold, check) in _checks(rows, criteria.for_condition(condition)).items():
            entry = result.criteria.setdefault(
                name, {"column": column, "threshold": threshold, "excluded": 0, "participants": [], "skipped": None}
            )
            if threshold != entry["threshold"]:
                entry.setdefault("threshold_by_condition", {})[condition] = threshold
            if isinstance(check, str):
                entry["skipped"] = check
                continue
            ids = sorted(check[check.fillna(False).astype(bool)].index.tolist())
            failed.update(ids)
            entry["excluded"] += len(ids)
            entry["participants"] += [pid for _, pid in ids]
    keys = pd.MultiIndex.from_frame(frame[KEY].astype(object))
    drop = keys.isin(list(failed)) & human_rows(frame).to_numpy()
    result.kept = frame[~drop].copy()
    result.excluded = sorted(pid for _, pid in failed)
    counts = participants["condition"].value_counts()
    for condition in ordered_conditions(counts.index):
        n_out = sum(1 for cond, _ in failed if cond == condition)
        n = int(counts[condition])
        result.per_condition[condition] = {"before": n, "excluded": n_out, "after": n - n_out}
    return result
