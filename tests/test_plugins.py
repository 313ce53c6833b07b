"""Extending vizprobe from outside: a tiny plugin package installed beside it adds a model and an observer through
entry points, used from the command line; `--model module.path:factory` takes a user's own network; bad factories
get one line each and write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PLUGIN = '''
import torch
from torch import nn

from vizprobe.models import ModelSpec, Preprocessing
from vizprobe.observers import Observer


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1))


def models():
    return [ModelSpec("tiny-plugin", lambda weights: tiny(), Preprocessing(resize=40, crop=32), "random, seed 0",
                      description="a plugin's model")]


class Left(Observer):
    """always the left option"""

    name = "left"

    def predict(self, views):
        import numpy as np

        return np.zeros(len(views))


def left(**options):
    """always the left option"""
    return Left()


def not_a_module():
    return "a string"


def shuffled(argument, unit, n):
    """a unit's images: the folder's files from a place its name picks"""
    import zlib
    from pathlib import Path

    files = sorted(Path(argument).iterdir())
    start = zlib.crc32(unit.encode()) % len(files)
    return [files[(start + j) % len(files)] for j in range(n)]


def broken(argument, unit, n):
    return [argument + "/no-such-file.png"]


def tiny_embedder(device):
    from vizprobe.observers.embedding import EmbeddingFunction

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten()).to(device)
    return EmbeddingFunction(net, size=64, name="tiny")
'''


def _install_plugin(tmp_path: Path) -> dict:
    """Install the plugin package (with its entry points) into a folder of its own; the environment to use it."""
    source = tmp_path / "src"
    (source / "tinyplug").mkdir(parents=True)
    (source / "tinyplug" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (source / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "tinyplug"
        version = "0.1"
        [project.entry-points."vizprobe.models"]
        tiny = "tinyplug:models"
        [project.entry-points."vizprobe.observers"]
        left = "tinyplug:left"
        [project.entry-points."vizprobe.conditions"]
        shuffled = "tinyplug:shuffled"
        broken = "tinyplug:broken"
        [project.entry-points."vizprobe.embedders"]
        tinyembed = "tinyplug:tiny_embedder"
        """)
    )
    site = tmp_path / "site"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--target",
        str(site),
        str(source),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return {**os.environ, "PYTHONPATH": str(site)}


def _vizprobe(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "import sys; from vizprobe.cli import main; sys.exit(main())", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_plugin_package_adds_a_model_and_an_observer(tmp_path):
    env = _install_plugin(tmp_path)
    listed = _vizprobe(env, "models", cwd=tmp_path)
    assert listed.returncode == 0 and "tiny-plugin" in listed.stdout and "a plugin's model" in listed.stdout
    layers = _vizprobe(env, "layers", "--model", "tiny-plugin", "--json", "--device", "cpu", cwd=tmp_path)
    assert layers.returncode == 0, layers.stderr
    shapes = {layer["path"]: layer["shape"] for layer in json.loads(layers.stdout)["layers"]}
    assert shapes["0"] == [6, 16, 16] and shapes["2"] == [5, 16, 16]  # 32 px crop, stride 2: by hand
    code = "from vizprobe.observers import list_observers; print(list_observers())"
    observers = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "'left'" in observers.stdout


def test_a_plugin_package_adds_an_embedder(tmp_path, photo_scan):
    """`--embedder tinyembed` reaches the plugin's factory through its entry point; the scores record it."""
    env = _install_plugin(tmp_path)
    run = str(photo_scan[0].run_dir)
    out = tmp_path / "scores"
    arguments = ["-q", "score", "--scan", run, "--units", "_blocks.12:7,_blocks.12:9", "--tasks", "4"]
    done = _vizprobe(env, *arguments, "--embedder", "tinyembed", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "scores.json").read_text())
    assert record["embedder"]["model"] == "tinyembed" and record["embedder"]["size"] == 64
    unknown = _vizprobe(env, *arguments, "--embedder", "tinyembedx", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown embedder 'tinyembedx'" in unknown.stderr


def test_a_plugin_package_adds_a_kind_of_condition(tmp_path, photo_files):
    """`NAME=shuffled:DIR` reaches the plugin's function through its entry point, which picks each unit's images
    (here: the folder's files from a place the unit's name picks, computed again below by hand); a kind that
    does not exist, and a plugin that names a missing file, are one-line errors."""
    import zlib

    env = _install_plugin(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in photo_files[:7]:
        (photos / photo.name).write_bytes(photo.read_bytes())
    code = textwrap.dedent(f"""
        from vizprobe.errors import VizprobeError
        from vizprobe.stimuli.conditions import parse_condition, unit_images
        from vizprobe.units import parse_units

        unit = parse_units("_blocks.5:3")[0]
        spec = parse_condition("mine=shuffled:{photos}")
        print(spec.kind, "|".join(p.name for p in unit_images(spec, unit, 3)))
        for text in ("x=nosuchkind:{photos}", "y=broken:{photos}"):
            try:
                unit_images(parse_condition(text), unit, 3)
            except VizprobeError as error:
                print("error:", error)
        """)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    files = sorted(p.name for p in photos.iterdir())
    start = zlib.crc32(b"_blocks.5:3") % len(files)
    assert lines[0] == "shuffled " + "|".join(files[(start + j) % 7] for j in range(3))
    assert "NAME=shuffled:ARGUMENT" in lines[1] and "nosuchkind" in lines[1]
    assert lines[2].startswith("error: condition y: plugin 'broken' gave ") and "not a file for unit" in lines[2]


def test_model_module_factory_from_the_command_line_and_its_errors(tmp_path):
    env = _install_plugin(tmp_path)
    pre = tmp_path / "pre.json"
    pre.write_text(json.dumps({"resize": 72, "crop": 64, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}))
    layers = _vizprobe(
        env,
        "layers",
        "--model",
        "tinyplug:tiny",
        "--preprocessing",
        str(pre),
        "--json",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert layers.returncode == 0, layers.stderr
    shapes = {layer["path"]: layer["shape"] for layer in json.loads(layers.stdout)["layers"]}
    assert shapes["2"] == [5, 32, 32]  # the 64 px crop of the given preprocessing, stride 2

    out = tmp_path / "scan"
    scan = _vizprobe(
        env,
        "-q",
        "scan",
        "--model",
        "tinyplug:tiny",
        "--preprocessing",
        str(pre),
        "--layers",
        "2",
        "--device",
        "cpu",
        "--backend",
        "torch",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert scan.returncode == 0, scan.stderr
    meta = json.loads((out / "scan.json").read_text())
    assert meta["model"] == f"tinyplug:tiny@{pre.resolve()}"  # the name carries the preprocessing to later stages

    for model, message in (
        ("nosuchpkg.nets:build", "cannot import 'nosuchpkg.nets'"),
        ("tinyplug:nothing", "has no function 'nothing'"),
        ("tinyplug:not_a_module", "returned str, not a torch.nn.Module"),
    ):
        bad = _vizprobe(env, "scan", "--model", model, "--layers", "2", "--out", str(tmp_path / "bad"), cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert not (tmp_path / "bad").exists()
    missing = _vizprobe(
        env,
        "scan",
        "--model",
        "tinyplug:tiny",
        "--layers",
        "7",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "bad"),
        cwd=tmp_path,
    )
    assert missing.returncode == 2 and "has no layer '7'" in missing.stderr and not (tmp_path / "bad").exists()
