"""The exemplar task end to end: the package drawn as IMI draws it (checked against the scan's rankings by hand),
its catch trials, the server, a real browser participant, the export and the per-unit analysis, the observers'
answers against a hand computation, a rule fitted to simulated people whose rule is known, the calibrated score
and its validation on held-out units."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vizprobe.errors import VizprobeError
from vizprobe.stimuli import BuildSettings
from vizprobe.stimuli.manifest import Manifest
from vizprobe.tasks.exemplar import build_exemplar_stimuli, exemplar_design

LAYER = "_blocks.12"
UNITS = [f"{LAYER}:{c}" for c in range(0, 96, 8)]  # 12 main units
SETS = 4  # trials per unit: references from the top 36 of each side, queries at ranks 37-40
SETTINGS = BuildSettings(
    conditions=("natural", "none"), image_sets=SETS, tasks_per_condition=4, catch_units=2, practice_units=4
)


@pytest.fixture(scope="module")
def package(photo_scan, lite0, tmp_path_factory) -> Manifest:
    out = tmp_path_factory.mktemp("exemplar") / "pkg"
    started = time.perf_counter()
    manifest = build_exemplar_stimuli(photo_scan[0], UNITS, out, settings=SETTINGS, model=lite0, progress=False)
    print(f"built in {time.perf_counter() - started:.1f} s")
    return manifest


def _index(rel: str) -> int:
    return int(Path(rel).stem)  # photos/NNNNNNN.png: the scan's image index


def test_the_design_is_imi_s_fair_batches(package, photo_scan):
    """Every trial of a unit: one reference from each bin of 4 consecutive ranks (the most extreme bin's shown
    first), none repeated within the unit, the queries at ranks 37-40 each used once, the options' activations and
    the answer key as the scan has them; the same on the weak side."""
    scan = photo_scan[0]
    assert package.task == "exemplar"
    assert package.settings["exemplar_design"]["references"] == [1, 36]
    assert package.settings["exemplar_design"]["queries"] == [37, 40]
    for unit in UNITS[:4]:
        ranks = {
            "max": {e.index: e.rank for e in scan.top(unit, 40)},
            "min": {e.index: e.rank for e in scan.bottom(unit, 40)},
        }
        trials = [t for t in package.trials.values() if t.unit == unit and t.kind == "main"]
        assert len(trials) == SETS
        for side, refs_of in (
            ("max", lambda t: t.references["natural"]),
            ("min", lambda t: t.min_references["natural"]),
        ):
            seen = []
            for trial in trials:
                shown = [ranks[side][_index(r)] for r in refs_of(trial)]
                assert sorted((r - 1) // SETS for r in shown) == list(range(9)), shown  # one per bin
                assert (shown[0] - 1) // SETS == 0  # the most extreme bin first
                seen += shown
            assert sorted(seen) == list(range(1, 37))  # every reference rank once
        queries = {"max": [], "min": []}
        for trial in trials:
            best, worst = trial.options[trial.correct], trial.options[1 - trial.correct]
            queries["max"].append(ranks["max"][_index(best.image)])
            queries["min"].append(ranks["min"][_index(worst.image)])
            assert best.activation > worst.activation and best.patch is None
            assert best.activation == pytest.approx(scan.unit_activations(scan.resolve_unit(unit))[_index(best.image)])
            assert trial.references["none"] == () and trial.min_references["none"] == ()
        assert sorted(queries["max"]) == sorted(queries["min"]) == [37, 38, 39, 40]
    assert 0 < np.mean([t.correct for t in package.trials.values()]) < 1


def test_catch_and_practice_units_and_tasks(package):
    """Catch trials show their queries among their own references (easy by construction, large gaps); catch and
    practice units are no main units; each task of a condition holds one trial of every main unit and the catch
    trials (none in `none`, where there are no references to make them easy)."""
    catch = package.trials_of(["catch"])
    assert len(catch) == 2 and len(package.practice_ids) == 4
    for trial in catch:
        best, worst = trial.options[trial.correct], trial.options[1 - trial.correct]
        assert best.image in trial.references["natural"] and worst.image in trial.min_references["natural"]
        assert package.trial_gap(trial) > 1.0
        assert "none" not in trial.references
    roles = {u.unit: u.role for u in package.units.values()}
    assert {roles[u] for u in UNITS} == {"main"} and list(roles.values()).count("practice") == 4
    gaps = [package.trial_gap(t) for t in package.practice_trials()]
    assert gaps == sorted(gaps, reverse=True)  # the most obvious first
    for task in package.tasks.values():
        trials = package.task_trials(task.task_id)
        assert sorted(t.unit for t in trials if t.kind == "main") == sorted(UNITS)
        assert sum(t.kind == "catch" for t in trials) == (0 if task.condition == "none" else 2)
    assert Manifest.load(package.package, check_images=True).task == "exemplar"


def test_the_design_says_how_many_images_it_needs(photo_scan, tmp_path):
    # IMI's quantile queries: ascending indices [ceil(N q) - B, ceil(N q)), i.e. ranks 101-105 from the top
    assert exemplar_design(1000, BuildSettings(image_sets=5, query_quantile=0.9))["queries"] == [101, 105]
    assert exemplar_design(1000, BuildSettings(image_sets=20))["queries"] == [181, 200]  # IMI's start_min 180
    with pytest.raises(VizprobeError, match="needs 2000 distinct images of each unit; the scan has 1000"):
        exemplar_design(1000, BuildSettings(image_sets=100))
    with pytest.raises(VizprobeError, match="must lie past the references"):
        exemplar_design(1000, BuildSettings(image_sets=10, query_quantile=0.95))
    with pytest.raises(VizprobeError, match="has no condition 'blur'"):
        build_exemplar_stimuli(photo_scan[0], UNITS[:1], tmp_path / "x", settings=BuildSettings(conditions=("blur",)))
    assert not (tmp_path / "x").exists()


def test_the_server_serves_both_reference_groups_and_exports_per_unit(package, tmp_path):
    from vizprobe.analysis import analyze
    from vizprobe.experiment.app import create_app
    from vizprobe.experiment.export import export_frame

    db = tmp_path / "study.db"
    app = create_app(package.package, f"sqlite:///{db}", secret_file=tmp_path / "secret", static_dir=tmp_path / "s")
    client = TestClient(app)
    try:
        assert client.get("/api/config").json()["task"] == "exemplar"
        for worker in range(4):
            r = client.post("/api/sessions", json={"platform_ids": {"PROLIFIC_PID": f"w{worker}"}})
            state = r.json()
            sid = state["session_id"]
            client.post(f"/api/sessions/{sid}/events", json={"event": "consent"})
            client.post(f"/api/sessions/{sid}/events", json={"event": "instructions", "duration_s": 120.0})
            for t in state["practice"]:
                assert len(t["min_references"]) == len(t["references"]) == (9 if state["condition"] != "none" else 0)
                body = {"phase": "practice", "trial_index": t["index"], "attempt": 1, "choice": t["correct"]}
                client.post(f"/api/sessions/{sid}/responses", json=body | {"confidence": 3, "rt_ms": 900})
            for t in state["trials"]:
                assert t["query"] == "" and len(t["options"]) == 2
                if state["condition"] == "natural":
                    assert len(t["references"]) == len(t["min_references"]) == 9
                body = {"phase": "main", "trial_index": t["index"], "attempt": 0, "choice": t["index"] % 2}
                r = client.post(f"/api/sessions/{sid}/responses", json=body | {"confidence": 2, "rt_ms": 1500})
                assert r.status_code == 200, r.text
            client.post(f"/api/sessions/{sid}/complete", json={"total_time_s": 300.0, "debrief": {}})
    finally:
        app.state.db.dispose()
    frame = export_frame(str(db))
    main = frame[(frame["is_practice"] == 0) & (frame["is_catch"] == 0)]
    assert len(main) == 4 * len(UNITS) and set(main["unit"]) == set(UNITS)
    from vizprobe.protocol import get_protocol

    keep_all = get_protocol("borowski2021").exclusion  # the answers above are arbitrary, catch trials included
    results = analyze(frame, tmp_path / "report", stimuli=package.package, criteria=keep_all)
    by_unit = results["accuracy_by_unit"]
    assert set().union(*(set(v) for v in by_unit.values())) == set(UNITS)


def test_observers_fit_score_and_validate_on_simulated_people(package, photo_scan, tmp_path):
    """The similarity observer's margin on a trial is MIS's (delta of the lower query - delta of the upper one),
    recomputed here from the embeddings; people simulated from it with a known temperature: the rule fitted to
    half the units' answers recovers it, the score with that rule is calibrated, and the validation on the other
    half's units correlates."""
    from vizprobe.observers.embedding import FeatureEmbedder, choose_embedder
    from vizprobe.observers.fit import fit_rule
    from vizprobe.observers.rule import DecisionRule
    from vizprobe.observers.similarity import SimilarityObserver
    from vizprobe.observers.simulate import simulate
    from vizprobe.score.api import score
    from vizprobe.score.validate import validate

    embedder = FeatureEmbedder(choose_embedder("efficientnet-lite0"), device="cpu")
    truth = DecisionRule(0.05, 0.2, embedder.label)
    observer = SimilarityObserver(embedder, studied_model="efficientnet-lite0", rule=truth)
    from vizprobe.observers.base import trial_views

    views = trial_views(package, "natural")
    margins = observer.margins(views)
    view = views[0]
    vector = {p: embedder.embed([p])[0] for p in (*view.references, *view.min_references, *view.options)}

    def delta(option):
        strong = np.mean([vector[option] @ vector[r] for r in view.references])
        return strong - np.mean([vector[option] @ vector[r] for r in view.min_references])

    assert margins[0] == pytest.approx(delta(view.options[1]) - delta(view.options[0]), abs=1e-5)
    correct = np.array([package.trials[v.trial_id].correct for v in views])
    assert np.mean((margins > 0) == (correct == 1)) > 0.6  # the embedder tells most units' queries apart

    people = simulate(package, observer, conditions=["natural"], participants=40, noise=0.0, lapse=0.0, seed=2)
    people = people.assign(expertise="lay")
    half = UNITS[: len(UNITS) // 2]
    fitting = people[people["unit"].isin(half) | (people["is_catch"] == 1)]
    fitted, _ = fit_rule(package, fitting, SimilarityObserver(embedder, studied_model="efficientnet-lite0"))
    print("fitted", fitted.temperature, fitted.bias, fitted.fitted["temperature_ci"])
    low, high = fitted.fitted["temperature_ci"]
    assert low <= 0.05 <= high and fitted.fitted["task"] == "exemplar"
    rule_file = fitted.save(tmp_path / "rule.json")

    scores, record = score(
        "exemplar", scan=photo_scan[0], units=UNITS, out=tmp_path / "scores", embedder=embedder, rule=rule_file
    )
    assert record["calibration"]["calibrated"] is True and record["calibration"]["temperature"] == fitted.temperature
    assert set(record["calibration"]["fitted"]["units"]) >= set(half)
    found = validate(people, tmp_path / "scores", resamples=300, splits=40)
    assert found["units"] == len(UNITS) - len(half) and found["units_fitted_left_out"] >= len(half)
    print({k: found[k] for k in ("machine", "colour", "noise_ceiling")})
    with pytest.raises(VizprobeError, match="needs one fitted to exemplar-task answers"):
        score(
            "exemplar",
            scan=photo_scan[0],
            units=UNITS[:2],
            embedder=embedder,
            rule=DecisionRule(0.05, 0.0, None, {"task": "occlusion", "x": 1}),
        )


def test_cli_builds_an_exemplar_package(photo_scan, tmp_path, capsys):
    from vizprobe.cli import main

    out = tmp_path / "cli-pkg"
    arguments = [
        "-q",
        "build",
        "--task",
        "exemplar",
        "--scan",
        str(photo_scan[0].run_dir),
        "--units",
        ",".join(UNITS[:3]),
        "--image-sets",
        "3",
    ]
    code = main([*arguments, "--practice-units", "4", "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "exemplar-task package" in printed and "conditions natural, none" in printed
    manifest = Manifest.load(out)
    assert manifest.task == "exemplar" and set(manifest.conditions) == {"none", "natural"}
    assert main(["inspect", str(out)]) == 0 and "catch trials: gap" in capsys.readouterr().out
    with Image.open(out / "inspect" / "trial_natural.png") as picture:
        assert picture.width > 800  # Left Examples, the queries, Right Examples
    code = main([*arguments, "--conditions", "natural,synthetic", "--out", str(tmp_path / "syn")])
    assert code == 2 and "needs --visualizations VIS_DIR" in capsys.readouterr().err
    assert not (tmp_path / "syn").exists()


@pytest.mark.slow
def test_a_participant_takes_the_exemplar_task_in_chromium(package, tmp_path):
    """A real browser: consent, IMI's 15 instruction pages illustrated with the package's example, the fullscreen
    prompt, a practice round with feedback, every main trial (upper and lower queries between the Left and Right
    Examples, answered by mouse and keyboard), the completion code; the export holds exactly those answers."""
    from conftest import free_port
    from test_browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, _click, _continue, _read_instructions

    from vizprobe.experiment.app import STATIC_DIR
    from vizprobe.experiment.export import export_frame

    if not (CHROMIUM.is_file() and (STATIC_DIR / "index.html").is_file()):
        from conftest import need_service

        need_service(False, "Chromium and the built front end (make frontend) are needed")
    import subprocess
    import sys

    import httpx
    from playwright.sync_api import sync_playwright

    port, db = free_port(), tmp_path / "exemplar.db"
    command = [sys.executable, "-c", "import sys; from vizprobe.cli import main; sys.exit(main())", "serve"]
    command += ["--stimuli", str(package.package), "--db", str(db), "--port", str(port), "--practice", "4"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/api/config", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/?PROLIFIC_PID=exemplar-worker&STUDY_ID=s&SESSION_ID=x")
            _click(page, "I agree")
            pages = _read_instructions(page)
            state = page.evaluate("window.vizprobe.state")
            condition = state["condition"]
            assert len(pages) == (15 if condition != "none" else 9), pages
            assert "Right Examples" in pages[4] or condition == "none"
            for t in state["practice"]:
                trial = page.locator(f'.vp-trial[data-index="{t["index"]}"]')
                trial.locator(".vp-conf:not([disabled])").first.wait_for()
                if condition != "none":
                    assert (
                        page.locator(".vp-ex-left .vp-ref").count() == page.locator(".vp-ex-right .vp-ref").count() == 9
                    )
                trial.locator(f'.vp-conf[data-choice="{t["correct"]}"][data-confidence="3"]').click()
                page.get_by_role("heading", name="Correct!").wait_for()
                assert "belongs to the Right Examples" in page.inner_text("body")
                _click(page, "Continue")
            page.get_by_role("heading", name="The main part").wait_for()
            _click(page, "Continue")
            expected = {}
            for t in state["trials"]:
                trial = page.locator(f'.vp-trial[data-index="{t["index"]}"]')
                trial.locator(".vp-conf:not([disabled])").first.wait_for()
                shown = [page.locator(".vp-ex-query img").nth(k).get_attribute("src") for k in (0, 1)]
                assert shown == t["options"]
                if t["index"] == 0:  # upper above lower, both inside the 1280 x 800 window
                    upper, lower = (page.locator(".vp-ex-query img").nth(k).bounding_box() for k in (0, 1))
                    assert upper["y"] + upper["height"] <= lower["y"] and lower["y"] + lower["height"] <= 800
                    page.screenshot(path=str(tmp_path / "exemplar-trial.png"))
                choice, confidence = t["index"] % 2, 1 + t["index"] % 3
                expected[t["trial_id"]] = (choice, confidence)
                if t["index"] % 2:
                    page.keyboard.press(str(3 * choice + confidence))
                else:
                    trial.locator(f'.vp-conf[data-choice="{choice}"][data-confidence="{confidence}"]').click()
                _continue(trial)
            _click(page, "Finish")
            _click(page, "Continue")  # the authors' last page before the data are sent
            page.locator("#vp-completion-code").wait_for()
            assert not errors, errors
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    frame = export_frame(str(db))
    main = frame[frame["is_practice"] == 0]
    answered = dict(zip(main["trial_id"], zip(main["choice"], main["confidence"], strict=True), strict=True))
    assert answered == expected
    assert set(main.loc[main["is_catch"] == 0, "unit"]) == set(UNITS)
