"""Shared fixtures: the real ImageNet sample photos and the real pretrained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = [REPO.parent / "shared" / "data" / "imagenet-samples", Path("/work/shared/data/imagenet-samples")]


def imagenet_samples_dir() -> Path | None:
    """$VIZPROBE_IMAGES, else ../shared/data/imagenet-samples beside the repository."""
    if os.environ.get("VIZPROBE_IMAGES"):
        path = Path(os.environ["VIZPROBE_IMAGES"])
        return path if path.is_dir() else None
    return next((p for p in _CANDIDATES if p.is_dir()), None)


@pytest.fixture(scope="session")
def imagenet_dir() -> Path:
    path = imagenet_samples_dir()
    if path is None:
        pytest.skip("ImageNet sample photos not found: set VIZPROBE_IMAGES to ../shared/data/imagenet-samples")
    return path


@pytest.fixture(scope="session")
def imagenet_files(imagenet_dir: Path) -> list[Path]:
    """The 1000 photos sorted by file name; position i is ImageNet class i."""
    files = sorted(p for p in imagenet_dir.iterdir() if p.suffix.lower() == ".jpeg")
    assert len(files) == 1000, f"expected 1000 photos in {imagenet_dir}, found {len(files)}"
    return files


@pytest.fixture(scope="session")
def lite0():
    from vizprobe.models import load_model

    return load_model("efficientnet-lite0", device="cpu")


@pytest.fixture
def subset_dir(tmp_path: Path, imagenet_files: list[Path]):
    """A temporary folder of symlinks to some of the photos (the photos are never copied)."""

    def make(step: int, name: str = "subset") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for f in imagenet_files[::step]:
            (folder / f.name).symlink_to(f)
        return folder

    return make


SCAN_LAYERS = ["_blocks.2", "_blocks.4", "_blocks.5", "block8", "_blocks.12"]


@pytest.fixture(scope="session")
def imagenet_scan(tmp_path_factory, lite0, imagenet_dir):
    """One scan of all 1000 photos at several depths of efficientnet-lite0, shared by the tests."""
    from vizprobe.scan import scan

    return scan(lite0, imagenet_dir, SCAN_LAYERS, tmp_path_factory.mktemp("scan") / "run", progress=False)


STIMULUS_UNITS = ["_blocks.5:10", "block8:12", "_blocks.12:7"]


@pytest.fixture(scope="session")
def visualizations(tmp_path_factory, lite0):
    """Quick feature visualizations (9 per unit) of STIMULUS_UNITS."""
    from vizprobe.synthesis import preset, render
    from vizprobe.synthesis.store import save_visualizations

    rendering = render(
        lite0, STIMULUS_UNITS, preset("quick", per_unit=9, steps=6, size=64), device="cpu", progress=False
    )
    out = tmp_path_factory.mktemp("vis") / "vis"
    save_visualizations(rendering, out, lite0)
    return out


def _stimulus_settings():
    from vizprobe.stimuli import BuildSettings

    return BuildSettings(image_sets=2, tasks_per_condition=4, stride=16)


STIMULUS_SETTINGS = _stimulus_settings()


@pytest.fixture(scope="session")
def stimulus_package(tmp_path_factory, imagenet_scan, visualizations, lite0):
    """A real five-condition stimulus package: 3 units x 2 image sets, 4 tasks per condition."""
    from vizprobe.stimuli import build_stimuli

    scan, _ = imagenet_scan
    out = tmp_path_factory.mktemp("stimuli") / "pkg"
    build_stimuli(scan, STIMULUS_UNITS, out, visualizations, STIMULUS_SETTINGS, model=lite0, progress=False)
    return out
