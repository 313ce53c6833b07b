"""The responses format, defined once: the columns `vizprobe export` writes and `analyze` reads.

One row per answered trial. Written by the experiment server's export, the machine observers and
`simulate`; read by `analyze`. Only `REQUIRED` columns must be present; unknown extra columns are kept.
Required columns are strict (a bad cell is an error naming row and column); other studies' raw files are
messy, so a bad cell of an optional column becomes missing, with a warning and a count
(`frame.attrs["invalid_values"]`) that the report shows.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .condition_names import CONDITION_NAME
from .errors import VizprobeError
from .files import atomic_write_text

EXPERTISE = ("lay", "expert", "machine")
SESSION_STATUSES = ("running", "completed", "expired", "returned", "failed_criteria")
FINISHED_STATUSES = ("completed", "failed_criteria")  # sessions whose participant answered every trial


@dataclass(frozen=True)
class Column:
    """One column of the responses format: its name, kind and the values it admits."""

    name: str
    kind: str  # "str" | "int" | "float" | "bool"
    doc: str
    choices: tuple | None = None
    low: float | None = None
    pattern: str | None = None


COLUMNS: tuple[Column, ...] = (
    Column("participant_id", "str", "anonymous participant (or machine observer) id"),
    Column(
        "condition",
        "str",
        "reference condition of the participant's task (letters, digits, - _ /)",
        pattern=CONDITION_NAME,
    ),
    Column("task_id", "str", "task (trial list) the participant was given"),
    Column("trial_id", "str", "trial id from the stimulus manifest"),
    Column("unit", "str", "unit as LAYER:CHANNEL"),
    Column("layer", "str", "layer of the unit"),
    Column("image_set", "int", "image set of the trial", low=0),
    Column("is_catch", "bool", "1 for catch trials"),
    Column("is_practice", "bool", "1 for practice trials"),
    Column("choice", "int", "0 = left option, 1 = right option", choices=(0, 1)),
    Column("max_side", "int", "side the more activating option was shown on (0 left, 1 right)", choices=(0, 1)),
    Column("correct", "bool", "1 when the chosen option is the more activating one"),
    Column("confidence", "int", "confidence rating 1 (unsure) to 3 (sure)", choices=(1, 2, 3)),
    Column("rt_ms", "float", "response time in milliseconds", low=0),
    Column("instruction_time_s", "float", "time spent on the instructions, seconds", low=0),
    Column("total_time_s", "float", "time from consent to the last trial, seconds", low=0),
    Column("practice_attempts", "int", "rounds of practice needed (0 when practice was skipped)", low=0),
    Column("expertise", "str", "lay | expert | machine", choices=EXPERTISE),
    Column(
        "session_status",
        "str",
        "the server's session state: running | completed | expired | returned | failed_criteria "
        "(completed, but failed the exclusion criteria and its task was posted again)",
        choices=SESSION_STATUSES,
    ),
    Column(
        "task_assignments",
        "int",
        "finished sessions the participant's task has had (the server stops re-posting "
        "a task at its --max-assignments)",
        low=0,
    ),
    Column(
        "away_count",
        "int",
        "times the window lost focus or the tab was hidden while the trial was shown (the page's blur, focus and "
        "visibility events)",
        low=0,
    ),
    Column("away_ms", "float", "how long the window was out of focus or hidden during the trial, milliseconds", low=0),
    Column("session_away_count", "int", "away_count summed over the participant's session (practice included)", low=0),
    Column("session_away_ms", "float", "away_ms summed over the participant's session, milliseconds", low=0),
    Column("embedder", "str", "machine observers: the network and layers they embed images with, MODEL:LAYER,..."),
    Column("control", "bool", "machine observers: 1 on a control trial, answered with another unit's references"),
    Column("control_unit", "str", "the unit whose references a control trial showed"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
REQUIRED = ("participant_id", "condition", "trial_id", "correct")
_BY_NAME = {c.name: c for c in COLUMNS}


def _coerce(value, column: Column, row: int):
    """Convert one cell to the column's kind, or raise naming the row (1-based, as in the file) and column."""

    def bad(why: str) -> VizprobeError:
        return VizprobeError(f"responses row {row}, column {column.name!r}: {why} (got {value!r}); fix the file")

    if column.kind == "str":
        out = str(value).strip()
        if not out:
            raise bad("empty value")
    elif column.kind == "bool":
        text = str(value).strip().lower()
        if text in ("1", "1.0", "true", "yes"):
            out = 1
        elif text in ("0", "0.0", "false", "no"):
            out = 0
        else:
            raise bad("expected 0 or 1")
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad(f"expected a number ({column.kind})") from None
        if not math.isfinite(number):
            raise bad("expected a finite number")
        if column.kind == "int":
            if number != int(number):
                raise bad("expected a whole number")
            out = int(number)
        else:
            out = number
        if column.low is not None and out < column.low:
            raise bad(f"must be >= {column.low:g}")
    if column.choices is not None and out not in column.choices:
        raise bad(f"must be one of {', '.join(map(str, column.choices))}")
    if column.pattern is not None and not re.fullmatch(column.pattern, out):
        raise bad(f"must match {column.pattern}")
    return out


class InvalidValuesWarning(UserWarning):
    """Cells of optional responses columns that were invalid and are treated as missing."""


def validate_responses(frame: pd.DataFrame) -> pd.DataFrame:
    """Check and type a responses table. Missing optional cells become NA; a bad required cell raises with row and
    column; a bad optional cell becomes NA too, counted per column in `attrs["invalid_values"]` with a warning."""
    missing = [name for name in REQUIRED if name not in frame.columns]
    if missing:
        raise VizprobeError(
            f"responses lack the required column(s) {', '.join(missing)}; the format needs {', '.join(REQUIRED)}"
        )
    out = frame.copy()
    invalid: dict[str, dict] = dict(frame.attrs.get("invalid_values", {}))
    for name in frame.columns:
        column = _BY_NAME.get(name)
        if column is None:
            continue  # unknown extra columns are kept as they are
        values = []
        for index, value in enumerate(frame[name].tolist()):
            row = index + 2  # header is line 1
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value == "":
                if name in REQUIRED:
                    raise VizprobeError(f"responses row {row}, column {name!r}: missing value; every row needs it")
                values.append(pd.NA)
                continue
            try:
                values.append(_coerce(value, column, row))
            except VizprobeError as error:
                if name in REQUIRED:
                    raise
                entry = invalid.setdefault(name, {"count": 0, "first": str(error).removesuffix("; fix the file")})
                entry["count"] += 1
                values.append(pd.NA)
        dtype = {"str": "string", "int": "Int64", "bool": "Int64", "float": "Float64"}[column.kind]
        out[name] = pd.array(values, dtype=dtype)
    for name, entry in invalid.items():
        if name not in frame.attrs.get("invalid_values", {}):
            warnings.warn(
                f"{entry['count']} invalid value(s) in the optional column {name!r} are treated as missing "
                f"(first: {entry['first']})",
                InvalidValuesWarning,
                stacklevel=2,
            )
    out.attrs["invalid_values"] = invalid
    return out


def read_responses(path: str | Path) -> pd.DataFrame:
    """Read and validate a responses CSV."""
    path = Path(path)
    if not path.is_file():
        raise VizprobeError(f"responses file {path} does not exist; pass the CSV written by `vizprobe export`")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise VizprobeError(f"responses file {path} is not a readable CSV ({error}); pass a CSV file") from None
    return validate_responses(frame)


def write_responses(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a responses table atomically: the known columns in format order first, extra columns after."""
    frame = validate_responses(frame)
    known = [name for name in COLUMN_NAMES if name in frame.columns]
    extra = [name for name in frame.columns if name not in _BY_NAME]
    path = Path(path)
    atomic_write_text(path, frame[known + extra].to_csv(index=False))
    return path


def human_rows(frame: pd.DataFrame) -> pd.Series:
    """True for the rows of human participants."""
    machine = pd.Series(False, index=frame.index)
    if "expertise" in frame.columns:
        machine |= (frame["expertise"] == "machine").fillna(False).astype(bool)
    if "observer" in frame.columns:
        machine |= frame["observer"].notna() & (frame["observer"].astype("string").str.strip() != "")
    return ~machine
