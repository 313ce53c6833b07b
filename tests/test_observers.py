"""Machine observers: blind to activations, better than chance on real stimuli, batched; simulate; power; CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import reference_ranks
from scipy.stats import binomtest

from vizprobe.cli import main
from vizprobe.observers.answer import answer_package, predict_package, predicted_accuracy
from vizprobe.observers.base import trial_views
from vizprobe.observers.embedding import FeatureEmbedder
from vizprobe.observers.power import closed_form_participants, power_analysis
from vizprobe.observers.similarity import SimilarityObserver
from vizprobe.observers.simulate import simulate
from vizprobe.responses import COLUMN_NAMES, read_responses, validate_responses
from vizprobe.stimuli.manifest import MANIFEST, Manifest, dumps

# Drawn once by `sample_units(scan, 16, seed=1)` on a scan of these layers (not chosen for accuracy).
NATURAL_UNITS = ["_blocks.2:11", "_blocks.5:40", "block8:84", "_blocks.12:182", "_blocks.2:0", "_blocks.5:11",
                 "block8:92", "_blocks.12:181", "_blocks.2:6", "_blocks.5:25", "block8:97", "_blocks.12:80",
                 "_blocks.2:7", "_blocks.5:66", "block8:28", "_blocks.12:77"]  # fmt: skip


@pytest.fixture(scope="module")
def observer():
    return SimilarityObserver(device="cpu")


@pytest.fixture(scope="module")
def natural_package(tmp_path_factory, photo_scan, lite0):
    """16 units x 10 image sets = 160 main trials of real photos (conditions natural and none), fast to build."""
    from vizprobe.stimuli import BuildSettings, build_stimuli

    settings = BuildSettings(conditions=("natural", "none"), image_sets=10, tasks_per_condition=4, stride=16,
                             search="fast", reference_ranks=reference_ranks(len(photo_scan[0].images)))  # fmt: skip
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


def test_similarity_beats_random_on_real_photos(natural_package, observer, imagenet_files):
    """Needs ImageNet: on the ~150 demo photos (near-duplicate crops of 22 pictures) similarity cannot rank."""
    responses = answer_package(natural_package, observer)
    random = answer_package(natural_package, "random", conditions=["natural"], kinds=("main",))
    table = predicted_accuracy(pd.concat([responses, random], ignore_index=True)).set_index(["observer", "condition"])
    print(table.to_string())  # the measured accuracies, with -s
    natural = table.loc[("similarity", "natural")]
    assert natural["n_trials"] == 160
    assert binomtest(int(natural["n_correct"]), 160, 0.5, alternative="greater").pvalue < 0.05
    assert natural["accuracy"] > table.loc[("random", "natural"), "accuracy"]
    for row in table.itertuples():
        assert 0 <= row.ci_low < row.accuracy < row.ci_high <= 1
    catch = responses[responses["is_catch"] == 1]
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
    responses = answer_package(stimulus_package, observer, conditions=["natural", "none"])
    manifest = Manifest.load(stimulus_package).data
    n_main = sum(t["kind"] == "main" for t in manifest["trials"])
    assert len(responses) == 2 * (n_main + 3)  # each condition's variant of the 3 catch trials
    assert responses.groupby("condition")["trial_id"].nunique().to_dict() == {"natural": n_main + 3, "none": n_main + 3}
    assert set(responses["participant_id"]) == {"machine:similarity"}
    assert (responses["expertise"] == "machine").all() and (responses["observer"] == "similarity").all()
    assert set(responses["confidence"]) <= {1, 2, 3}
    assert ((responses["p_right"] > 0.5) == (responses["choice"] == 1)).all()
    validate_responses(responses)


def test_simulate_gives_valid_plausible_participants(stimulus_package, observer):
    responses = simulate(stimulus_package, observer, participants=3, seed=1)
    validate_responses(responses)
    manifest = Manifest.load(stimulus_package).data
    task_length = len(manifest["tasks"][0]["trial_ids"])
    assert len(responses) == 5 * 3 * task_length
    produced = [c for c in COLUMN_NAMES if c != "session_status"]  # a server's column: simulations have no sessions
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
    for effect in (0.1, 0.2, -0.1):
        result = power_analysis(effect, baseline_accuracy=0.6, trials=18)
        assert result.closed_form_participants == closed_form_participants(effect, 0.6, 18)
        assert abs(result.participants_per_condition - result.closed_form_participants) <= 3, result
        assert result.achieved_power >= 0.8
    assert closed_form_participants(0.1, 0.6, 18) == 20  # (1.96 sqrt(2 .65 .35) + .84 sqrt(.24 + .21))^2 / .01 / 18
    assert power_analysis(0.1, between_sd=0.1).participants_per_condition > 25  # variability costs participants


def test_cli_power_observe_simulate(stimulus_package, tmp_path, capsys):
    assert main(["power", "--effect", "0.1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["participants_per_condition"] >= result["closed_form_participants"] - 3
    assert main(["power", "--effect", "0.1"]) == 0
    assert "participants per condition" in capsys.readouterr().out

    out = tmp_path / "machine.csv"
    code = main(["observe", "--stimuli", str(stimulus_package), "--conditions", "natural", "--device", "cpu",
                 "--out", str(out)])  # fmt: skip
    assert code == 0 and "natural" in capsys.readouterr().out
    machine = read_responses(out)
    assert set(machine["condition"]) == {"natural"} and (machine["expertise"] == "machine").all()

    out = tmp_path / "simulated.csv"
    code = main(["simulate", "--stimuli", str(stimulus_package), "--observer", "center", "--participants", "2",
                 "--out", str(out)])  # fmt: skip
    assert code == 0 and "10 simulated participants" in capsys.readouterr().out
    assert read_responses(out)["participant_id"].nunique() == 10

    assert main(["simulate", "--stimuli", str(stimulus_package), "--observer", "nope", "--out", str(out)]) == 2
    assert "unknown observer" in capsys.readouterr().err
