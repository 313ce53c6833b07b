"""`vizprobe score --layers`: every unit of whole layers, of one or several models' scans, resumable; checked
against the unit-by-unit scorer, a hand-computed summary, an interrupted run, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.observers.embedding import FeatureEmbedder, choose_embedder
from vizprobe.score import layers as scoring
from vizprobe.score.exemplar import ScoreSettings, exemplar_scores, unit_pools
from vizprobe.score.layers import by_depth, layer_pools, score_layers

SMALL = ScoreSettings(references=3, tasks=6, pool=8)  # 6 distinct images a side: small scans suffice


@pytest.fixture(scope="module")
def small_scans(tmp_path_factory, photo_files):
    """Scans of 40 photos by efficientnet-lite0 (three blocks) and efficientnet-lite1 (two)."""
    from vizprobe.scan import scan

    root = tmp_path_factory.mktemp("small")
    folder = root / "photos"
    folder.mkdir()
    for photo in photo_files[:: max(1, len(photo_files) // 40)][:40]:
        (folder / photo.name).symlink_to(photo)
    lite0_layers, lite1_layers = ["_blocks.1", "_blocks.3", "_blocks.5"], ["_blocks.2", "_blocks.6"]
    lite0, _ = scan("efficientnet-lite0", folder, lite0_layers, root / "lite0", device="cpu", progress=False)
    lite1, _ = scan("efficientnet-lite1", folder, lite1_layers, root / "lite1", device="cpu", progress=False)
    return lite0, lite1


def test_layer_pools_equal_the_unit_by_unit_ranking(photo_scan):
    scan = photo_scan[0]
    settings = ScoreSettings()
    units, top, bottom, counts = layer_pools(scan, "block8", settings.pool, settings.needed)
    assert [str(u) for u in units[:2]] == ["_blocks.8:0", "_blocks.8:1"]
    expected = unit_pools(scan, units, settings.pool, settings.needed)
    for mine, theirs in zip((top, bottom, counts), expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_whole_layers_score_as_their_units_do(photo_scan, tmp_path):
    """A layer scored whole gives each unit the score and interval it gets alone (its tasks are its own draw);
    the summary is the per-layer mean and quartiles of those scores (numpy's percentiles here)."""
    scan = photo_scan[0]
    scores, summary, record = score_layers([scan], ["_blocks.2"], tmp_path / "out", device="cpu", progress=False)
    assert record["status"] == "complete" and record["units"] == 24 == len(scores)
    embedder = FeatureEmbedder(choose_embedder(scan.model), device="cpu")
    alone, _ = exemplar_scores(scan, ["_blocks.2:3", "_blocks.2:17"], embedder, progress=False)
    for _, row in alone.iterrows():
        whole = scores.set_index("unit").loc[row["unit"]]
        for column in ("score", "ci_low", "ci_high", "accuracy"):
            assert whole[column] == pytest.approx(row[column], abs=2e-5), column
    values = scores["score"].to_numpy()
    line = summary.iloc[0]
    assert (line["layer"], line["units"], line["depth"]) == ("_blocks.2", 24, 0.0)
    assert line["mean"] == pytest.approx(values.mean(), abs=1e-9)
    assert (line["q25"], line["median"], line["q75"]) == pytest.approx(tuple(np.percentile(values, [25, 50, 75])))
    written = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert list(written["unit"]) == [f"_blocks.2:{c}" for c in range(24)]
    assert {"score", "ci_low", "ci_high", "tasks", "control", "model", "scan"} <= set(written.columns)
    assert (tmp_path / "out" / "summary.csv").is_file()


def test_a_killed_run_resumes_without_embedding_or_scoring_anything_twice(small_scans, tmp_path, monkeypatch):
    lite0 = small_scans[0]
    layers = ["_blocks.1", "_blocks.3", "_blocks.5"]
    reference, _, _ = score_layers([lite0], layers, tmp_path / "whole", SMALL, device="cpu", progress=False)

    monkeypatch.setattr(scoring, "EMBED_CHUNK", 8)
    embedded: list[tuple[str, str]] = []  # (store, image): the network's and the colour baseline's
    commit = scoring.EmbeddingStore.commit

    def commit_then_die(self, paths, vectors):
        commit(self, paths, vectors)
        embedded.extend((self.folder.name, path) for path in paths)
        if len(embedded) == 16:
            raise KeyboardInterrupt  # killed after two chunks

    monkeypatch.setattr(scoring.EmbeddingStore, "commit", commit_then_die)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        score_layers([lite0], layers, out, SMALL, device="cpu", progress=False)
    assert json.loads((out / "scores.json").read_text())["status"] == "running"

    scored: list[str] = []
    score_pools = scoring.score_pools

    def score_then_die(units, *args):
        if len(scored) == 1:
            raise KeyboardInterrupt  # killed after the first layer
        scored.append(units[0].layer)
        return score_pools(units, *args)

    monkeypatch.setattr(scoring, "score_pools", score_then_die)
    with pytest.raises(KeyboardInterrupt):
        score_layers([lite0], layers, out, SMALL, device="cpu", progress=False)
    monkeypatch.setattr(
        scoring, "score_pools", lambda units, *args: scored.append(units[0].layer) or score_pools(units, *args)
    )
    scores, _, record = score_layers([lite0], layers, out, SMALL, device="cpu", progress=False)
    assert len(embedded) == len(set(embedded)) > 16  # every image embedded once per store over the three calls
    assert {store for store, _ in embedded} == {"efficientnet-lite2", "colour-statistics"}
    assert sorted(scored) == sorted(layers)  # every layer scored once
    assert record["status"] == "complete"
    pd.testing.assert_frame_equal(scores, reference, atol=1e-6)
    again, _, _ = score_layers([lite0], layers, out, SMALL, device="cpu", progress=False)  # complete: nothing to do
    assert sorted(scored) == sorted(layers)
    assert len(again) == len(reference)


def test_several_models_compare_by_depth_sharing_one_embedding(small_scans, tmp_path, capsys):
    lite0, lite1 = small_scans
    out = tmp_path / "both"
    scans = ["--scan", str(lite0.run_dir), "--scan", str(lite1.run_dir)]
    design = ["--references", "3", "--tasks", "6", "--pool", "8"]
    code = main(["-q", "score", *scans, "--layers", "all", *design, "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "mean score by relative layer depth" in printed.out
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["model"]) == ["efficientnet-lite0"] * 3 + ["efficientnet-lite1"] * 2
    assert list(summary["depth"]) == [0.0, 0.5, 1.0, 0.0, 1.0]
    table = by_depth(summary)
    assert set(table.columns) == {"efficientnet-lite0", "efficientnet-lite1"}
    lite1_first = summary[(summary["model"] == "efficientnet-lite1") & (summary["depth"] == 0.0)]["mean"].item()
    assert table["efficientnet-lite1"].iloc[0] == pytest.approx(lite1_first)
    # both scans rank the same photos and are embedded by efficientnet-lite2: each photo embedded once
    store = scoring.EmbeddingStore(out / "embeddings" / "efficientnet-lite2")
    chunks = [np.load(p)["paths"] for p in sorted((out / "embeddings" / "efficientnet-lite2").glob("*.npz"))]
    assert sum(len(c) for c in chunks) == len(store.vectors) <= 40
    # another run given the same embeddings folder embeds nothing and scores lite1's units as the joint run did
    alone, _, record = score_layers(
        [lite1], ["all"], tmp_path / "lite1", SMALL, embeddings=out / "embeddings", device="cpu", progress=False
    )
    assert record["images_embedded_now"] == 0
    joint = pd.read_csv(out / "scores.csv").query("model == 'efficientnet-lite1'").reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.drop(columns="scan"), joint.drop(columns="scan"), atol=1e-6)


def test_bad_input_is_one_line_and_writes_nothing(small_scans, tmp_path):
    lite0, lite1 = small_scans
    with pytest.raises(VizprobeError, match=r"--scan .*lite1: layer '_blocks.3' is not in this scan"):
        score_layers([lite0, lite1], ["_blocks.3"], tmp_path / "missing", SMALL, device="cpu", progress=False)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(VizprobeError, match="exists and is not a scores folder"):
        score_layers([lite0], ["_blocks.1"], tmp_path / "taken", SMALL, device="cpu", progress=False)
    score_layers([lite0], ["_blocks.1"], tmp_path / "done", SMALL, device="cpu", progress=False)
    with pytest.raises(VizprobeError, match="holds scores of another design"):
        score_layers([lite0], ["_blocks.1", "_blocks.3"], tmp_path / "done", SMALL, device="cpu", progress=False)
    with pytest.raises(VizprobeError, match="is the studied network"):
        score_layers([lite0], ["_blocks.1"], tmp_path / "same", SMALL, embedder="efficientnet-lite0", progress=False)
    assert not (tmp_path / "same").exists()
