"""`vizprobe crowd --platform prolific` against a local stand-in of Prolific's API as documented (studies,
places, transitions, submissions; token auth; 429 and 5xx): posting, places following the server's free tasks,
approvals by the rule, paying twice, a study deleted on Prolific, a missing token."""

from __future__ import annotations

import pytest
from test_crowd import manifest, pass_a_session, study  # noqa: F401 (fixtures)
from test_experiment_api import fail_a_session

from vizprobe.crowd import open_crowd, watch
from vizprobe.crowd.prolific import ProlificApi, ProlificCrowd, ProlificPosting, ProlificSettings
from vizprobe.crowd.standin import ProlificStandIn
from vizprobe.errors import VizprobeError
from vizprobe.experiment.approvals import study_secret

URL = "https://study.example.org/"


@pytest.fixture
def prolific():
    fake = ProlificStandIn()
    fake.endpoint = fake.serve()
    yield fake
    fake.close()


def crowd_for(db_path, fake, tmp_path) -> ProlificCrowd:
    db = open_crowd(str(db_path))
    api = ProlificApi(token=fake.token, base=fake.endpoint, sleep=lambda _: None)
    return ProlificCrowd(api, db, study_secret(db, tmp_path / "secret"))


def take_part(client, fake, package: dict, pid: str, fail: bool = False) -> str:
    (study_id,) = fake.studies
    sub = fake.join(study_id, pid)
    ids = {"PROLIFIC_PID": pid, "STUDY_ID": study_id, "SESSION_ID": sub}
    if fail:
        fail_a_session(client, package, pid, **ids)
    else:
        pass_a_session(client, package, ids)
    return sub


def test_prolific_study_from_posting_to_payment(study, prolific, tmp_path, manifest):  # noqa: F811
    client, db = study(platform="prolific")
    crowd = crowd_for(db, prolific, tmp_path)
    posting = ProlificPosting(URL, ProlificSettings(reward=1.95))
    (request,), cost = crowd.planned_requests(posting)
    n = len(manifest["tasks"])
    assert request["total_available_places"] == n and request["reward"] == 195 and cost["places"] == n
    assert request["external_study_url"].startswith(URL + "?PROLIFIC_PID={{%PROLIFIC_PID%}}")
    assert not prolific.studies  # planning sent nothing

    crowd.post(posting)
    (study_id,) = prolific.studies
    assert prolific.studies[study_id]["status"] == "ACTIVE"
    assert prolific.studies[study_id]["total_available_places"] == n
    with crowd.db.tx() as s:
        from vizprobe.experiment.study import stored_study

        code = stored_study(s).completion_code
    assert prolific.studies[study_id]["completion_codes"][0]["code"] == code

    good = take_part(client, prolific, manifest, "P-GOOD")
    prolific.finish(good, code)
    failed = take_part(client, prolific, manifest, "P-FAILS", fail=True)
    prolific.finish(failed, code)
    prolific.fail_next(2, 429)  # rate limited twice: retried
    report = crowd.tick()
    assert (report.approved, report.posted) == (2, 1)  # both paid; the failed task got a place more
    assert prolific.submissions[good]["status"] == prolific.submissions[failed]["status"] == "APPROVED"
    assert prolific.studies[study_id]["total_available_places"] == n + 1
    approvals = [c for c in prolific.calls if c[1].startswith("/api/v1/submissions/")]
    assert crowd.pay().approved == 0 and crowd.pay().approved == 0
    assert [c for c in prolific.calls if c[1].startswith("/api/v1/submissions/")] == approvals
    assert crowd.status()["approved"] == 2 and crowd.status()["rewards_paid"] == pytest.approx(3.9)

    prolific.fail_next(10, 503)
    lines = []
    watch(crowd, interval_s=0, rounds=1, echo=lines.append)
    assert "prolific did not answer" in lines[-1]
    prolific._failures.clear()

    del prolific.studies[study_id]  # deleted on Prolific's side: reported, nothing more sent
    assert crowd.tick().gone == [study_id]


def test_missing_prolific_token_says_where_to_put_it(monkeypatch):
    monkeypatch.delenv("PROLIFIC_TOKEN", raising=False)
    with pytest.raises(VizprobeError, match="PROLIFIC_TOKEN"):
        ProlificApi()


def test_the_cli_posts_on_prolific_and_reports(study, prolific, tmp_path, capsys, monkeypatch):  # noqa: F811
    from vizprobe.cli import main

    monkeypatch.setenv("PROLIFIC_TOKEN", prolific.token)
    monkeypatch.setenv("PROLIFIC_URL", prolific.endpoint)
    _, db = study(platform="prolific")
    args = ["crowd", "post", "--platform", "prolific", "--db", db, "--secret-file", str(tmp_path / "secret")]
    assert main([*args, "--url", URL]) == 0 and not prolific.studies
    assert "would create and publish a Prolific study" in capsys.readouterr().out
    assert main([*args, "--url", URL, "--yes"]) == 0 and len(prolific.studies) == 1
    status = ["crowd", "status", "--platform", "prolific", "--db", db, "--secret-file", str(tmp_path / "secret")]
    assert main(status) == 0 and "places posted" in capsys.readouterr().out
    monkeypatch.setenv("PROLIFIC_TOKEN", "wrong")
    assert main(status[:1] + ["pay"] + status[2:]) == 2
    assert "refused the token" in capsys.readouterr().err
