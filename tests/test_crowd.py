"""`vizprobe crowd` on MTurk, against a local stand-in of the MTurk requester API reached over HTTP by boto3 (every
request checked by botocore against MTurk's service model, every reply by the stand-in against the output
shapes): posting, places following the server's free tasks, the cap, expired and deleted HITs, approvals and
the study's qualification, throttling and 5xx, a kill mid-posting, paying twice, missing credentials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import botocore.session
import botocore.validate
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_experiment_api import TOKEN, answer, fail_a_session, start

from vizprobe.crowd import open_crowd, watch
from vizprobe.crowd.mturk import MTurkCrowd, Posting, connect
from vizprobe.crowd.standin import FakeAssignment, MTurkStandIn
from vizprobe.crowd.state import CrowdHit, HitState
from vizprobe.errors import VizprobeError
from vizprobe.experiment.app import create_app
from vizprobe.experiment.approvals import study_secret
from vizprobe.experiment.mturk import MTurkSettings

URL = "https://study.example.org"


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """The stand-in on a local port, and credentials that exist only for it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTANDIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    fake = MTurkStandIn()
    fake.endpoint = fake.serve()
    yield fake
    fake.close()


@pytest.fixture
def study(stimulus_package, tmp_path):
    """An MTurk study served from the package (SQLite): its TestClient and database path."""
    apps = []

    def make(**options):
        db = str(tmp_path / "study.db")
        options = {"platform": "mturk"} | options
        app = create_app(
            stimulus_package,
            db,
            admin_token=TOKEN,
            secret_file=tmp_path / "secret",
            static_dir=tmp_path / "static",
            **options,
        )
        apps.append(app)
        return TestClient(app), db

    yield make
    for app in apps:
        app.state.db.dispose()


@pytest.fixture(scope="module")
def manifest(stimulus_package) -> dict:
    return json.loads((stimulus_package / "manifest.json").read_text())


def crowd_for(db_path, standin, tmp_path) -> MTurkCrowd:
    db = open_crowd(str(db_path))
    return MTurkCrowd(connect(True, endpoint_url=standin.endpoint), db, study_secret(db, tmp_path / "secret"))


def places(standin: MTurkStandIn) -> int:
    return sum(h.max_assignments for h in standin.hits.values() if not h.deleted)


def open_places(standin: MTurkStandIn) -> int:
    return sum(h.counts()[0] for h in standin.open_hits())


def pass_a_session(client, manifest: dict, ids: dict) -> None:
    """A session that passes the exclusion criteria: every trial answered right, 5 minutes in all."""
    state = start(client, **ids)
    trials = {t["trial_id"]: t for t in manifest["trials"]}
    for view in state["trials"]:
        t = trials[view["trial_id"]]
        best = view["options"].index("/stimuli/" + t["options"][t["correct"]]["image"])
        answer(client, state["session_id"], view["index"], choice=best, confidence=1 + view["index"] % 3)
    r = client.post(f"/api/sessions/{state['session_id']}/complete", json={"total_time_s": 300.0})
    assert r.status_code == 200


def work(client, standin, manifest: dict, worker: str, fail: bool = False) -> str:
    """A worker accepts a place, does the task (well, or failing the exclusion criteria) and submits it."""
    hit = standin.open_hits()[0]
    aid = standin.accept(hit.id, worker)
    ids = {"workerId": worker, "assignmentId": aid, "hitId": hit.id}
    if fail:
        fail_a_session(client, manifest, worker, **ids)
    else:
        pass_a_session(client, manifest, ids)
    standin.submit(aid)
    return aid


def test_posting_follows_the_servers_tasks_and_pays_each_submission_once(study, standin, tmp_path, manifest):
    """Post: HITs of at most 9 places, one place per task, this study's qualification required absent (sandbox: no
    approval-rate ones). A finished task is approved and its worker qualified; a failed one is approved (paid) and
    its task gets a new place; pay twice approves nothing twice; done once every task is done."""
    client, db = study()
    crowd = crowd_for(db, standin, tmp_path)
    posting = Posting(URL, MTurkSettings(auto_approve_s=3600), sandbox=True)
    planned, cost = crowd.planned_requests(posting)
    model = botocore.session.get_session().get_service_model("mturk").operation_model("CreateHIT")
    for request in planned:
        report = botocore.validate.ParamValidator().validate(request, model.input_shape)
        assert not report.has_errors(), report.generate_report()
    n = len(manifest["tasks"])
    assert cost["places"] == n and sum(r["MaxAssignments"] for r in planned) == n
    assert cost["per_assignment_usd"] == pytest.approx(1.95 * 1.2)
    assert not standin.hits  # planning sent nothing

    crowd.post(posting)
    assert places(standin) == n and all(h.max_assignments <= 9 for h in standin.hits.values())
    (qualification,) = standin.qualifications
    for hit in standin.hits.values():
        requirements = {q["QualificationTypeId"]: q["Comparator"] for q in hit.request["QualificationRequirements"]}
        assert requirements == {qualification: "DoesNotExist"}
        assert f"<ExternalURL>{URL}/start</ExternalURL>" in hit.request["Question"]
    assert crowd.tick().posted == 0  # nothing more while every task has a place

    good = work(client, standin, manifest, "WORKER1")
    report = crowd.tick()
    assert (report.approved, report.posted) == (1, 0)
    assert standin._assignment(good).status == "Approved"
    assert "WORKER1" in standin.granted[qualification]

    failed = work(client, standin, manifest, "WORKER2", fail=True)
    report = crowd.tick()  # the server freed the task: one place more, the failed worker paid all the same
    assert (report.approved, report.posted) == (1, 1)
    assert standin._assignment(failed).status == "Approved" and places(standin) == n + 1
    approvals = [c for c in standin.calls if c[0] == "ApproveAssignment"]
    assert crowd.pay().approved == 0 and crowd.pay().approved == 0
    assert [c for c in standin.calls if c[0] == "ApproveAssignment"] == approvals  # nothing paid twice
    status = crowd.status()
    assert status["approved"] == 2 and status["cost_usd"] == pytest.approx(2 * 1.95 * 1.2, abs=0.01)
    assert status["places_posted"] == n + 1 and status["tasks"]["completed"] == 1

    for k in range(n - 1):
        work(client, standin, manifest, f"LATER{k}")
    report = crowd.tick()
    assert report.done and report.approved == n - 1
    assert not standin.open_hits()  # every HIT closed: nobody accepts a place without a task
    with pytest.raises(Exception, match="qualification"):
        standin.accept(next(iter(standin.hits)), "WORKER1")
    # A worker who took a place just before the HITs closed submits afterwards, without a task: held for the
    # researcher, and the study is done only then.
    hit = next(iter(standin.hits.values()))
    hit.max_assignments += 1
    hit.assignments.append(FakeAssignment("A-LATE", hit.id, "LATECOMER", standin.now()))
    assert not crowd.tick().done
    standin.submit("A-LATE")
    report = crowd.tick()
    assert (report.held, report.done) == (1, True) and standin._assignment("A-LATE").status == "Submitted"


def test_the_cap_expiry_deletion_throttling_and_a_kill_mid_posting(study, standin, tmp_path, manifest, capsys):
    """With --max-assignments 1 a failed task gets no new place; an expired HIT's places and a deleted HIT's are
    posted anew; throttling and 5xx are retried (and a round that still fails is reported, the next goes on);
    a HIT recorded but not confirmed before a kill is found by its token, or posted once."""
    client, db = study(max_assignments=1)
    crowd = crowd_for(db, standin, tmp_path)
    crowd.post(Posting(URL, MTurkSettings(auto_approve_s=3600), sandbox=True))
    n = len(manifest["tasks"])
    work(client, standin, manifest, "FAILS", fail=True)
    assert crowd.tick().posted == 0 and places(standin) == n  # the task is exhausted: no new place

    first = next(iter(standin.hits.values()))
    free = first.counts()[0]
    standin.expire(first.id)
    report = crowd.tick()
    assert report.expired == 1 and report.posted == free and open_places(standin) == n - 1

    second = standin.open_hits()[0]
    standin.delete(second.id)
    report = crowd.tick()
    assert report.gone == [second.id] and open_places(standin) == n - 1

    standin.fail_next(2)  # throttled twice: the client's retries absorb it
    assert crowd.tick().posted == 0
    standin.fail_next(40, status=500, code="ServiceFault")
    lines = []
    watch(crowd, interval_s=0, rounds=1, echo=lines.append)
    assert "mturk did not answer" in lines[-1]
    standin._failures.clear()

    # A kill after recording a HIT and before MTurk confirmed it, once before and once after MTurk made it.
    with crowd.db.tx() as s:
        s.add(CrowdHit(token="killed-before", places=2, reward_usd=1.95))
        s.add(CrowdHit(token="killed-after", places=3, reward_usd=1.95))
    request = first.request | {"MaxAssignments": 3, "RequesterAnnotation": "killed-after", "UniqueRequestToken": "k"}
    made = standin.call("CreateHIT", request)
    before = places(standin)
    crowd_for(db, standin, tmp_path).tick()
    assert places(standin) == before + 2
    with crowd.db.tx() as s:
        rows = {h.token: h for h in s.scalars(select(CrowdHit))}
    assert rows["killed-after"].hit_id == made["HIT"]["HITId"] and rows["killed-before"].state == HitState.OPEN


def test_watch_survives_a_kill_and_resumes(study, standin, tmp_path, manifest):
    """`vizprobe crowd watch` killed with SIGKILL while it runs, then started again: the places on MTurk still
    match the free tasks (none posted twice) and a submission made meanwhile is approved."""
    client, db = study()
    crowd = crowd_for(db, standin, tmp_path)
    crowd.post(Posting(URL, MTurkSettings(auto_approve_s=3600), sandbox=True))
    env = os.environ | {"AWS_ENDPOINT_URL": standin.endpoint}
    command = [sys.executable, "-m", "vizprobe.cli", "crowd", "watch", "--platform", "mturk", "--db", str(db)]
    command += ["--secret-file", str(tmp_path / "secret")]
    process = subprocess.Popen([*command, "--interval", "0.05"], env=env, stdout=subprocess.PIPE, text=True)
    work(client, standin, manifest, "DURING", fail=True)
    time.sleep(1.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    work(client, standin, manifest, "AFTER")
    done = subprocess.run([*command, "--rounds", "1"], env=env, capture_output=True, text=True, check=True)
    assert "approved" in done.stdout, done.stderr
    assert places(standin) == len(manifest["tasks"]) + 1
    assert {a.status for h in standin.hits.values() for a in h.assignments} == {"Approved"}


def test_reloaded_mturk_page_without_storage_resumes_from_the_platform_ids(study):
    """A worker whose browser lost the session (blocked storage, reload in another window) comes back with the
    same workerId and assignmentId: the same session, not a lock-out; the worker id alone is still refused."""
    client, _ = study()
    ids = {"workerId": "W-RELOAD", "assignmentId": "A-RELOAD", "hitId": "H1"}
    state = start(client, **ids)
    fresh = TestClient(client.app)  # no cookie, no stored session id
    r = fresh.post("/api/sessions", json={"platform_ids": ids})
    assert r.status_code == 200 and r.json()["session_id"] == state["session_id"]
    r = TestClient(client.app).post("/api/sessions", json={"platform_ids": ids | {"assignmentId": "A-OTHER"}})
    assert r.status_code == 409 and r.json()["error"] == "session_elsewhere"


def test_missing_credentials_say_where_to_put_them(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(VizprobeError, match=r"aws configure.*~/.aws/credentials"):
        connect(sandbox=True)


def test_post_without_yes_prints_requests_and_cost(study, tmp_path, capsys):
    from vizprobe.cli import main

    _, db = study()
    args = ["crowd", "post", "--platform", "mturk", "--db", str(db), "--url", URL, "--sandbox"]
    assert main([*args, "--secret-file", str(tmp_path / "secret")]) == 0
    out = capsys.readouterr().out
    assert "would post" in out and "--yes" in out and "sandbox" in out
    assert json.loads(out[: out.index("would post")])[0]["Reward"] == "1.95"
