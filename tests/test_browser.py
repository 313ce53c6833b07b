"""A real browser (headless Chromium driven by Playwright) takes part in the study against `vizprobe serve`.

One participant does everything a crowd worker does: consent, instructions, a failed and then a passed practice
round, the main and catch trials with a page reload midway, the debrief, and the completion code. The database
must then hold exactly the answers that were given (by mouse or keyboard), once each.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import free_port, need_service, new_postgres_database
from sqlalchemy import select

from vizprobe.experiment.app import STATIC_DIR
from vizprobe.experiment.db import Database, ParticipantSession
from vizprobe.experiment.export import export_frame

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
N_PRACTICE, ATTEMPTS = 2, 3
CODE = "BROWSER-TEST-CODE"
WORKER = "prolific-worker-42"
# The six confidence buttons left to right, as (choice, confidence): "3 2 1 | 1 2 3".
BUTTONS = [(0, 3), (0, 2), (0, 1), (1, 1), (1, 2), (1, 3)]
SCREENSHOT = Path("/tmp/vizprobe-trial.png")
TAB_AWAY = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
  document.hasFocus = () => false;
  window.dispatchEvent(new Event("blur"));
  document.dispatchEvent(new Event("visibilitychange"));
}"""
TAB_BACK = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
  document.hasFocus = () => true;
  document.dispatchEvent(new Event("visibilitychange"));
  window.dispatchEvent(new Event("focus"));
}"""

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _chromium_and_front_end():
    """The browser tests need Chromium (a service: under CI=true its absence fails) and the built page."""
    need_service(CHROMIUM.is_file(), "/usr/bin/chromium absent: apt-get install chromium chromium-driver")
    need_service((STATIC_DIR / "index.html").is_file(), "front end not built: run `make frontend`")


@pytest.fixture
def serve(stimulus_package: Path, tmp_path: Path):
    """Start `vizprobe serve` in a subprocess on a fresh SQLite database; returns (base URL, database path)."""
    procs: list[subprocess.Popen] = []

    def start(*options: str) -> tuple[str, Path]:
        port, db = free_port(), tmp_path / f"experiment{len(procs)}.db"
        command = [sys.executable, "-c", "import sys; from vizprobe.cli import main; sys.exit(main())", "serve"]
        command += ["--stimuli", str(stimulus_package), "--db", str(db), "--port", str(port), *options]
        log = tmp_path / f"serve{len(procs)}.log"
        with log.open("w") as out:
            procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/config", timeout=2).status_code == 200:
                    return base, db
            except httpx.TransportError:
                pass
            assert procs[-1].poll() is None, f"vizprobe serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"vizprobe serve did not answer within 60 s: {log.read_text()}"
            time.sleep(0.2)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _click(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()


def _read_instructions(page, welcome_s: float = 0.0, fullscreen_s: float = 0.0) -> list[str]:
    """From the welcome page through the instruction pages (Next on each, `welcome_s` spent on the welcome page)
    to the fullscreen prompt (`fullscreen_s` spent there); returns the instruction pages' texts."""
    page.get_by_text("Welcome to this experiment!").wait_for()
    page.wait_for_timeout(welcome_s * 1000)
    _click(page, "Next >")
    texts, prompt = [], page.get_by_role("button", name="Switch to fullscreen")
    while not prompt.is_visible():
        page.locator("#jspsych-instructions-next").wait_for()
        texts.append(" ".join(page.locator(".jspsych-content").inner_text().split()))
        _click(page, "Next >")
        page.wait_for_function("() => true")  # let the next page (or the prompt) render
    page.wait_for_timeout(fullscreen_s * 1000)
    prompt.click()
    return texts


def _answer(page, index: int, button: int, keyboard: bool = False, proceed: bool = True) -> None:
    """Wait until trial `index` accepts answers (images decoded), then click confidence button `button`
    (or press its key, 1-6 in screen order); with `proceed`, then its Continue button where it has one."""
    trial = page.locator(f'.vp-trial[data-index="{index}"]')
    trial.locator(".vp-conf:not([disabled])").first.wait_for()
    if keyboard:
        page.keyboard.press(str(button + 1))
    else:
        trial.locator(".vp-conf").nth(button).click()
    if proceed:
        _continue(trial)


def _continue(trial, timeout_s: float = 30.0) -> None:
    """After an answer: click the trial's Continue button once it shows (the authors' main trials, 350 ms after
    the stored answer); return when the trial is gone without one (practice: feedback; or --continue-ms off)."""
    deadline = time.monotonic() + timeout_s
    button = trial.locator(".vp-continue")
    while trial.count():
        if button.count() and button.is_visible():
            button.click()
            return
        assert time.monotonic() < deadline, "the trial neither ended nor showed its Continue button"
        time.sleep(0.05)


def _button_for(choice: int, confidence: int) -> int:
    return BUTTONS.index((choice, confidence))


def _assert_trial_fits(page, n_references: int) -> None:
    """Every image and button of the trial lies inside the 1280x800 viewport, and nothing needs scrolling."""
    parts = {".vp-ref": n_references, ".vp-query": 1, ".vp-option": 2, ".vp-conf": 6}
    for selector, count in parts.items():
        items = page.locator(selector)
        assert items.count() == count, selector
        for i in range(count):
            box = items.nth(i).bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0, (selector, i)
            assert box["x"] >= 0 and box["y"] >= 0, (selector, i, box)
            assert box["x"] + box["width"] <= VIEWPORT["width"], (selector, i, box)
            assert box["y"] + box["height"] <= VIEWPORT["height"], (selector, i, box)
            if selector != ".vp-conf":
                assert box["width"] >= 120, f"{selector} {i} is too small to see: {box}"
                assert items.nth(i).evaluate("img => img.complete && img.naturalWidth > 0"), (selector, i)
    overflow = page.evaluate("document.documentElement.scrollHeight - window.innerHeight")
    assert overflow <= 0, f"the trial needs {overflow}px of scrolling at 1280x800"


def test_participant_completes_a_session_in_chromium(serve, browser, stimulus_package):
    options = ["--practice", str(N_PRACTICE), "--practice-attempts", str(ATTEMPTS), "--completion-code", CODE]
    base, db = serve(*options)
    url = f"{base}/?PROLIFIC_PID={WORKER}&STUDY_ID=study-1&SESSION_ID=sess-1"
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    posts: list[dict] = []  # every answer the page sent, retries and re-sends included

    def record(request) -> None:
        if request.method == "POST" and request.url.endswith("/responses"):
            posts.append(json.loads(request.post_data))

    page.on("request", record)

    # Main trial 1 meets a flaky network: the first try reaches the server but its answer is lost on the way back,
    # the second gets a 503. The page must retry (showing "saving…") and the answer must be stored exactly once.
    tries = Counter()

    def flaky_network(route) -> None:
        body = json.loads(route.request.post_data)
        key = (body["phase"], body["trial_index"])
        tries[key] += 1
        if key != ("main", 1) or tries[key] > 2:
            route.continue_()
        elif tries[key] == 1:
            route.fetch()  # the server stores the answer...
            route.abort("failed")  # ...but the page never hears back
        else:
            route.fulfill(status=503, json={"error": "unavailable", "message": "restarting"})

    page.route("**/api/sessions/*/responses", flaky_network)
    page.goto(url)

    # Consent (its time from the package's exclusion limit, 900 s), then the authors' welcome page, 15 illustrated
    # instruction pages and the fullscreen prompt. The instruction time runs from the welcome page to the first
    # trial: the 4 s spent on the consent page do not count, the 1.5 s on the welcome page and the 1 s at the
    # prompt do.
    page.get_by_text("It takes up to 15 minutes.").wait_for()
    page.wait_for_timeout(4000)
    _click(page, "I agree")
    pages = _read_instructions(page, welcome_s=1.5, fullscreen_s=1.0)
    assert len(pages) == 15, pages
    state = page.evaluate("window.vizprobe.state")
    practice, trials = state["practice"], state["trials"]
    assert len(practice) == N_PRACTICE and all(t["kind"] == "practice" for t in practice)
    assert all("correct" not in t for t in trials)
    assert len(trials[0]["references"]) == 9, "the first participant gets 'blur' (fewest tasks taken, alphabetical)"

    # Practice round 1 follows the instructions directly: the first answer wrong on purpose, so the round repeats.
    wrong = 1 - practice[0]["correct"]
    _answer(page, 0, _button_for(wrong, 2))
    page.get_by_role("heading", name="Incorrect.").wait_for()
    _click(page, "Continue")
    # A reload in the middle of the round finishes the same round (attempt 1) at its second trial.
    page.locator('.vp-trial[data-index="1"]').wait_for()
    page.reload()
    page.get_by_role("heading", name="Welcome back").wait_for()
    assert "practice round 1 with trial 2 of 2" in " ".join(page.inner_text("body").split())
    _click(page, "Continue practice")
    _answer(page, 1, _button_for(practice[1]["correct"], 3))
    page.get_by_role("heading", name="Correct!").wait_for()
    _click(page, "Continue")
    # Round 2: all right, then the main part starts.
    page.get_by_role("heading", name=f"Practice round 2 of at most {ATTEMPTS}").wait_for()
    _click(page, "Start practice")
    second = state["practice_rounds"][1]  # drawn anew from the pool: an obvious trial first, others, new sides
    for t in second:
        _answer(page, t["index"], _button_for(t["correct"], 1))
        page.get_by_role("heading", name="Correct!").wait_for()
        _click(page, "Continue")

    # Main and catch trials; the page is reloaded halfway and must come back at the first unanswered trial.
    page.get_by_role("heading", name="The main part").wait_for()
    _click(page, "Continue")
    expected, shown, middle = {}, {}, len(trials) // 2
    for t in trials:
        i = t["index"]
        if i == middle:
            page.locator(f'.vp-trial[data-index="{i}"]').wait_for()  # shown only once answer i-1 is stored
            page.reload()
            page.get_by_role("heading", name="Welcome back").wait_for()
            assert f"trial {i + 1} of {len(trials)}" in page.inner_text("body")
            _click(page, "Continue")
        trial = page.locator(".vp-trial")
        trial.locator(".vp-conf:not([disabled])").first.wait_for()
        assert trial.get_attribute("data-index") == str(i), "resumed at the wrong trial"
        assert page.locator(".vp-query").get_attribute("src") == t["query"]
        shown[t["trial_id"]] = [page.locator(".vp-option").nth(k).get_attribute("src") for k in (0, 1)]
        assert shown[t["trial_id"]] == t["options"]
        if i == 0:
            _assert_trial_fits(page, n_references=9)
            page.screenshot(path=str(SCREENSHOT))
        button = (3 * i + 1) % 6
        expected[t["trial_id"]] = BUTTONS[button]
        _answer(page, i, button, keyboard=i % 2 == 1, proceed=i != 1)  # half by mouse, half by keyboard
        if i == 1:
            page.locator("#vp-saving").wait_for(state="visible")
            page.locator("#vp-saving").wait_for(state="hidden")
            _continue(page.locator(f'.vp-trial[data-index="{i}"]'))

    # Debrief, then the completion code, shown only once the server confirmed every answer.
    page.locator("textarea[name=comments]").fill("The blurred images were hard.")
    _click(page, "Finish")
    _click(page, "Continue")  # the authors' last page before the data are sent
    code = page.locator("#vp-completion-code")
    code.wait_for()
    assert code.inner_text() == CODE
    assert not errors, errors

    # Each answer was sent exactly once (no trial answered twice, nothing re-sent after the reload).
    main_posts = Counter(p["trial_index"] for p in posts if p["phase"] == "main")
    assert main_posts == Counter(range(len(trials))) + Counter({1: 2}), "only the flaky trial 1 is sent again"
    assert len({json.dumps(p, sort_keys=True) for p in posts if p["phase"] == "main" and p["trial_index"] == 1}) == 1
    practice_posts = [(p["attempt"], p["trial_index"]) for p in posts if p["phase"] == "practice"]
    assert practice_posts == [(1, 0), (1, 1), (2, 0), (2, 1)]

    # The same worker in a fresh browser (no stored session) is turned away politely.
    other = browser.new_context(viewport=VIEWPORT).new_page()
    other.goto(url)
    other.get_by_text("you have already taken part").wait_for()

    frame = export_frame(str(db))
    assert frame["participant_id"].nunique() == 1
    assert set(frame["condition"]) == {state["condition"]} and set(frame["task_id"]) == {state["task_id"]}
    assert (frame["practice_attempts"] == 2).all() and (frame["expertise"] == "lay").all()
    assert (frame["instruction_time_s"].between(2.5, 6.5)).all(), frame["instruction_time_s"].iloc[0]
    assert (frame["total_time_s"] > frame["instruction_time_s"]).all()
    assert (frame["rt_ms"] > 0).all()

    drill = frame[frame["is_practice"] == 1]
    assert list(drill["trial_id"]) == [t["trial_id"] for t in practice + second]
    assert list(drill["correct"]) == [0, 1, 1, 1]
    assert list(drill["choice"]) == [wrong, practice[1]["correct"], second[0]["correct"], second[1]["correct"]]
    assert list(drill["max_side"]) == [t["correct"] for t in practice + second]
    assert list(drill["confidence"]) == [2, 3, 1, 1]

    main = frame[frame["is_practice"] == 0]
    assert list(main["trial_id"]) == [t["trial_id"] for t in trials]
    assert list(main["is_catch"]) == [int(t["kind"] == "catch") for t in trials]
    assert dict(zip(main["trial_id"], zip(main["choice"], main["confidence"], strict=True), strict=True)) == expected
    # The exported side of the maximal option is where the page showed it, and `correct` follows from it.
    stored = {t["trial_id"]: t for t in json.loads((stimulus_package / "manifest.json").read_text())["trials"]}
    for row in main.itertuples():
        best = stored[row.trial_id]["options"][stored[row.trial_id]["correct"]]["image"]
        assert shown[row.trial_id][row.max_side] == "/stimuli/" + best
        assert row.correct == int(row.choice == row.max_side)
    assert 0 < main["max_side"].mean() < 1

    database = Database(str(db), create=False)
    try:
        with database.tx() as s:
            (participant,) = s.scalars(select(ParticipantSession)).all()
            assert json.loads(participant.debrief_json) == {"comments": "The blurred images were hard."}
            assert participant.completion_code == CODE
    finally:
        database.dispose()


def test_prolific_redirect_and_no_tasks_page(serve, browser):
    """A window below 940 x 600 px is covered until enlarged; without practice, the main trials follow the
    instructions at once and a Prolific participant is sent back to Prolific; once every task is taken, newcomers
    are told so politely."""
    base, _ = serve("--platform", "prolific", "--practice", "0", "--completion-code", "PROLIFIC-CODE")
    page = browser.new_context(viewport={"width": 930, "height": 700}).new_page()
    # Prolific's page, answered locally: the browser must never leave the machine.
    page.route("https://app.prolific.com/**", lambda route: route.fulfill(body="<h1>Prolific</h1>"))
    page.goto(f"{base}/?PROLIFIC_PID=worker-7&STUDY_ID=study-1&SESSION_ID=sess-7")
    cover = page.locator("#vp-too-small")
    cover.get_by_text("at least 940 x 600 pixels; this one is 930 x 700").wait_for()
    page.keyboard.press("Enter")  # held back while covered
    page.set_viewport_size({"width": 1000, "height": 590})
    cover.get_by_text("this one is 1000 x 590").wait_for()
    page.set_viewport_size(VIEWPORT)
    cover.wait_for(state="hidden")
    _click(page, "I agree")
    _read_instructions(page)
    for t in page.evaluate("window.vizprobe.state.trials"):
        _answer(page, t["index"], 0)
    _click(page, "Finish")
    _click(page, "Continue")  # the authors' last page before the data are sent
    assert page.locator("#vp-completion-code").inner_text() == "PROLIFIC-CODE"
    page.wait_for_url("https://app.prolific.com/submissions/complete?cc=PROLIFIC-CODE")

    for k in range(100):  # take every remaining task
        ids = {"PROLIFIC_PID": f"filler-{k}"}
        if httpx.post(f"{base}/api/sessions", json={"platform_ids": ids, "resume": None}).status_code == 503:
            break
    newcomer = browser.new_context(viewport=VIEWPORT).new_page()
    newcomer.goto(f"{base}/?PROLIFIC_PID=worker-8")
    newcomer.get_by_text("All places in this study are currently taken").wait_for()
    stranger = browser.new_context(viewport=VIEWPORT).new_page()  # no Prolific id in the link
    stranger.goto(f"{base}/")
    stranger.get_by_text("Please open this study from the platform").wait_for()


def test_mturk_preview_takes_no_task_and_the_hit_is_submitted_to_mturk(serve, browser, monkeypatch):
    """An MTurk preview shows the instructions and an example trial, under the served security headers, and
    allocates nothing. An accepted HIT shows the start page, which opens the study in a window of its own; a
    reload there with storage and cookies gone resumes the session from MTurk's ids; a tab switched away
    mid-trial is in the export (that trial and the session's sums); at the end the start page posts MTurk's
    ExternalQuestion form to `turkSubmitTo` by itself; the pages obey their Content-Security-Policy throughout."""
    monkeypatch.setenv("VIZPROBE_ADMIN_TOKEN", "t" * 20)
    base, db = serve("--platform", "mturk", "--practice", "0")
    page = browser.new_context(viewport=VIEWPORT).new_page()
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{base}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=h1")
    page.get_by_text("This is a preview. Accept the HIT").wait_for()
    images = page.locator("img.vp-preview-ref, img.vp-preview-query, img.vp-preview-option")
    assert images.count() == 9 + 1 + 2
    loaded = "() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)"
    deadline = time.monotonic() + 30
    while not page.evaluate(loaded):  # polled from here: the page's CSP forbids wait_for_function's eval
        assert time.monotonic() < deadline, "the example's images did not load"
        time.sleep(0.2)
    progress = httpx.get(f"{base}/api/admin/progress", headers={"Authorization": f"Bearer {'t' * 20}"}).json()
    assert sum(c["running"] + c["participants"] for c in progress["conditions"].values()) == 0

    context = browser.new_context(viewport=VIEWPORT)
    submitted = []

    def mturk(route) -> None:  # MTurk itself is not reachable from the test: the form's POST is caught here
        submitted.append((route.request.method, route.request.url, route.request.post_data))
        route.fulfill(status=200, content_type="text/html", body="<p>HIT submitted</p>")

    context.route("https://workersandbox.mturk.com/**", mturk)
    hit_page = context.new_page()  # the HIT's page: the start page, which opens the study in its own window
    turk = "turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
    hit_page.goto(f"{base}/start?workerId=W1&assignmentId=A1&hitId=h1&{turk}")
    with hit_page.expect_popup() as opened:
        _click(hit_page, "Open the study")
    worker = opened.value
    worker.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    _click(worker, "I agree")
    assert len(_read_instructions(worker)) == 15
    trials = worker.evaluate("window.vizprobe.state")["trials"]
    sid = worker.evaluate("window.vizprobe.state")["session_id"]
    for trial in trials[:2]:
        _answer(worker, trial["index"], 0)
    # Storage blocked or lost (no localStorage, no cookie): the reload resumes the session from MTurk's ids.
    worker.evaluate("localStorage.clear()")
    context.clear_cookies()
    worker.reload()
    _click(worker, "Continue")
    assert worker.evaluate("window.vizprobe.state")["session_id"] == sid
    # The worker switches to another tab for a while during trial 3, then answers it. Headless Chromium keeps
    # every tab visible and focused, so the page gets what a browser sends then: blur and a hidden document,
    # later focus and a visible one.
    worker.locator(f'.vp-trial[data-index="{trials[2]["index"]}"] .vp-conf:not([disabled])').first.wait_for()
    worker.evaluate(TAB_AWAY)
    worker.wait_for_timeout(600)
    worker.evaluate(TAB_BACK)
    for trial in trials[2:]:
        _answer(worker, trial["index"], 0)
    _click(worker, "Finish")
    _click(worker, "Continue")
    worker.get_by_text("Your HIT is submitted on the MTurk page you came from").wait_for()
    hit_page.get_by_text("HIT submitted").wait_for(timeout=15000)  # the start page submitted it by itself
    assert len(submitted) == 1
    method, url, form = submitted[0]
    assert (method, url) == ("POST", "https://workersandbox.mturk.com/mturk/externalSubmit")
    fields = dict(pair.split("=") for pair in form.split("&"))
    with Database(f"sqlite:///{db}").tx() as s:
        code = s.scalars(select(ParticipantSession.completion_code)).one()
    assert fields == {"assignmentId": "A1", "completion_code": code}
    exported = export_frame(str(db))
    main = exported[exported["is_practice"] == 0].reset_index(drop=True)
    away = main.loc[2]
    assert away["away_count"] == 1 and 600 <= away["away_ms"] < 5000
    others = main.drop(index=2)
    assert (others["away_count"] == 0).all() and (others["away_ms"] == 0).all()
    assert (exported["session_away_count"] == 1).all() and (exported["session_away_ms"] == away["away_ms"]).all()
    assert violations == []


def test_admin_page_and_the_stop_button(serve, browser, tmp_path, monkeypatch):
    """The admin token is shown once, at the first start (never in a URL); the admin page asks for it and then
    shows progress and downloads the CSV; a participant who presses "Stop the study" frees the task at once."""
    monkeypatch.delenv("VIZPROBE_ADMIN_TOKEN", raising=False)
    base, db = serve("--platform", "prolific")
    first_log = (tmp_path / "serve0.log").read_text()
    token = (tmp_path / f"{db.name}.admin-token").read_text().strip()
    assert f"(shown only now; kept in {tmp_path / db.name}.admin-token, mode 0600): {token}" in first_log
    assert "token=" not in first_log

    participant = browser.new_context(viewport=VIEWPORT).new_page()
    participant.on("dialog", lambda dialog: dialog.accept())
    participant.goto(f"{base}/?PROLIFIC_PID=stopper")
    _click(participant, "I agree")
    _click(participant, "Stop the study")
    participant.get_by_role("heading", name="You have stopped the study").wait_for()

    admin = browser.new_context(viewport=VIEWPORT, accept_downloads=True).new_page()
    admin.goto(f"{base}/admin")
    admin.get_by_label("Admin token").fill("not-the-token")
    admin.get_by_role("button", name="Show progress").click()
    admin.get_by_text("That token is not this server's admin token.").wait_for()
    admin.get_by_label("Admin token").fill(token)
    admin.get_by_role("button", name="Show progress").click()
    rows = admin.locator("#conditions tr")
    rows.nth(1).wait_for()
    header = rows.nth(0).locator("th").all_inner_texts()
    table = [dict(zip(header, r.locator("td").all_inner_texts(), strict=True)) for r in rows.all()[1:]]
    assert sum(int(r["returned"]) for r in table) == 1 and sum(int(r["running"]) for r in table) == 0
    assert all(int(r["free"]) == int(r["tasks"]) for r in table)
    with admin.expect_download() as download:
        admin.get_by_role("button", name="Download responses.csv").click()
    assert download.value.suggested_filename == "responses.csv"
    assert download.value.path().read_text().startswith("participant_id,")
    admin.reload()  # the token is kept for this tab: no second login
    admin.locator("#conditions tr").nth(1).wait_for()

    _, again = serve("--platform", "prolific", "--db", str(db))
    second_log = (tmp_path / "serve1.log").read_text()
    assert token not in second_log and f"admin token: in {tmp_path / db.name}.admin-token" in second_log


def _nginx_config(tmp_path: Path, port: int, app_port: int, cert: Path, key: Path) -> Path:
    """The project's nginx recipe (deploy/nginx-study.conf) as it is, with this test's port, name and certificate,
    inside a minimal main configuration that keeps every nginx file under `tmp_path`."""
    recipe = (Path(__file__).parents[1] / "deploy" / "nginx-study.conf").read_text()
    server = (
        recipe.replace("listen 443 ssl", f"listen 127.0.0.1:{port} ssl")
        .replace("/etc/letsencrypt/live/study.example.org/fullchain.pem", str(cert))
        .replace("/etc/letsencrypt/live/study.example.org/privkey.pem", str(key))
        .replace("study.example.org", "localhost")
        .replace("127.0.0.1:8000", f"127.0.0.1:{app_port}")
    )
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the temp folder below
    config = tmp_path / "nginx.conf"
    config.write_text(f"""{user}
daemon off;
pid {tmp_path}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
{server}
}}
""")
    return config


def test_a_study_behind_nginx_with_https(serve, browser, postgres_server, tmp_path, monkeypatch):
    """The deployment recipe works as documented: behind nginx with HTTPS, on PostgreSQL, a participant in
    Chromium gets the page and its images, passes consent and instructions and answers a trial; the session
    cookie is Secure (the app sees https through X-Forwarded-Proto); the security headers and the JSON errors
    pass through."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    need_service(Path(nginx).is_file(), "nginx absent: apt-get install nginx-light")
    need_service(shutil.which("openssl") is not None, "openssl absent: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1"]
    subprocess.run(
        [*request, "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("VIZPROBE_ADMIN_TOKEN", "n" * 20)
    database = new_postgres_database(postgres_server)
    app_base, _ = serve(
        "--platform", "prolific", "--practice", "1", "--db", database, "--secret-file", str(tmp_path / "study.key")
    )
    port = free_port()
    config = _nginx_config(tmp_path, port, int(app_base.rsplit(":", 1)[1]), cert, key)
    proc = subprocess.Popen(
        [nginx, "-c", str(config), "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base, trust = f"https://localhost:{port}", ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{base}/api/config", verify=trust, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "nginx did not answer within 30 s"
                time.sleep(0.2)
        assert r.status_code == 200 and "frame-ancestors 'none'" in r.headers["content-security-policy"]
        big = httpx.post(
            f"{base}/api/sessions",
            content=b"{" + b" " * 100_000 + b"}",
            verify=trust,
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["error"] == "too_large"

        context = browser.new_context(viewport=VIEWPORT, ignore_https_errors=True)
        page = context.new_page()
        page.goto(f"{base}/?PROLIFIC_PID=behind-nginx")
        _click(page, "I agree")
        _read_instructions(page)
        _answer(page, 0, 0)
        page.get_by_role("button", name="Continue").wait_for()
        cookie = next(c for c in context.cookies() if c["name"] == "vizprobe_session")
        assert cookie["secure"] and cookie["httpOnly"]
        admin = {"Authorization": f"Bearer {'n' * 20}"}
        progress = httpx.get(f"{base}/api/admin/progress", headers=admin, verify=trust).json()
        assert progress["responses"] == 1
        stored = export_frame(database)
        assert len(stored) == 1 and stored["is_practice"].tolist() == [1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
