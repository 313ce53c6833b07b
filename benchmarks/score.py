"""Exemplar-task scoring against the scan of the same layers, whole processes side by side, and the score
distribution of trained against random weights.

    python benchmarks/score.py [--images DIR] [--layers _blocks.8,_blocks.12] [--repeats 3]
    python benchmarks/score.py --distribution [--layers _blocks.8,_blocks.12]

Timing: each repeat runs `vizprobe scan` of the layers into a fresh run dir, then `vizprobe score` of every unit of
those layers from that scan, as separate processes (Python start, imports, model loading and writing included;
ONNX graphs cached by the first repeat, as a user's second run finds them). The order alternates between repeats;
medians are printed with the ratio score / scan (goal: at most 0.5).

`--distribution` scores every unit of the layers for the trained network and for the same architecture with random
weights (its initialisation saved to a temp file and scanned with `--weights`), and prints each layer's quartiles.
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


def distribution(images: Path, layers: str) -> None:
    import torch

    from vizprobe.models import load_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        random_weights = Path(tmp) / "random.pth"
        model = load_model("efficientnet-lite0", device="cpu")
        torch.manual_seed(0)
        for module in model.net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        torch.save(model.net.state_dict(), random_weights)
        for name, weights in (("trained", []), ("random", ["--weights", str(random_weights)])):
            run_dir, out = Path(tmp) / f"scan-{name}", Path(tmp) / f"scores-{name}"
            run(
                [
                    "scan",
                    "--images",
                    str(images),
                    "--layers",
                    layers,
                    "--device",
                    "cpu",
                    *weights,
                    "--out",
                    str(run_dir),
                ]
            )
            run(["score", "--scan", str(run_dir), "--layers", layers, "--device", "cpu", "--out", str(out)])
            frame = pd.read_csv(out / "scores.csv").assign(weights=name)
            rows.append(frame)
    frame = pd.concat(rows)
    table = frame.groupby(["layer", "weights"])[["score", "control"]].describe(percentiles=[0.25, 0.5, 0.75])
    columns = [("score", c) for c in ("count", "mean", "25%", "50%", "75%")] + [("control", "mean")]
    print(table[columns].round(3).to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--layers", default="_blocks.8,_blocks.12")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--distribution", action="store_true")
    args = parser.parse_args()
    if args.distribution:
        distribution(args.images, args.layers)
    else:
        timing(args.images, args.layers, args.repeats)


if __name__ == "__main__":
    main()
