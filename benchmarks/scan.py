"""Scan throughput: vizprobe's scan against the reference loop, side by side in one process.

The reference is the loop the paper's code used: one image at a time, float32 NCHW, a single
process, PIL preprocessing, a forward hook on each layer. vizprobe's scan batches (4 on the CPU),
uses channels-last memory, stops the forward pass after the deepest layer, normalizes per batch and
decodes the next images in threads while the current batch computes. The runs alternate and are
repeated; medians are printed, and the top-20 image sets of every unit must be identical.

    python benchmarks/scan.py [--images DIR] [--n 1000] [--repeats 3] [--layers _blocks.4,_blocks.8,_blocks.15]
    python benchmarks/scan.py --model timm/vit_tiny_patch16_224 --weights random --layers blocks.5,blocks.8.mlp.fc1
    python benchmarks/scan.py --cold [--n 1000] [--copies 1]   # whole processes, as a newcomer meets them

`--cold` times whole processes instead: the reference loop as a script, and `vizprobe scan` once per backend,
each run with a fresh cache (no exported ONNX graph, no inductor cache: "cold") and then again on the cache
the cold run left ("warm"). Wall times include Python start, imports, model loading, the export or compile,
and writing the run dir. `--copies K` scans the photos K times under other names (symlinks) for a larger
collection; `--reference-n M` times the reference loop on the first M images only and scales its per-image
time (the loop has no one-time cost beyond start-up, which is measured and added once).

`--weights random` saves a timm model's random initialisation to a temp file (speed does not depend on the
weights' values; nothing is downloaded). For token layers the reference takes the mean over the patch tokens
of the hooked (N, T, C) output (class token excluded), written here independently of vizprobe.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vizprobe.images import find_images, load_rgb
from vizprobe.models import load_model
from vizprobe.scan import scan

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def reference_loop(model, files: list[Path], layers: list[str]) -> tuple[float, dict[str, np.ndarray]]:
    """Batch 1, NCHW float32, PIL preprocessing, full forward pass with hooks. Returns (seconds, acts)."""
    transform = model.preprocessing.pil_transform()
    modules = dict(model.net.named_modules())
    prefix = int(getattr(model.net, "num_prefix_tokens", 0) or 0)
    captured: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    handles = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: captured[name].append(_unit_means(o, prefix)))
        for name in layers
    ]
    start = time.perf_counter()
    with torch.no_grad():
        for path in files:
            model.net(transform(load_rgb(path)).unsqueeze(0))
    seconds = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    return seconds, {name: torch.stack(rows).numpy() for name, rows in captured.items()}


def _unit_means(output: torch.Tensor, prefix: int) -> torch.Tensor:
    """One image's unit activations: spatial mean of a (1, C, H, W) map, mean over patch tokens of (1, T, C)."""
    return output.mean(dim=(2, 3))[0] if output.ndim == 4 else output[0, prefix:].mean(dim=0)


def _model(name: str, weights: str | None, tmp: Path):
    if weights == "random":
        import timm

        torch.manual_seed(0)
        weights = str(tmp / "random.pth")
        torch.save(timm.create_model(name.removeprefix("timm/"), pretrained=False).state_dict(), weights)
    return load_model(name, weights=weights, device="cpu")


def vizprobe_scan(model, folder: Path, layers: list[str], workers: int, backend: str) -> tuple[float, object]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result, _ = scan(
            model, folder, layers, Path(tmp) / "run", workers=workers, backend=backend, compile="off", progress=False
        )
        seconds = time.perf_counter() - start
        acts = {name: np.array(result.activations(name)) for name in layers}
    return seconds, acts


def top20_sets_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[int, int]:
    """(units whose top-20 and bottom-20 sets agree, units compared)."""
    agree = total = 0
    for name in a:
        for channel in range(a[name].shape[1]):
            total += 1
            top_a, top_b = (set(np.argsort(-x[name][:, channel], kind="stable")[:20]) for x in (a, b))
            bot_a, bot_b = (set(np.argsort(x[name][:, channel], kind="stable")[:20]) for x in (a, b))
            agree += top_a == top_b and bot_a == bot_b
    return agree, total


REFERENCE_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from scan import reference_loop
from vizprobe.models import load_model
files = sorted(Path(sys.argv[1]).iterdir())[: int(sys.argv[3])]
seconds, _ = reference_loop(load_model(device="cpu"), files, sys.argv[2].split(","))
print(seconds)
"""


PEAK_RSS: list[int] = []  # KiB, per timed process (GNU time's %M)


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, *command],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        PEAK_RSS.append(int(rss.read().split()[-1]))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def cold_main(args: argparse.Namespace, files: list[Path], folder: Path, tmp: Path) -> None:
    """Whole processes: the reference script and `vizprobe scan` per backend, cold then warm caches."""
    import shutil

    n = len(files)
    ref_n = min(args.reference_n or n, n)
    here = str(Path(__file__).resolve().parent)
    vizprobe = str(Path(sys.executable).with_name("vizprobe"))
    sides = {
        "onnxruntime": ["--backend", "onnx"],
        "torch eager": ["--backend", "torch", "--compile", "off"],
        "torch compiled": ["--backend", "torch", "--compile", "on"],
        "onnxruntime lean": ["--backend", "onnx", "--no-keep-activations"],  # only each unit's top/bottom-k
        "ray 1 worker": ["--engine", "ray", "--workers", "1"],  # Ray started on this machine by the command
        "ray 2 workers": ["--engine", "ray", "--workers", "2"],
    }
    sides = {name: flags for name, flags in sides.items() if not args.sides or name in args.sides.split(",")}
    temperatures = args.temperatures.split(",")
    few = tmp / "two-images"
    few.mkdir()
    for f in files[:2]:
        (few / f.name).symlink_to(f)
    wall: dict[str, list[float]] = {"reference": []} | {f"{s} {c}": [] for s in sides for c in temperatures}
    rss: dict[str, list[int]] = {side: [] for side in wall}
    disk: dict[str, int] = {}
    for rep in range(args.repeats):
        order = ["reference", *sides]
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for side in order:
            env = dict(os.environ)
            if side == "reference":
                script = [sys.executable, "-c", REFERENCE_SCRIPT, str(folder), args.layers, str(ref_n), here]
                total, out = _timed(script, env)
                loop = float(out.strip().splitlines()[-1])
                wall["reference"].append(total + loop * (n / ref_n - 1))  # start-up once, the loop scaled to n
                rss["reference"].append(PEAK_RSS[-1])
                print(f"  run {rep + 1} reference        {wall['reference'][-1]:8.1f} s  ({ref_n} images timed)")
                continue
            cache = tmp / f"cache-{rep}-{side.replace(' ', '-')}"
            env |= {"VIZPROBE_CACHE": str(cache), "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor")}
            if temperatures[0] == "warm":  # fill the cache first, untimed, on two images
                warm_up = [
                    vizprobe,
                    "-q",
                    "scan",
                    "--images",
                    str(few),
                    "--layers",
                    args.layers,
                    "--out",
                    str(tmp / "warm-up"),
                    "--device",
                    "cpu",
                    *sides[side],
                ]
                done = subprocess.run(warm_up, env=env, capture_output=True, text=True, check=False)
                if done.returncode:
                    raise SystemExit(f"warm-up failed: {done.stderr[-3000:]}")
                shutil.rmtree(tmp / "warm-up")
            for temperature in temperatures:
                out_dir = tmp / f"run-{rep}-{side.replace(' ', '-')}-{temperature}"
                command = [
                    vizprobe,
                    "-q",
                    "scan",
                    "--images",
                    str(folder),
                    "--layers",
                    args.layers,
                    "--out",
                    str(out_dir),
                    "--device",
                    "cpu",
                    *sides[side],
                ]
                seconds, _ = _timed(command, env)
                wall[f"{side} {temperature}"].append(seconds)
                rss[f"{side} {temperature}"].append(PEAK_RSS[-1])
                print(f"  run {rep + 1} {side:15s} {temperature}  {seconds:8.1f} s")
                disk[side] = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
                shutil.rmtree(out_dir)
            shutil.rmtree(cache, ignore_errors=True)
    reference = statistics.median(wall["reference"])
    print(f"model: efficientnet-lite0  images: {n}  layers: {args.layers}  whole processes, medians of {args.repeats}")
    peak = max(rss["reference"]) / 1024
    print(
        f"reference loop (batch 1, NCHW, PIL)      {reference:8.1f} s  {n / reference:7.1f} img/s  1.00x  "
        f"peak RSS {peak:.0f} MiB"
    )
    for side, times in wall.items():
        if side != "reference":
            t, peak = statistics.median(times), max(rss[side]) / 1024
            rate = f"{n / t:7.1f} img/s  {reference / t:.2f}x"
            name, temperature = side.rsplit(" ", 1)
            local = wall.get(f"onnxruntime {temperature}")
            versus = (
                f"  {t / statistics.median(local):.2f}x the local engine's time"
                if local and name != "onnxruntime"
                else ""
            )
            print(
                f"vizprobe scan, {side:26s} {t:8.1f} s  {rate}  peak RSS {peak:.0f} MiB  run dir "
                f"{disk[name] / 2**20:.1f} MiB{versus}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=os.environ.get("VIZPROBE_IMAGES", str(DEFAULT_IMAGES)))
    parser.add_argument("--n", type=int, default=1000, help="number of images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", default="_blocks.4,_blocks.8,_blocks.15")
    parser.add_argument("--workers", type=int, default=2, help="vizprobe decoding threads")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None, help="state dict, or `random` for a timm model")
    parser.add_argument("--cold", action="store_true", help="whole processes, fresh caches then warm ones")
    parser.add_argument("--copies", type=int, default=1, help="with --cold: the photos K times under other names")
    parser.add_argument("--reference-n", type=int, default=None, help="with --cold: time the reference on M images")
    parser.add_argument(
        "--sides",
        default="onnxruntime,torch eager,torch compiled",
        help="with --cold: any of onnxruntime, torch eager, torch compiled, onnxruntime lean, "
        "ray 1 worker, ray 2 workers",
    )
    parser.add_argument("--temperatures", default="cold,warm", help="with --cold: cold, warm or both")
    args = parser.parse_args()
    root = Path(args.images)
    if not root.is_dir():
        raise SystemExit(f"no images at {root}: set VIZPROBE_IMAGES or pass --images DIR")
    layers = args.layers.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(args.model, args.weights, Path(tmp))
        folder = Path(tmp) / "images"
        folder.mkdir()
        names = find_images(root)[: args.n]
        for copy in range(args.copies):
            for name in names:
                (folder / f"{copy:03d}-{Path(name).name}").symlink_to(root / name)
        files = sorted(folder.iterdir())
        if args.cold:
            cold_main(args, files, folder, Path(tmp))
            return
        sides = ["reference", "vizprobe (torch)", "vizprobe"]
        times: dict[str, list[float]] = {side: [] for side in sides}
        acts = {}
        for rep in range(args.repeats):
            for side in sides[rep % 3 :] + sides[: rep % 3]:  # rotate the order every repeat
                if side == "reference":
                    seconds, acts[side] = reference_loop(model, files, layers)
                else:
                    backend = "torch" if side == "vizprobe (torch)" else "auto"
                    seconds, acts[side] = vizprobe_scan(model, folder, layers, args.workers, backend)
                times[side].append(seconds)
                print(f"  run {rep + 1} {side:17s} {len(files) / seconds:7.1f} img/s")
    rates = {side: statistics.median(len(files) / t for t in times[side]) for side in sides}
    print(f"model: {args.model}  images: {len(files)}  layers: {args.layers}  torch threads: {torch.get_num_threads()}")
    print(f"reference loop (batch 1, NCHW, PIL):  {rates['reference']:7.1f} img/s (median of {args.repeats})")
    for side, label in [("vizprobe (torch)", "--backend torch"), ("vizprobe", "default (onnxruntime)")]:
        agree, total = top20_sets_equal(acts["reference"], acts[side])
        diff = max(np.abs(acts["reference"][k] - acts[side][k]).max() for k in layers)
        print(
            f"vizprobe scan, {label:24s} {rates[side]:7.1f} img/s  ratio {rates[side] / rates['reference']:.2f}x  "
            f"identical top-20/bottom-20 sets {agree}/{total} units, max |diff| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
