"""Scan throughput: vizprobe's scan against the reference loop, side by side in one process.

The reference is the loop the paper's code used: one image at a time, float32 NCHW, a single
process, PIL preprocessing, a forward hook on each layer. vizprobe's scan batches (4 on the CPU),
uses channels-last memory, stops the forward pass after the deepest layer, normalizes per batch and
decodes the next images in threads while the current batch computes. The runs alternate and are
repeated; medians are printed, and the top-20 image sets of every unit must be identical.

    python benchmarks/scan.py [--images DIR] [--n 1000] [--repeats 3] [--layers _blocks.4,_blocks.8,_blocks.15]
    python benchmarks/scan.py --model timm/vit_tiny_patch16_224 --weights random --layers blocks.5,blocks.8.mlp.fc1

`--weights random` saves a timm model's random initialisation to a temp file (speed does not depend on the
weights' values; nothing is downloaded). For token layers the reference takes the mean over the patch tokens
of the hooked (N, T, C) output (class token excluded), written here independently of vizprobe.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def vizprobe_scan(model, folder: Path, layers: list[str], workers: int, compile: str) -> tuple[float, object]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result, _ = scan(model, folder, layers, Path(tmp) / "run", workers=workers, compile=compile, progress=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=os.environ.get("VIZPROBE_IMAGES", str(DEFAULT_IMAGES)))
    parser.add_argument("--n", type=int, default=1000, help="number of images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", default="_blocks.4,_blocks.8,_blocks.15")
    parser.add_argument("--workers", type=int, default=2, help="vizprobe decoding threads")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None, help="state dict, or `random` for a timm model")
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
        for name in names:
            (folder / Path(name).name).symlink_to(root / name)
        files = [folder / Path(name).name for name in names]
        sides = ["reference", "vizprobe (eager)", "vizprobe"]
        times: dict[str, list[float]] = {side: [] for side in sides}
        acts = {}
        for rep in range(args.repeats):
            for side in sides[rep % 3 :] + sides[: rep % 3]:  # rotate the order every repeat
                if side == "reference":
                    seconds, acts[side] = reference_loop(model, files, layers)
                else:
                    compile = "off" if side == "vizprobe (eager)" else "auto"
                    seconds, acts[side] = vizprobe_scan(model, folder, layers, args.workers, compile)
                times[side].append(seconds)
                print(f"  run {rep + 1} {side:17s} {len(files) / seconds:7.1f} img/s")
    rates = {side: statistics.median(len(files) / t for t in times[side]) for side in sides}
    print(f"model: {args.model}  images: {len(files)}  layers: {args.layers}  torch threads: {torch.get_num_threads()}")
    print(f"reference loop (batch 1, NCHW, PIL):  {rates['reference']:7.1f} img/s (median of {args.repeats})")
    for side, label in [("vizprobe (eager)", "--compile off"), ("vizprobe", "default, --compile auto")]:
        agree, total = top20_sets_equal(acts["reference"], acts[side])
        diff = max(np.abs(acts["reference"][k] - acts[side][k]).max() for k in layers)
        print(
            f"vizprobe scan, {label:24s} {rates[side]:7.1f} img/s  ratio {rates[side] / rates['reference']:.2f}x  "
            f"identical top-20/bottom-20 sets {agree}/{total} units, max |diff| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
