"""Embedders beyond the model registry: `--embedder module.path:factory` returning an image-to-vector function (a
small stand-in network here; DreamSim or CLIP plug in the same way), checked against the same network applied by
hand; bad factories get one line each."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.observers.embedding import EmbedderChoice, build_embedder, choose_embedder

STANDIN = """
import torch
from torch import nn

from vizprobe.observers.embedding import EmbeddingFunction


def network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()).eval()


def standin(device):
    net = network().to(device)
    return EmbeddingFunction(net, size=96, name="standin")


def plain(device):
    return network().to(device)  # a bare callable: its side defaults to 224


def broken(device):
    raise RuntimeError("no weights here")


def nothing(device):
    return None
"""


@pytest.fixture
def standin(tmp_path, monkeypatch):
    (tmp_path / "standin_embedders.py").write_text(textwrap.dedent(STANDIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import standin_embedders

    return importlib.reload(standin_embedders)


def by_hand(net, path, side: int) -> np.ndarray:
    """The file decoded, its short side resized to `side` (bicubic; the long side truncated, as torchvision's
    Resize), the centre square (offsets rounded, as its CenterCrop), the net, L2-normalized."""
    image = Image.open(path).convert("RGB")
    short, long = sorted(image.size)
    size = (side, int(side * long / short)) if image.width <= image.height else (int(side * long / short), side)
    image = image.resize(size, Image.BICUBIC)
    left, top = int(round((image.width - side) / 2)), int(round((image.height - side) / 2))
    square = np.asarray(image.crop((left, top, left + side, top + side)), dtype=np.float32) / 255
    with torch.no_grad():
        vector = net(torch.from_numpy(square).permute(2, 0, 1)[None]).reshape(-1).numpy()
    return vector / np.linalg.norm(vector)


def test_a_factory_s_function_embeds_as_by_hand(standin, photo_files):
    choice = EmbedderChoice.parse("standin_embedders:standin")
    assert choice.model == "standin_embedders:standin" and choice.layers == ()
    assert choose_embedder("efficientnet-lite0", choice).model == choice.model
    embedder = build_embedder(choice, device="cpu")
    files = photo_files[:5]
    vectors = embedder.embed(files, whole=False)
    assert vectors.shape == (5, 32)
    net = standin.network()
    for path, vector in zip(files, vectors, strict=True):
        np.testing.assert_allclose(vector, by_hand(net, path, 96), atol=1e-5)
    assert embedder.record["model"] == "standin_embedders:standin" and embedder.label == "standin_embedders:standin"
    plain = build_embedder(EmbedderChoice.parse("standin_embedders:plain"), device="cpu")
    np.testing.assert_allclose(plain.embed(files[:1], whole=False)[0], by_hand(net, files[0], 224), atol=1e-5)


def test_scores_with_a_factory_embedder_record_it(standin, photo_scan, tmp_path, capsys):
    out = tmp_path / "scores"
    run = str(photo_scan[0].run_dir)
    units = "_blocks.12:7,_blocks.12:9,_blocks.12:11"
    code = main(
        ["-q", "score", "--scan", run, "--units", units, "--embedder", "standin_embedders:standin"]
        + ["--tasks", "6", "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "scores.json").read_text())
    assert record["embedder"]["model"] == "standin_embedders:standin" and record["embedder"]["size"] == 96
    frame = pd.read_csv(out / "scores.csv")
    assert frame["score"].between(0, 1).all() and frame["colour_score"].between(0, 1).all()


def test_bad_factories_are_one_line(standin):
    with pytest.raises(VizprobeError, match="its factory failed \\(no weights here\\)"):
        build_embedder(EmbedderChoice.parse("standin_embedders:broken"), device="cpu")
    with pytest.raises(VizprobeError, match="returned no callable"):
        build_embedder(EmbedderChoice.parse("standin_embedders:nothing"), device="cpu")
    with pytest.raises(VizprobeError, match="has no function 'missing'"):
        choose_embedder("efficientnet-lite0", "standin_embedders:missing")
    with pytest.raises(VizprobeError, match="cannot import 'no_such_module'"):
        choose_embedder("efficientnet-lite0", "no_such_module:factory")
    with pytest.raises(VizprobeError, match="takes no layers or weights"):
        choose_embedder("efficientnet-lite0", EmbedderChoice("colour-statistics", ("x",)))
