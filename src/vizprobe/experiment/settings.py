"""The options of `vizprobe serve` in one place: crowd platforms, server settings with their defaults, page texts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from vizprobe.errors import VizprobeError
from vizprobe.stimuli.settings import PRACTICE_PER_ROUND

# Platform -> the URL parameters its participant link carries (placeholders as each platform writes them).
PLATFORMS: dict[str, str] = {
    "local": "",
    "prolific": "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}",
    "mturk": "?workerId=WORKER_ID&assignmentId=ASSIGNMENT_ID&hitId=HIT_ID",
}
PROLIFIC_DONE = "https://app.prolific.com/submissions/complete?cc="
# The URL parameter that identifies a worker on each crowd platform: without it a session is refused there.
WORKER_ID_KEY: dict[str, str] = {"prolific": "PROLIFIC_PID", "mturk": "workerId"}
# The URL parameter naming one submission (known only to the worker and the researcher): with the worker id it
# reopens that worker's session where the page's storage is lost or blocked.
SUBMISSION_ID_KEY: dict[str, str] = {"prolific": "SESSION_ID", "mturk": "assignmentId"}
# MTurk opens a HIT's page with this assignment id while a worker only previews it: nothing may be allocated.
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
# Texts of the participant page that `--texts FILE.json` may replace (defaults: frontend/src/pages.js).
TEXT_KEYS: dict[str, type] = {
    "consent": str,
    "consent_button": str,
    "time_sentence": str,
    "welcome": str,
    "instructions": list,
    "instructions_none": list,
    "instructions_exemplar": list,
    "instructions_exemplar_none": list,
    "references_clause_blur": str,
    "after_answer_practice": str,
    "after_answer_none": str,
    "after_answer_practice_continue": str,
    "after_answer_continue": str,
    "submit_page": str,
    "practice_sentence": str,
    "no_practice_sentence": str,
    "fullscreen": str,
    "fullscreen_button": str,
    "too_small": str,
    "debrief": str,
    "already_participated": str,
    "no_tasks": str,
    "expired": str,
    "start": str,
    "start_button": str,
    "popup_blocked": str,
    "submitting": str,
    "in_own_window": str,
    "missing_worker_id": str,
    "session_elsewhere": str,
    "preview": str,
    "stop_confirm": str,
    "returned": str,
}


@dataclass(frozen=True)
class Settings:
    """What changes what participants see or how tasks are handed out; `practice`: trials per practice round (None:
    the authors' 4, or the whole pool when smaller)."""

    platform: str = "local"
    completion_code: str | None = None
    practice: int | None = None
    # The paper repeated practice until all answers were right and excluded who needed more than 5 rounds:
    # the cap lies above that threshold so that the exclusion can fire.
    practice_attempts: int = 10
    expert: bool = False
    # The paper had no practice in `none` (nothing to learn from references there).
    practice_in_none: bool = False
    task_timeout_s: float = 30 * 60.0
    texts: dict = field(default_factory=dict)
    # The paper re-posted a task whose participant failed the exclusion criteria (the same code as `analyze`),
    # so that every task ends with one valid participant; the participant still gets the completion code.
    repost_failed: bool = True
    # The authors stopped re-posting a task after 3 assignments (`--max-total-assignments=3`, tools/mturk/mturk.py).
    max_assignments: int = 3
    # The authors' main trials did not end on the answer: a Continue button appeared 350 ms after it
    # (`feedback_delay_duration: 350`, `response_ends_trial: false`, mturk/cf/task.js), and a last page before the
    # data were sent ended their timed span. None: the next trial follows the answer, no last page.
    continue_ms: int | None = 350
    # Left and right of the main trials: "balanced" per session (vizprobe), or "authors": a coin per trial seeded
    # by the task, the same for every participant of it (docs/protocol.md says why balanced is the default).
    sides: str = "balanced"

    @classmethod
    def from_options(cls, **options) -> Settings:
        """Settings from keyword options where None means the default (so callers need not restate them)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise VizprobeError(f"unknown server option {unknown[0]!r}; known: {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in options.items() if v is not None})

    def checked(self, available_practice: int) -> Settings:
        """These settings for a package with `available_practice` practice trials, or a one-line error."""
        if self.platform not in PLATFORMS:
            raise VizprobeError(f"--platform {self.platform!r}: choose one of {', '.join(PLATFORMS)}")
        practice = min(PRACTICE_PER_ROUND, available_practice) if self.practice is None else self.practice
        if not 0 <= practice <= available_practice:
            raise VizprobeError(
                f"--practice {practice}: the package's practice pool has {available_practice} trials (0 skips)"
            )
        if self.practice_attempts < 1:
            raise VizprobeError(f"--practice-attempts {self.practice_attempts}: must be at least 1")
        if self.max_assignments < 1:
            raise VizprobeError(f"--max-assignments {self.max_assignments}: must be at least 1")
        if self.continue_ms is not None and not 0 <= self.continue_ms <= 10_000:
            raise VizprobeError(f"--continue-ms {self.continue_ms}: 0 to 10000 ms (or off)")
        if self.sides not in ("balanced", "authors"):
            raise VizprobeError(f"--sides {self.sides!r}: balanced or authors")
        if self.task_timeout_s <= 0:
            raise VizprobeError("--task-timeout must be positive")
        check_texts(self.texts)
        return replace(self, practice=practice)


def check_texts(texts: dict) -> None:
    """Refuse unknown keys or wrong types in page-text overrides, naming the first."""
    for key, value in texts.items():
        if key not in TEXT_KEYS:
            raise VizprobeError(f"--texts: unknown text {key!r}; known: {', '.join(TEXT_KEYS)}")
        kind = TEXT_KEYS[key]
        if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
            what = "a list of strings (one per page)" if kind is list else "a string (HTML allowed)"
            raise VizprobeError(f"--texts: {key!r} must be {what}")


def load_texts(path: str | Path) -> dict:
    """Page-text overrides from a JSON object file (`vizprobe serve --texts FILE.json`)."""
    path = Path(path)
    try:
        texts = json.loads(path.read_text())
    except FileNotFoundError:
        raise VizprobeError(f"--texts {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VizprobeError(f"--texts {path} is not valid JSON ({error}); write a JSON object") from None
    if not isinstance(texts, dict):
        raise VizprobeError(f"--texts {path} must hold a JSON object of text name -> text")
    check_texts(texts)
    return texts
