"""Machine observers: blind to activations, better than chance on real stimuli, batched; simulate; power; CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import reference_ranks
from scipy.special import expit
from scipy.stats import binomtest

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.observers.answer import answer_package, predict_package, predicted_accuracy
from vizprobe.observers.base import trial_views
from vizprobe.observers.embedding import FeatureEmbedder
from vizprobe.observers.power import closed_form_participants, power_analysis
from vizprobe.observers.similarity import SimilarityObserver
from vizprobe.observers.simulate import simulate
from vizprobe.responses import COLUMN_NAMES, read_responses, validate_responses, write_responses
from vizprobe.stimuli.manifest import MANIFEST, Manifest, dumps

# Drawn once by `sample_units(scan, 16, seed=1)` on a scan of these layers (not chosen for accuracy).
NATURAL_UNITS = [
    "_blocks.2:11",
    "_blocks.5:40",
    "block8:84",
    "_blocks.12:182",
    "_blocks.2:0",
    "_blocks.5:11",
    "block8:92",
    "_blocks.12:181",
    "_blocks.2:6",
    "_blocks.5:25",
    "block8:97",
    "_blocks.12:80",
    "_blocks.2:7",
    "_blocks.5:66",
    "block8:28",
    "_blocks.12:77",
]


@pytest.fixture(scope="module")
def observer():
    return SimilarityObserver(device="cpu")


@pytest.fixture(scope="module")
def natural_package(tmp_path_factory, photo_scan, lite0):
    """16 units x 10 image sets = 160 main trials of real photos (conditions natural and none), fast to build."""
    from vizprobe.stimuli import BuildSettings, build_stimuli

    settings = BuildSettings(
        conditions=("natural", "none"),
        image_sets=10,
        tasks_per_condition=4,
        stride=16,
        search="fast",
        reference_ranks=reference_ranks(len(photo_scan[0].images)),
    )
    out = tmp_path_factory.mktemp("natural") / "pkg"
    build_stimuli(photo_scan[0], NATURAL_UNITS, out, None, settings, model=lite0, progress=False)
    return out


def _scrambled_copy(package: Path, target: Path) -> Path:
    """A copy whose option activations and activation maps are random (the manifest stays schema-valid)."""
    shutil.copytree(package, target)
    manifest = Manifest.load(target).data
    rng = np.random.default_rng(123)
    for trial in manifest["trials"]:
        for option in trial["options"]:
            option["activation"] = float(rng.normal())
        if "activation_map" in trial:
            path = target / trial["activation_map"]
            np.save(path, rng.normal(size=np.load(path).shape).astype(np.float32))
    (target / MANIFEST).write_text(dumps(manifest))
    Manifest.load(target)  # still valid
    return target


def test_observers_never_read_activations(stimulus_package, observer, tmp_path):
    copy = _scrambled_copy(stimulus_package, tmp_path / "scrambled")
    assert any((copy / t.activation_map).exists() for t in Manifest.load(copy).trials.values() if t.activation_map)
    original = predict_package(stimulus_package, observer)
    scrambled = predict_package(copy, SimilarityObserver(device="cpu"))
    assert set(original["condition"]) == {"synthetic", "natural", "mixed", "blur", "none"}
    pd.testing.assert_frame_equal(original, scrambled)
    for name in ("center", "variance", "saliency"):
        pd.testing.assert_frame_equal(predict_package(stimulus_package, name), predict_package(copy, name))


def test_similarity_on_real_photos_and_the_network_it_reads(natural_package, observer, imagenet_files):
    """Needs ImageNet: on the ~150 demo photos (near-duplicate crops of 22 pictures) similarity cannot rank.

    Embedding with the studied network, the observer beats chance on natural occlusion trials: it reads the unit's
    own features. Embedding with an independent network (the default) it does not (measured: 48 % of 160; every
    layer choice of Lite2 tried gave 44-50 %): that is what the observer sees, not a bug to fix here."""
    responses = answer_package(natural_package, observer)
    reader = SimilarityObserver(
        "efficientnet-lite0:_blocks.5,_blocks.8,_blocks.12",
        studied_model="efficientnet-lite0",
        same_as_model=True,
        device="cpu",
    )
    reading = answer_package(natural_package, reader, conditions=["natural"], label="machine:reads-unit")
    random = answer_package(natural_package, "random", conditions=["natural"], kinds=("main",))
    frames = [responses, reading, random]
    table = predicted_accuracy(pd.concat(frames, ignore_index=True)).set_index(["observer", "condition"])
    print(table.to_string())  # the measured accuracies, with -s
    natural, read = table.loc[("similarity", "natural")], table.loc[("machine:reads-unit", "natural")]
    assert natural["n_trials"] == read["n_trials"] == natural["control_n_trials"] == 160
    assert binomtest(int(read["n_correct"]), 160, 0.5, alternative="greater").pvalue < 0.05
    assert read["accuracy"] > natural["accuracy"] and read["accuracy"] > table.loc[("random", "natural"), "accuracy"]
    for row in table.itertuples():
        assert 0 <= row.ci_low < row.accuracy < row.ci_high <= 1
    catch = responses[(responses["is_catch"] == 1) & (responses["control"] == 0)]
    assert catch.groupby("condition").size().to_dict() == {"natural": 3, "none": 3}
    # In `none` a catch trial's minimal option is another picture: the occluded query looks more like the query.
    assert catch.loc[catch["condition"] == "none", "correct"].all()


def test_answers_are_batched_and_match_one_at_a_time(stimulus_package, observer):
    views = trial_views(stimulus_package, "mixed", ("main", "catch"))
    batched = observer.predict(views)
    single = SimilarityObserver(FeatureEmbedder(device="cpu", batch_size=1))
    one_by_one = np.array([single.predict([view])[0] for view in views])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)
    assert ((batched > 0.5) == (one_by_one > 0.5)).all()


def test_answer_package_rows_are_responses(stimulus_package, observer):
    answers = answer_package(stimulus_package, observer, conditions=["natural", "none"])
    manifest = Manifest.load(stimulus_package).data
    n_main = sum(t["kind"] == "main" for t in manifest["trials"])
    responses = answers[answers["control"] == 0]
    assert len(responses) == 2 * (n_main + 3)  # each condition's variant of the 3 catch trials
    assert len(answers) - len(responses) == n_main + 3  # a control of every natural trial (`none` has no references)
    assert responses.groupby("condition")["trial_id"].nunique().to_dict() == {"natural": n_main + 3, "none": n_main + 3}
    assert set(responses["participant_id"]) == {"machine:similarity"}
    assert (responses["expertise"] == "machine").all() and (responses["observer"] == "similarity").all()
    assert set(responses["confidence"]) <= {1, 2, 3}
    assert ((responses["p_right"] > 0.5) == (responses["choice"] == 1)).all()
    validate_responses(answers)


def test_simulate_gives_valid_plausible_participants(stimulus_package, observer):
    responses = simulate(stimulus_package, observer, participants=3, seed=1)
    validate_responses(responses)
    manifest = Manifest.load(stimulus_package).data
    task_length = len(manifest["tasks"][0]["trial_ids"])
    assert len(responses) == 5 * 3 * task_length
    server = ("session_status", "task_assignments", "away_count", "away_ms", "session_away_count", "session_away_ms")
    not_simulated = (*server, "embedder", "control", "control_unit")  # the server's and the observers' columns
    produced = [c for c in COLUMN_NAMES if c not in not_simulated]
    assert list(responses.columns[: len(produced)]) == produced
    per = responses.groupby("participant_id")
    assert per.ngroups == 15 and (per.size() == task_length).all()
    assert (responses["expertise"] == "lay").all() and "observer" not in responses.columns
    first = per.first()
    assert (first["instruction_time_s"] >= 20).mean() >= 0.8
    assert first["total_time_s"].between(90, 900).mean() >= 0.8
    assert (first["practice_attempts"] <= 5).all()
    assert (per["confidence"].nunique() > 1).mean() >= 0.6
    sides = responses.groupby("participant_id")["max_side"].mean()
    assert (sides.between(0.3, 0.7)).all()  # each participant's own balanced sides
    assert (responses["correct"] == (responses["choice"] == responses["max_side"]).astype(int)).all()
    again = simulate(stimulus_package, observer, participants=3, seed=1)
    pd.testing.assert_frame_equal(responses, again)


def test_simulated_participants_mostly_pass_the_exclusion(stimulus_package, observer, imagenet_files):
    """Needs ImageNet (on the demo photos, near-duplicate crops of 22 pictures, similarity cannot rank).
    Attentive simulated participants pass the catch trials but for lapses. When the similarity observer answers
    the catch trials itself, it is no better there than on main trials and some of its participants fail them,
    except in `none`, where the other unit's image gives the answer away; no other criterion removes anyone."""
    from vizprobe.analysis.exclusion import apply_exclusion

    responses = simulate(stimulus_package, observer, participants=3, seed=1)
    catch = responses[responses["is_catch"] == 1]
    assert catch["correct"].mean() > 0.85
    assert len(apply_exclusion(responses).excluded) <= 1
    responses = simulate(stimulus_package, observer, participants=3, seed=1, catch="observer")
    criteria = apply_exclusion(responses).summary()["criteria"]
    assert all(c["excluded"] == 0 for name, c in criteria.items() if name != "catch_accuracy"), criteria
    assert not [p for p in criteria["catch_accuracy"]["participants"] if p.startswith("sim:none:")]


def test_power_agrees_with_closed_form():
    from statsmodels.stats.power import TTestIndPower

    for effect in (0.1, 0.2, -0.1):
        result = power_analysis(effect, baseline_accuracy=0.6, trials=18)
        assert result.closed_form_participants == closed_form_participants(effect, 0.6, 18)
        assert abs(result.participants_per_condition - result.closed_form_participants) <= 3, result
        # statsmodels' t-test power with the binomial sd of a participant's accuracy: the simulated power at the
        # chosen N agrees (measured 0.823/0.826, 0.821/0.841, 0.803/0.793), and so does N
        n, p1, p2 = result.participants_per_condition, 0.6, 0.6 + effect
        d = abs(effect) / np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2 / 18)
        assert abs(result.achieved_power - TTestIndPower().power(d, n, 0.05)) < 0.03, result
        assert abs(n - TTestIndPower().solve_power(d, power=0.8, alpha=0.05)) <= 2  # 20.6, 5.5, 22.4
    assert closed_form_participants(0.1, 0.6, 18) == 20  # (1.96 sqrt(2 .65 .35) + .84 sqrt(.24 + .21))^2 / .01 / 18
    assert power_analysis(0.1, between_sd=0.1).participants_per_condition > 25  # variability costs participants


def test_cli_power_observe_simulate(stimulus_package, tmp_path, capsys):
    assert main(["power", "--effect", "0.1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["participants_per_condition"] >= result["closed_form_participants"] - 3
    assert main(["power", "--effect", "0.1"]) == 0
    assert "participants per condition" in capsys.readouterr().out

    out = tmp_path / "machine.csv"
    code = main(
        ["observe", "--stimuli", str(stimulus_package), "--conditions", "natural", "--device", "cpu", "--out", str(out)]
    )
    assert code == 0 and "natural" in capsys.readouterr().out
    machine = read_responses(out)
    assert set(machine["condition"]) == {"natural"} and (machine["expertise"] == "machine").all()

    out = tmp_path / "simulated.csv"
    code = main(
        [
            "simulate",
            "--stimuli",
            str(stimulus_package),
            "--observer",
            "center",
            "--participants",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and "10 simulated participants" in capsys.readouterr().out
    assert read_responses(out)["participant_id"].nunique() == 10

    assert main(["simulate", "--stimuli", str(stimulus_package), "--observer", "nope", "--out", str(out)]) == 2
    assert "unknown observer" in capsys.readouterr().err


def _responses_from_rule(manifest, observer, temperature, bias, participants, seed=0) -> pd.DataFrame:
    """Human-like responses whose choices follow P(right) = logistic(shown margin / temperature + bias)."""
    rng = np.random.default_rng(seed)
    rows = []
    for condition in manifest.conditions:
        views = trial_views(manifest, condition, ("main",))
        margins = observer.margins(views)
        for k in range(participants):
            sides = rng.integers(0, 2, len(views))
            shown = np.where(sides == np.array([manifest.trials[v.trial_id].correct for v in views]), margins, -margins)
            choice = (rng.random(len(views)) < expit(shown / temperature + bias)).astype(int)
            rows.append(
                pd.DataFrame(
                    {
                        "participant_id": f"p{condition}{k}",
                        "condition": condition,
                        "trial_id": [v.trial_id for v in views],
                        "choice": choice,
                        "max_side": sides,
                        "correct": (choice == sides).astype(int),
                        "expertise": "lay",
                        "is_catch": 0,
                        "is_practice": 0,
                        "shown": shown,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_fit_recovers_a_known_rule(stimulus_package, observer, tmp_path, capsys):
    from sklearn.linear_model import LogisticRegression

    from vizprobe.observers.fit import fit_rule
    from vizprobe.observers.rule import DecisionRule

    manifest = Manifest.load(stimulus_package)
    margins = np.concatenate([observer.margins(trial_views(manifest, c, ("main",))) for c in manifest.conditions])
    temperature, bias = float(np.std(margins)) / 2, 0.4  # choices that depend on the margin, not all one way
    responses = _responses_from_rule(manifest, observer, temperature, bias, participants=40)
    rule, report = fit_rule(manifest, responses, observer)
    low, high = rule.fitted["temperature_ci"]
    assert low <= temperature <= high and rule.fitted["bias_ci"][0] <= bias <= rule.fitted["bias_ci"][1]
    reference = LogisticRegression(C=1e12, tol=1e-10, max_iter=1000)
    reference.fit(responses[["shown"]].to_numpy(), responses["choice"].to_numpy())
    assert 1 / rule.temperature == pytest.approx(reference.coef_[0, 0], rel=1e-3)
    assert rule.bias == pytest.approx(reference.intercept_[0], abs=1e-3)
    for condition, entry in report["fitted"].items():  # held out, the fitted rule explains the choices better
        assert entry["loglik_per_trial"] > report["unfitted"][condition]["loglik_per_trial"] - 0.05, condition
        assert entry["participants"] == 40

    path = tmp_path / "human.csv"
    write_responses(responses.drop(columns="shown"), path)
    code = main(
        [
            "observe",
            "--stimuli",
            str(stimulus_package),
            "--fit",
            str(path),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "rule.json"),
        ]
    )
    assert code == 0 and "held out" in capsys.readouterr().out
    saved = DecisionRule.load(tmp_path / "rule.json")
    assert saved.temperature == pytest.approx(rule.temperature) and saved.embedder == observer.embedder_label
    code = main(
        [
            "observe",
            "--stimuli",
            str(stimulus_package),
            "--rule",
            str(tmp_path / "rule.json"),
            "--conditions",
            "natural",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "ruled.csv"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    code = main(
        [
            "observe",
            "--stimuli",
            str(stimulus_package),
            "--rule",
            str(tmp_path / "rule.json"),
            "--embedder",
            "efficientnet-lite1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "other.csv"),
        ]
    )
    assert code == 2 and "fitted to margins of efficientnet-lite2" in capsys.readouterr().err


def test_fit_refuses_too_few_participants_and_other_packages(stimulus_package, observer, tmp_path):
    from vizprobe.observers.fit import fit_rule

    manifest = Manifest.load(stimulus_package)
    responses = _responses_from_rule(manifest, observer, 0.01, 0.0, participants=1).drop(columns="shown")
    few = responses[responses["condition"].isin(["natural", "none"])]
    with pytest.raises(VizprobeError, match="2 participant.*at least 4"):
        fit_rule(manifest, few, observer)
    other = responses.assign(trial_id="elsewhere-" + responses["trial_id"])
    with pytest.raises(VizprobeError, match="not in the stimulus package"):
        fit_rule(manifest, other, observer)
    with pytest.raises(VizprobeError, match="no human participants"):
        fit_rule(manifest, responses.assign(expertise="machine"), observer)
    out = tmp_path / "rule.json"
    path = write_responses(few, tmp_path / "few.csv")
    assert main(["observe", "--stimuli", str(stimulus_package), "--fit", str(path), "--out", str(out)]) == 2
    assert not out.exists()


def test_observer_answers_carry_embedder_and_controls(stimulus_package, observer):
    responses = answer_package(stimulus_package, observer, conditions=["natural", "none"])
    assert (responses["embedder"] == observer.embedder_label).all()
    assert observer.embedder_label.startswith("efficientnet-lite2:")  # not the package's lite0
    control = responses[responses["control"] == 1]
    assert set(control["condition"]) == {"natural"}  # no references in `none`: nothing to swap
    real = responses[(responses["control"] == 0) & (responses["condition"] == "natural")]
    assert len(control) == len(real)
    assert (control["control_unit"] != control["unit"]).all()
    table = predicted_accuracy(responses).set_index("condition")
    assert table.loc["natural", "n_trials"] == (real["is_catch"] == 0).sum()
    assert table.loc["natural", "control_n_trials"] == (control["is_catch"] == 0).sum()


def test_report_gives_controls_catch_and_embedder_and_flags_readers(stimulus_package, observer, tmp_path):
    from vizprobe.analysis import analyze

    honest = answer_package(stimulus_package, observer, conditions=["natural", "synthetic"])
    reader = SimilarityObserver(
        "efficientnet-lite0:_blocks.5", studied_model="efficientnet-lite0", same_as_model=True, device="cpu"
    )
    reading = answer_package(stimulus_package, reader, conditions=["natural"], label="machine:same-network")
    rigged = honest.copy()  # an observer that is right on every control trial: far from chance, flagged
    rigged.loc[rigged["control"] == 1, "correct"] = 1
    rigged["observer"] = rigged["participant_id"] = "machine:rigged"
    results = analyze(pd.concat([honest, reading, rigged]), tmp_path / "report", stimulus_package, baselines=[])
    entry = results["observers"]["similarity [natural]"]
    control = honest[(honest["control"] == 1) & (honest["condition"] == "natural") & (honest["is_catch"] == 0)]
    assert entry["control"]["n"] == len(control)
    assert entry["control"]["accuracy"] == pytest.approx(control["correct"].mean())
    assert entry["control"]["ci_low"] - 1e-9 <= entry["control"]["accuracy"] <= entry["control"]["ci_high"] + 1e-9
    catch = honest[(honest["is_catch"] == 1) & (honest["control"] == 0) & (honest["condition"] == "natural")]
    assert entry["catch"]["n"] == len(catch) and entry["catch"]["accuracy"] == pytest.approx(catch["correct"].mean())
    assert entry["embedder"] == observer.embedder_label and entry["reads_unit"] is False
    assert entry["n_trials"] == len(
        honest[(honest["control"] == 0) & (honest["condition"] == "natural") & (honest["is_catch"] == 0)]
    )
    assert results["observers"]["machine:same-network"]["reads_unit"] is True
    assert results["observers"]["machine:rigged [natural]"]["control"]["far_from_chance"] is True
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Reads the unit" in html and "machine:same-network" in html and " !" in html


def test_occlusion_task_scores_per_unit_and_condition(stimulus_package, observer, tmp_path):
    """`score --task occlusion`: per unit and condition the mean probability of the right answer over main trials,
    recomputed here from the observer's answers to each trial as shown in stored order."""
    from vizprobe.score.api import score

    frame, record = score("occlusion", stimuli=stimulus_package, embedder=observer.embedder, out=tmp_path / "s")
    manifest = Manifest.load(stimulus_package)
    for condition in ("natural", "none"):
        views = trial_views(manifest, condition, ("main",))
        p_right = observer.predict(views)
        right = np.array([manifest.trials[v.trial_id].correct for v in views])
        p_correct = np.where(right == 1, p_right, 1 - p_right)
        for unit in {v.unit for v in views}:
            mine = np.array([v.unit == unit for v in views])
            row = frame[(frame["unit"] == unit) & (frame["condition"] == condition)].iloc[0]
            assert row["score"] == pytest.approx(p_correct[mine].mean(), abs=1e-9)
            assert row["tasks"] == mine.sum() and row["ci_low"] <= row["score"] <= row["ci_high"]
    assert record["embedder"]["model"] == "efficientnet-lite2" and record["model"] == "efficientnet-lite0"
    assert (tmp_path / "s" / "scores.csv").is_file() and (tmp_path / "s" / "scores.json").is_file()
