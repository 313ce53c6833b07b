"""The experiment server's HTTP API against a real stimulus package, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from conftest import free_port, need_service
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, text

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.experiment.app import create_app
from vizprobe.experiment.export import export_frame
from vizprobe.responses import COLUMN_NAMES, read_responses, validate_responses

TOKEN = "admin-secret-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def make_client(stimulus_package: Path, db_url: str, tmp_path: Path):
    """Factory of TestClients on one database; options as `create_app`'s; engines are closed afterwards."""
    apps = []

    def make(**options) -> TestClient:
        options = {
            "admin_token": TOKEN,
            "secret_file": tmp_path / "secret",
            "static_dir": tmp_path / "static",
        } | options
        app = create_app(stimulus_package, db_url, **options)
        apps.append(app)
        return TestClient(app)

    yield make
    for app in apps:
        app.state.db.dispose()


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client(platform="prolific")


@pytest.fixture(scope="session")
def manifest(stimulus_package: Path) -> dict:
    return json.loads((stimulus_package / "manifest.json").read_text())


# --- helpers ---------------------------------------------------------------------------------------------------
def start(client: TestClient, status: int = 200, ready: bool = True, **platform_ids: str) -> dict:
    """Start (or with `resume=`, resume) a session; a new one gets fresh worker ids unless some are given and,
    with `ready`, gives consent, reads the instructions for 30 s and passes the practice in one round (the
    server takes main answers only then)."""
    resume = platform_ids.pop("resume", None)
    if not {"PROLIFIC_PID", "workerId"} & set(platform_ids) and resume is None:
        platform_ids |= dict.fromkeys(("PROLIFIC_PID", "workerId"), f"w{time.monotonic_ns()}")
    r = client.post("/api/sessions", json={"platform_ids": platform_ids, "resume": resume})
    assert r.status_code == status, r.text
    state = r.json()
    if ready and status == 200 and resume is None and not state["consented"]:
        sid = state["session_id"]
        client.post(f"/api/sessions/{sid}/events", json={"event": "consent"})
        client.post(f"/api/sessions/{sid}/events", json={"event": "instructions", "duration_s": 30.0})
        for t in state["practice"]:
            answer(client, sid, t["index"], phase="practice", attempt=1, choice=t["correct"], confidence=3)
    return state


def answer(
    client: TestClient,
    sid: str,
    index: int,
    *,
    phase: str = "main",
    attempt: int = 0,
    choice: int = 0,
    confidence: int = 2,
    status: int = 200,
) -> dict:
    body = {
        "phase": phase,
        "trial_index": index,
        "attempt": attempt,
        "choice": choice,
        "confidence": confidence,
        "rt_ms": 850.5 + index,
    }
    r = client.post(f"/api/sessions/{sid}/responses", json=body)
    assert r.status_code == status, r.text
    return r.json()


def finish_main(client: TestClient, state: dict) -> None:
    for trial in state["trials"]:
        answer(client, state["session_id"], trial["index"])


def count_responses(client: TestClient) -> int:
    return client.get("/api/admin/progress", headers=ADMIN).json()["responses"]


def assert_error(r, status: int, error: str) -> None:
    assert r.status_code == status, (r.request.url, r.text[:300])
    body = r.json()
    assert body["error"] == error and isinstance(body["message"], str) and body["message"], body


def fail_a_session(client: TestClient, manifest: dict, worker: str, **platform_ids: str) -> dict:
    """A session that needs 6 practice rounds and gets every catch trial wrong, completed (and paid); the worker
    comes from Prolific unless other platform ids are given."""
    state = start(client, ready=False, **(platform_ids or {"PROLIFIC_PID": worker}))
    sid = state["session_id"]
    client.post(f"/api/sessions/{sid}/events", json={"event": "consent"})
    client.post(f"/api/sessions/{sid}/events", json={"event": "instructions", "duration_s": 60.0})
    for attempt in range(1, 7):
        for t in state["practice_rounds"][attempt - 1]:
            answer(client, sid, t["index"], phase="practice", attempt=attempt, choice=t["correct"] ^ (attempt < 6))
    trials = {t["trial_id"]: t for t in manifest["trials"]}
    for view in state["trials"]:
        t = trials[view["trial_id"]]
        best = view["options"].index("/stimuli/" + t["options"][t["correct"]]["image"])
        answer(client, sid, view["index"], choice=best ^ (t["kind"] == "catch"), confidence=1 + view["index"] % 3)
    r = client.post(f"/api/sessions/{sid}/complete", json={"total_time_s": 300.0})
    assert r.status_code == 200 and r.json()["completion_code"]  # paid all the same
    return state


# --- the whole flow --------------------------------------------------------------------------------------------
def test_whole_session_is_stored_and_exported_exactly(client, manifest, db_url, tmp_path):
    assert client.get("/api/config").json() == {
        "platform": "prolific",
        "practice_attempts": 10,
        "n_practice": 4,
        "texts": {"time_sentence": "It takes up to 15 minutes."},  # the package's longest session kept, 900 s
        "task": "occlusion",
        "continue_ms": 350,  # the authors' Continue button after each main answer
    }
    state = start(client, ready=False, PROLIFIC_PID="worker-A", STUDY_ID="study", SESSION_ID="sess")
    sid, task = state["session_id"], next(t for t in manifest["tasks"] if t["task_id"] == state["task_id"])
    trials = {t["trial_id"]: t for t in manifest["trials"]}
    assert state["condition"] == task["condition"] and state["expertise"] == "lay"
    assert [t["trial_id"] for t in state["trials"]] == task["trial_ids"]
    # Practice rounds are drawn anew (the authors' loop): the most obvious trial first, the others in a new order,
    # new sides, the same trials; round 1 is `practice`. Over 10 rounds the orders and sides do not all repeat.
    rounds = state["practice_rounds"]
    assert state["practice"] == rounds[0] and len(rounds) == 10
    pool, obvious = manifest["practice_trial_ids"], manifest["settings"]["practice_obvious"]
    assert (len(pool), obvious) == (10, 3)  # the authors' pool of 10
    assert all(r[0]["trial_id"] in pool[:obvious] for r in rounds)  # one of the obvious trials opens each round
    assert all(  # the 3 others from the 7 non-obvious ones, as the authors (mturk/cf/task.js)
        len(r) == 4 and len({t["trial_id"] for t in r}) == 4 and {t["trial_id"] for t in r[1:]} <= set(pool[obvious:])
        for r in rounds
    )
    assert len({tuple(t["trial_id"] for t in r) for r in rounds}) > 5  # rounds differ in their trials
    assert all("correct" not in t for t in state["trials"]) and all("correct" in t for t in state["practice"])
    first = trials[task["trial_ids"][0]]
    assert state["trials"][0]["query"] == "/stimuli/" + first["base_image"]
    assert state["trials"][0]["references"] == ["/stimuli/" + p for p in first["references"][task["condition"]]]
    # The instruction pages' example: the most obvious practice trial, with this condition's references.
    example = trials[pool[0]]
    assert state["example"]["trial_id"] == pool[0] and state["example"]["kind"] == "practice"
    assert state["example"]["references"] == ["/stimuli/" + p for p in example["references"][task["condition"]]]
    shown_best = state["example"]["options"][state["example"]["correct"]]
    assert shown_best == "/stimuli/" + example["options"][example["correct"]]["image"]

    for event in (
        {"event": "consent"},
        {"event": "instructions", "duration_s": 12.5},
        {"event": "consent"},
        {"event": "instructions", "duration_s": 99.0},
    ):
        assert client.post(f"/api/sessions/{sid}/events", json=event).json() == {"ok": True}

    # practice: round 1 has one wrong answer, round 2 is perfect
    practice = state["practice"]
    assert state["practice_answers"] == []
    for t in practice:
        wrong = t["index"] == 1
        got = answer(client, sid, t["index"], phase="practice", attempt=1, choice=t["correct"] ^ wrong, confidence=3)
        assert got["correct"] == int(not wrong) and got["next_trial_index"] == 0
        # A reload in the middle of the round sees what the round has so far, to finish it.
        so_far = start(client, resume=sid)["practice_answers"]
        done = practice[: t["index"] + 1]
        assert so_far == [{"trial_index": u["index"], "correct": int(u["index"] != 1)} for u in done]
    assert start(client, resume=sid)["practice_passed"] is False
    for t in rounds[1]:
        assert answer(client, sid, t["index"], phase="practice", attempt=2, choice=t["correct"])["correct"] == 1
    resumed = start(client, resume=sid)
    assert resumed["practice_passed"] is True and resumed["practice_attempts"] == 2
    assert resumed["practice_answers"] == [{"trial_index": t["index"], "correct": 1} for t in rounds[1]]  # round 2
    assert resumed["consented"] and resumed["instructions_done"]

    r = client.post(f"/api/sessions/{sid}/complete", json={"total_time_s": 300.0})
    assert_error(r, 409, "incomplete")
    assert r.json()["missing"] == list(range(len(task["trial_ids"])))
    for i in range(len(task["trial_ids"])):
        got = answer(client, sid, i, choice=i % 2, confidence=1 + i % 3)
        assert got == {"stored": True, "duplicate": False, "next_trial_index": i + 1}
    assert start(client, resume=sid)["completion_code"] is None  # not yet completed
    r = client.post(f"/api/sessions/{sid}/complete", json={"total_time_s": 300.0, "debrief": {"comments": "fine"}})
    assert r.status_code == 200, r.text
    code = r.json()["completion_code"]
    assert r.json()["redirect_url"] == f"https://app.prolific.com/submissions/complete?cc={code}"
    again = start(client, resume=sid)
    assert (
        again["completed"] and again["completion_code"] == code and again["next_trial_index"] == len(task["trial_ids"])
    )

    rows = []
    common = {
        "participant_id": "p0001",
        "condition": task["condition"],
        "task_id": task["task_id"],
        "instruction_time_s": 12.5,
        "total_time_s": 300.0,
        "practice_attempts": 2,
        "expertise": "lay",
        # 12.5 s on the instructions is below the paper's 20 s (15 s in `none`): the task was posted again
        "session_status": "failed_criteria",
        "task_assignments": 1,  # this one finished session of the task so far
        # the page sends how long it was away on each trial; these requests leave it at its default: never
        "away_count": 0,
        "away_ms": 0.0,
        "session_away_count": 0,
        "session_away_ms": 0.0,
    }
    layers = {u["unit"]: u["layer"] for u in manifest["units"]}

    def shown_max_side(view: dict) -> int:
        """Where the page showed the trial's more activating option (read off its image URLs)."""
        t = trials[view["trial_id"]]
        return view["options"].index("/stimuli/" + t["options"][t["correct"]]["image"])

    def row(view: dict, practice: int, choice: int, confidence: int, rt: float) -> dict:
        trial_id = view["trial_id"]
        t = trials[trial_id]
        return common | {
            "trial_id": trial_id,
            "unit": t["unit"],
            "layer": layers[t["unit"]],
            "image_set": t["image_set"],
            "is_catch": int(t["kind"] == "catch"),
            "is_practice": practice,
            "choice": choice,
            "max_side": shown_max_side(view),
            "correct": int(choice == shown_max_side(view)),
            "confidence": confidence,
            "rt_ms": rt,
        }

    assert all(t["correct"] == shown_max_side(t) for r in rounds for t in r)  # the feedback names the shown side
    for attempt in (1, 2):
        for t in rounds[attempt - 1]:
            choice = t["correct"] ^ (attempt == 1 and t["index"] == 1)
            rows.append(row(t, 1, choice, 3 if attempt == 1 else 2, 850.5 + t["index"]))
    for i, view in enumerate(state["trials"]):
        rows.append(row(view, 0, i % 2, 1 + i % 3, 850.5 + i))
    expected = validate_responses(pd.DataFrame(rows, columns=list(COLUMN_NAMES)))
    exported = export_frame(db_url)
    pd.testing.assert_frame_equal(exported, expected)
    assert exported["correct"].sum() not in (0, len(exported))  # both right and wrong answers are present
    assert main(["export", "--db", db_url, "--out", str(tmp_path / "r.csv")]) == 0
    pd.testing.assert_frame_equal(read_responses(tmp_path / "r.csv"), expected)
    csv = client.get("/api/admin/export.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    assert csv.status_code == 200 and csv.text == (tmp_path / "r.csv").read_text()


# --- bad input ---------------------------------------------------------------------------------------------------
def test_bad_requests_are_refused_and_store_nothing(client, manifest):
    state = start(client)
    sid, n = state["session_id"], len(state["trials"])
    before = count_responses(client)  # the practice round the helper answered
    for path in ("responses", "events", "complete"):
        body = {
            "responses": {"phase": "main", "trial_index": 0, "attempt": 0, "choice": 0, "confidence": 1, "rt_ms": 1},
            "events": {"event": "consent"},
            "complete": {},
        }[path]
        assert_error(client.post(f"/api/sessions/nope/{path}", json=body), 404, "unknown_session")
    good = {"phase": "main", "trial_index": 0, "attempt": 0, "choice": 1, "confidence": 2, "rt_ms": 700.0}
    bad = [
        ({"trial_index": n}, "out_of_range"),
        ({"trial_index": -1}, "invalid_request"),
        ({"attempt": 1}, "out_of_range"),
        ({"phase": "practice", "attempt": 0}, "out_of_range"),
        ({"phase": "practice", "attempt": 11}, "out_of_range"),
        ({"phase": "practice", "trial_index": len(state["practice"])}, "out_of_range"),
        ({"confidence": 0}, "invalid_request"),
        ({"confidence": 4}, "invalid_request"),
        ({"confidence": "2"}, "invalid_request"),
        ({"confidence": True}, "invalid_request"),
        ({"choice": 2}, "invalid_request"),
        ({"choice": None}, "invalid_request"),
        ({"rt_ms": -5}, "invalid_request"),
        ({"phase": "debrief"}, "invalid_request"),
        ({"trial_index": 1.5}, "invalid_request"),
    ]
    for change, error in bad:
        assert_error(client.post(f"/api/sessions/{sid}/responses", json=good | change), 422, error)
    r = client.post(
        f"/api/sessions/{sid}/responses", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(r, 422, "invalid_request")
    assert_error(client.post(f"/api/sessions/{sid}/events", json={"event": "instructions"}), 422, "invalid_request")
    assert_error(client.post(f"/api/sessions/{sid}/events", json={"event": "x"}), 422, "invalid_request")
    assert_error(client.post("/api/sessions", json={"platform_ids": {"ip": "1.2.3.4"}}), 422, "invalid_request")
    assert count_responses(client) == before

    assert answer(client, sid, 0, choice=1, confidence=2) == {"stored": True, "duplicate": False, "next_trial_index": 1}
    assert answer(client, sid, 0, choice=1, confidence=2)["duplicate"] is True  # a retry: idempotent
    for change in ({"choice": 0}, {"confidence": 3}):
        assert_error(client.post(f"/api/sessions/{sid}/responses", json=good | change), 409, "conflicting_duplicate")
    assert count_responses(client) == before + 1
    exported = export_frame(client.app.state.db.url)
    row = exported[exported["is_practice"] == 0].iloc[0]
    assert (row["choice"], row["confidence"], row["rt_ms"]) == (1, 2, 850.5)


def test_completion_code_only_when_every_answer_is_stored(make_client):
    client = make_client(platform="mturk", completion_code="DONE-42")
    state = start(client, workerId="W1", assignmentId="A1", hitId="H1")
    sid = state["session_id"]
    for trial in state["trials"][:-1]:
        answer(client, sid, trial["index"])
    r = client.post(f"/api/sessions/{sid}/complete", json={})
    assert_error(r, 409, "incomplete")
    assert r.json()["missing"] == [len(state["trials"]) - 1]
    answer(client, sid, len(state["trials"]) - 1)
    assert client.post(f"/api/sessions/{sid}/complete", json={}).json() == {
        "completion_code": "DONE-42",
        "redirect_url": None,
    }
    assert client.post(f"/api/sessions/{sid}/complete", json={}).json()["completion_code"] == "DONE-42"


def test_image_route_serves_only_manifest_images(client, manifest, stimulus_package):
    listed = next(iter(manifest["images"]))
    r = client.get(f"/stimuli/{listed}")
    assert r.status_code == 200 and r.content == (stimulus_package / listed).read_bytes()
    assert (stimulus_package / "manifest.json").is_file()
    for path in (
        "manifest.json",
        "..%2Fmanifest.json",
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        f"{listed}/../../manifest.json",
        f"{listed}%2F..%2F..%2F..%2Fmanifest.json",
        f"{listed}%00",
        "nope.png",
    ):
        assert_error(client.get(f"/stimuli/{path}"), 404, "not_found")


def test_front_page_needs_the_built_front_end(make_client, tmp_path):
    client = make_client()
    r = client.get("/")
    assert_error(r, 503, "frontend_missing")
    assert "make frontend" in r.json()["message"]
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "index.html").write_text("<!doctype html><title>study</title>")
    (tmp_path / "static" / "app.js").write_text("console.log(1)")
    assert "<title>study</title>" in client.get("/").text
    assert client.get("/static/app.js").text == "console.log(1)"


def test_admin_routes_need_the_token_as_a_header(client):
    """Only the header opens the admin API (a token in the URL would sit in histories and logs); the admin page
    itself holds no data, it asks for the token."""
    start(client, ready=False)
    for path in ("/api/admin/progress", "/api/admin/export.csv"):
        assert_error(client.get(path), 401, "unauthorized")
        assert_error(client.get(path, params={"token": TOKEN}), 401, "unauthorized")
        assert_error(client.get(path, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert client.get(path, headers=ADMIN).status_code == 200
    progress = client.get("/api/admin/progress", headers=ADMIN).json()
    assert sum(c["running"] for c in progress["conditions"].values()) == 1
    assert {c["tasks"] for c in progress["conditions"].values()} == {4} and progress["responses"] == 0
    page = client.get("/admin")
    assert page.status_code == 200 and 'type="password"' in page.text and "natural" not in page.text
    assert "Authorization" in client.get("/admin.js").text


def test_admin_token_is_made_once_kept_0600_and_env_overrides(stimulus_package, tmp_path, monkeypatch):
    from vizprobe.experiment.secret import ADMIN_TOKEN_ENV

    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    db = tmp_path / "study.db"

    def app(**options):
        made = create_app(stimulus_package, str(db), static_dir=tmp_path / "static", **options)
        made.state.db.dispose()
        return made.state

    first = app()
    token_file = tmp_path / "study.db.admin-token"
    assert first.admin_token_created and first.admin_token_file == token_file
    assert token_file.read_text().strip() == first.admin_token and len(first.admin_token) >= 16
    assert token_file.stat().st_mode & 0o777 == 0o600
    second = app()
    assert not second.admin_token_created and second.admin_token == first.admin_token
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "x" * 20)
    assert app().admin_token == "x" * 20
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "short")
    with pytest.raises(VizprobeError, match="shorter than 16"):
        app()
    monkeypatch.delenv(ADMIN_TOKEN_ENV)
    (tmp_path / "mine").write_text("y" * 24 + "\n")
    assert app(admin_token_file=tmp_path / "mine").admin_token == "y" * 24


# --- participants and tasks --------------------------------------------------------------------------------------
def test_repeat_worker_is_turned_away_and_unfinished_one_resumes(client):
    """An unfinished session reopens with its id (kept by the page, or the session cookie), not with the worker
    id alone (another browser with the same id is told to continue in the first); a finished one never."""
    state = start(client, PROLIFIC_PID="repeat-worker")
    assert start(client, PROLIFIC_PID="repeat-worker")["session_id"] == state["session_id"]  # cookie: resume
    other_browser = TestClient(client.app)
    r = other_browser.post("/api/sessions", json={"platform_ids": {"PROLIFIC_PID": "repeat-worker"}})
    assert_error(r, 409, "session_elsewhere")
    assert (
        start(other_browser, PROLIFIC_PID="repeat-worker", resume=state["session_id"])["session_id"]
        == state["session_id"]
    )  # with the session id: the same session
    finish_main(client, state)
    assert client.post(f"/api/sessions/{state['session_id']}/complete", json={}).status_code == 200
    elsewhere = TestClient(client.app)  # another browser: no session cookie
    repeat = {"platform_ids": {"PROLIFIC_PID": "repeat-worker"}}
    assert_error(elsewhere.post("/api/sessions", json=repeat), 403, "already_participated")
    assert_error(elsewhere.post("/api/sessions", json=repeat | {"resume": "someone-else"}), 403, "already_participated")
    progress = client.get("/api/admin/progress", headers=ADMIN).json()
    assert sum(c["participants"] for c in progress["conditions"].values()) == 1


def test_reload_resumes_at_the_first_unanswered_trial(client):
    state = start(client)
    sid = state["session_id"]
    for index in (0, 1, 3):
        answer(client, sid, index)
    resumed = start(client, resume=sid)
    assert resumed["session_id"] == sid and resumed["task_id"] == state["task_id"]
    assert resumed["next_trial_index"] == 2 and resumed["trials"] == state["trials"]
    assert answer(client, sid, 2)["next_trial_index"] == 4


def test_abandoned_task_returns_to_the_pool(make_client):
    client = make_client(task_timeout_s=0.6)
    a = start(client)
    time.sleep(0.35)
    answer(client, a["session_id"], 0)  # activity keeps the task
    time.sleep(0.35)
    b = start(client)
    assert b["task_id"] != a["task_id"]
    time.sleep(0.8)  # both silent longer than the timeout
    c = start(client)
    assert c["task_id"] == a["task_id"]  # first free task of the emptiest condition: a's, back in the pool
    assert_error(
        client.post(
            f"/api/sessions/{a['session_id']}/responses",
            json={"phase": "main", "trial_index": 1, "attempt": 0, "choice": 0, "confidence": 1, "rt_ms": 1},
        ),
        409,
        "session_expired",
    )
    assert_error(client.post("/api/sessions", json={"resume": a["session_id"]}), 403, "session_expired")
    progress = client.get("/api/admin/progress", headers=ADMIN).json()["conditions"]
    assert sum(c["running"] for c in progress.values()) == 1


def test_unfinished_sessions_are_exported_with_their_status_and_left_out_of_analyze(
    make_client, db_url, tmp_path, capsys
):
    """A participant who timed out after some answers is exported as `expired`, one still answering as
    `running`; `analyze` leaves both out by default, says so, and keeps them with --include-incomplete."""
    from vizprobe.analysis import ExclusionCriteria, analyze

    client = make_client(task_timeout_s=0.5)
    timed_out = start(client)
    for trial in timed_out["trials"][:4]:
        answer(client, timed_out["session_id"], trial["index"], choice=1)
    time.sleep(0.7)
    running = start(client)  # this start expires the first session and takes a task
    client = make_client(task_timeout_s=3600)  # the same study, from now on without timeouts
    for trial in running["trials"][:2]:
        answer(client, running["session_id"], trial["index"])
    finished = start(client)
    finish_main(client, finished)
    assert (
        client.post(f"/api/sessions/{finished['session_id']}/complete", json={"total_time_s": 200}).status_code == 200
    )
    stopped = start(client)
    answer(client, stopped["session_id"], 0)
    assert client.post(f"/api/sessions/{stopped['session_id']}/return").json() == {"ok": True}
    exported = export_frame(db_url)
    statuses = {pid: set(group) for pid, group in exported.groupby("participant_id")["session_status"]}
    assert statuses["p0001"] == {"expired"} and statuses["p0002"] == {"running"}
    assert statuses["p0003"] <= {"completed", "failed_criteria"} and statuses["p0004"] == {"returned"}
    lenient = ExclusionCriteria(
        min_catch_accuracy=0, min_instruction_time_s=0, min_total_time_s=0, require_both_sides=False, per_condition={}
    )
    results = analyze(exported, tmp_path / "default", criteria=lenient)
    assert results["exclusion"]["n_before"] == 1
    assert results["exclusion"]["incomplete_sessions"] == {"expired": 1, "returned": 1, "running": 1}
    results = analyze(exported, tmp_path / "all", criteria=lenient, include_incomplete=True)
    assert results["exclusion"]["n_before"] == 4 and results["exclusion"]["incomplete_sessions"] == {}
    out = tmp_path / "r.csv"
    exported.to_csv(out, index=False)
    flags = ["--allow-one-side", "--min-catch-accuracy", "0", "--min-instruction-time", "0", "--min-total-time", "0"]
    assert main(["analyze", "--responses", str(out), "--out", str(tmp_path / "cli"), *flags, "--same-thresholds"]) == 0
    printed = capsys.readouterr().out
    assert "left out before exclusion (sessions not finished): 1 expired, 1 returned, 1 running" in printed, printed


def test_a_participant_who_stops_frees_the_task_at_once(make_client):
    """The page's stop button returns the session: its task goes to the next participant without waiting for
    the timeout, no further answers are taken, the worker cannot start again, repeating the stop is harmless,
    and a finished session cannot be stopped."""
    client = make_client(platform="prolific", task_timeout_s=3600)
    stopper = start(client, PROLIFIC_PID="stopper")
    sid = stopper["session_id"]
    answer(client, sid, 0)
    before = client.get("/api/admin/progress", headers=ADMIN).json()["conditions"][stopper["condition"]]
    assert client.post(f"/api/sessions/{sid}/return").json() == {"ok": True}
    assert client.post(f"/api/sessions/{sid}/return").json() == {"ok": True}
    after = client.get("/api/admin/progress", headers=ADMIN).json()["conditions"][stopper["condition"]]
    assert (after["running"], after["free"], after["returned"]) == (before["running"] - 1, before["free"] + 1, 1)
    assert_error(
        client.post(
            f"/api/sessions/{sid}/responses",
            json={"phase": "main", "trial_index": 1, "attempt": 0, "choice": 0, "confidence": 1, "rt_ms": 500},
        ),
        409,
        "session_returned",
    )
    assert_error(
        client.post("/api/sessions", json={"platform_ids": {"PROLIFIC_PID": "stopper"}, "resume": sid}),
        403,
        "session_returned",
    )
    assert count_responses(client) == 1 + len(stopper["practice"])  # what was answered stays (exported)
    finished = start(client)
    finish_main(client, finished)
    client.post(f"/api/sessions/{finished['session_id']}/complete", json={"total_time_s": 100.0})
    assert_error(client.post(f"/api/sessions/{finished['session_id']}/return"), 409, "already_completed")
    assert_error(client.post("/api/sessions/no-such-session/return"), 404, "unknown_session")


def test_assignment_balances_conditions(client, manifest):
    conditions = sorted({t["condition"] for t in manifest["tasks"]})
    taken: Counter = Counter()
    tasks = set()
    for _ in range(len(manifest["tasks"])):
        state = start(client)
        taken[state["condition"]] += 1
        tasks.add(state["task_id"])
        assert max(taken.values()) - min(taken[c] for c in conditions) <= 1
    assert len(tasks) == len(manifest["tasks"])
    assert_error(client.post("/api/sessions", json={"platform_ids": {"PROLIFIC_PID": "one-too-many"}}), 503, "no_tasks")


def test_concurrent_starts_get_distinct_tasks(client, manifest):
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda i: start(client, PROLIFIC_PID=f"w{i}"), range(len(manifest["tasks"]))))
    assert len({s["task_id"] for s in states}) == len(manifest["tasks"])
    assert Counter(s["condition"] for s in states) == Counter(t["condition"] for t in manifest["tasks"])


def test_no_worker_id_ip_or_user_agent_in_clear(client, db_url):
    secrets_ = ["PID-7c1e5a", "STUDY-99ab", "SESS-31f0", "UA-marker-5150", "198.51.100.23"]
    r = client.post(
        "/api/sessions",
        json={"platform_ids": {"PROLIFIC_PID": secrets_[0], "STUDY_ID": secrets_[1], "SESSION_ID": secrets_[2]}},
        headers={"User-Agent": secrets_[3], "X-Forwarded-For": secrets_[4]},
    )
    state = r.json()
    client.post(
        f"/api/sessions/{state['session_id']}/events", json={"event": "consent"}, headers={"User-Agent": secrets_[3]}
    )
    client.post(f"/api/sessions/{state['session_id']}/events", json={"event": "instructions", "duration_s": 30})
    answer(client, state["session_id"], 0, phase="practice", attempt=1)
    engine = client.app.state.db.engine
    with engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        dump = "\n".join(repr(row) for name in tables for row in conn.execute(text(f'SELECT * FROM "{name}"')))
    assert {"sessions", "responses", "tasks", "study"} <= set(tables)
    assert state["session_id"] in dump  # the dump really holds the rows
    for needle in [*secrets_, "testclient", "127.0.0.1"]:
        assert needle not in dump, needle
    secret = client.app.state.experiment.secret.decode()
    assert secret not in dump
    db = client.app.state.db
    if db.path is not None:  # the raw SQLite files, journal included
        raw = b"".join(p.read_bytes() for p in db.path.parent.glob(db.path.name + "*") if p.suffix != ".secret")
        for needle in secrets_:
            assert needle.encode() not in raw


# --- options -----------------------------------------------------------------------------------------------------
def test_practice_can_be_skipped_and_sessions_marked_expert(make_client, db_url):
    client = make_client(practice=0, expert=True)
    state = start(client)
    assert state["practice"] == [] and state["expertise"] == "expert"
    answer(client, state["session_id"], 0, phase="practice", attempt=1, status=422)
    finish_main(client, state)
    frame = export_frame(db_url)
    assert set(frame["expertise"]) == {"expert"} and set(frame["practice_attempts"]) == {0}
    assert frame["is_practice"].sum() == 0


def test_bad_server_options_fail_with_one_line(stimulus_package, tmp_path, capsys, manifest):
    for args in (["--practice", "99"], ["--practice-attempts", "0"], ["--task-timeout", "0"]):
        assert main(["serve", "--stimuli", str(stimulus_package), "--db", str(tmp_path / "x.db"), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("vizprobe serve: error:") and err.count("\n") == 1
    assert main(["serve", "--stimuli", str(tmp_path / "none"), "--db", str(tmp_path / "x.db")]) == 2
    assert main(["export", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path / "r.csv")]) == 2
    assert "no experiment database" in capsys.readouterr().err
    assert main(["export", "--db", "mysql://x/y", "--out", str(tmp_path / "r.csv")]) == 2
    other = tmp_path / "other"
    other.mkdir()
    changed = json.loads((stimulus_package / "manifest.json").read_text())
    changed["tasks"] = changed["tasks"][:-1]
    (other / "manifest.json").write_text(json.dumps(changed))
    create_app(stimulus_package, str(tmp_path / "x.db"), secret_file=tmp_path / "s").state.db.dispose()
    with pytest.raises(VizprobeError, match="another stimulus package"):
        create_app(other, str(tmp_path / "x.db"), secret_file=tmp_path / "s")


def test_openapi_documents_the_typed_api_and_texts_are_settable(make_client, tmp_path, stimulus_package, capsys):
    """The schema at /openapi.json (shown at /docs) has the request and response models; `--texts` overrides
    reach the page's config, and a bad texts file is one line, with nothing served."""
    client = make_client(texts={"consent_button": "Yes, I agree", "instructions": ["<p>page 1</p>"]})
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"SessionState", "TrialOut", "RespondOut", "CompleteOut", "ConfigOut", "ErrorOut"} <= set(schemas)
    ok = spec["paths"]["/api/sessions"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/SessionState")
    assert "/stimuli/{path}" not in spec["paths"] and "/admin" not in spec["paths"]
    texts = client.get("/api/config").json()["texts"]
    assert texts == {
        "consent_button": "Yes, I agree",
        "instructions": ["<p>page 1</p>"],
        "time_sentence": "It takes up to 15 minutes.",
    }
    state = start(client)
    assert all("correct" not in t for t in state["trials"]) and all("correct" in t for t in state["practice"])
    bad = tmp_path / "texts.json"
    bad.write_text(json.dumps({"consent_buton": "typo"}))
    code = main(["serve", "--stimuli", str(stimulus_package), "--db", str(tmp_path / "t.db"), "--texts", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown text 'consent_buton'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.db").exists()


def test_sides_are_drawn_per_participant_and_balanced(stimulus_package, manifest, tmp_path):
    """The first participant of five fresh databases gets the same task, not always shown with the same sides
    (6 trials have 20 balanced arrangements: five equal draws have odds 20**-4); within a session the more
    activating option is on the left in half the trials (+-1)."""
    trials = {t["trial_id"]: t for t in manifest["trials"]}
    seen = []
    for k in range(5):
        app = create_app(
            stimulus_package,
            str(tmp_path / f"db{k}.db"),
            secret_file=tmp_path / f"s{k}",
            admin_token=TOKEN,
            static_dir=tmp_path / "static",
        )
        state = start(TestClient(app))
        app.state.db.dispose()
        sides = []
        for view in state["trials"]:
            t = trials[view["trial_id"]]
            sides.append(view["options"].index("/stimuli/" + t["options"][t["correct"]]["image"]))
        assert abs(sides.count(0) - len(sides) / 2) <= 0.5, sides
        seen.append((state["task_id"], sides))
    assert len({task for task, _ in seen}) == 1 and len({tuple(sides) for _, sides in seen}) > 1


def test_a_participant_who_fails_gets_the_code_and_the_task_is_posted_again(make_client, manifest, db_url):
    """Judged on completion by the analysis's own exclusion code: a sixth practice round is accepted (the cap is
    10) but excludes, as do wrong catch trials; the task goes back to the pool and the next participants get it."""
    client = make_client(platform="prolific")
    state = fail_a_session(client, manifest, "careless")
    condition = state["condition"]
    progress = client.get("/api/admin/progress", headers=ADMIN).json()["conditions"][condition]
    assert (
        progress["failed"] == 1
        and progress["expired"] == 0
        and progress["completed"] == 0
        and progress["free"] == progress["tasks"]
    )
    from vizprobe.analysis.exclusion import apply_exclusion

    exported = export_frame(db_url)
    assert set(exported["session_status"]) == {"failed_criteria"}
    result = apply_exclusion(exported)
    assert result.excluded == ["p0001"]
    assert result.criteria["practice_attempts"]["excluded"] == result.criteria["catch_accuracy"]["excluded"] == 1
    handed = [start(client, PROLIFIC_PID=f"next-{k}")["task_id"] for k in range(len(manifest["tasks"]))]
    assert state["task_id"] in handed and len(set(handed)) == len(manifest["tasks"])


def test_no_practice_in_the_none_condition(make_client):
    """As in the paper: a `none` session gets no practice trials and a practice answer is refused."""
    client = make_client()
    states = [start(client, workerId=f"w{k}") for k in range(6)]
    none = next(s for s in states if s["condition"] == "none")
    assert none["practice"] == [] and all(len(s["practice"]) == 4 for s in states if s["condition"] != "none")
    assert none["example"]["references"] == [] and none["example"]["query"]  # the instructions still show a trial
    answer(client, none["session_id"], 0, phase="practice", attempt=1, status=422)
    with_practice = make_client(practice_in_none=True, change_settings=True)
    assert all(len(start(with_practice, workerId=f"v{k}")["practice"]) == 4 for k in range(6))


# --- admission, hostile input, errors, headers (a real crowd study) ---------------------------------------------
def test_crowd_platforms_admit_only_workers_and_previews_take_no_task(make_client, manifest):
    prolific = make_client(platform="prolific")
    for ids in ({}, {"STUDY_ID": "s", "SESSION_ID": "x"}, {"workerId": "an-mturk-id"}):
        assert_error(prolific.post("/api/sessions", json={"platform_ids": ids}), 403, "missing_worker_id")
    mturk = make_client(platform="mturk")
    preview = {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "h"}
    for k in range(20):  # previews used to hold a task for 30 minutes each
        r = mturk.post("/api/sessions", json={"platform_ids": {**preview, "workerId": f"viewer{k}"}})
        assert_error(r, 403, "preview")
    assert_error(mturk.post("/api/sessions", json={"platform_ids": {"PROLIFIC_PID": "p"}}), 403, "missing_worker_id")
    progress = mturk.get("/api/admin/progress", headers=ADMIN).json()["conditions"]
    assert sum(c["running"] + c["participants"] for c in progress.values()) == 0
    shown = mturk.get("/api/preview").json()
    # The example is the practice pool's most obvious trial: a preview never shows a main trial.
    assert shown["example"]["trial_id"] == manifest["practice_trial_ids"][0]
    assert shown["condition"] != "none" and len(shown["example"]["references"]) == 9
    for url in (shown["example"]["query"], *shown["example"]["options"], *shown["example"]["references"]):
        assert mturk.get(url).status_code == 200
    real = start(mturk, workerId="real-worker", assignmentId="A1", hitId="h")
    assert (
        real["session_id"]
        and make_client(platform="local", change_settings=True).post("/api/sessions", json={}).status_code == 200
    )


def test_hostile_requests_get_json_4xx_and_store_nothing(client):
    state = start(client, ready=False)
    sid = state["session_id"]
    raw = '{"platform_ids": {"PROLIFIC_PID": "\\ud800x"}}'  # a lone surrogate, as a hostile client sends it
    assert_error(
        client.post("/api/sessions", content=raw, headers={"Content-Type": "application/json"}), 422, "invalid_request"
    )
    assert_error(
        client.post("/api/sessions", json={"platform_ids": {"PROLIFIC_PID": "a\x00b"}}), 422, "invalid_request"
    )
    assert_error(client.post("/api/sessions", json={"resume": "x\x00y"}), 422, "invalid_request")
    assert_error(client.post("/api/sessions/ab%00cd/events", json={"event": "consent"}), 404, "unknown_session")
    debrief = {"total_time_s": 100, "debrief": {"comments": "nul\x00"}}
    assert_error(client.post(f"/api/sessions/{sid}/complete", json=debrief), 422, "invalid_request")
    body = {"phase": "main", "trial_index": 0, "attempt": 0, "confidence": 2, "rt_ms": 900}
    for choice in ("1", 1.0, True, 2, None):
        assert_error(
            client.post(f"/api/sessions/{sid}/responses", json=body | {"choice": choice}), 422, "invalid_request"
        )
    big = b'{"platform_ids": {}, "pad": "' + b"x" * (10 << 20) + b'"}'
    assert_error(
        client.post("/api/sessions", content=big, headers={"Content-Type": "application/json"}), 413, "too_large"
    )
    assert count_responses(client) == 0
    assert client.get("/api/admin/progress", headers=ADMIN).json()["responses"] == 0


def test_unexpected_errors_are_one_json_line(make_client, monkeypatch, caplog):
    from sqlalchemy.exc import OperationalError

    from vizprobe.experiment.service import Experiment

    app_client = make_client(platform="local")
    client = TestClient(app_client.app, raise_server_exceptions=False)

    def broken(self):
        raise RuntimeError("session s3cr3t broke\nsecond line of detail")

    monkeypatch.setattr(Experiment, "config", broken)
    with caplog.at_level("ERROR", logger="vizprobe.experiment"):
        r = client.get("/api/config")
    assert_error(r, 500, "internal")
    assert "s3cr3t" not in r.text and "Traceback" not in r.text
    record = next(rec for rec in caplog.records if rec.name == "vizprobe.experiment")
    assert not record.exc_info and "\n" not in record.getMessage()

    def outage(self):
        raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    monkeypatch.setattr(Experiment, "config", outage)
    r = client.get("/api/config")
    assert_error(r, 503, "unavailable")
    assert r.headers["retry-after"] == "5"


def test_every_response_carries_security_headers(make_client):
    client = make_client(platform="prolific")
    for r in (
        client.get("/"),
        client.get("/api/config"),
        client.get("/api/nope"),
        client.get("/api/admin/progress", headers=ADMIN),
    ):
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    for path in ("/api/admin/progress", "/api/admin/export.csv", "/admin"):
        assert client.get(path, headers=ADMIN).headers["cache-control"] == "no-store"
    mturk = make_client(platform="mturk")
    assert "https://www.mturk.com" in mturk.get("/api/config").headers["content-security-policy"]


def test_the_secret_is_part_of_the_study(make_client, stimulus_package, db_url, tmp_path, monkeypatch):
    """A server started without the study's secret, or with another one, refuses (a returning worker would
    otherwise get a fresh task); the default location for PostgreSQL does not depend on the working directory."""
    from vizprobe.experiment.secret import default_secret_file

    client = make_client(platform="prolific")  # secret: tmp_path / "secret"
    first_session = start(client, PROLIFIC_PID="returning-worker")["session_id"]
    options = {"admin_token": TOKEN, "static_dir": tmp_path / "static", "platform": "prolific"}
    with pytest.raises(VizprobeError, match=r"secret file .*missing-secret is missing"):
        create_app(stimulus_package, db_url, secret_file=tmp_path / "missing-secret", **options)
    assert not (tmp_path / "missing-secret").exists()
    (tmp_path / "other-secret").write_text("f" * 64)
    with pytest.raises(VizprobeError, match="not the one this study was started with"):
        create_app(stimulus_package, db_url, secret_file=tmp_path / "other-secret", **options)
    again = TestClient(create_app(stimulus_package, db_url, secret_file=tmp_path / "secret", **options))
    # Recognised: the id has an unfinished session (an unknown id would get a new one), reopened by its id.
    assert_error(
        again.post("/api/sessions", json={"platform_ids": {"PROLIFIC_PID": "returning-worker"}}),
        409,
        "session_elsewhere",
    )
    assert start(again, PROLIFIC_PID="returning-worker", resume=first_session)["session_id"] == first_session
    again.app.state.db.dispose()
    url = "postgresql+psycopg://u:pw@db.example:5433/study1"
    first = default_secret_file(None, url)
    monkeypatch.chdir(tmp_path)
    assert (
        default_secret_file(None, url) == first == Path.home() / ".vizprobe" / "secrets" / "db.example_5433_study1.key"
    )


def test_a_damaged_database_is_refused_at_start(stimulus_package, tmp_path):
    db = tmp_path / "study.db"
    options = {"admin_token": TOKEN, "static_dir": tmp_path / "static", "secret_file": tmp_path / "secret"}
    app = create_app(stimulus_package, str(db), **options)
    start(TestClient(app))
    app.state.db.dispose()
    assert (db.stat().st_mode & 0o777) == 0o600 and ((tmp_path / "secret").stat().st_mode & 0o777) == 0o600
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page + 8 : page + 200] = b"\xff" * 192  # garbage over the second page's b-tree header and cells
    db.write_bytes(bytes(data))
    with pytest.raises(VizprobeError, match="is damaged"):
        create_app(stimulus_package, str(db), **options)
    db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(VizprobeError, match="is damaged"):
        create_app(stimulus_package, str(db), **options)


def test_a_database_with_another_schema_is_refused_at_start(make_client, stimulus_package, db_url, tmp_path):
    """A table of the study altered (a column gone: another program's database, or a hand edit) stops the server
    at start in one line, on SQLite and PostgreSQL, instead of failing at the first answer."""
    client = make_client(platform="prolific")
    client.app.state.db.dispose()
    engine = create_engine(client.app.state.db.url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE responses DROP COLUMN confidence"))
    engine.dispose()
    options = {"admin_token": TOKEN, "static_dir": tmp_path / "static", "secret_file": tmp_path / "secret"}
    with pytest.raises(VizprobeError, match=r"table 'responses' without the column\(s\) confidence"):
        create_app(stimulus_package, db_url, platform="prolific", **options)


def test_approvals_classify_a_platform_export(make_client, manifest, db_url, tmp_path, capsys):
    """`vizprobe approvals` matches the platform's worker ids to sessions through the HMAC: a careful finisher
    and a finisher who failed the criteria are approved (platforms require paying both), an unfinished session
    is rejected with how far it got, an id without a session is unknown."""
    client = make_client(platform="prolific")
    trials = {t["trial_id"]: t for t in manifest["trials"]}

    def take_part(worker: str, instructions_s: float) -> None:
        state = start(client, ready=False, PROLIFIC_PID=worker)
        sid = state["session_id"]
        client.post(f"/api/sessions/{sid}/events", json={"event": "consent"})
        client.post(f"/api/sessions/{sid}/events", json={"event": "instructions", "duration_s": instructions_s})
        for t in state["practice"]:
            answer(client, sid, t["index"], phase="practice", attempt=1, choice=t["correct"])
        for view in state["trials"]:
            t = trials[view["trial_id"]]
            best = view["options"].index("/stimuli/" + t["options"][t["correct"]]["image"])
            answer(client, sid, view["index"], choice=best, confidence=1 + view["index"] % 3)
        assert client.post(f"/api/sessions/{sid}/complete", json={"total_time_s": 300.0}).status_code == 200

    take_part("careful", 60.0)
    take_part("hasty", 3.0)  # instructions skimmed in 3 s: fails the criteria, the task is posted again
    partial = start(client, PROLIFIC_PID="quitter")
    for trial in partial["trials"][:2]:
        answer(client, partial["session_id"], trial["index"])
    stopped = start(client, PROLIFIC_PID="stopper")
    client.post(f"/api/sessions/{stopped['session_id']}/return")
    submissions = pd.DataFrame(
        {
            "Submission id": ["s1", "s2", "s3", "s4", "s5"],
            "Participant id": ["careful", "hasty", "quitter", "stranger", "stopper"],
            "Status": ["AWAITING REVIEW"] * 5,
        }
    )
    submissions.to_csv(tmp_path / "prolific.csv", index=False)
    out = tmp_path / "decisions.csv"
    code = main(
        [
            "approvals",
            "--db",
            db_url,
            "--platform",
            "prolific",
            "--submissions",
            str(tmp_path / "prolific.csv"),
            "--secret-file",
            str(tmp_path / "secret"),
            "--out",
            str(out),
        ]
    )
    assert code == 0 and "5 submissions: 2 approve, 1 reject, 1 returned, 1 unknown" in capsys.readouterr().out
    decisions = pd.read_csv(out, keep_default_na=False).set_index("Participant id")
    assert list(decisions["Submission id"]) == ["s1", "s2", "s3", "s4", "s5"]  # the platform's own rows, in order
    assert (
        decisions.loc["careful", "decision"] == "approve" and decisions.loc["careful", "session_status"] == "completed"
    )
    assert (
        decisions.loc["hasty", "decision"] == "approve" and "failed the exclusion" in decisions.loc["hasty", "reason"]
    )
    assert decisions.loc["quitter", "decision"] == "reject"
    assert f"2 of {len(partial['trials'])} trials" in decisions.loc["quitter", "reason"]
    assert decisions.loc["stranger", "decision"] == "unknown"
    assert decisions.loc["stopper", "decision"] == "returned" and "0 of" in decisions.loc["stopper", "reason"]
    (tmp_path / "mturk.csv").write_text("HITId,AssignmentId\nh,a\n")
    assert (
        main(
            [
                "approvals",
                "--db",
                db_url,
                "--platform",
                "mturk",
                "--submissions",
                str(tmp_path / "mturk.csv"),
                "--secret-file",
                str(tmp_path / "secret"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "no worker id column for mturk" in capsys.readouterr().err


def test_serve_over_https_and_warn_about_plain_http_on_public_addresses(stimulus_package, tmp_path):
    """`--ssl-certfile/--ssl-keyfile` serve HTTPS (a self-signed certificate made with openssl); a plain-HTTP
    bind to a public address warns on stderr."""
    import sys

    import httpx

    need_service(shutil.which("openssl") is not None, "openssl absent: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-days", "1"]
    request += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(request, check=True, capture_output=True)
    command = [
        sys.executable,
        "-c",
        "import sys; from vizprobe.cli import main; sys.exit(main())",
        "serve",
        "--stimuli",
        str(stimulus_package),
        "--db",
        str(tmp_path / "s.db"),
    ]
    port = free_port()
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/api/config", verify=str(cert), timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.3)
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"participant page: https://127.0.0.1:{port}/" in out
    port = free_port()
    plain = subprocess.Popen(
        [*command, "--port", str(port), "--host", "0.0.0.0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=2)
                break
            except httpx.TransportError:
                assert plain.poll() is None and time.monotonic() < deadline
                time.sleep(0.3)
    finally:
        plain.terminate()
        _, err = plain.communicate(timeout=20)
    assert "WARNING: serving 0.0.0.0 over plain HTTP" in err


def test_the_server_enforces_the_pages_order(client):
    """A script cannot skip consent, instructions or practice: main answers before them are refused (409) and
    nothing is stored; rt_ms must be a measured time (0 is refused)."""
    state = start(client, ready=False)
    sid = state["session_id"]
    assert state["practice"]  # this session has practice
    assert_error(
        client.post(
            f"/api/sessions/{sid}/responses",
            json={"phase": "main", "trial_index": 0, "attempt": 0, "choice": 0, "confidence": 1, "rt_ms": 500},
        ),
        409,
        "out_of_order",
    )
    client.post(f"/api/sessions/{sid}/events", json={"event": "consent"})
    client.post(f"/api/sessions/{sid}/events", json={"event": "instructions", "duration_s": 25.0})
    answer(client, sid, 0, status=409)  # practice first
    answer(client, sid, 0, phase="practice", attempt=3, status=409)  # round 3 before round 1
    body = {"phase": "practice", "trial_index": 0, "attempt": 1, "choice": 0, "confidence": 1, "rt_ms": 0}
    assert_error(client.post(f"/api/sessions/{sid}/responses", json=body), 422, "invalid_request")
    assert count_responses(client) == 0
    for t in state["practice"]:
        answer(client, sid, t["index"], phase="practice", attempt=1, choice=t["correct"])
    assert answer(client, sid, 0)["stored"]  # practice passed: main trials open


def test_settings_changed_mid_study_are_refused_unless_asked(make_client, db_url):
    """Before anyone took part the settings may change freely; afterwards a change of platform, practice,
    expertise or completion code is refused in one line, and with --change-settings it is recorded."""
    make_client(platform="local")
    make_client(platform="prolific", completion_code="FIRST")  # no participant yet: fine
    client = make_client(platform="prolific", completion_code="FIRST")
    start(client, ready=False)
    for change in ({"platform": "mturk"}, {"practice": 0}, {"expert": True}, {"completion_code": "SECOND"}):
        with pytest.raises(VizprobeError, match="has participants already.*--change-settings"):
            make_client(**({"platform": "prolific", "completion_code": "FIRST"} | change))
    make_client(platform="prolific", completion_code="FIRST", task_timeout_s=600)  # the timeout may change
    changed = make_client(platform="prolific", completion_code="SECOND", practice=0, change_settings=True)
    engine = create_engine(changed.app.state.db.url)
    with engine.connect() as conn:
        stored = json.loads(conn.execute(text("SELECT settings_json FROM study")).scalar())
    engine.dispose()
    assert stored["changes"][0]["changed"] == {"practice": [4, 0], "completion_code": ["FIRST", "SECOND"]}
    assert client.get("/api/config").json()["platform"] == "prolific"


def test_a_package_s_own_exclusion_rule_reposts_and_analyses_alike(stimulus_package, db_url, tmp_path, capsys):
    """One exclusion definition, read from the package: with a stricter instruction time recorded in the package
    (100 s instead of 20 s) a participant who read for 30 s and answered well is re-posted by the server and
    excluded by `analyze --stimuli` (no flags), by that criterion alone; the default rule would have kept them.
    The consent page states the package's time limit."""
    strict = tmp_path / "strict"
    shutil.copytree(stimulus_package, strict)
    data = json.loads((strict / "manifest.json").read_text())
    assert data["settings"]["exclusion"]["min_instruction_time_s"] == 20.0  # the paper's, recorded at build
    data["settings"]["exclusion"] |= {"min_instruction_time_s": 100.0, "max_total_time_s": 600.0, "per_condition": {}}
    (strict / "manifest.json").write_text(json.dumps(data))
    app = create_app(strict, db_url, admin_token=TOKEN, secret_file=tmp_path / "secret", static_dir=tmp_path / "s")
    try:
        client = TestClient(app)
        # the consent page promises what the package's limit keeps: 600 s
        assert client.get("/api/config").json()["texts"]["time_sentence"] == "It takes up to 10 minutes."
        trials = {t["trial_id"]: t for t in data["trials"]}
        for worker, reading_s in (("quick", 30.0), ("slow", 120.0)):  # both answer well; one reads 30 s, one 120 s
            state = start(client, ready=False, PROLIFIC_PID=worker)
            sid = state["session_id"]
            client.post(f"/api/sessions/{sid}/events", json={"event": "consent"})
            client.post(f"/api/sessions/{sid}/events", json={"event": "instructions", "duration_s": reading_s})
            for t in state["practice"]:
                answer(client, sid, t["index"], phase="practice", attempt=1, choice=t["correct"], confidence=3)
            for view in state["trials"]:
                t = trials[view["trial_id"]]
                best = view["options"].index("/stimuli/" + t["options"][t["correct"]]["image"])
                choice = best if t["kind"] == "catch" else view["index"] % 2
                answer(client, sid, view["index"], choice=choice, confidence=1 + view["index"] % 3)
            assert client.post(f"/api/sessions/{sid}/complete", json={"total_time_s": 300.0}).status_code == 200
        progress = client.get("/api/admin/progress", headers=ADMIN).json()["conditions"]
        assert sum(c["failed"] for c in progress.values()) == 1 and sum(c["completed"] for c in progress.values()) == 1
    finally:
        app.state.db.dispose()
    responses = tmp_path / "responses.csv"
    export_frame(db_url).to_csv(responses, index=False)
    for package, excluded in ((strict, 1), (stimulus_package, 0)):
        out = tmp_path / f"report-{package.name}"
        assert (
            main(
                [
                    "analyze",
                    "--responses",
                    str(responses),
                    "--stimuli",
                    str(package),
                    "--out",
                    str(out),
                    "--baselines",
                    "none",
                ]
            )
            == 0
        )
        criteria = json.loads((out / "results.json").read_text())["exclusion"]["criteria"]
        assert criteria["instruction_time"]["excluded"] == excluded, criteria["instruction_time"]
        assert sum(c["excluded"] for c in criteria.values()) == excluded, criteria


def test_a_task_is_re_posted_at_most_max_assignments_times(make_client, manifest, db_url, stimulus_package, tmp_path):
    """The authors stopped at 3 assignments per task (below the cap a failed task is posted again: the test
    above). At the cap, here --max-assignments 1, a task whose participant failed is exhausted and never handed
    out again; the admin progress and the export count the assignments used."""
    client = make_client(platform="prolific", max_assignments=1)
    failed = fail_a_session(client, manifest, "careless")
    task, condition = failed["task_id"], failed["condition"]
    progress = client.get("/api/admin/progress", headers=ADMIN).json()["conditions"][condition]
    assert (progress["exhausted"], progress["assignments"], progress["failed"], progress["free"]) == (
        1,
        1,
        1,
        progress["tasks"] - 1,
    )
    others = len(manifest["tasks"]) - 1
    handed = [start(client, ready=False, PROLIFIC_PID=f"next-{k}")["task_id"] for k in range(others)]
    assert task not in handed and len(set(handed)) == others
    start(client, status=503, ready=False, PROLIFIC_PID="one-too-many")  # nothing left to hand out
    exported = export_frame(db_url)
    assert set(exported.loc[exported["task_id"] == task, "task_assignments"]) == {1}
    with pytest.raises(VizprobeError, match="--max-assignments 0: must be at least 1"):
        create_app(
            stimulus_package,
            tmp_path / "other.db",
            max_assignments=0,
            secret_file=tmp_path / "s2",
            static_dir=tmp_path / "static",
        )


# --- the MTurk HIT ------------------------------------------------------------------------------------------------
def test_mturk_hit_request_is_the_authors_and_valid_for_aws(stimulus_package, manifest, tmp_path, capsys):
    """`vizprobe mturk-hit` writes a CreateHIT request that AWS's own schema (botocore's service model, offline)
    accepts, with the authors' qualifications, reward and duration under zimmermann2021 (tools/mturk/mturk.py,
    run_counterfactual_experiment_*.sh); flags override them; a non-HTTPS URL is refused and nothing written."""
    import botocore.session
    import botocore.validate

    from vizprobe.cli import main

    out = tmp_path / "hit.json"
    url = "https://study.example.org/?from=mturk"
    assert main(["mturk-hit", "--stimuli", str(stimulus_package), "--url", url, "--out", str(out)]) == 0
    assert "aws mturk create-hit --cli-input-json" in capsys.readouterr().out
    request = json.loads(out.read_text())
    operation = botocore.session.get_session().get_service_model("mturk").operation_model("CreateHIT")
    report = botocore.validate.ParamValidator().validate(request, operation.input_shape)
    assert not report.has_errors(), report.generate_report()
    assert request["MaxAssignments"] == len(manifest["tasks"])
    durations = (request["AssignmentDurationInSeconds"], request["LifetimeInSeconds"])
    assert request["Reward"] == "1.95" and durations == (900, 7200)
    quals = {q["QualificationTypeId"]: q for q in request["QualificationRequirements"]}
    assert [c["Country"] for c in quals["00000000000000000071"]["LocaleValues"]] == ["US", "CA", "GB", "AU", "NZ", "IE"]
    assert quals["00000000000000000040"]["IntegerValues"] == [1000]
    assert quals["000000000000000000L0"]["IntegerValues"] == [99]
    assert "<ExternalURL>https://study.example.org/start?from=mturk</ExternalURL>" in request["Question"]
    assert (
        main(
            [
                "mturk-hit",
                "--stimuli",
                str(stimulus_package),
                "--url",
                url,
                "--out",
                str(out),
                "--reward",
                "2.5",
                "--countries",
                "de,at",
                "--assignments",
                "7",
            ]
        )
        == 0
    )
    request = json.loads(out.read_text())
    assert (request["Reward"], request["MaxAssignments"]) == ("2.50", 7)
    assert [c["Country"] for c in request["QualificationRequirements"][0]["LocaleValues"]] == ["DE", "AT"]
    bad = tmp_path / "bad.json"
    assert main(["mturk-hit", "--stimuli", str(stimulus_package), "--url", "http://x.org", "--out", str(bad)]) == 2
    assert "MTurk loads only https://" in capsys.readouterr().err and not bad.exists()


def test_an_older_package_is_served_with_its_own_practice_and_the_log_says_so(stimulus_package, tmp_path, caplog):
    """A package built before the practice pool, the recorded exclusion and the units' deviations: the server
    serves it (practice rounds from its pool, the first trial the obvious one; re-posting by the default
    protocol's rule) and says so in its log; `inspect` says the catch gaps are unknown. Never a crash."""
    old = tmp_path / "old"
    shutil.copytree(stimulus_package, old)
    data = json.loads((old / "manifest.json").read_text())
    del data["settings"]["practice_obvious"], data["settings"]["exclusion"], data["settings"]["min_catch_gap"]
    for unit in data["units"]:
        del unit["activation_std"]
    data["practice_trial_ids"] = data["practice_trial_ids"][:4]
    (old / "manifest.json").write_text(json.dumps(data))
    with caplog.at_level("WARNING", logger="vizprobe.serve"):
        app = create_app(
            old,
            f"sqlite:///{tmp_path / 'old.db'}",
            admin_token=TOKEN,
            secret_file=tmp_path / "k",
            static_dir=tmp_path / "s",
        )
    try:
        assert "predates the authors' practice pool" in caplog.text and "from its 4 practice trial(s)" in caplog.text
        assert "records no exclusion criteria" in caplog.text
        state = start(TestClient(app), workerId="w-old", ready=False)
        pool = data["practice_trial_ids"]
        first = {r[0]["trial_id"] for r in state["practice_rounds"]}
        assert first == {pool[0]} and all(
            sorted(t["trial_id"] for t in r) == sorted(pool) for r in state["practice_rounds"]
        )
    finally:
        app.state.db.dispose()
    from vizprobe.stimuli.pictures import inspect_package

    text, _ = inspect_package(old, tmp_path / "pictures")
    assert "catch trials: gaps unknown" in text


def test_the_authors_sides_are_the_same_for_every_participant_of_a_task(make_client, manifest, db_url):
    """`--sides authors`: a coin per trial seeded by the task (the authors' `Math.seedrandom(task_name)`), so a
    re-posted task shows the participant after a failed one the same sides; the export's `max_side` is the side
    shown. The default balances each session instead (half the maximal options left)."""
    client = make_client(platform="prolific", sides="authors")
    failed = fail_a_session(client, manifest, "first-of-task")
    second = start(client, PROLIFIC_PID="second-of-task")
    assert second["task_id"] == failed["task_id"]  # the freed task goes to the next participant
    assert [t["options"] for t in second["trials"]] == [t["options"] for t in failed["trials"]]
    trials = {t["trial_id"]: t for t in manifest["trials"]}

    def shown(view: dict) -> int:
        t = trials[view["trial_id"]]
        return view["options"].index("/stimuli/" + t["options"][t["correct"]]["image"])

    exported = export_frame(db_url)
    first = exported[(exported["is_practice"] == 0) & (exported["participant_id"] == "p0001")]
    assert list(first["max_side"]) == [shown(v) for v in failed["trials"]]
