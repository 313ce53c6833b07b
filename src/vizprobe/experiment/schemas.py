"""Request bodies of the experiment API (pydantic): everything the page sends is checked here first."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

PLATFORM_ID_KEYS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId")
WORKER_ID_KEYS = ("PROLIFIC_PID", "workerId")


class SessionIn(BaseModel):
    """Start or resume a session: the platform's URL parameters and, on a reload, the session id."""

    platform_ids: dict[str, str | None] = Field(default_factory=dict)
    resume: str | None = Field(default=None, max_length=64)

    @field_validator("platform_ids")
    @classmethod
    def _known_ids(cls, value: dict[str, str | None]) -> dict[str, str]:
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
    rt_ms: float = Field(ge=0, le=86_400_000, allow_inf_nan=False)

    @field_validator("choice", "confidence", mode="before")
    @classmethod
    def _no_bools(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true/false is not an answer
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
        if len(json.dumps(value)) > 20_000:
            raise ValueError("debrief is limited to 20000 characters")
        return value
