"""Hostile requests, generated: every participant route of the served OpenAPI schema gets bodies drawn from its
request schema, the same bodies broken (wrong types, out-of-range numbers, hostile text, extra keys, random JSON,
bytes that are not JSON) and session ids that are not ones. Property: the answer is JSON, never a 5xx (except
the designed `503 no_tasks`), and a refusal (4xx) changes nothing in the database.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from test_experiment_api import ADMIN, TOKEN, start

from vizprobe.experiment.app import create_app

# Text a browser would never send but an attacker can: NUL, lone surrogates, control and bidi characters, huge.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", "\ud800x", "\udfff", "\u202e", "%00", "../../etc/passwd", "' OR 1=1 --"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20).map(lambda s: s + "\x00"),
    st.just("x" * 70_000),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | HOSTILE_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Values that break a field: wrong types, boundaries, numbers far outside any range.
BAD_FIELD = st.one_of(
    JSON_VALUES,
    st.sampled_from([-1, 0, 2, 3, 4, 10**30, -(10**30), 1.5, 0.0, -0.0, 3_600_001, 1e308, True, False, "", "0"]),
)


def from_schema(schema: dict) -> st.SearchStrategy:
    """Values valid for one of the served OpenAPI request schemas (the JSON Schema subset pydantic emits for
    them: objects, enums, bounded numbers, patterned strings, anyOf, null)."""
    if "anyOf" in schema:
        return st.one_of([from_schema(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = {k: from_schema(v) for k, v in schema.get("properties", {}).items()}
        required = {k: v for k, v in properties.items() if k in schema.get("required", ())}
        optional = {k: v for k, v in properties.items() if k not in required}
        fixed = st.fixed_dictionaries(required, optional=optional)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            more = st.dictionaries(st.text(max_size=12), from_schema(extra), max_size=4)
            return st.tuples(more, fixed).map(lambda pair: pair[0] | pair[1])
        return fixed
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        low, high = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
        values = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
        return values.filter(lambda x: "exclusiveMinimum" not in schema or x > schema["exclusiveMinimum"])
    if kind == "string":
        return st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else st.text(max_size=30)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise AssertionError(f"schema construct not handled here: {schema}")


def mutated(schema: dict) -> st.SearchStrategy:
    """A valid body with one field replaced, removed or added."""
    keys = sorted(schema.get("properties", {})) or ["x"]

    def change(body: dict, key: str, value: object, how: str) -> dict:
        body = dict(body)
        if how == "drop":
            body.pop(key, None)
        elif how == "extra":
            body["unexpected_" + key] = value
        else:
            body[key] = value
        return body

    return st.builds(
        change, from_schema(schema), st.sampled_from(keys), BAD_FIELD, st.sampled_from(["replace", "drop", "extra"])
    )


def bodies(schema: dict) -> st.SearchStrategy:
    """What a request body may be: valid per the schema, a mutated valid body, any JSON, or not JSON at all."""
    raw = st.one_of(
        st.binary(max_size=200),
        st.just(b"{"),
        st.just(b'{"a": "\xff\xfe"}'),
        st.just(b"[" * 10_000),
        st.just(b'{"x": 1e999999}'),
    )
    return st.one_of(
        from_schema(schema).map(json.dumps), mutated(schema).map(json.dumps), JSON_VALUES.map(json.dumps), raw
    )


def session_ids(real: str) -> st.SearchStrategy:
    """A real session id, or a path segment that is not one (percent-encoded into the URL)."""
    return st.one_of(
        st.just(real),
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=80),
        st.sampled_from(["\x00", "a\x00", "..", "%2e%2e", "x" * 65, real + "\x00", real.upper()]),
    )


@pytest.fixture
def hostile_client(stimulus_package, db_url, tmp_path):
    app = create_app(
        stimulus_package,
        db_url,
        platform="prolific",
        admin_token=TOKEN,
        secret_file=tmp_path / "secret",
        static_dir=tmp_path / "static",
    )
    yield TestClient(app, raise_server_exceptions=False)
    app.state.db.dispose()


def snapshot(client: TestClient) -> tuple:
    """Everything a request could change: sessions (with their progress), responses, tasks."""
    db = client.app.state.db
    with db.tx() as s:
        sessions = s.execute(
            text(
                "SELECT id, status, consented_at, instruction_time_s, practice_attempts, practice_passed, "
                "completed_at, total_time_s, debrief_json FROM sessions ORDER BY id"
            )
        ).all()
        responses = s.execute(text("SELECT session_id, phase, attempt, trial_index, choice FROM responses")).all()
        tasks = s.execute(text("SELECT task_id, state, session_id FROM tasks ORDER BY task_id")).all()
    return tuple(sessions), tuple(sorted(map(tuple, responses))), tuple(tasks)


def check(client: TestClient, method: str, url: str, body: str | bytes | None) -> None:
    before = snapshot(client)
    content = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    r = client.request(method, url, content=content, headers={"Content-Type": "application/json"})
    assert r.headers["content-type"].startswith("application/json"), (url, r.status_code, r.text[:200])
    answer = r.json()
    if r.status_code >= 500:
        assert answer["error"] == "no_tasks", (url, body, r.status_code, answer)
    if r.status_code >= 400:
        assert set(answer) >= {"error", "message"}, answer
        assert snapshot(client) == before, f"{method} {url} -> {r.status_code} changed the database"


def schema_of(client: TestClient, name: str) -> dict:
    return client.app.openapi()["components"]["schemas"][name]


EXAMPLES = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@EXAMPLES
@given(data=st.data())
def test_hostile_session_starts(hostile_client, data):
    body = data.draw(bodies(schema_of(hostile_client, "SessionIn")))
    check(hostile_client, "POST", "/api/sessions", body)


@pytest.mark.parametrize(
    ("route", "model"),
    [("events", "EventIn"), ("responses", "ResponseIn"), ("complete", "CompleteIn"), ("return", None)],
)
@EXAMPLES
@given(data=st.data())
def test_hostile_session_requests(hostile_client, route, model, data):
    """Each session route with a generated body on a real session (ready for main trials) or a forged id."""
    client = hostile_client
    real = getattr(client.app.state, "hostile_sid", None) or start(client)["session_id"]
    client.app.state.hostile_sid = real
    sid = data.draw(session_ids(real))
    if model:  # half the bodies valid, so that a forged session id gets past body validation to the database
        schema = schema_of(client, model)
        body = data.draw(st.one_of(from_schema(schema).map(json.dumps), bodies(schema)))
    else:
        body = data.draw(st.none() | st.binary(max_size=50))
    if route == "return" and sid == real:
        sid += "-forged"  # a real stop is a legitimate change; the property is about forged ids here
    check(client, "POST", f"/api/sessions/{quote(sid, safe='')}/{route}", body)


@EXAMPLES
@given(
    header=st.one_of(
        HOSTILE_TEXT.filter(lambda s: s.isascii() and "\x00" not in s and "\n" not in s),
        st.just(f"Bearer {TOKEN}x"),
        st.just(f"bearer {TOKEN[:-1]}"),
    )
)
def test_admin_routes_refuse_every_other_token(hostile_client, header):
    for path in ("/api/admin/progress", "/api/admin/export.csv"):
        r = hostile_client.get(path, headers={"Authorization": header})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert hostile_client.get("/api/admin/progress", headers=ADMIN).status_code == 200
