"""The dataset scan on the real photos with the real model: exact, resumable, robust."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pick
from PIL import Image

from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb
from vizprobe.scan import ScanResult, scan
from vizprobe.scan.sheet import write_contact_sheets

LAYERS = ["_blocks.4", "block8"]


def per_image_activations(model, files: list[Path], layer: str) -> np.ndarray:
    """Independent reference: one image at a time, full forward pass, a plain hook, spatial mean."""
    transform = model.preprocessing.pil_transform()
    module = dict(model.net.named_modules())[layer]
    with torch.inference_mode():
        captured: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda m, i, o: captured.append(o[0].mean(dim=(1, 2))))
        for path in files:
            model.net(transform(load_rgb(path))[None])
        handle.remove()
        rows = [c.numpy() for c in captured]
    return np.stack(rows)


@pytest.fixture(scope="module")
def full_scan(photo_scan):
    return photo_scan


def test_scan_top20_matches_per_image_computation(full_scan, lite0, photo_files):
    result, stats = full_scan
    assert stats.computed == len(photo_files) and stats.skipped == 0
    reference = per_image_activations(lite0, photo_files, "_blocks.8")
    names = [f.name for f in photo_files]
    assert stats.backend == "onnxruntime"  # the default on the CPU
    for channel in range(reference.shape[1]):
        expected = [names[i] for i in np.argsort(-reference[:, channel], kind="stable")[:20]]
        got = [e.path.name for e in result.top(f"block8:{channel}", 20)]
        assert set(got) == set(expected), f"channel {channel}"
        expected_bottom = {names[i] for i in np.argsort(reference[:, channel], kind="stable")[:20]}
        assert {e.path.name for e in result.bottom(f"_blocks.8:{channel}", 20)} == expected_bottom
    np.testing.assert_allclose(result.activations("_blocks.8"), reference, rtol=1e-3, atol=1e-4)


def test_scan_result_api(full_scan):
    result, _ = full_scan
    top = result.top("_blocks.4:5", 9)
    assert [e.rank for e in top] == list(range(1, 10))
    values = [e.activation for e in top]
    assert values == sorted(values, reverse=True)
    column = result.unit_activations("_blocks.4:5")
    assert values[0] == pytest.approx(float(np.nanmax(column)))
    bottom = result.bottom("_blocks.4:5", 3)
    assert bottom[0].activation == pytest.approx(float(np.nanmin(column)))
    # Beyond the stored top-k the ranking is computed from the full array, with the same answer.
    assert [e.index for e in result.top("_blocks.4:5", 250)[:9]] == [e.index for e in top]
    meta = json.loads((result.run_dir / "scan.json").read_text())
    assert meta["model"] == "efficientnet-lite0" and meta["preprocessing"]["interpolation"] == "bicubic"
    assert meta["vizprobe_version"] and meta["status"] == "complete"
    assert result.activations("block4").shape == (len(result.images), 40)
    with pytest.raises(VizprobeError, match="not in this scan"):
        result.top("_blocks.9:0")
    assert [layer.name for layer in result.layers] == ["_blocks.2", "_blocks.4", "_blocks.5", "block8", "_blocks.12"]


def test_contact_sheet(full_scan, tmp_path):
    result, _ = full_scan
    [sheet] = write_contact_sheets(result, tmp_path, ["_blocks.8:7"], progress=False)
    image = Image.open(sheet)
    assert image.width > 2 * image.height * 0.8 and image.mode == "RGB"
    # The top-left tile is the top-1 image: compare against the photo itself.
    tile = np.asarray(image.crop((6, 26, 6 + 96, 26 + 96)), dtype=float)
    from PIL import ImageOps

    top1 = ImageOps.fit(load_rgb(result.top("_blocks.8:7", 1)[0].path), (96, 96), Image.Resampling.BICUBIC)
    bottom1 = ImageOps.fit(load_rgb(result.bottom("_blocks.8:7", 1)[0].path), (96, 96), Image.Resampling.BICUBIC)
    assert np.abs(tile - np.asarray(top1, dtype=float)).mean() < 1
    assert np.abs(tile - np.asarray(bottom1, dtype=float)).mean() > 5


def test_corrupt_and_non_image_files_are_skipped(tmp_path, subset_dir, photo_files, lite0, caplog):
    folder = subset_dir(20)
    data = pick(photo_files, 3).read_bytes()
    (folder / "corrupt.jpg").write_bytes(data[:2000])
    (folder / "readme.JPEG").write_text("I am a text file with an image extension")
    (folder / "notes.txt").write_text("ignored entirely")
    Image.open(pick(photo_files, 5)).convert("CMYK").save(folder / "cmyk.jpg")
    Image.open(pick(photo_files, 6)).convert("L").save(folder / "grey.png")
    with caplog.at_level(logging.WARNING, logger="vizprobe"):
        result, stats = scan(lite0, folder, ["_blocks.4"], tmp_path / "run", batch_size=4, progress=False)
    assert stats.skipped == 2
    skipped = dict(result.skipped)
    assert set(skipped) == {"corrupt.jpg", "readme.JPEG"}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "skipping corrupt.jpg" in logged and "skipping readme.JPEG" in logged
    acts = result.activations("_blocks.4")
    assert acts.shape[0] == 20 + 4
    assert np.isnan(acts[result.images.index("corrupt.jpg")]).all()
    assert not np.isnan(acts[result.images.index("cmyk.jpg")]).any()
    ranked = {e.path.name for e in result.top("_blocks.4:0", 30)}
    assert "corrupt.jpg" not in ranked and "grey.png" in ranked and len(ranked) == 22


def _run_cli_scan(folder: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vizprobe.cli", "-q", "scan", "--device", "cpu", "--images", str(folder)]
    cmd += ["--layers", ",".join(LAYERS), "--batch-size", "8", "--workers", "1", "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())


def _kill_after_a_commit(proc: subprocess.Popen, out: Path, total: int) -> int:
    """SIGKILL a CLI scan once it has committed 64 images; the images it had committed."""
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        progress = out / "progress.json"
        if progress.is_file():
            done = json.loads(progress.read_text())["done"]
            if done >= 64:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "scan finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads((out / "progress.json").read_text())["done"]
    assert 0 < done < total
    return done


def test_killed_scan_resumes_to_the_same_result(tmp_path, subset_dir, lite0):
    folder = subset_dir(334)
    out = tmp_path / "killed"
    done = _kill_after_a_commit(_run_cli_scan(folder, out), out, 334)
    with pytest.raises(VizprobeError, match="unfinished"):
        ScanResult.load(out)

    resumed, stats = scan(lite0, folder, LAYERS, out, batch_size=8, progress=False)
    assert stats.resumed_from == done and stats.computed == 334 - done  # nothing computed twice
    straight, _ = scan(lite0, folder, LAYERS, tmp_path / "straight", batch_size=8, progress=False)
    for layer in LAYERS:
        np.testing.assert_allclose(resumed.activations(layer), straight.activations(layer), rtol=1e-5, atol=1e-6)
    for unit in resumed.units()[::9]:
        assert {e.index for e in resumed.top(unit, 20)} == {e.index for e in straight.top(unit, 20)}

    again, stats = scan(lite0, folder, LAYERS, out, progress=False)
    assert stats.computed == 0
    with pytest.raises(VizprobeError, match="layers"):
        scan(lite0, folder, ["_blocks.5"], out, progress=False)


def test_a_scan_without_the_activations_ranks_exactly_like_numpy(tmp_path, full_scan, photos_dir, lite0):
    """`keep_activations=False` writes no matrix, yet every unit's top/bottom-20 (indices and values) equal a
    stable numpy sort of the full scan's matrix, and its std equals numpy's, merged over many commits."""
    kept, _ = full_scan
    lean, stats = scan(
        lite0,
        photos_dir,
        ["_blocks.4", "_blocks.12"],
        tmp_path / "lean",
        keep_activations=False,
        top_k=20,
        chunk_size=64,
        progress=False,
    )
    assert stats.computed == len(kept.images) and not (tmp_path / "lean" / "acts").exists()
    assert not (tmp_path / "lean" / "topk" / "running.npz").exists()
    for layer in ("_blocks.4", "_blocks.12"):
        matrix = np.asarray(kept.activations(layer))
        for channel in range(matrix.shape[1]):
            unit = f"{layer}:{channel}"
            for got, sign in ((lean.top(unit, 20), -1), (lean.bottom(unit, 20), 1)):
                order = np.argsort(sign * matrix[:, channel], kind="stable")[:20]
                assert [e.index for e in got] == order.tolist(), unit
                np.testing.assert_allclose([e.activation for e in got], matrix[order, channel], rtol=1e-5, atol=1e-6)
            assert lean.unit_std(unit) == pytest.approx(float(np.std(matrix[:, channel])), rel=1e-4, abs=1e-6)
    with pytest.raises(VizprobeError, match="--keep-activations"):
        lean.activations("_blocks.4")
    with pytest.raises(VizprobeError, match="larger --top-k"):
        lean.top("_blocks.4:0", 21)


def test_a_killed_scan_without_the_activations_resumes_exactly(tmp_path, subset_dir, lite0):
    """The running top-k is saved at each commit: a scan killed midway and resumed ranks as one run straight."""
    folder = subset_dir(334)
    out = tmp_path / "killed"
    done = _kill_after_a_commit(_run_cli_scan(folder, out, "--no-keep-activations", "--top-k", "20"), out, 334)
    assert (out / "topk" / "running.npz").is_file()
    with pytest.raises(VizprobeError, match="--no-keep-activations"):
        scan(lite0, folder, LAYERS, out, progress=False)  # resumed with the matrix: refused
    resumed, stats = scan(lite0, folder, LAYERS, out, keep_activations=False, top_k=20, batch_size=8, progress=False)
    assert stats.resumed_from >= done and stats.computed == 334 - stats.resumed_from  # nothing computed twice
    straight, _ = scan(lite0, folder, LAYERS, tmp_path / "straight", batch_size=8, progress=False)
    for layer in LAYERS:
        matrix = np.asarray(straight.activations(layer))
        for channel in range(0, matrix.shape[1], 5):
            order = np.argsort(-matrix[:, channel], kind="stable")[:20]
            assert [e.index for e in resumed.top(f"{layer}:{channel}", 20)] == order.tolist()


def test_out_dir_that_is_not_a_scan_is_refused(tmp_path, subset_dir, lite0):
    folder = subset_dir(5)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    with pytest.raises(VizprobeError, match="not a scan run dir"):
        scan(lite0, folder, ["_blocks.4"], tmp_path / "busy", progress=False)
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "precious"


def test_the_onnx_graph_is_exported_once_and_equals_pytorch(tmp_path, subset_dir, lite0, monkeypatch):
    """The exported graph is kept in the cache and reused (not exported again); ONNX Runtime's activations equal
    PyTorch's; without onnxruntime, auto falls back to PyTorch and `onnx` is a one-line error."""
    from vizprobe.models import onnx_runtime

    monkeypatch.setenv("VIZPROBE_CACHE", str(tmp_path / "cache"))
    folder = subset_dir(40)
    first, stats = scan(lite0, folder, LAYERS, tmp_path / "a", backend="onnx", progress=False)
    assert stats.backend == "onnxruntime"
    graphs = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(graphs) == 1
    stamp = graphs[0].stat().st_mtime_ns
    again, _ = scan(lite0, folder, LAYERS, tmp_path / "b", progress=False)
    assert graphs[0].stat().st_mtime_ns == stamp  # warm: read from the cache, not exported again
    eager, stats = scan(lite0, folder, LAYERS, tmp_path / "c", backend="torch", compile="off", progress=False)
    assert stats.backend == "torch"
    for layer in LAYERS:
        np.testing.assert_array_equal(first.activations(layer), again.activations(layer))
        np.testing.assert_allclose(first.activations(layer), eager.activations(layer), rtol=1e-4, atol=1e-4)
    graphs[0].write_bytes(b"not a graph")  # a damaged cache entry is exported again
    _, stats = scan(lite0, folder, LAYERS, tmp_path / "d", progress=False)
    assert stats.backend == "onnxruntime" and graphs[0].stat().st_size > 1000

    monkeypatch.setattr(onnx_runtime, "available", lambda: False)
    _, stats = scan(lite0, folder, LAYERS, tmp_path / "e", compile="off", progress=False)
    assert stats.backend == "torch"
    with pytest.raises(VizprobeError, match="--backend onnx: onnxruntime not installed; pip install onnx onnxruntime"):
        scan(lite0, folder, LAYERS, tmp_path / "f", backend="onnx", progress=False)
    assert not (tmp_path / "f").exists()


def test_ranking_block_by_block_equals_one_stable_sort():
    """The top/bottom-k merge that keeps memory bounded gives exactly the full stable sort (ties, many zeros as
    after a ReLU, skipped rows), for blocks smaller than k, equal to it and larger."""
    from vizprobe.scan.extremes import extreme_rows

    rng = np.random.default_rng(3)
    acts = np.maximum(np.round(rng.normal(size=(300, 6)), 1), 0).astype(np.float32)  # ties everywhere
    valid = np.sort(rng.choice(300, size=250, replace=False))
    for sign in (-1.0, 1.0):
        order = np.argsort(sign * acts[valid], axis=0, kind="stable")[:20]
        for block in (7, 20, 64, 1000):
            index, value = extreme_rows(acts, valid, 20, sign, block=block)
            np.testing.assert_array_equal(index, valid[order])
            np.testing.assert_array_equal(value, np.take_along_axis(acts[valid], order, 0))


def test_decoding_in_dataloader_processes_equals_decoding_in_threads(subset_dir, photo_files, lite0):
    """The GPU path decodes in DataLoader worker processes: the same batches, pixels and skips as the threads."""
    from vizprobe.images import find_images
    from vizprobe.scan.run import _loader_batches, _thread_batches

    folder = subset_dir(20)
    (folder / "zz_corrupt.jpg").write_bytes(pick(photo_files, 3).read_bytes()[:2000])  # sorts last: batch 3
    files = [folder / p for p in find_images(folder)]
    pre = lite0.preprocessing
    threads = list(_thread_batches(files, 3, 8, pre, 2))
    processes = list(_loader_batches(files, 3, 8, pre, 2, pin=False))
    assert [b[:2] for b in processes] == [(3, 8), (11, 8), (19, 2)] == [b[:2] for b in threads]
    for (first, _, pixels, good, bad), (_, _, theirs, their_good, their_bad) in zip(processes, threads, strict=True):
        assert (good, bad) == (their_good, their_bad)
        torch.testing.assert_close(pixels, theirs, rtol=0, atol=0)
        for row, offset in enumerate(good):  # independently: PIL decoding of that file
            torch.testing.assert_close(pixels[row], pre.to_pixels(load_rgb(files[first + offset])), rtol=0, atol=0)
    skipped = [files[b[0] + offset].name for b in processes for offset, _ in b[4]]
    assert skipped == ["zz_corrupt.jpg"]


def test_activations_are_computed_with_float32_convolutions_on_a_gpu_and_nothing_else_changes(monkeypatch, lite0):
    """PyTorch's default rounds a GPU's float32 convolutions to TF32. Resolving a device leaves that alone;
    every computation of an activation (a unit's, an occlusion sweep's, the scan's, a rendering's) runs its
    convolutions in float32 and restores the setting after; the scan's --precision tf32 keeps TF32."""
    from vizprobe import device
    from vizprobe.device import convolution_precision, resolve_device, set_convolution_precision
    from vizprobe.occlusion import Occluder
    from vizprobe.scan.forward import forward_pass
    from vizprobe.synthesis import preset, render_units

    conv = torch.backends.cudnn.conv
    before = set_convolution_precision("tf32")  # as a fresh process starts (torch's default)
    monkeypatch.setattr(device, "gpu_present", lambda: True)  # as vizprobe sees it; torch itself stays on the CPU
    seen: list[str] = []

    def record(module, _inputs):
        if isinstance(module, torch.nn.Conv2d):
            seen.append(conv.fp32_precision)

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0))
    batch = lite0.preprocessing.normalize(image[None])
    computations = {
        "unit": lambda: lite0.unit_activations(batch, ["_blocks.5:0"]),
        "occlusion": lambda: Occluder(lite0, "_blocks.5").activations(image, torch.tensor([[0, 0], [90, 90]]), 90),
        "scan": lambda: forward_pass(lite0, ["_blocks.5"], 1, "torch", "off", 0, False, "fp32")[0](batch),
        "rendering": lambda: render_units(lite0, ["_blocks.5:0"], preset("quick", steps=1, per_unit=1), progress=False),
    }
    try:
        assert resolve_device("cuda").type == "cuda"
        assert resolve_device("auto").type == "cuda"
        assert conv.fp32_precision == "tf32"  # no side effect
        for name, compute in computations.items():
            seen.clear()
            compute()
            assert seen and set(seen) == {"ieee"}, name
            assert conv.fp32_precision == "tf32", name
        with convolution_precision(torch.device("cuda"), "ieee"):
            assert conv.fp32_precision == "ieee"
            with convolution_precision(torch.device("cuda"), "tf32"):  # the scan's --precision tf32
                assert conv.fp32_precision == "tf32"
            with convolution_precision(torch.device("cpu"), "tf32"):
                assert conv.fp32_precision == "ieee"
    finally:
        hook.remove()
        set_convolution_precision(before)


def test_a_bfloat16_scan_is_recorded_close_to_float32_and_resumed_only_as_such(tmp_path, subset_dir, lite0):
    folder = subset_dir(48)
    result, stats = scan(lite0, folder, LAYERS, tmp_path / "run", precision="bf16", progress=False)
    assert stats.backend == "torch"
    assert json.loads((tmp_path / "run" / "scan.json").read_text())["precision"] == "bf16"
    files = [folder / name for name in result.images]
    for layer in LAYERS:
        exact = per_image_activations(lite0, files, result.layer(layer).path)
        got = result.activations(layer)
        error = np.median(np.abs(got - exact) / exact.std(axis=0))  # in units of each unit's spread
        assert 1e-4 < error < 0.1, (layer, error)  # bfloat16 did run (not float32's result), and stays close
    with pytest.raises(VizprobeError, match="resume it with the same --precision"):
        scan(lite0, folder, LAYERS, tmp_path / "run", progress=False)
    with pytest.raises(VizprobeError, match="tf32 is a GPU's"):
        scan(lite0, folder, LAYERS, tmp_path / "other", precision="tf32", progress=False)
    with pytest.raises(VizprobeError, match="fp32 only"):
        scan(lite0, folder, LAYERS, tmp_path / "other", precision="bf16", backend="onnx", progress=False)
    assert not (tmp_path / "other").exists()
