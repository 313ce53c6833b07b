"""Exemplar-task scoring against the scan of the same layers, whole processes side by side, and the score
distribution of trained against random weights.

    python benchmarks/score.py [--images DIR] [--layers _blocks.8,_blocks.12] [--repeats 3]
    python benchmarks/score.py --distribution [--layers _blocks.8,_blocks.12]
    python benchmarks/score.py --model-wide [--images DIR] [--repeats 1]

Timing: each repeat runs `vizprobe scan` of the layers into a fresh run dir, then `vizprobe score` of every unit of
those layers from that scan, as separate processes (Python start, imports, model loading and writing included;
ONNX graphs cached by the first repeat, as a user's second run finds them). The order alternates between repeats;
medians are printed with the ratio score / scan (goal: at most 0.5).

`--model-wide`: every unit of every block of efficientnet-lite0 (16 blocks) over the photos: `vizprobe scan`, then
`vizprobe score --layers all`, the same score again given the first run's embeddings (`--embeddings`: what another
model's run over the same images pays), then `vizprobe explore` of the scan and its scores, each a separate process;
prints the times, (score + explore) / scan (goal: below 1) and the site's size per unit (goal: under 50 kB).

`--distribution` scores every unit of the layers for the trained network and for the same architecture with random
weights (saved to a temp file and scanned with `--weights`), once with BatchNorm's running statistics as
`reset_parameters` leaves them (0 / 1) and once re-estimated on the photos, and prints each layer's median score,
observer accuracy, colour baseline, control and the participation ratio (effective dimensionality) of its
activations.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
VIZPROBE = [sys.executable, "-m", "vizprobe.cli"]


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([*VIZPROBE, "-q", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def timing(images: Path, layers: str, repeats: int) -> None:
    scans, scores = [], []
    with tempfile.TemporaryDirectory() as tmp:

        def scan(k: int) -> float:
            return run(
                ["scan", "--images", str(images), "--layers", layers, "--device", "cpu", "--out", f"{tmp}/scan{k}"]
            )

        def score(k: int) -> float:
            return run(
                [
                    "score",
                    "--scan",
                    f"{tmp}/scan{k}",
                    "--layers",
                    layers,
                    "--device",
                    "cpu",
                    "--out",
                    f"{tmp}/scores{k}",
                ]
            )

        scan(0)  # untimed: every timed score reads the scan made just before (or after) it
        for k in range(1, repeats + 1):
            if k % 2:
                scan_s, score_s = scan(k), score(k - 1)
            else:
                score_s, scan_s = score(k - 1), scan(k)
            scans.append(scan_s)
            scores.append(score_s)
            print(f"repeat {k}: scan {scan_s:.1f} s, score {score_s:.1f} s ({score_s / scan_s:.2f}x)", flush=True)
        frame = pd.read_csv(Path(tmp) / "scores0" / "scores.csv")
    scan_m, score_m = statistics.median(scans), statistics.median(scores)
    print(
        f"medians of {repeats}: scan {scan_m:.1f} s, score {score_m:.1f} s: score / scan = {score_m / scan_m:.2f}x "
        f"({len(frame)} units)"
    )


def random_weights(path: Path, images: Path | None) -> None:
    """efficientnet-lite0's architecture with its layers re-initialized (seed 0), saved as a state dict. `images`:
    BatchNorm's running statistics then re-estimated on those photos (a cumulative average over one pass in train
    mode), as a trained network has them; None keeps `reset_parameters`' 0 / 1, under which each random layer in
    eval mode collapses to a few effective dimensions that follow global colour."""
    import torch

    from vizprobe.images import find_images, load_rgb
    from vizprobe.models import load_model

    model = load_model("efficientnet-lite0", device="cpu")
    net = model.net
    torch.manual_seed(0)
    for module in net.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    if images is not None:
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over every batch
        net.train()
        files = [images / name for name in find_images(images)]
        with torch.no_grad():
            for start in range(0, len(files), 50):
                pixels = torch.stack([model.preprocessing.to_pixels(load_rgb(f)) for f in files[start : start + 50]])
                net(model.preprocessing.normalize_uint8(pixels))
        net.eval()
    torch.save(net.state_dict(), path)


def participation_ratio(values) -> float:
    """Effective dimensionality of a layer's activations over the images: (sum of eigenvalues)^2 / sum of squares."""
    import numpy as np

    eigen = np.clip(np.linalg.eigvalsh(np.cov(np.asarray(values, dtype=np.float64), rowvar=False)), 0, None)
    return float(eigen.sum() ** 2 / (eigen**2).sum())


def distribution(images: Path, layers: str) -> None:
    from vizprobe.scan import ScanResult

    rows, dimensions = [], []
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"trained": []}
        for name, estimate in (("random, BN reset to 0/1", None), ("random, BN re-estimated", images)):
            path = Path(tmp) / f"{len(variants)}.pth"
            random_weights(path, estimate)
            variants[name] = ["--weights", str(path)]
        for k, (name, weights) in enumerate(variants.items()):
            run_dir, out = Path(tmp) / f"scan-{k}", Path(tmp) / f"scores-{k}"
            scan_args = ["scan", "--images", str(images), "--layers", layers, "--device", "cpu", *weights]
            run([*scan_args, "--out", str(run_dir)])
            run(["score", "--scan", str(run_dir), "--layers", layers, "--device", "cpu", "--out", str(out)])
            rows.append(pd.read_csv(out / "scores.csv").assign(weights=name))
            scan = ScanResult.load(run_dir)
            for layer in scan.layers:
                ratio = participation_ratio(scan.activations(layer.path))
                dimensions.append({"layer": layer.path, "weights": name, "participation_ratio": ratio})
    frame = pd.concat(rows)
    columns = ["score", "accuracy", "colour_score", "colour_accuracy", "control"]
    table = frame.groupby(["layer", "weights"], sort=False)[columns].median().add_prefix("median ")
    table["units"] = frame.groupby(["layer", "weights"], sort=False).size()
    table = table.join(pd.DataFrame(dimensions).set_index(["layer", "weights"]))
    print(table.round(3).to_string())


def model_wide(images: Path, repeats: int) -> None:
    blocks = ",".join(f"_blocks.{k}" for k in range(16))
    rows = []
    for k in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            scan_s = run(
                ["scan", "--images", str(images), "--layers", blocks, "--device", "cpu", "--out", f"{tmp}/scan"]
            )
            score = ["score", "--scan", f"{tmp}/scan", "--layers", "all", "--device", "cpu"]
            score_s = run([*score, "--out", f"{tmp}/scores"])
            # another model's run over the same images, given the embeddings the first one made
            warm_s = run([*score, "--embeddings", f"{tmp}/scores/embeddings", "--out", f"{tmp}/scores-warm"])
            explore_s = run(["explore", f"{tmp}/scan", f"{tmp}/scores", "--out", f"{tmp}/site"])
            units = len(pd.read_csv(Path(tmp) / "scores" / "scores.csv"))
            size = sum(f.stat().st_size for f in Path(tmp, "site").rglob("*") if f.is_file())
            images_kb = sum(f.stat().st_size for f in Path(tmp, "site", "img").rglob("*") if f.is_file()) / 1e3
        rows.append((scan_s, score_s, warm_s, explore_s))
        print(
            f"repeat {k + 1}: scan {scan_s:.1f} s, score {score_s:.1f} s (embeddings shared: {warm_s:.1f} s), "
            f"explore {explore_s:.1f} s: (score + explore) / scan = {(score_s + explore_s) / scan_s:.2f}x "
            f"({(warm_s + explore_s) / scan_s:.2f}x with the embeddings shared); {units} units, site "
            f"{size / 1e6:.1f} MB = {size / 1e3 / units:.1f} kB per unit (images {images_kb / units:.1f} kB)",
            flush=True,
        )
    scan_m, score_m, warm_m, explore_m = (statistics.median(column) for column in zip(*rows, strict=True))
    print(
        f"medians of {repeats}: scan {scan_m:.1f} s, score {score_m:.1f} s (shared embeddings {warm_m:.1f} s), "
        f"explore {explore_m:.1f} s: (score + explore) / scan = {(score_m + explore_m) / scan_m:.2f}x, "
        f"{(warm_m + explore_m) / scan_m:.2f}x with the embeddings shared"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--layers", default="_blocks.8,_blocks.12")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--distribution", action="store_true")
    parser.add_argument("--model-wide", action="store_true")
    args = parser.parse_args()
    if args.model_wide:
        model_wide(args.images, args.repeats)
    elif args.distribution:
        distribution(args.images, args.layers)
    else:
        timing(args.images, args.layers, args.repeats)


if __name__ == "__main__":
    main()
