"""Prolific from posting to payment through its API (https://docs.prolific.com/api-reference), with the
researcher's own token (`PROLIFIC_TOKEN`, as Prolific's own CLI reads it; never stored).

One Prolific study per vizprobe study: its places follow the server's free tasks as MTurk's HITs do (a place added
when the server frees a task, never beyond `--max-assignments` per task), submissions are decided by the rule of
`vizprobe approvals` and paid by approving them. Prolific cannot lower a published study's places, so places only
grow; the study is stopped once every task is done.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import asdict, dataclass, field

import httpx
from sqlalchemy import func, select

from vizprobe.errors import VizprobeError
from vizprobe.experiment.approvals import worker_decisions
from vizprobe.experiment.assignment import release_abandoned
from vizprobe.experiment.db import Database, ParticipantSession, SessionStatus, Task, TaskState, utcnow
from vizprobe.experiment.secret import keyed_hash
from vizprobe.experiment.study import stored_study

from .mturk import TickReport, _default_name, _dumps, _server_setting
from .state import CrowdAssignment, CrowdHit, CrowdStudy, Decision, HitState, crowd_study, hits

API = "https://api.prolific.com"
NO_TOKEN = (
    "no Prolific API token: create one in Prolific's settings (API tokens) and `export PROLIFIC_TOKEN=...` "
    "(vizprobe never stores it)"
)
# Submission statuses that hold a place of the study (returned and timed-out ones give it back).
HOLDING = ("ACTIVE", "AWAITING REVIEW", "APPROVED", "REJECTED")
URL_PARAMETERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


class ProlificUnavailable(Exception):
    """Prolific did not answer (429, 5xx or the network) after the retries."""


class StudyGone(Exception):
    """The study no longer exists on Prolific (404)."""


@dataclass(frozen=True)
class ProlificSettings:
    """What the Prolific study asks for and pays: the reward in the account's currency per submission."""

    reward: float = 1.95
    estimated_minutes: int = 10
    reject_unfinished: bool = False
    devices: tuple[str, ...] = ("desktop",)
    title: str = "Image Classification"
    description: str = (
        "Academic survey in which you have to classify images, i.e. match them with another set of images."
    )

    def checked(self) -> ProlificSettings:
        if self.reward < 0.01:
            raise VizprobeError("--reward: Prolific pays at least 0.01 per submission")
        if self.estimated_minutes < 1:
            raise VizprobeError("--estimated-minutes: at least 1")
        return self


@dataclass(frozen=True)
class ProlificPosting:
    url: str
    settings: ProlificSettings = field(default_factory=ProlificSettings)
    name: str | None = None

    def as_json(self) -> dict:
        return {"url": self.url, "prolific": asdict(self.settings)}


class ProlificApi:
    """Prolific's REST API: `Authorization: Token ...`, 429 and 5xx retried with exponential back-off."""

    def __init__(self, token: str | None = None, base: str | None = None, tries: int = 6, sleep=time.sleep) -> None:
        token = token or os.environ.get("PROLIFIC_TOKEN")
        if not token:
            raise VizprobeError(NO_TOKEN)
        self.base = (base or os.environ.get("PROLIFIC_URL") or API).rstrip("/")
        self.client = httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=60)
        self.tries, self.sleep = tries, sleep

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        url = path if path.startswith("http") else f"{self.base}/api/v1/{path.lstrip('/')}"
        delay = 1.0
        for attempt in range(self.tries):
            try:
                r = self.client.request(method, url, json=body)
            except httpx.TransportError as error:
                last = str(error)
            else:
                if r.status_code == 404:
                    raise StudyGone(f"{method} {path}: 404")
                if r.status_code == 401:
                    raise VizprobeError("Prolific refused the token (401): check PROLIFIC_TOKEN")
                if r.status_code < 400:
                    return r.json() if r.content else {}
                if r.status_code != 429 and r.status_code < 500:
                    raise VizprobeError(f"Prolific refused {method} {path} ({r.status_code}): {r.text[:300]}")
                last = f"{r.status_code} {r.text[:100]}"
            if attempt + 1 < self.tries:
                self.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise ProlificUnavailable(f"{method} {path}: {last}")

    def pages(self, path: str) -> list[dict]:
        """Every item of a paginated list (`results`, `_links.next.href`)."""
        out, page = [], self.call("GET", path)
        while True:
            out += page.get("results", [])
            following = ((page.get("_links") or {}).get("next") or {}).get("href")
            if not following:
                return out
            page = self.call("GET", following)


class ProlificCrowd:
    """The study's posting on Prolific: `post`, `tick` (one round of `watch`), `pay` and `status`."""

    platform = "prolific"
    transient_errors = (ProlificUnavailable,)

    def __init__(self, api: ProlificApi | None, db: Database, secret: bytes) -> None:
        self.api, self.db, self.secret = api, db, secret

    # --- posting --------------------------------------------------------------------------------------------
    def study_request(self, posting: ProlificPosting, token: str, places: int, code: str) -> dict:
        """The study as Prolific's POST /studies/ takes it."""
        settings = posting.settings.checked()
        separator = "&" if "?" in posting.url else "?"
        return {
            "name": settings.title,
            "internal_name": token,
            "description": settings.description,
            "external_study_url": f"{posting.url}{separator}{URL_PARAMETERS}",
            "prolific_id_option": "url_parameters",
            "completion_codes": [{"code": code, "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}]}],
            "total_available_places": places,
            "estimated_completion_time": settings.estimated_minutes,
            "reward": round(settings.reward * 100),
            "device_compatibility": list(settings.devices),
        }

    def planned_requests(self, posting: ProlificPosting) -> tuple[list[dict], dict]:
        with self.db.tx() as s:
            free = s.scalar(select(func.count()).select_from(Task).where(Task.state == TaskState.FREE))
            tasks = s.scalar(select(func.count()).select_from(Task))
            cap = tasks * _server_setting(s, "max_assignments", 3)
            code = stored_study(s).completion_code
        request = self.study_request(posting, "(token)", free, code)
        reward = posting.settings.reward
        cost = {"places": free, "once": round(reward * free, 2), "at_most": round(reward * cap, 2)}
        return [request], cost

    def post(self, posting: ProlificPosting) -> TickReport:
        """Record the posting, create and publish the Prolific study with a place per free task."""
        with self.db.tx() as s:
            if s.get(CrowdStudy, 1) is None:
                name = posting.name or _default_name(s)
                s.add(CrowdStudy(id=1, platform="prolific", name=name, settings_json=_dumps(posting.as_json())))
                free = s.scalar(select(func.count()).select_from(Task).where(Task.state == TaskState.FREE))
                s.add(CrowdHit(token=secrets.token_hex(16), places=free, reward_usd=posting.settings.reward))
        return self.tick()

    def _posting(self) -> ProlificPosting:
        with self.db.tx() as s:
            settings = crowd_study(s, "prolific").settings
        values = settings["prolific"] | {"devices": tuple(settings["prolific"]["devices"])}
        return ProlificPosting(settings["url"], ProlificSettings(**values))

    def _recover(self) -> None:
        """A study recorded but not confirmed (a kill before Prolific answered): found by its internal name,
        or created now; published if it is not yet."""
        with self.db.tx() as s:
            waiting = [(h.token, h.places) for h in hits(s, HitState.POSTING)]
            code = stored_study(s).completion_code
        for token, places in waiting:
            existing = [st for st in self.api.pages("studies/") if st.get("internal_name") == token]
            study = existing[0] if existing else None
            if study is None:
                study = self.api.call("POST", "studies/", self.study_request(self._posting(), token, places, code))
            if study.get("status", "UNPUBLISHED") == "UNPUBLISHED":
                self.api.call("POST", f"studies/{study['id']}/transition/", {"action": "PUBLISH"})
            with self.db.tx() as s:
                row = s.get(CrowdHit, token)
                row.hit_id, row.state = study["id"], HitState.OPEN

    # --- one round of watch -----------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        """Decide new submissions, raise the places to the free tasks, stop the study once all are done."""
        report = TickReport()
        self._posting()  # a one-line error when this database was never posted on Prolific
        self._recover()
        live = self._live()
        if live is None:
            return report
        token, study_id = live
        try:
            study = self.api.call("GET", f"studies/{study_id}/")
            submissions = self.api.pages(f"studies/{study_id}/submissions/")
        except StudyGone:
            report.gone.append(study_id)
            with self.db.tx() as s:
                s.get(CrowdHit, token).state = HitState.GONE
            return report
        self._decide(submissions, report)
        if self._top_up(token, study, submissions, report) == "done":
            if study.get("status") not in ("COMPLETED", "AWAITING REVIEW"):
                self.api.call("POST", f"studies/{study_id}/transition/", {"action": "STOP"})
            undecided = [x for x in submissions if x["status"] == "AWAITING REVIEW"]
            active = [x for x in submissions if x["status"] == "ACTIVE"]
            report.done = not undecided and not active
        return report

    def _live(self) -> tuple[str, str] | None:
        with self.db.tx() as s:
            rows = hits(s, HitState.OPEN)
        return (rows[0].token, rows[0].hit_id) if rows else None

    def _decide(self, submissions: list[dict], report: TickReport) -> None:
        settings = self._posting().settings
        for sub in submissions:
            if sub["status"] not in ("AWAITING REVIEW", "APPROVED", "REJECTED"):
                continue
            with self.db.tx() as s:
                row = s.get(CrowdAssignment, sub["id"])
                if row is None:
                    row = CrowdAssignment(
                        assignment_id=sub["id"],
                        hit_id=sub.get("study_id", ""),
                        worker_hmac=keyed_hash(self.secret, sub["participant_id"]),
                        platform_status=sub["status"],
                        reward_usd=settings.reward,
                        qualified=True,
                    )
                    s.add(row)
                row.platform_status = sub["status"]
                decided = row.decision is not None
                decision, reason, _ = worker_decisions(s, self.secret, [sub["participant_id"]])[0]
            if decided:
                continue
            if sub["status"] != "AWAITING REVIEW":
                outcome = Decision.AUTO if sub["status"] == "APPROVED" else Decision.REJECTED
                self._record(sub["id"], outcome, f"{sub['status'].lower()} on Prolific before vizprobe decided")
            elif decision == "unknown":
                report.held += 1
                self._record(sub["id"], Decision.HELD, f"{reason}: decide it on Prolific by hand")
            elif decision in ("reject", "returned") and settings.reject_unfinished:
                body = {"action": "REJECT", "message": reason[:1000], "rejection_category": "NO_CODE"}
                self.api.call("POST", f"submissions/{sub['id']}/transition/", body)
                report.rejected += 1
                self._record(sub["id"], Decision.REJECTED, reason)
            else:
                self.api.call("POST", f"submissions/{sub['id']}/transition/", {"action": "APPROVE"})
                report.approved += 1
                self._record(sub["id"], Decision.APPROVED, reason)

    def _record(self, sid: str, decision: str, reason: str) -> None:
        with self.db.tx() as s:
            row = s.get(CrowdAssignment, sid)
            row.decision, row.reason, row.decided_at = decision, reason, utcnow()

    def _top_up(self, token: str, study: dict, submissions: list[dict], report: TickReport) -> str | None:
        """Raise the study's places until the open ones match the free tasks (never over the cap)."""
        with self.db.tx() as s:
            release_abandoned(s, utcnow(), _server_setting(s, "task_timeout_s", 1800.0))
            states = dict(s.execute(select(Task.state, func.count()).group_by(Task.state)).all())
            running = s.scalar(
                select(func.count())
                .select_from(ParticipantSession)
                .where(ParticipantSession.status == SessionStatus.ACTIVE, ParticipantSession.platform == "prolific")
            )
            cap = sum(states.values()) * _server_setting(s, "max_assignments", 3)
        free = states.get(TaskState.FREE, 0)
        if free == 0 and states.get(TaskState.RUNNING, 0) == 0:
            return "done"
        total = int(study["total_available_places"])
        holding = sum(x["status"] in HOLDING for x in submissions)
        active = sum(x["status"] == "ACTIVE" for x in submissions)
        need = min(free - (total - holding) - max(0, active - running), cap - total)
        if need > 0:
            with self.db.tx() as s:
                s.get(CrowdHit, token).places = total + need
            self.api.call("PATCH", f"studies/{study['id']}/", {"total_available_places": total + need})
            report.posted += need
        return None

    def pay(self) -> TickReport:
        """Decide every submission awaiting review (each once, by its id)."""
        report = TickReport()
        self._posting()
        live = self._live()
        if live is not None:
            self._decide(self.api.pages(f"studies/{live[1]}/submissions/"), report)
        return report

    def status(self) -> dict:
        """Tasks, places, submissions and decisions, and the rewards paid so far (Prolific's fee comes on top)."""
        self._posting()
        with self.db.tx() as s:
            rows = hits(s)
            decisions = dict(
                s.execute(select(CrowdAssignment.decision, func.count()).group_by(CrowdAssignment.decision)).all()
            )
            paid = s.scalars(select(CrowdAssignment.reward_usd).where(CrowdAssignment.decision.in_(Decision.PAID)))
            rewards = sum(paid)
            tasks = dict(s.execute(select(Task.state, func.count()).group_by(Task.state)).all())
        return {
            "tasks": {state: tasks.get(state, 0) for state in ("free", "running", "completed", "exhausted")},
            "studies": len(rows),
            "places_posted": sum(h.places for h in rows),
            "submitted": sum(decisions.values()),
            "approved": decisions.get(Decision.APPROVED, 0) + decisions.get(Decision.AUTO, 0),
            "rejected": decisions.get(Decision.REJECTED, 0),
            "held": decisions.get(Decision.HELD, 0),
            "rewards_paid": round(rewards, 2),
        }
