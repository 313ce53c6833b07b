"""Shared fixtures: real photos and the real pretrained model.

Photos: $VIZPROBE_IMAGES, else ../shared/data/imagenet-samples beside the repository (1000 ImageNet
photos, one per class), else the embedded demo photos (a newcomer's clone has no ../shared). Only
tests that need ImageNet itself (class labels, e.g. top-1 accuracy) skip without it. Tests that need
a service (PostgreSQL, Chromium) skip where it is absent, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGENET = REPO.parent / "shared" / "data" / "imagenet-samples"
IMAGENET_NAME = re.compile(r"^n\d{8}_.+\.JPEG$")


def photos_source() -> Path:
    """The folder of test photos (see the module doc)."""
    env = os.environ.get("VIZPROBE_IMAGES")
    if env and Path(env).is_dir():
        return Path(env)
    if SHARED_IMAGENET.is_dir():
        return SHARED_IMAGENET
    from vizprobe.images import demo_images_dir

    return demo_images_dir()


def is_imagenet_samples(folder: Path) -> bool:
    """True for the 1000 ImageNet sample photos, one per class in wnid order."""
    return sum(1 for f in folder.iterdir() if IMAGENET_NAME.match(f.name)) == 1000


def need_service(available: bool, reason: str) -> None:
    """Skip a test whose service is absent, or fail under CI=true (so CI can never pass hollow)."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and a required service is missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return photos_source()


@pytest.fixture(scope="session")
def photo_files(photos_dir: Path) -> list[Path]:
    """Every photo of `photos_dir`, sorted by name (1000 ImageNet photos, or about 150 demo photos)."""
    from vizprobe.images import find_images

    files = [photos_dir / rel for rel in find_images(photos_dir)]
    assert len(files) >= 100, f"expected at least 100 photos in {photos_dir}, found {len(files)}"
    return files


def pick(files: list[Path], index: int) -> Path:
    """Photo `index`, wrapped around: the same test runs on the 1000 ImageNet photos or the demo photos."""
    return files[index % len(files)]


@pytest.fixture(scope="session")
def imagenet_files(photos_dir: Path) -> list[Path]:
    """The 1000 ImageNet photos sorted by file name; position i is ImageNet class i (skips without them)."""
    if not is_imagenet_samples(photos_dir):
        pytest.skip(f"needs the 1000 ImageNet sample photos (class labels), not {photos_dir}: set VIZPROBE_IMAGES")
    return sorted(p for p in photos_dir.iterdir() if IMAGENET_NAME.match(p.name))


@pytest.fixture(scope="session")
def lite0():
    from vizprobe.models import load_model

    return load_model("efficientnet-lite0", device="cpu")


@pytest.fixture
def subset_dir(tmp_path: Path, photo_files: list[Path]):
    """A temporary folder of symlinks to `count` photos spread over the collection (never copies)."""

    def make(count: int, name: str = "subset") -> Path:
        """More photos than the collection has reuse photos under new names (the demo photos are ~150)."""
        folder = tmp_path / name
        folder.mkdir()
        step = max(1, len(photo_files) // count)
        chosen = [photo_files[(k * step) % len(photo_files)] for k in range(count)]
        for k, f in enumerate(chosen):
            (folder / (f.name if count <= len(photo_files) else f"{k:04d}_{f.name}")).symlink_to(f)
        return folder

    return make


SCAN_LAYERS = ["_blocks.2", "_blocks.4", "_blocks.5", "block8", "_blocks.12"]


@pytest.fixture(scope="session")
def photo_scan(tmp_path_factory, lite0, photos_dir):
    """One scan of all the photos at several depths of efficientnet-lite0, shared by the tests."""
    from vizprobe.scan import scan

    return scan(lite0, photos_dir, SCAN_LAYERS, tmp_path_factory.mktemp("scan") / "run", progress=False)


STIMULUS_UNITS = ["_blocks.5:10", "block8:12", "_blocks.12:7"]
STIMULUS_CANONICAL = ["_blocks.5:10", "_blocks.8:12", "_blocks.12:7"]  # the same units, as module paths


@pytest.fixture(scope="session")
def protocol(photo_scan, lite0):
    """The catch and practice units the builder picks for STIMULUS_UNITS with STIMULUS_SETTINGS."""
    from vizprobe.stimuli.build import protocol_units

    return protocol_units(photo_scan[0], STIMULUS_UNITS, STIMULUS_SETTINGS, model=lite0)


@pytest.fixture(scope="session")
def visualizations(tmp_path_factory, lite0, protocol):
    """Quick feature visualizations (9 per unit) of STIMULUS_UNITS and their catch and practice units."""
    from vizprobe.synthesis import preset, render_units
    from vizprobe.synthesis.store import save_visualizations

    settings = preset("quick", per_unit=9, mixed_extra=4, steps=6, size=64)
    units = [*STIMULUS_UNITS, *(str(c.unit) for c in protocol.catch + protocol.practice)]
    rendering = render_units(lite0, units, settings, progress=False)
    out = tmp_path_factory.mktemp("vis") / "vis"
    save_visualizations(rendering, out, lite0)
    return out


def reference_ranks(n_photos: int) -> tuple[int, int]:
    """The paper's reference ranks 21-200, cut to what a smaller collection can give (9 bottom exemplars kept)."""
    return 21, min(200, n_photos - 10)


def _stimulus_settings():
    from vizprobe.images import find_images
    from vizprobe.stimuli import BuildSettings

    n = len(find_images(photos_source()))
    return BuildSettings(image_sets=2, tasks_per_condition=4, stride=16, reference_ranks=reference_ranks(n))


STIMULUS_SETTINGS = _stimulus_settings()


@pytest.fixture(scope="session")
def stimulus_package(request, tmp_path_factory, lite0):
    """A real five-condition stimulus package: 3 units x 2 image sets, 4 tasks per condition
    ($VIZPROBE_TEST_STIMULI: one built by an earlier run, for quick reruns of the server's tests)."""
    from vizprobe.stimuli import build_stimuli

    if os.environ.get("VIZPROBE_TEST_STIMULI"):
        return Path(os.environ["VIZPROBE_TEST_STIMULI"])
    scan, _ = request.getfixturevalue("photo_scan")
    visualizations = request.getfixturevalue("visualizations")
    out = tmp_path_factory.mktemp("stimuli") / "pkg"
    build_stimuli(scan, STIMULUS_UNITS, out, visualizations, STIMULUS_SETTINGS, model=lite0, progress=False)
    return out


# --- a throwaway PostgreSQL server ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """Start a PostgreSQL cluster in a temp dir (as user postgres: it refuses root); yield its base URL."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    need_service(bool(binaries), "PostgreSQL binaries absent (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    bindir = Path(binaries[-1]).parent
    home = Path(tempfile.mkdtemp(prefix="vizprobe-pg-"))
    shutil.chown(home, "postgres", "postgres")
    port = free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    as_postgres(str(bindir / "initdb"), "-D", f"{home}/data", "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    as_postgres(str(bindir / "pg_ctl"), "-D", f"{home}/data", "-l", f"{home}/log", "-o", options, "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        as_postgres(str(bindir / "pg_ctl"), "-D", f"{home}/data", "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the PostgreSQL test server."""
    if request.param == "sqlite":
        return str(tmp_path / "experiment.db")
    return new_postgres_database(request.getfixturevalue("postgres_server"))


def new_postgres_database(base: str) -> str:
    """Create an empty database on the test server; its URL."""
    name = f"t{time.monotonic_ns()}"
    engine = create_engine(base.replace("postgresql://", "postgresql+psycopg://") + "/postgres")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{base}/{name}"


def module_output(net, path: str, images):
    """The raw output of module `path` of `net` on `images`, through a plain forward hook (an independent check)."""
    import torch

    seen = []
    handle = dict(net.named_modules())[path].register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            net(images)
    finally:
        handle.remove()
    return seen[0]
