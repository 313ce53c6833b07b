"""The exemplar-task score (MIS) and the embedder's independence: hand computations, sanity checks, bad input, CLI."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.special import expit

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.observers.embedding import FeatureEmbedder, choose_embedder
from vizprobe.score.exemplar import ScoreSettings, draw_tasks, exemplar_scores, task_probabilities

LAYER = "_blocks.12"


@pytest.fixture(scope="module")
def embedder():
    return FeatureEmbedder(choose_embedder("efficientnet-lite0"), device="cpu")


@pytest.fixture(scope="module")
def scored(photo_scan, embedder):
    scan = photo_scan[0]
    units = [f"{LAYER}:{c}" for c in range(0, 192, 12)]  # 16 units of one layer
    frame, details = exemplar_scores(scan, units, embedder, ScoreSettings(), progress=False)
    return scan, units, frame, details


def test_scores_match_a_loop_over_tasks(scored, embedder):
    """Each unit's score is the mean over its tasks of logistic((delta+ - delta-) / T), recomputed here image by
    image from the embeddings with the same draw of references and queries."""
    scan, units, frame, _ = scored
    settings = ScoreSettings()
    size = min(settings.pool, scan.rank_limit)
    for row, unit in list(enumerate(units))[:3]:
        top = [e.index for e in scan.top(unit, size)]
        bottom = [e.index for e in scan.bottom(unit, size)]
        # each unit draws from its own generator (the seed and its name): top's keys, then bottom's
        rng = np.random.default_rng([settings.seed, zlib.crc32(unit.encode())])
        keys_top = rng.random((settings.tasks, size))
        keys_bottom = rng.random((settings.tasks, size))
        probabilities = []
        for n in range(settings.tasks):
            picked = {}
            for side, keys, pool in (("top", keys_top, top), ("bottom", keys_bottom, bottom)):
                positions = sorted(np.argsort(keys[n])[: settings.references + 1])
                picked[side] = [pool[i] for i in positions]
            vectors = {i: embedder.embed([scan.image_path(i)], whole=False)[0] for s in picked.values() for i in s}

            def s(query, refs, vectors=vectors):
                return np.mean([float(vectors[query] @ vectors[r]) for r in refs])

            e_plus, q_plus = picked["top"][:-1], picked["top"][-1]
            e_minus, q_minus = picked["bottom"][:-1], picked["bottom"][-1]
            delta = (s(q_plus, e_plus) - s(q_plus, e_minus)) - (s(q_minus, e_plus) - s(q_minus, e_minus))
            probabilities.append(expit(delta / settings.exemplar_temperature))
        assert frame.loc[row, "score"] == pytest.approx(np.mean(probabilities), abs=1e-4)


def test_scores_are_probabilities_with_intervals_and_controls(scored):
    _, units, frame, details = scored
    assert list(frame["unit"]) == units and (frame["tasks"] == 20).all()
    assert frame["score"].between(0, 1).all() and frame["control"].between(0, 1).all()
    assert (frame["ci_low"] <= frame["score"] + 1e-12).all() and (frame["score"] <= frame["ci_high"] + 1e-12).all()
    assert (frame["control_unit"] != frame["unit"]).all()
    assert frame["control_unit"].str.startswith(LAYER + ":").all()  # another unit of the same layer
    print(frame[["unit", "score", "ci_low", "ci_high", "accuracy", "control"]].to_string())
    # trained units are predictable from their exemplars; another unit's references are not better than chance
    assert frame["score"].mean() > 0.7
    assert abs(frame["control"].mean() - 0.5) < 0.15
    assert details["images_embedded"] <= 16 * 40


def test_shuffled_references_score_at_chance(photo_files, embedder):
    """References and queries drawn at random from the photos (a shuffled ranking: each side is a random half of
    240 photos, so tasks rarely share images): scores at chance within their CIs."""
    files = photo_files[:240]
    vectors = embedder.embed(files, whole=False)
    gram = vectors @ vectors.T
    rng = np.random.default_rng(5)
    units = 60
    half = len(files) // 2  # 120 with the ImageNet photos (the demo photos: ~77)
    shuffled = np.stack([rng.permutation(len(files))[: 2 * half] for _ in range(units)])
    settings = ScoreSettings(seed=3)
    tasks = draw_tasks(shuffled[:, :half], shuffled[:, half:], np.full((units, 2), half), settings)
    p, _ = task_probabilities(gram, tasks, settings.exemplar_temperature)
    from vizprobe.score.exemplar import bootstrap_interval

    low, high = bootstrap_interval(p, settings)
    assert abs(p.mean() - 0.5) < 0.05
    covered = ((low <= 0.5) & (high >= 0.5)).mean()
    assert covered >= 0.85, covered


@pytest.fixture(scope="module")
def colour_scan(tmp_path_factory, lite0):
    """40 reddish and 40 bluish noise textures, scanned at _blocks.2 of lite0."""
    from vizprobe.scan import scan

    folder = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for k in range(80):
        base = np.array([200, 40, 40]) if k < 40 else np.array([40, 60, 200])
        pixels = np.clip(base + rng.normal(0, 35, (96, 96, 3)) * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{'red' if k < 40 else 'blue'}_{k:02d}.png")
    return scan(lite0, folder, ["_blocks.2"], tmp_path_factory.mktemp("colour-scan") / "run", progress=False)[0]


def test_a_unit_whose_exemplars_are_two_colours_scores_near_one(colour_scan, embedder):
    acts = colour_scan.activations("_blocks.2")
    red = np.array(["red" in name for name in colour_scan.images])
    gap = np.asarray(acts[red]).mean(axis=0) - np.asarray(acts[~red]).mean(axis=0)
    channel = int(np.argmax(gap / (np.asarray(acts).std(axis=0) + 1e-6)))  # picked by hand from the activations
    unit = f"_blocks.2:{channel}"
    assert all("red" in e.path.name for e in colour_scan.top(unit, 20))
    assert all("blue" in e.path.name for e in colour_scan.bottom(unit, 20))
    frame, _ = exemplar_scores(colour_scan, [unit, f"_blocks.2:{(channel + 1) % 24}"], embedder, progress=False)
    print(frame.to_string())
    assert frame.loc[0, "score"] > 0.9 and frame.loc[0, "accuracy"] == 1.0
    # a colour statistic is as plain to the colour-statistics observer
    assert frame.loc[0, "colour_score"] > 0.9 and frame.loc[0, "colour_accuracy"] == 1.0


def test_colour_statistics_are_the_centre_square_s_mean_and_spread(tmp_path):
    """By hand with numpy: a 90 x 60 PNG's centre 60 x 60 square, box-averaged to 64 px, its channels' means and
    standard deviations."""
    from vizprobe.observers.colour import CENTRE, SCALE, ColourEmbedder, colour_statistics

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    square = Image.fromarray(pixels[:, 15:75]).resize((64, 64), Image.Resampling.BOX)
    values = np.asarray(square, dtype=np.float64).reshape(-1, 3) / 255
    expected = np.concatenate([values.mean(axis=0), values.std(axis=0)])
    np.testing.assert_allclose(colour_statistics(tmp_path / "wide.png"), expected, atol=1e-12)
    vector = ColourEmbedder().embed([tmp_path / "wide.png"])[0]
    z = (expected - CENTRE) / SCALE
    np.testing.assert_allclose(vector, z / np.linalg.norm(z), atol=1e-6)


def test_shuffled_activations_score_at_chance_for_both_observers(photo_scan, embedder):
    """Each unit's activations of _blocks.12 permuted across the photos: its rankings come from the shuffle, so
    the embedder's and the colour baseline's scores sit at chance."""
    from vizprobe.observers.colour import ColourEmbedder
    from vizprobe.score.exemplar import pack_pools, pool_images, score_pools
    from vizprobe.units import Unit

    scan = photo_scan[0]
    values = np.asarray(scan.activations(LAYER), dtype=np.float64)[:, :48]
    rng = np.random.default_rng(7)
    shuffled = np.stack([rng.permutation(values[:, c]) for c in range(values.shape[1])], axis=1)
    units = [Unit(scan.layer(LAYER).path, c) for c in range(values.shape[1])]
    settings = ScoreSettings()
    order = np.argsort(-shuffled, axis=0, kind="stable")
    rankings = [(order[: settings.pool, c].tolist(), order[::-1][: settings.pool, c].tolist()) for c in range(48)]
    top, bottom, counts = pack_pools(units, rankings, settings.pool, settings.needed)
    images = pool_images(top, bottom)
    paths = [scan.image_path(int(i)) for i in images]
    vectors, colour = embedder.embed(paths, whole=False), ColourEmbedder().embed(paths)
    frame = score_pools(units, top, bottom, counts, images, vectors, settings, colour)
    print(frame[["score", "accuracy", "colour_score", "colour_accuracy"]].describe().to_string())
    assert abs(frame["score"].mean() - 0.5) < 0.05 and abs(frame["accuracy"].mean() - 0.5) < 0.06
    assert abs(frame["colour_score"].mean() - 0.5) < 0.05 and abs(frame["colour_accuracy"].mean() - 0.5) < 0.06
    # the real rankings of the same units: the embedder well above chance
    real, _ = exemplar_scores(scan, [str(u) for u in units[:16]], embedder, settings, progress=False)
    assert real["score"].mean() > 0.7


def test_too_few_images_names_what_the_scan_needs(colour_scan, embedder):
    """80 images: the top and bottom 50 share 20, leaving 30 a side, short of K + N/2 = 35 + 10."""
    with pytest.raises(VizprobeError, match="has 30 distinct images .* needs 45 a side .* at least 90 images"):
        exemplar_scores(colour_scan, ["_blocks.2:0"], embedder, ScoreSettings(references=35, pool=50), progress=False)


def test_the_studied_network_is_refused_unless_asked(monkeypatch):
    assert choose_embedder("efficientnet-lite0").model == "efficientnet-lite2"
    assert choose_embedder("efficientnet-lite2").model == "efficientnet-lite0"
    with pytest.raises(VizprobeError, match="is the studied network.*--embedder-same-as-model"):
        choose_embedder("efficientnet-lite0", "efficientnet-lite0")
    same = choose_embedder("efficientnet-lite0", "efficientnet-lite0:_blocks.5", same_as_model=True)
    assert same.same_as_model and same.layers == ("_blocks.5",)
    with pytest.raises(VizprobeError, match="unknown embedder 'nope'; choose one of .*efficientnet-lite2"):
        choose_embedder("efficientnet-lite0", "nope")


def test_cli_score_writes_scores_and_settings(photo_scan, tmp_path, capsys):
    out = tmp_path / "scores"
    run = str(photo_scan[0].run_dir)
    code = main(
        [
            "-q",
            "score",
            "--scan",
            run,
            "--units",
            f"{LAYER}:7,{LAYER}:9",
            "--device",
            "cpu",
            "--tasks",
            "10",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "efficientnet-lite2" in printed and "uncalibrated: temperature 0.05" in printed
    frame = pd.read_csv(out / "scores.csv")
    assert {"unit", "score", "ci_low", "ci_high", "tasks", "control", "colour_score", "colour_accuracy"} <= set(
        frame.columns
    )
    assert list(frame["tasks"]) == [10, 10]
    record = json.loads((out / "scores.json").read_text())
    assert record["calibration"]["calibrated"] is False and record["calibration"]["temperature"] == 0.05
    assert "uncalibrated" in record["calibration"]["note"]
    assert record["embedder"]["model"] == "efficientnet-lite2" and record["settings"]["tasks"] == 10
    assert record["model"] == "efficientnet-lite0" and record["settings"]["references"] == 9

    code = main(
        [
            "score",
            "--scan",
            run,
            "--units",
            f"{LAYER}:7",
            "--embedder",
            "efficientnet-lite0",
            "--out",
            str(tmp_path / "same"),
        ]
    )
    assert code == 2 and "is the studied network" in capsys.readouterr().err
    assert not (tmp_path / "same").exists()

    from vizprobe.observers.rule import DecisionRule

    rule = DecisionRule(0.01).save(tmp_path / "rule.json")
    code = main(["score", "--scan", run, "--units", f"{LAYER}:7", "--rule", str(rule), "--out", str(tmp_path / "r")])
    assert code == 2 and "needs one fitted to exemplar-task answers" in capsys.readouterr().err
