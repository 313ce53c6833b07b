"""MTurk from posting to payment, as the authors ran it (tools/mturk/mturk.py, spawn_experiment.py of
brendel-group/causal-understanding-via-visualizations), through boto3 with the researcher's own AWS credentials.

The server hands tasks out; this module keeps as many places open on MTurk as the server has free tasks:
- HITs of at most 9 places (MTurk's commission is 20 % below 10 assignments, 40 % from 10);
- a place added when the server frees a task (a participant failed the exclusion criteria, timed out or stopped),
  up to the server's `--max-assignments` per task, as the authors added one assignment per failed submission;
- an expired HIT (lifetime 2 h) re-posted as a new one;
- submissions decided by the rule of `vizprobe approvals`, each worker granted this study's qualification, which
  every later HIT (and any study naming it in `--block`) requires them not to have.

Every change is recorded in the study's database before it is sent, and sent with an idempotency token, so a
killed `watch` resumes where it stopped without posting twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vizprobe.errors import VizprobeError
from vizprobe.experiment.approvals import worker_decisions
from vizprobe.experiment.assignment import release_abandoned
from vizprobe.experiment.db import Database, ParticipantSession, SessionStatus, Task, TaskState, utcnow
from vizprobe.experiment.mturk import MTurkSettings, commission, create_hit_request
from vizprobe.experiment.secret import keyed_hash
from vizprobe.experiment.study import stored_study

from .state import CrowdAssignment, CrowdHit, CrowdStudy, Decision, HitState, crowd_study, hits

log = logging.getLogger("vizprobe.crowd")
SANDBOX = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
PRODUCTION = "https://mturk-requester.us-east-1.amazonaws.com"
NO_CREDENTIALS = (
    "no AWS credentials found: run `aws configure` (or write aws_access_key_id and aws_secret_access_key under "
    "[default] in ~/.aws/credentials, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); vizprobe never stores them"
)
SYSTEM_QUALIFICATIONS = ("00000000000000000071", "00000000000000000040", "000000000000000000L0")
FINISHED_TASKS = (TaskState.COMPLETED, TaskState.EXHAUSTED)


def connect(sandbox: bool, profile: str | None = None, endpoint_url: str | None = None):
    """A boto3 MTurk client with the researcher's credentials (the usual AWS places), retrying throttling and 5xx
    with backoff; `AWS_ENDPOINT_URL_MTURK` or `AWS_ENDPOINT_URL` point it elsewhere (a local stand-in)."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ProfileNotFound
    except ImportError:
        raise VizprobeError("posting on MTurk needs boto3: pip install 'vizprobe[crowd]'") from None
    try:
        session = boto3.Session(profile_name=profile)
    except ProfileNotFound:
        where = "~/.aws/config or ~/.aws/credentials"
        raise VizprobeError(f"--profile {profile!r}: no such AWS profile in {where}") from None
    if session.get_credentials() is None:
        raise VizprobeError(NO_CREDENTIALS)
    endpoint = (
        endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_MTURK")
        or os.environ.get("AWS_ENDPOINT_URL")
        or (SANDBOX if sandbox else PRODUCTION)
    )
    config = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=60)
    return session.client("mturk", region_name="us-east-1", endpoint_url=endpoint, config=config)


@dataclass(frozen=True)
class Posting:
    """What `crowd post` puts on MTurk: the HITs' settings, the study's URL, sandbox or not, and the names of the
    qualifications of earlier studies whose workers are kept out."""

    url: str
    settings: MTurkSettings = field(default_factory=MTurkSettings)
    sandbox: bool = False
    block: tuple[str, ...] = ()
    name: str | None = None

    def as_json(self) -> dict:
        return {"url": self.url, "mturk": asdict(self.settings), "block": list(self.block)}


@dataclass
class TickReport:
    """What one round of `watch` did."""

    posted: int = 0  # places added (new HITs or assignments added to open ones)
    hits_created: int = 0
    approved: int = 0
    rejected: int = 0
    held: int = 0
    expired: int = 0
    gone: list[str] = field(default_factory=list)
    done: bool = False

    def line(self) -> str:
        parts = [f"{self.posted} place(s) posted", f"{self.approved} approved", f"{self.rejected} rejected"]
        if self.held:
            parts.append(f"{self.held} held for you (no session matches the worker)")
        if self.expired:
            parts.append(f"{self.expired} HIT(s) expired")
        if self.gone:
            parts.append(f"HIT(s) {', '.join(self.gone)} no longer exist on MTurk (deleted there?)")
        return ", ".join(parts) + (": the study is done" if self.done else "")


class MTurkCrowd:
    """The study's posting on MTurk: `post`, `tick` (one round of `watch`), `pay` and `status`."""

    platform = "mturk"

    def __init__(self, client, db: Database, secret: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.client, self.db, self.secret = client, db, secret
        self.transient_errors = (BotoCoreError, ClientError)

    # --- posting --------------------------------------------------------------------------------------------
    def post(self, posting: Posting) -> TickReport:
        """Record the posting, create this study's qualification and post places for every free task."""
        with self.db.tx() as s:
            posting = _with_reward(s, posting)
            study = s.get(CrowdStudy, 1)
            if study is None:
                name = posting.name or _default_name(s)
                s.add(
                    CrowdStudy(
                        id=1,
                        platform="mturk",
                        sandbox=posting.sandbox,
                        name=name,
                        settings_json=_dumps(posting.as_json()),
                    )
                )
            elif study.sandbox != posting.sandbox:
                where = "the sandbox" if study.sandbox else "the real MTurk"
                raise VizprobeError(f"this study was posted in {where}; post a study elsewhere with a new --db")
        self._qualifications()
        return self.tick()

    def planned_requests(self, posting: Posting) -> tuple[list[dict], dict]:
        """The CreateHIT requests `post` would send now, and what they cost (nothing is sent)."""
        with self.db.tx() as s:
            posting = _with_reward(s, posting)
            free = _free_tasks(s)
            tasks = s.scalar(select(func.count()).select_from(Task))
            max_assignments = _server_setting(s, "max_assignments", 3)
        settings = posting.settings
        sizes = [settings.hit_places] * (free // settings.hit_places)
        sizes += [free % settings.hit_places] if free % settings.hit_places else []
        requests = [self._hit_request(posting.url, settings, n, posting.sandbox, ["(this study's)"]) for n in sizes]
        each = settings.reward_usd + commission(settings.reward_usd, settings.hit_places)
        cost = {
            "places": free,
            "hits": len(sizes),
            "per_assignment_usd": round(each, 4),
            "once_usd": round(each * free, 2),
            "at_most_usd": round(each * tasks * max_assignments, 2),
        }
        return requests, cost

    def _qualifications(self) -> None:
        """Create this study's qualification (kept out of its later HITs) and look up the blocked studies'."""
        with self.db.tx() as s:
            study = crowd_study(s, "mturk")
            settings = study.settings
        if "qualification" not in settings:
            name = f"vizprobe-{study.name}"
            try:
                made = self.client.create_qualification_type(
                    Name=name,
                    Description=f"Took part in the vizprobe study {study.name} (kept out of it and of later ones)",
                    QualificationTypeStatus="Active",
                )
                settings["qualification"] = made["QualificationType"]["QualificationTypeId"]
            except self.client.exceptions.RequestError:  # made before a kill: find it by name
                settings["qualification"] = self._qualification_id(name)
        if "blocked" not in settings:
            settings["blocked"] = [self._qualification_id(n) for n in settings["block"]]
        with self.db.tx() as s:
            s.get(CrowdStudy, 1).settings_json = _dumps(settings)

    def _qualification_id(self, name: str) -> str:
        """The id of one of the account's qualification types by exact name (`vizprobe-` prefixed or as given)."""
        found = self.client.list_qualification_types(
            Query=name, MustBeRequestable=False, MustBeOwnedByCaller=True, MaxResults=100
        )["QualificationTypes"]
        for wanted in (name, f"vizprobe-{name}"):
            match = [q["QualificationTypeId"] for q in found if q["Name"] == wanted]
            if match:
                return match[0]
        if not name.startswith("vizprobe-"):
            return self._qualification_id(f"vizprobe-{name}")
        raise VizprobeError(
            f"--block {name.removeprefix('vizprobe-')!r}: no qualification of this name in this MTurk account "
            f"({'sandbox' if self._sandbox() else 'real'}); give the study name an earlier `crowd post` printed"
        )

    def _sandbox(self) -> bool:
        with self.db.tx() as s:
            study = s.get(CrowdStudy, 1)
            return bool(study and study.sandbox)

    def _hit_request(
        self, url: str, settings: MTurkSettings, places: int, sandbox: bool, own: list[str], blocked=()
    ) -> dict:
        request = create_hit_request(url, places, settings, with_references=True)
        requirements = request["QualificationRequirements"]
        if sandbox:  # sandbox workers have no approval record: the authors dropped these there too
            requirements = [q for q in requirements if q["QualificationTypeId"] not in SYSTEM_QUALIFICATIONS]
        guard = {"Comparator": "DoesNotExist", "ActionsGuarded": "DiscoverPreviewAndAccept"}
        requirements += [{"QualificationTypeId": q, **guard} for q in [*own, *blocked]]
        return request | {"QualificationRequirements": requirements}

    # --- one round of watch -----------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        """Sync the HITs, decide new submissions, post places for free tasks; close the HITs once all are done."""
        report = TickReport()
        self._recover_postings()
        self._sync(report)
        self._decide(report)
        if self._top_up(report) == "done":
            self._close(report)
        return report

    def pay(self) -> TickReport:
        """Decide every submission not yet decided (approve, or reject where the protocol says so); paying twice is
        impossible: each assignment is decided once, by id."""
        report = TickReport()
        self._sync(report)
        self._decide(report)
        return report

    def _settings(self) -> tuple[CrowdStudy, MTurkSettings, dict]:
        with self.db.tx() as s:
            study = crowd_study(s, "mturk")
            settings = study.settings
        mturk = MTurkSettings(**{**settings["mturk"], "countries": tuple(settings["mturk"]["countries"])})
        return study, mturk, settings

    def _recover_postings(self) -> None:
        """HITs asked for before a kill and not confirmed: found by their token, or asked for again with it."""
        with self.db.tx() as s:
            waiting = [h.token for h in hits(s, HitState.POSTING)]
        if not waiting:
            return
        existing = {}
        for page in self.client.get_paginator("list_hits").paginate():
            existing |= {h.get("RequesterAnnotation"): h for h in page["HITs"]}
        for token in waiting:
            hit = existing.get(token)
            if hit is None:
                self._create(token)
            else:
                self._confirm(token, hit)

    def _create(self, token: str) -> None:
        study, settings, extra = self._settings()
        with self.db.tx() as s:
            row = s.get(CrowdHit, token)
            places = row.places
        request = self._hit_request(
            extra["url"], settings, places, study.sandbox, [extra["qualification"]], extra.get("blocked", ())
        )
        try:
            hit = self.client.create_hit(**request, UniqueRequestToken=token, RequesterAnnotation=token)["HIT"]
        except self.client.exceptions.RequestError as error:
            found = re.search(r"HIT with ID (\w+)", str(error))
            if not found:
                raise
            hit = self.client.get_hit(HITId=found.group(1))["HIT"]
        self._confirm(token, hit)

    def _confirm(self, token: str, hit: dict) -> None:
        with self.db.tx() as s:
            row = s.get(CrowdHit, token)
            row.hit_id, row.state = hit["HITId"], HitState.OPEN
            _update_counts(row, hit)

    def _sync(self, report: TickReport) -> None:
        """Each live HIT's counts and expiry from MTurk; places recorded but not yet added are added now."""
        with self.db.tx() as s:
            live = [(h.token, h.hit_id, h.places) for h in hits(s, *HitState.SYNCED)]
        for token, hit_id, places in live:
            try:
                hit = self.client.get_hit(HITId=hit_id)["HIT"]
            except self.client.exceptions.RequestError as error:
                if "does not exist" not in str(error):
                    raise
                log.warning("HIT %s no longer exists on MTurk (deleted there?): its places are posted again", hit_id)
                report.gone.append(hit_id)
                with self.db.tx() as s:
                    s.get(CrowdHit, token).state = HitState.GONE
                continue
            if hit["MaxAssignments"] < places:  # recorded before a kill, never sent
                with contextlib.suppress(_Refused):
                    self._ask_places(token, hit_id, places - hit["MaxAssignments"])
                hit = self.client.get_hit(HITId=hit_id)["HIT"]
            with self.db.tx() as s:
                row = s.get(CrowdHit, token)
                was = row.state
                _update_counts(row, hit)
                if was == HitState.OPEN and row.state == HitState.EXPIRED:
                    report.expired += 1

    def _decide(self, report: TickReport) -> None:
        """Record every new submission, grant this study's qualification, approve or reject by the rule."""
        _, settings, extra = self._settings()
        with self.db.tx() as s:
            live = [(h.hit_id, h.reward_usd, h.completed) for h in hits(s, *HitState.SYNCED)]
            seen = dict(s.execute(select(CrowdAssignment.hit_id, func.count()).group_by(CrowdAssignment.hit_id)).all())
            undecided = set(
                s.scalars(select(CrowdAssignment.hit_id).where(CrowdAssignment.decision.is_(None)).distinct())
            )
        for hit_id, reward, completed in live:
            if completed <= seen.get(hit_id, 0) and hit_id not in undecided:
                continue
            for page in self.client.get_paginator("list_assignments_for_hit").paginate(
                HITId=hit_id, AssignmentStatuses=["Submitted", "Approved", "Rejected"]
            ):
                for assignment in page["Assignments"]:
                    self._one_submission(assignment, reward, settings, extra["qualification"], report)

    def _one_submission(
        self, assignment: dict, reward: float, settings: MTurkSettings, qualification: str, report: TickReport
    ) -> None:
        aid, worker = assignment["AssignmentId"], assignment["WorkerId"]
        with self.db.tx() as s:
            row = s.get(CrowdAssignment, aid)
            if row is None:
                row = CrowdAssignment(
                    assignment_id=aid,
                    hit_id=assignment["HITId"],
                    worker_hmac=keyed_hash(self.secret, worker),
                    platform_status=assignment["AssignmentStatus"],
                    reward_usd=reward,
                )
                s.add(row)
            row.platform_status = assignment["AssignmentStatus"]
            qualified, decided = row.qualified, row.decision is not None
            decision, reason, _ = worker_decisions(s, self.secret, [worker])[0]
        if not qualified:
            self.client.associate_qualification_with_worker(
                QualificationTypeId=qualification, WorkerId=worker, IntegerValue=1, SendNotification=False
            )
            with self.db.tx() as s:
                s.get(CrowdAssignment, aid).qualified = True
        if decided:
            return
        status = assignment["AssignmentStatus"]
        if status != "Submitted":  # approved by MTurk (AutoApprovalDelayInSeconds elapsed) or by hand
            outcome = Decision.AUTO if status == "Approved" else Decision.REJECTED
            self._record(aid, outcome, f"{status.lower()} on MTurk before vizprobe decided ({reason})")
            return
        if decision == "unknown":
            report.held += 1
            return self._record(aid, Decision.HELD, f"{reason}: decide it on MTurk by hand")
        if decision in ("reject", "returned") and settings.reject_unfinished:
            self._send(aid, approve=False, feedback=reason)
            report.rejected += 1
            return self._record(aid, Decision.REJECTED, reason)
        self._send(aid, approve=True, feedback=None)
        report.approved += 1
        self._record(aid, Decision.APPROVED, reason if decision == "approve" else f"approved anyway: {reason}")

    def _send(self, aid: str, approve: bool, feedback: str | None) -> None:
        """Approve or reject once; an assignment MTurk has already decided is left as it is."""
        try:
            if approve:
                self.client.approve_assignment(AssignmentId=aid)
            else:
                self.client.reject_assignment(AssignmentId=aid, RequesterFeedback=feedback[:1024])
        except self.client.exceptions.RequestError as error:
            if "status of: Submitted" not in str(error):
                raise

    def _record(self, aid: str, decision: str, reason: str) -> None:
        with self.db.tx() as s:
            row = s.get(CrowdAssignment, aid)
            row.decision, row.reason, row.decided_at = decision, reason, utcnow()

    def _top_up(self, report: TickReport) -> str | None:
        """Post places until the open ones match the server's free tasks (never over tasks x max-assignments);
        'done' once every task is completed or exhausted."""
        _, settings, _ = self._settings()
        now = utcnow()
        with self.db.tx() as s:
            release_abandoned(s, now, _server_setting(s, "task_timeout_s", 1800.0))
            states = dict(s.execute(select(Task.state, func.count()).group_by(Task.state)).all())
            running_mturk = s.scalar(
                select(func.count())
                .select_from(ParticipantSession)
                .where(ParticipantSession.status == SessionStatus.ACTIVE, ParticipantSession.platform == "mturk")
            )
            cap = sum(states.values()) * _server_setting(s, "max_assignments", 3)
            rows = hits(s, HitState.POSTING, HitState.OPEN, HitState.EXPIRED, HitState.GONE, HitState.CLOSED)
            available = sum(h.places - h.pending - h.completed for h in rows if h.state in (HitState.OPEN,))
            # places taken or takeable (an expired HIT's unused ones are not): what the cap bounds
            posted = (
                available
                + sum(h.pending + h.completed for h in rows)
                + sum(h.places for h in rows if h.state == HitState.POSTING)
            )
            pending = sum(h.pending for h in rows if h.state in HitState.SYNCED)
            extendable = [
                (h.token, h.hit_id, h.places)
                for h in rows
                if h.state == HitState.OPEN and h.places < settings.hit_places
            ]
        free = states.get(TaskState.FREE, 0)
        if free == 0 and states.get(TaskState.RUNNING, 0) == 0:
            return "done"
        need = min(free - available - max(0, pending - running_mturk), cap - posted)
        for token, hit_id, places in extendable:
            if need <= 0:
                break
            add = min(need, settings.hit_places - places)
            try:
                self._add_places(token, hit_id, add)
            except _Refused:
                continue
            need -= add
            report.posted += add
        while need > 0:
            token = secrets.token_hex(16)
            size = min(need, settings.hit_places)
            with self.db.tx() as s:
                s.add(CrowdHit(token=token, places=size, reward_usd=settings.reward_usd))
            self._create(token)
            need -= size
            report.posted += size
            report.hits_created += 1
        return None

    def _add_places(self, token: str, hit_id: str, add: int) -> None:
        """Record the HIT's new size, then ask MTurk for it (a kill in between is repaired by `_sync`)."""
        with self.db.tx() as s:
            s.get(CrowdHit, token).places += add
        self._ask_places(token, hit_id, add)

    def _ask_places(self, token: str, hit_id: str, add: int) -> None:
        """Add `add` assignments to the HIT; where MTurk refuses, the recorded size goes back (a new HIT takes
        them)."""
        try:
            self.client.create_additional_assignments_for_hit(
                HITId=hit_id, NumberOfAdditionalAssignments=add, UniqueRequestToken=secrets.token_hex(16)
            )
        except self.client.exceptions.RequestError as error:
            log.warning("MTurk refused more places in HIT %s (%s): a new HIT takes them", hit_id, error)
            with self.db.tx() as s:
                s.get(CrowdHit, token).places -= add
            raise _Refused from error

    def _close(self, report: TickReport) -> None:
        """Every task is done: expire the HITs still open, so nobody accepts a place without a task."""
        with self.db.tx() as s:
            still_open = [(h.token, h.hit_id) for h in hits(s, HitState.OPEN)]
            undecided = s.scalar(
                select(func.count()).select_from(CrowdAssignment).where(CrowdAssignment.decision.is_(None))
            )
            pending = sum(h.pending for h in hits(s, *HitState.SYNCED))
        for token, hit_id in still_open:
            self.client.update_expiration_for_hit(HITId=hit_id, ExpireAt=datetime(1970, 1, 1, tzinfo=UTC))
            with self.db.tx() as s:
                s.get(CrowdHit, token).state = HitState.CLOSED
        report.done = not undecided and not pending

    # --- status ---------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """Places, submissions, decisions and cost so far (with MTurk's commission), and the account's balance."""
        _, settings, _ = self._settings()
        with self.db.tx() as s:
            rows = hits(s)
            decisions = dict(
                s.execute(select(CrowdAssignment.decision, func.count()).group_by(CrowdAssignment.decision)).all()
            )
            paid = s.scalars(select(CrowdAssignment.reward_usd).where(CrowdAssignment.decision.in_(Decision.PAID)))
            cost = sum(r + commission(r, settings.hit_places) for r in paid)
            tasks = dict(s.execute(select(Task.state, func.count()).group_by(Task.state)).all())
        balance = self.client.get_account_balance().get("AvailableBalance")
        return {
            "tasks": {state: tasks.get(state, 0) for state in ("free", "running", "completed", "exhausted")},
            "hits": len(rows),
            "hits_open": sum(h.state == HitState.OPEN for h in rows),
            "places_posted": sum(h.places for h in rows),
            "places_available": sum(h.available for h in rows if h.state == HitState.OPEN),
            "working": sum(h.pending for h in rows if h.state in HitState.SYNCED),
            "submitted": sum(decisions.values()),
            "approved": decisions.get(Decision.APPROVED, 0) + decisions.get(Decision.AUTO, 0),
            "rejected": decisions.get(Decision.REJECTED, 0),
            "undecided": decisions.get(None, 0),
            "cost_usd": round(cost, 2),
            "balance_usd": balance,
        }


class _Refused(Exception):
    """MTurk refused to add places to a HIT: new HITs take them."""


def _update_counts(row: CrowdHit, hit: dict) -> None:
    row.available = hit["NumberOfAssignmentsAvailable"]
    row.pending = hit["NumberOfAssignmentsPending"]
    row.completed = hit["NumberOfAssignmentsCompleted"]
    row.places = max(row.places, hit["MaxAssignments"])
    row.expires_at = hit["Expiration"].astimezone(UTC).replace(tzinfo=None)
    if row.state == HitState.OPEN and row.expires_at <= utcnow():
        row.state = HitState.EXPIRED


def _with_reward(s: Session, posting: Posting) -> Posting:
    """The posting paying the reward of its package: the lower one where no condition shows references."""
    from dataclasses import replace

    from vizprobe.experiment.study import load_study

    _, manifest = load_study(s)
    if any(c != "none" for c in manifest.conditions):
        return posting
    return replace(posting, settings=replace(posting.settings, reward_usd=posting.settings.reward_none_usd))


def _free_tasks(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Task).where(Task.state == TaskState.FREE))


def _server_setting(s: Session, name: str, default):
    return json.loads(stored_study(s).settings_json or "{}").get(name, default)


def _default_name(s: Session) -> str:
    """The study's name on MTurk: the day it was created and its package's hash (unique per study)."""
    study = stored_study(s)
    return f"{study.created_at:%Y%m%d}-{study.manifest_sha256[:8]}"


def _dumps(value: dict) -> str:
    return json.dumps(value, sort_keys=True)
