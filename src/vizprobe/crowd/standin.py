"""Local stand-ins of the MTurk requester API and of Prolific's API, for rehearsals and tests.

MTurk's: the operations `vizprobe crowd` calls, spoken over HTTP as MTurk speaks them (AWS JSON 1.1), so that
boto3 reaches it through `endpoint_url` or `AWS_ENDPOINT_URL` with every request checked against the service
model on the client side. Each reply is also checked here against the model's output shape before it is sent.
Workers are played by the test: `accept`, `submit`, `return_assignment`; the platform's own moves by `expire`,
`delete` and `fail_next` (throttling or a 5xx). Approving after `AutoApprovalDelayInSeconds` is done lazily.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.session
import botocore.validate

TARGET = "MTurkRequesterServiceV20170117."


class RequestError(Exception):
    """A 400 RequestError as MTurk sends it."""


class Served:
    """A stand-in behind HTTP on 127.0.0.1: `respond(method, path, headers, body)` answers each request."""

    _server: ThreadingHTTPServer | None = None

    def respond(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict, str]:
        raise NotImplementedError

    def serve(self) -> str:
        """Start serving on a free local port; returns the endpoint URL."""
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, out, kind = standin.respond(self.command, self.path, self.headers, body)
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _any  # noqa: N815 (http.server's names)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class FakeAssignment:
    id: str
    hit_id: str
    worker_id: str
    accepted: datetime
    status: str = "Accepted"  # Accepted (pending), Submitted, Approved, Rejected; Returned ones are dropped
    submitted: datetime | None = None
    answer: str = "<QuestionFormAnswers/>"
    feedback: str | None = None


@dataclass
class FakeHit:
    request: dict
    id: str
    created: datetime
    expiration: datetime
    max_assignments: int
    deleted: bool = False
    assignments: list[FakeAssignment] = field(default_factory=list)

    def counts(self) -> tuple[int, int, int]:
        """(available, pending, completed) as MTurk reports them."""
        pending = sum(a.status == "Accepted" for a in self.assignments)
        completed = sum(a.status in ("Submitted", "Approved", "Rejected") for a in self.assignments)
        return self.max_assignments - pending - completed, pending, completed


class MTurkStandIn(Served):
    """The stand-in's state and operations; `serve()` puts it behind HTTP on 127.0.0.1."""

    def __init__(self, balance: str = "10000.00") -> None:
        self.hits: dict[str, FakeHit] = {}
        self.qualifications: dict[str, dict] = {}
        self.granted: dict[str, set[str]] = {}
        self.calls: list[tuple[str, dict]] = []
        self.tokens: dict[str, str] = {}
        self.balance = balance
        self.offset = timedelta()
        self._failures: list[tuple[int, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._model = botocore.session.get_session().get_service_model("mturk")

    # --- the platform's clock and moves -------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        """Move the platform's clock on (HITs expire, auto-approvals fall due)."""
        self.offset += timedelta(seconds=seconds)

    def fail_next(self, n: int, status: int = 400, code: str = "ThrottlingException") -> None:
        """The next `n` requests are refused with `status` and `code` (throttling, ServiceFault...)."""
        self._failures.extend([(status, code)] * n)

    def expire(self, hit_id: str) -> None:
        self.hits[hit_id].expiration = self.now() - timedelta(seconds=1)

    def delete(self, hit_id: str) -> None:
        """The HIT disappears on the platform's side (deleted from the web site)."""
        self.hits[hit_id].deleted = True

    def accept(self, hit_id: str, worker_id: str) -> str:
        """A worker accepts one place of the HIT; returns the assignment id."""
        hit = self.hits[hit_id]
        for requirement in hit.request.get("QualificationRequirements", []):
            if requirement["Comparator"] == "DoesNotExist" and worker_id in self.granted.get(
                requirement["QualificationTypeId"], set()
            ):
                raise RequestError(f"worker {worker_id} does not meet the HIT's qualification requirements")
        if hit.counts()[0] < 1 or hit.expiration <= self.now() or hit.deleted:
            raise RequestError(f"HIT {hit_id} has no place to accept")
        assignment = FakeAssignment(f"A{next(self._ids):06d}", hit_id, worker_id, self.now())
        hit.assignments.append(assignment)
        return assignment.id

    def submit(self, assignment_id: str) -> None:
        assignment = self._assignment(assignment_id)
        assignment.status, assignment.submitted = "Submitted", self.now()

    def return_assignment(self, assignment_id: str) -> None:
        """The worker returns the HIT: the place is available again."""
        assignment = self._assignment(assignment_id)
        self.hits[assignment.hit_id].assignments.remove(assignment)

    def open_hits(self) -> list[FakeHit]:
        """HITs a worker can find now: not deleted, not expired, with a place left."""
        now = self.now()
        return [h for h in self.hits.values() if not h.deleted and h.expiration > now and h.counts()[0] > 0]

    def _assignment(self, assignment_id: str) -> FakeAssignment:
        for hit in self.hits.values():
            for assignment in hit.assignments:
                if assignment.id == assignment_id:
                    return assignment
        raise RequestError(f"Assignment {assignment_id} does not exist. (1234567890123)")

    def _hit(self, hit_id: str) -> FakeHit:
        hit = self.hits.get(hit_id)
        if hit is None or hit.deleted:
            raise RequestError(f"Hit {hit_id} does not exist. (1234567890123)")
        return hit

    def _auto_approve(self) -> None:
        now = self.now()
        for hit in self.hits.values():
            delay = timedelta(seconds=hit.request["AutoApprovalDelayInSeconds"])
            for a in hit.assignments:
                if a.status == "Submitted" and a.submitted + delay <= now:
                    a.status = "Approved"

    # --- the API ------------------------------------------------------------------------------------------
    def call(self, operation: str, params: dict) -> dict:
        """One request: the reply as the operation's output shape, or RequestError."""
        with self._lock:
            self.calls.append((operation, params))
            self._auto_approve()
            return getattr(self, f"op_{operation}")(params)

    def op_CreateHIT(self, p: dict) -> dict:
        token = p.get("UniqueRequestToken")
        if token in self.tokens:
            raise RequestError(f"The HIT with ID {self.tokens[token]} already exists for this UniqueRequestToken.")
        now = self.now()
        hit_id = f"H{next(self._ids):029d}"
        hit = FakeHit(p, hit_id, now, now + timedelta(seconds=p["LifetimeInSeconds"]), p["MaxAssignments"])
        self.hits[hit_id] = hit
        if token:
            self.tokens[token] = hit_id
        return {"HIT": self._hit_out(hit)}

    def op_GetHIT(self, p: dict) -> dict:
        return {"HIT": self._hit_out(self._hit(p["HITId"]))}

    def op_ListHITs(self, p: dict) -> dict:
        hits = [self._hit_out(h) for h in self.hits.values() if not h.deleted]
        return {"NumResults": len(hits), "HITs": hits}

    def op_CreateAdditionalAssignmentsForHIT(self, p: dict) -> dict:
        hit = self._hit(p["HITId"])
        new = hit.max_assignments + p["NumberOfAdditionalAssignments"]
        if hit.request["MaxAssignments"] < 10 <= new:
            raise RequestError("HITs created with fewer than 10 assignments cannot be extended to 10 or more.")
        hit.max_assignments = new
        return {}

    def op_ListAssignmentsForHIT(self, p: dict) -> dict:
        hit = self._hit(p["HITId"])
        wanted = set(p.get("AssignmentStatuses", ["Submitted", "Approved", "Rejected"]))
        out = [self._assignment_out(a) for a in hit.assignments if a.status in wanted]
        return {"NumResults": len(out), "Assignments": out}

    def op_ApproveAssignment(self, p: dict) -> dict:
        a = self._assignment(p["AssignmentId"])
        if a.status != "Submitted" and not (a.status == "Rejected" and p.get("OverrideRejection")):
            raise RequestError(f"This operation can be called with a status of: Submitted ({a.status})")
        a.status, a.feedback = "Approved", p.get("RequesterFeedback")
        return {}

    def op_RejectAssignment(self, p: dict) -> dict:
        a = self._assignment(p["AssignmentId"])
        if a.status != "Submitted":
            raise RequestError(f"This operation can be called with a status of: Submitted ({a.status})")
        a.status, a.feedback = "Rejected", p["RequesterFeedback"]
        return {}

    def op_UpdateExpirationForHIT(self, p: dict) -> dict:
        hit = self._hit(p["HITId"])
        expire_at = p["ExpireAt"]
        hit.expiration = datetime.fromtimestamp(float(expire_at), UTC) if float(expire_at) > 0 else self.now()
        return {}

    def op_DeleteHIT(self, p: dict) -> dict:
        hit = self._hit(p["HITId"])
        if hit.counts()[1] or any(a.status == "Submitted" for a in hit.assignments):
            raise RequestError("This HIT is currently in the state 'Assignable'. It cannot be deleted.")
        hit.deleted = True
        return {}

    def op_CreateQualificationType(self, p: dict) -> dict:
        if any(q["Name"] == p["Name"] for q in self.qualifications.values()):
            raise RequestError(f"You have already created a QualificationType with this name: {p['Name']}")
        qid = f"Q{next(self._ids):029d}"
        self.qualifications[qid] = {
            "QualificationTypeId": qid,
            "CreationTime": self.now(),
            "Name": p["Name"],
            "Description": p["Description"],
            "QualificationTypeStatus": p["QualificationTypeStatus"],
            "IsRequestable": False,
            "AutoGranted": False,
        }
        return {"QualificationType": self.qualifications[qid]}

    def op_ListQualificationTypes(self, p: dict) -> dict:
        query = (p.get("Query") or "").lower()
        found = [q for q in self.qualifications.values() if query in q["Name"].lower()]
        return {"NumResults": len(found), "QualificationTypes": found}

    def op_AssociateQualificationWithWorker(self, p: dict) -> dict:
        if p["QualificationTypeId"] not in self.qualifications:
            raise RequestError(f"QualificationType {p['QualificationTypeId']} does not exist.")
        self.granted.setdefault(p["QualificationTypeId"], set()).add(p["WorkerId"])
        return {}

    def op_GetAccountBalance(self, _: dict) -> dict:
        return {"AvailableBalance": self.balance}

    def _hit_out(self, hit: FakeHit) -> dict:
        available, pending, completed = hit.counts()
        now = self.now()
        if hit.expiration <= now or available == 0:
            status = "Reviewable" if not pending else "Unassignable"
        else:
            status = "Assignable"
        keys = ("Title", "Description", "Question", "Reward", "AutoApprovalDelayInSeconds")
        return {
            "HITId": hit.id,
            "HITTypeId": "T" + hit.id[1:],
            "HITGroupId": "G" + hit.id[1:],
            "CreationTime": hit.created,
            "Expiration": hit.expiration,
            "HITStatus": status,
            "MaxAssignments": hit.max_assignments,
            "AssignmentDurationInSeconds": hit.request["AssignmentDurationInSeconds"],
            "RequesterAnnotation": hit.request.get("RequesterAnnotation", ""),
            "QualificationRequirements": hit.request.get("QualificationRequirements", []),
            "NumberOfAssignmentsAvailable": available,
            "NumberOfAssignmentsPending": pending,
            "NumberOfAssignmentsCompleted": completed,
            **{k: hit.request[k] for k in keys},
        }

    @staticmethod
    def _assignment_out(a: FakeAssignment) -> dict:
        out = {
            "AssignmentId": a.id,
            "WorkerId": a.worker_id,
            "HITId": a.hit_id,
            "AssignmentStatus": a.status,
            "AcceptTime": a.accepted,
            "Answer": a.answer,
        }
        if a.submitted:
            out["SubmitTime"] = a.submitted
        if a.feedback:
            out["RequesterFeedback"] = a.feedback
        return out

    # --- HTTP ---------------------------------------------------------------------------------------------
    def reply(self, target: str, body: bytes) -> tuple[int, dict]:
        """The HTTP status and JSON body for one request (failures queued by `fail_next` first)."""
        if self._failures:
            status, code = self._failures.pop(0)
            return status, {"__type": code, "Message": f"{code} (stand-in)"}
        operation = target.removeprefix(TARGET)
        try:
            out = self.call(operation, json.loads(body or b"{}"))
        except RequestError as error:
            return 400, {"__type": "RequestError", "Message": str(error)}
        shape = self._model.operation_model(operation).output_shape
        if shape is not None:
            report = botocore.validate.ParamValidator().validate(out, shape)
            if report.has_errors():
                raise AssertionError(f"stand-in reply of {operation} breaks the model: {report.generate_report()}")
        return 200, _jsonable(out)

    def respond(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict, str]:
        status, out = self.reply(headers.get("X-Amz-Target", ""), body)
        return status, out, "application/x-amz-json-1.1"


def _jsonable(value):
    """Timestamps as epoch seconds (the JSON protocol's form); everything else as is."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


# --- Prolific ---------------------------------------------------------------------------------------------------
STUDY_REQUIRED = (
    "name",
    "description",
    "external_study_url",
    "prolific_id_option",
    "completion_codes",
    "total_available_places",
    "estimated_completion_time",
    "reward",
)


class ProlificStandIn(Served):
    """A local stand-in of the parts of Prolific's API `vizprobe crowd` uses, as documented
    (https://docs.prolific.com/api-reference): studies (create, list, get, patch places, transitions) and their
    submissions (list, approve, reject), behind `Authorization: Token`. Participants are played by the test:
    `join`, `finish`, `return_submission`; `fail_next` queues 429s or 5xx."""

    def __init__(self, token: str = "standin-token") -> None:
        self.token = token
        self.studies: dict[str, dict] = {}
        self.submissions: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict | None]] = []
        self._failures: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fail_next(self, n: int, status: int = 429) -> None:
        self._failures.extend([status] * n)

    def join(self, study_id: str, participant: str) -> str:
        """A participant takes a place; returns the submission id (Prolific's SESSION_ID)."""
        study = self.studies[study_id]
        holding = sum(s["status"] in ("ACTIVE", "AWAITING REVIEW", "APPROVED", "REJECTED") for s in self._of(study_id))
        if study["status"] != "ACTIVE" or holding >= study["total_available_places"]:
            raise RequestError(f"study {study_id} has no place")
        sid = f"S{next(self._ids):023x}"
        self.submissions[sid] = {
            "id": sid,
            "study_id": study_id,
            "participant_id": participant,
            "status": "ACTIVE",
            "started_at": datetime.now(UTC).isoformat(),
        }
        return sid

    def finish(self, submission_id: str, code: str) -> None:
        """The participant is sent back with the completion code: the submission awaits review."""
        sub = self.submissions[submission_id]
        codes = [c["code"] for c in self.studies[sub["study_id"]]["completion_codes"]]
        if code not in codes:
            raise RequestError(f"completion code {code!r} is not the study's")
        sub["status"], sub["study_code"] = "AWAITING REVIEW", code

    def return_submission(self, submission_id: str) -> None:
        self.submissions[submission_id]["status"] = "RETURNED"

    def _of(self, study_id: str) -> list[dict]:
        return [s for s in self.submissions.values() if s["study_id"] == study_id]

    def handle(self, method: str, path: str, headers, body: dict | None) -> tuple[int, dict]:
        with self._lock:
            self.calls.append((method, path, body))
            if self._failures:
                return self._failures.pop(0), {"error": "stand-in failure"}
            if headers.get("Authorization") != f"Token {self.token}":
                return 401, {"error": {"detail": "Invalid token."}}
            parts = [p for p in path.split("?")[0].split("/") if p][2:]  # after /api/v1
            try:
                return 200, self._route(method, parts, body or {})
            except KeyError:
                return 404, {"error": {"detail": "Not found."}}
            except RequestError as error:
                return 400, {"error": {"detail": str(error)}}

    def _route(self, method: str, parts: list[str], body: dict) -> dict:
        if parts == ["studies"] and method == "POST":
            missing = [k for k in STUDY_REQUIRED if k not in body]
            if missing:
                raise RequestError(f"missing fields: {', '.join(missing)}")
            if body["prolific_id_option"] not in ("url_parameters", "question", "not_required"):
                raise RequestError("prolific_id_option")
            sid = f"{next(self._ids):024x}"
            self.studies[sid] = body | {"id": sid, "status": "UNPUBLISHED", "places_taken": 0}
            return self.studies[sid]
        if parts == ["studies"] and method == "GET":
            return {"results": list(self.studies.values()), "_links": {"next": {"href": None}}}
        if len(parts) == 2 and parts[0] == "studies":
            study = self.studies[parts[1]]
            if method == "PATCH":
                places = body.get("total_available_places", study["total_available_places"])
                if study["status"] != "UNPUBLISHED" and places < study["total_available_places"]:
                    raise RequestError("the places of a published study cannot be reduced")
                study["total_available_places"] = places
            return study | {"places_taken": sum(s["status"] != "RETURNED" for s in self._of(parts[1]))}
        if len(parts) == 3 and parts[0] == "studies" and parts[2] == "transition":
            study = self.studies[parts[1]]
            moves = {"PUBLISH": "ACTIVE", "PAUSE": "PAUSED", "START": "ACTIVE", "STOP": "COMPLETED"}
            if body.get("action") not in moves:
                raise RequestError(f"unknown action {body.get('action')!r}")
            study["status"] = moves[body["action"]]
            return study
        if len(parts) == 3 and parts[0] == "studies" and parts[2] == "submissions":
            self.studies[parts[1]]  # noqa: B018 (404 for an unknown study)
            return {"results": self._of(parts[1]), "_links": {"next": {"href": None}}}
        if len(parts) == 3 and parts[0] == "submissions" and parts[2] == "transition":
            sub = self.submissions[parts[1]]
            if sub["status"] != "AWAITING REVIEW":
                raise RequestError(f"submission is {sub['status']}, not AWAITING REVIEW")
            if body.get("action") == "APPROVE":
                sub["status"] = "APPROVED"
            elif body.get("action") == "REJECT" and body.get("message") and body.get("rejection_category"):
                sub["status"] = "REJECTED"
            else:
                raise RequestError("action must be APPROVE, or REJECT with message and rejection_category")
            return sub
        raise KeyError(parts)

    def respond(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict, str]:
        status, out = self.handle(method, path, headers, json.loads(body) if body else None)
        return status, out, "application/json"
