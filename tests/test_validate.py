"""`vizprobe validate`: the machine score against people's per-unit accuracy, on simulated people whose decision rule
is known; the statistics against scipy and a naive loop; bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.observers.colour import ColourEmbedder
from vizprobe.observers.embedding import FeatureEmbedder, choose_embedder
from vizprobe.score.simulate import simulate_exemplar
from vizprobe.score.validate import noise_ceiling, spearman_rows, validate

# 8 units of each scanned depth: easy and hard units for people and machines alike
UNITS = [
    f"{layer}:{c}"
    for layer in ("_blocks.2", "_blocks.4", "_blocks.5", "_blocks.8", "_blocks.12")
    for c in range(0, 16, 2)
]


@pytest.fixture(scope="module")
def embedder():
    return FeatureEmbedder(choose_embedder("efficientnet-lite0"), device="cpu")


@pytest.fixture(scope="module")
def scored(photo_scan, embedder, tmp_path_factory):
    """The units' scores (with the colour baseline), as a scores folder."""
    from vizprobe.score.api import score

    out = tmp_path_factory.mktemp("validate") / "scores"
    frame, _ = score("exemplar", scan=photo_scan[0], units=UNITS, out=out, embedder=embedder, progress=False)
    return out, frame


def people(photo_scan, embedder, **options) -> pd.DataFrame:
    options = {"participants": 16, "tasks": 10, "noise": 1.0, "lapse": 0.05, "seed": 3} | options
    return simulate_exemplar(photo_scan[0], UNITS, embedder, **options)


def test_spearman_rows_equals_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 30)), rng.normal(size=(5, 30))
    x[0, :10] = 1.0  # ties
    expected = [spearmanr(a, b).statistic for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(spearman_rows(x, y), expected, atol=1e-12)


def test_noise_ceiling_equals_a_loop_over_splits():
    """The split-half correlation, Spearman-Brown corrected, recomputed split by split with pandas and scipy from
    the same random halves."""
    rng = np.random.default_rng(4)
    truth = rng.uniform(0.5, 1.0, 12)
    rows = [
        {"unit": f"u{u}", "participant_id": f"p{p}", "correct": int(rng.random() < truth[u])}
        for p in range(9)
        for u in range(12)
        for _ in range(6)
    ]
    frame = pd.DataFrame(rows)
    found = noise_ceiling(frame, splits=25, seed=2, level=0.95)
    people = np.unique(frame["participant_id"])
    draw = np.random.default_rng([2, 12])
    corrected = []
    for _ in range(25):
        first = set(people[draw.permutation(len(people))[: len(people) // 2]])
        half = frame["participant_id"].isin(first)
        a = frame[half].groupby("unit")["correct"].mean()
        b = frame[~half].groupby("unit")["correct"].mean()
        r = spearmanr(a, b.loc[a.index]).statistic
        corrected.append(2 * r / (1 + r))
    assert found["spearman_brown"] == pytest.approx(np.mean(corrected), abs=1e-12)
    assert found["participants"] == 9 and found["splits"] == 25


def test_people_who_see_colour_rank_the_colour_baseline_first(photo_scan, embedder, scored):
    """People simulated from the colour-statistics observer: the validation ranks the colour baseline above the
    embedder's score; people simulated from the embedder (with noise): the other way round."""
    folder, frame = scored
    colour_people = people(photo_scan, ColourEmbedder(), temperature=0.5)
    by_colour = validate(colour_people, folder, resamples=500, splits=50)
    network_people = people(photo_scan, embedder, temperature=0.05)
    by_network = validate(network_people, folder, resamples=500, splits=50)
    for name, found in (("colour people", by_colour), ("network people", by_network)):
        print(name, {k: found[k] for k in ("machine", "colour", "machine_minus_colour", "noise_ceiling")})
    assert by_colour["units"] == by_network["units"] == len(UNITS)
    assert by_colour["colour"]["spearman"] > by_colour["machine"]["spearman"]
    assert by_colour["machine_minus_colour"]["ci_high"] < 0
    assert by_network["machine"]["spearman"] > by_network["colour"]["spearman"]
    assert by_network["machine_minus_colour"]["ci_low"] > 0
    for found in (by_colour, by_network):
        assert 0.5 < found["noise_ceiling"]["spearman_brown"] <= 1.0
        # by hand: the machine's Spearman over units with people's accuracy
    accuracy = network_people.groupby("unit")["correct"].mean()
    expected = spearmanr(frame.set_index("unit").loc[accuracy.index, "score"], accuracy).statistic
    assert by_network["machine"]["spearman"] == pytest.approx(expected, abs=1e-12)


def test_cli_simulate_and_validate_write_the_validation(photo_scan, scored, tmp_path, capsys):
    folder, _ = scored
    run = str(photo_scan[0].run_dir)
    responses = tmp_path / "people.csv"
    units = ",".join(UNITS)
    arguments = ["-q", "simulate", "--task", "exemplar", "--scan", run, "--units", units, "--embedder"]
    code = main([*arguments, "colour-statistics", "--participants", "6", "--tasks", "4", "--out", str(responses)])
    assert code == 0, capsys.readouterr().err
    assert "6 simulated people deciding by colour-statistics" in capsys.readouterr().out
    out = tmp_path / "validation"
    code = main(["validate", "--responses", str(responses), "--scores", str(folder), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "noise ceiling" in printed and "machine-colour" in printed
    result = json.loads((out / "validation.json").read_text())
    assert result["units"] == len(UNITS) and result["participants"] == 6 and result["answers"] == 6 * 4 * len(UNITS)
    assert result["calibration"]["calibrated"] is False
    units = pd.read_csv(out / "units.csv")
    assert set(units["unit"]) == set(UNITS) and (units["participants"] == 6).all()
    assert (out / "validation.png").stat().st_size > 10_000

    # a calibration study in one line: units spread over the scores' range
    from vizprobe.score.select import stratified_units
    from vizprobe.stimuli.manifest import Manifest

    package = tmp_path / "calibration"
    build = ["-q", "build", "--task", "exemplar", "--scan", run, "--units-by-score", str(folder), "--stratify", "6"]
    code = main([*build, "--image-sets", "3", "--practice-units", "4", "--device", "cpu", "--out", str(package)])
    assert code == 0, capsys.readouterr().err
    chosen = [u.unit for u in Manifest.load(package).units_of("main")]
    assert chosen == stratified_units(pd.read_csv(folder / "scores.csv"), 6)


def test_bad_input_is_one_line_and_writes_nothing(photo_scan, scored, tmp_path):
    folder, _ = scored
    answers = people(photo_scan, ColourEmbedder(), participants=3, tasks=2)
    elsewhere = answers.assign(unit=answers["unit"].str.replace("_blocks", "other", regex=False))
    with pytest.raises(VizprobeError, match="no units in common"):
        validate(elsewhere, folder, out=tmp_path / "a")
    alone = answers[answers["participant_id"] == "sim-000"]
    with pytest.raises(VizprobeError, match="fewer than 2 participants"):
        validate(alone, folder, out=tmp_path / "b")
    with pytest.raises(VizprobeError, match="not a scores folder"):
        validate(answers, tmp_path, out=tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_answers_to_another_package_are_refused(stimulus_package, scored, photo_scan, tmp_path):
    """Scores of a stimulus package (occlusion task) validated with answers whose trials are not in it."""
    folder, frame = scored
    other = tmp_path / "package-scores"
    other.mkdir()
    frame.to_csv(other / "scores.csv", index=False)
    record = json.loads((folder / "scores.json").read_text()) | {"task": "occlusion", "stimuli": str(stimulus_package)}
    (other / "scores.json").write_text(json.dumps(record))
    answers = people(photo_scan, ColourEmbedder(), participants=3, tasks=2)
    with pytest.raises(VizprobeError, match="not in the scored package"):
        validate(answers, other, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_stratified_units_span_the_score_range():
    from vizprobe.score.select import stratified_units

    scores = pd.DataFrame({"unit": [f"L:{k}" for k in range(100)], "score": np.linspace(1, 0, 100)})
    chosen = stratified_units(scores, 40, seed=1)
    assert len(chosen) == len(set(chosen)) == 40
    assert chosen[:13] == [f"L:{k}" for k in range(13)]  # the 13 highest
    assert chosen[-13:] == [f"L:{k}" for k in range(87, 100)]  # the 13 lowest
    middle = [int(u.split(":")[1]) for u in chosen[13:-13]]
    assert all(13 <= k < 87 for k in middle) and middle == sorted(middle)
    assert stratified_units(scores, 40, seed=1) == chosen and stratified_units(scores, 40, seed=2) != chosen
    with pytest.raises(VizprobeError, match="hold 100 units"):
        stratified_units(scores, 101)
