"""`vizprobe scan --engine ray`: Ray Data on this machine (`ray.init(num_cpus=2)`) gives the local engine's
run dir: the same exemplars, activations, skipped images; a killed driver resumes; bad addresses fail fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import need_service, pick
from PIL import Image

from vizprobe.errors import VizprobeError
from vizprobe.scan import scan

LAYERS = ["_blocks.4", "_blocks.8"]

pytestmark = pytest.mark.slow


def _ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def ray_cluster():
    """Ray on this machine for the module; yields the address another driver joins it at."""
    need_service(_ray_installed(), "ray not installed: pip install 'vizprobe[ray]'")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def messy_photos(photo_files, tmp_path_factory):
    """Every photo (symlinks; the demo photos repeated under other names up to 800, so that a scan commits
    several times before it ends), a truncated JPEG and a text file named like an image."""
    folder = tmp_path_factory.mktemp("photos")
    copies = -(-800 // len(photo_files))
    for k in range(copies):
        for f in photo_files:
            (folder / (f.name if copies == 1 else f"{k}_{f.name}")).symlink_to(f)
    (folder / "corrupt.jpg").write_bytes(pick(photo_files, 3).read_bytes()[:2000])
    (folder / "readme.JPEG").write_text("not an image")
    Image.open(pick(photo_files, 6)).convert("L").save(folder / "grey.png")
    return folder


@pytest.fixture(scope="module")
def local_scan(lite0, messy_photos, tmp_path_factory):
    result, _ = scan(lite0, messy_photos, LAYERS, tmp_path_factory.mktemp("local") / "run", top_k=20, progress=False)
    return result


def test_the_ray_engine_gives_the_local_engine_s_run_dir(ray_cluster, lite0, messy_photos, local_scan, tmp_path):
    result, stats = scan(lite0, messy_photos, LAYERS, tmp_path / "run", engine="ray", top_k=20, progress=False)
    assert stats.backend == "ray" and stats.computed == len(local_scan.images)
    assert result.images == local_scan.images
    assert result.skipped == local_scan.skipped and {p for p, _ in result.skipped} == {"corrupt.jpg", "readme.JPEG"}
    np.testing.assert_array_equal(result.status, local_scan.status)
    for layer in LAYERS:
        np.testing.assert_allclose(result.activations(layer), local_scan.activations(layer), rtol=1e-5, atol=1e-6)
    for unit in local_scan.units():  # every unit of both layers
        for side in ("top", "bottom"):
            expected = [e.index for e in getattr(local_scan, side)(unit, 20)]
            assert [e.index for e in getattr(result, side)(unit, 20)] == expected, (unit, side)


def test_a_killed_ray_scan_resumes_with_one_row_per_image(ray_cluster, messy_photos, local_scan, tmp_path):
    """A second driver joins the cluster by its address; it is killed (SIGKILL) once some images are committed,
    and the same command finishes the scan."""
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "vizprobe.cli",
        "-q",
        "scan",
        "--engine",
        "ray",
        "--address",
        ray_cluster,
        "--images",
        str(messy_photos),
        "--layers",
        ",".join(LAYERS),
        "--top-k",
        "20",
        "--batch-size",
        "16",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 300
    progress = out / "progress.json"
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.is_file() and json.loads(progress.read_text())["done"] > 0:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the scan ended before it could be killed: {proc.communicate()[1][-2000:]}"
    done_when_killed = json.loads(progress.read_text())["done"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < done_when_killed < len(local_scan.images)
    rerun = subprocess.run(command, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{done_when_killed} already done" in rerun.stdout
    from vizprobe.scan import ScanResult

    result = ScanResult.load(out)
    assert result.meta["n_scanned"] + result.meta["n_skipped"] == len(local_scan.images)
    assert (np.asarray(result.status) != 0).all()  # every row written, none pending
    assert (out / "skipped.tsv").read_text().count("\n") == 2  # each skipped image listed once
    for layer in LAYERS:
        np.testing.assert_allclose(result.activations(layer), local_scan.activations(layer), rtol=1e-5, atol=1e-6)


def _ray_worker_pids() -> list[int]:
    """The processes of the scan's model actors (Ray titles them `ray::MapWorker(MapBatches(_Activations))`)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"MapBatches(_Activations)" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass
    return pids


def test_a_worker_killed_mid_scan_is_replaced_and_no_row_is_lost(ray_cluster, messy_photos, local_scan, tmp_path):
    """The model actor's process is SIGKILLed once the driver has committed its first images; Ray Data starts
    another and retries the lost batches; the run dir equals the local engine's, every row written once."""
    if not Path("/proc/self/cmdline").is_file():
        pytest.skip("finding Ray's worker processes needs /proc")
    out, killed = tmp_path / "run", []

    def kill_the_worker_after_the_first_commit() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            progress = out / "progress.json"
            if progress.is_file() and json.loads(progress.read_text())["done"] > 0 and _ray_worker_pids():
                for pid in _ray_worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append((pid, json.loads(progress.read_text())["done"]))
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_worker_after_the_first_commit)
    killer.start()
    result, stats = scan(
        "efficientnet-lite0",
        messy_photos,
        LAYERS,
        out,
        device="cpu",
        engine="ray",
        ray={"workers": 1},
        top_k=20,
        batch_size=16,
        chunk_size=16,
        progress=False,
    )
    killer.join()
    total = len(local_scan.images)
    assert killed and all(done < total for _, done in killed), killed
    assert stats.computed == total and result.meta["n_scanned"] + result.meta["n_skipped"] == total
    assert (out / "skipped.tsv").read_text().count("\n") == 2  # each skipped image listed once
    np.testing.assert_array_equal(result.status, local_scan.status)
    for layer in LAYERS:
        np.testing.assert_allclose(result.activations(layer), local_scan.activations(layer), rtol=1e-5, atol=1e-6)


def test_an_unreachable_address_is_a_one_line_error_within_seconds(lite0, messy_photos, tmp_path):
    need_service(_ray_installed(), "ray not installed: pip install 'vizprobe[ray]'")
    started = time.monotonic()
    with pytest.raises(VizprobeError, match=r"cannot reach a Ray cluster at 127.0.0.1:9 \(.*\); start one with `ray"):
        scan(lite0, messy_photos, LAYERS, tmp_path / "run", engine="ray", ray={"address": "127.0.0.1:9"})
    assert time.monotonic() - started < 10
    assert not (tmp_path / "run").exists()
    with pytest.raises(VizprobeError, match="write HOST:PORT"):
        scan(lite0, messy_photos, LAYERS, tmp_path / "run", engine="ray", ray={"address": "nowhere"})


def test_scan_help_names_the_ray_options(capsys):
    from vizprobe.cli import main

    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--engine {local,ray}" in text and "--address" in text and "--gpus-per-worker" in text


def test_scoring_on_ray_writes_the_local_engine_s_scores(ray_cluster, local_scan, tmp_path, monkeypatch):
    """`vizprobe score --engine ray`: the embedding pass on two Ray actors (in chunks) and each layer's scoring as
    a Ray task give the local engine's scores and summary."""
    from vizprobe.score import layers as scoring
    from vizprobe.score.exemplar import ScoreSettings

    settings = ScoreSettings(references=3, tasks=6, pool=8)
    monkeypatch.setattr(scoring, "EMBED_CHUNK", 64)  # several chunks for the two actors
    local, local_summary, _ = scoring.score_layers(
        [local_scan], ["_blocks.4"], tmp_path / "local", settings, device="cpu", progress=False
    )
    on_ray, ray_summary, record = scoring.score_layers(
        [local_scan], ["_blocks.4"], tmp_path / "ray", settings, engine="ray", ray={"workers": 2}, progress=False
    )
    assert record["engine"] == "ray" and len(list((tmp_path / "ray" / "embeddings").rglob("*.npz"))) > 2
    pd.testing.assert_frame_equal(on_ray, local, atol=1e-5)
    pd.testing.assert_frame_equal(ray_summary, local_summary, atol=1e-5)
