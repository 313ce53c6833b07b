"""Request bodies of the experiment API (pydantic): everything the page sends is checked here first."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

PLATFORM_ID_KEYS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId")
WORKER_ID_KEYS = ("PROLIFIC_PID", "workerId")
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def checked_text(value: object) -> object:
    """Refuse what no database stores faithfully: NUL characters and unpaired surrogates (invalid UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text may not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    return value


class SessionIn(BaseModel):
    """Start or resume a session: the platform's URL parameters and, on a reload, the session id."""

    platform_ids: dict[str, str | None] = Field(default_factory=dict)
    resume: str | None = Field(default=None, pattern=SESSION_ID_PATTERN)

    @field_validator("platform_ids")
    @classmethod
    def _known_ids(cls, value: dict[str, str | None]) -> dict[str, str]:
        for text in (*value, *value.values()):
            checked_text(text)
        unknown = sorted(set(value) - set(PLATFORM_ID_KEYS))
        if unknown:
            raise ValueError(f"unknown platform id(s) {', '.join(unknown)}; expected some of {PLATFORM_ID_KEYS}")
        if any(v is not None and len(v) > 200 for v in value.values()):
            raise ValueError("platform ids are at most 200 characters")
        return {k: v.strip() for k, v in value.items() if v is not None and v.strip()}


class EventIn(BaseModel):
    """Consent given, or instructions read (with the reading time)."""

    event: Literal["consent", "instructions"]
    duration_s: float | None = Field(default=None, ge=0, le=86400, allow_inf_nan=False)

    @model_validator(mode="after")
    def _duration_for_instructions(self) -> EventIn:
        if self.event == "instructions" and self.duration_s is None:
            raise ValueError("the instructions event needs duration_s (seconds spent reading)")
        return self


class ResponseIn(BaseModel):
    """One answer to a practice or main/catch trial."""

    phase: Literal["practice", "main"]
    trial_index: StrictInt = Field(ge=0)
    attempt: StrictInt = Field(ge=0)
    choice: Literal[0, 1]
    confidence: Literal[1, 2, 3]
    # A measured time: more than 0 (a page that measured nothing, or a script, sends 0) and at most an hour.
    rt_ms: float = Field(gt=0, le=3_600_000, allow_inf_nan=False)
    # Attention: how often and how long the window lost focus or the tab was hidden while the trial was shown.
    away_count: StrictInt = Field(default=0, ge=0, le=100_000)
    away_ms: float = Field(default=0.0, ge=0, le=7 * 86_400_000, allow_inf_nan=False)

    @field_validator("choice", "confidence", mode="before")
    @classmethod
    def _integers_only(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):  # not true, "1" or 1.0
            raise ValueError("expected an integer")
        return value


class CompleteIn(BaseModel):
    """End of the session: total time and the debrief answers (free text, bounded)."""

    model_config = ConfigDict(extra="ignore")
    total_time_s: float | None = Field(default=None, ge=0, le=7 * 86400, allow_inf_nan=False)
    debrief: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @field_validator("debrief")
    @classmethod
    def _bounded(cls, value: dict) -> dict:
        for text in (*value, *value.values()):
            checked_text(text)
        if len(json.dumps(value)) > 20_000:
            raise ValueError("debrief is limited to 20000 characters")
        return value


# --- responses: what the API returns (the OpenAPI schema at /docs documents them) ----------------------------
# Fields a route may leave out (`correct` on main trials, say) are omitted, not null: routes use
# `response_model_exclude_unset`.


class ConfigOut(BaseModel):
    platform: str = Field(description="one of vizprobe.experiment.settings.PLATFORMS")
    practice_attempts: int
    n_practice: int
    texts: dict[str, str | list[str]] = Field(description="overrides of the page's texts (vizprobe serve --texts)")
    task: Literal["occlusion", "exemplar"] = Field(
        "occlusion", description="what participants judge (vizprobe.tasks): which trial plugin the page runs"
    )
    continue_ms: int | None = Field(
        None, description="a Continue button this long after each main answer, and a last page (None: neither)"
    )


class TrialOut(BaseModel):
    """A trial as the page shows it; `correct` only on practice trials (for feedback)."""

    index: int
    trial_id: str
    kind: Literal["main", "catch", "practice"]
    references: list[str]
    query: str = Field(description="the unoccluded query (empty in the exemplar task, whose options are queries)")
    options: list[str] = Field(min_length=2, max_length=2)
    correct: Literal[0, 1] | None = None
    min_references: list[str] = Field(
        default_factory=list, description="the exemplar task: references of the unit's weakest images"
    )


class PreviewOut(BaseModel):
    """An MTurk preview: an example trial to show beside the instructions (no session, no task taken)."""

    condition: str
    example: TrialOut | None = Field(description="the instructions' example: the most obvious practice trial")


class PracticeAnswer(BaseModel):
    trial_index: int
    correct: Literal[0, 1]


class SessionState(BaseModel):
    """Everything the page needs to show (or resume) a session."""

    session_id: str
    condition: str
    task_id: str
    expertise: Literal["lay", "expert"]
    consented: bool
    instructions_done: bool
    practice_passed: bool
    practice_attempts: int
    practice_answers: list[PracticeAnswer]
    practice: list[TrialOut] = Field(description="the first practice round (practice_rounds[0])")
    practice_rounds: list[list[TrialOut]] = Field(
        description="every practice round the session may take, each drawn anew: the most obvious trial first, the "
        "others in a new order, new sides (answer round r with attempt r)"
    )
    trials: list[TrialOut]
    example: TrialOut | None = Field(
        description="the trial the instruction pages illustrate: the most obvious practice trial with this "
        "condition's references (null when the package has no practice trials)"
    )
    next_trial_index: int
    completed: bool
    completion_code: str | None
    redirect_url: str | None


class OkOut(BaseModel):
    ok: bool


class SubmissionOut(BaseModel):
    """A platform submission's session as the MTurk start page polls it: none yet, running, or finished with the
    completion code that submits the assignment."""

    status: Literal["none", "running", "finished", "closed"]
    completion_code: str | None = None


class RespondOut(BaseModel):
    """`correct` only for practice answers."""

    stored: bool
    duplicate: bool
    next_trial_index: int
    correct: Literal[0, 1] | None = None


class CompleteOut(BaseModel):
    completion_code: str
    redirect_url: str | None


class ConditionProgress(BaseModel):
    """Tasks by state (`completed`: with a valid participant), sessions, and finished sessions that failed the
    exclusion criteria (their task was posted again, up to --max-assignments)."""

    tasks: int
    completed: int
    running: int
    free: int
    exhausted: int = Field(description="tasks whose last allowed assignment (--max-assignments) failed the criteria")
    participants: int
    failed: int
    assignments: int = Field(description="finished sessions (completed or failed): the assignments the tasks used")
    expired: int = Field(description="sessions that timed out (their task went to someone else)")
    returned: int = Field(description="sessions their participant stopped (their task went back to the pool)")
    away_trials: int = Field(
        0, description="main trials during which the window lost focus or the tab was hidden (attention)"
    )


class ProgressOut(BaseModel):
    conditions: dict[str, ConditionProgress]
    responses: int
    study_created: str


class ErrorOut(BaseModel):
    """Every error: a machine-readable code and one line for people."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str
