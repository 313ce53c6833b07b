"""Occlusion sweep throughput: captum's Occlusion against vizprobe's exact sweep and fast search.

All three use the paper's settings (90 px patch, stride 2, 4624 positions, patch filled with the
mean colour of the pixels it covers) on the same real photos: each unit's strongest images among
the first `--images` ImageNet samples. Captum cannot fill with a per-position mean, so its baseline
is a sentinel value that the forward function replaces by that mean before the (whole, eager,
NCHW) network runs; captum's `perturbations_per_eval` is the fastest of 1, 4, 8, 16, measured first.
The first queries also run captum and the exact sweep on whole occluded images (no incremental
windows), one side after the other, so that the machine's drift hits every side alike. Prints
seconds per query, ratios to captum (medians, and paired on the captum queries), whether the maps
agree, and for the fast search how often it finds the exact extreme positions and the gap otherwise.

    python benchmarks/occlusion.py [--captum-queries 2] [--whole-queries 4] [--queries 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from vizprobe.images import find_images, load_rgb
from vizprobe.models import load_model
from vizprobe.occlusion import Occluder
from vizprobe.scan import scan

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
UNITS = ["_blocks.5:10", "_blocks.8:12", "_blocks.8:40", "_blocks.12:7"]
SENTINEL = -1000.0


def captum_map(model, image: torch.Tensor, layer: str, channel: int, ppe: int, stride: int = 2) -> np.ndarray:
    from captum.attr import Occlusion

    module = dict(model.net.named_modules())[layer]
    captured: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o[:, channel].mean(dim=(1, 2))))

    def forward(x: torch.Tensor) -> torch.Tensor:
        mask = (x == SENTINEL).all(dim=1, keepdim=True)  # (N, 1, H, W): the occluded square, if any
        counts = mask.sum(dim=(2, 3)).clamp_min(1)
        fill = (image[None] * mask).sum(dim=(2, 3)) / counts  # mean colour under the patch
        fill = torch.round(fill.double() * 255).float() / 255
        x = torch.where(mask, fill[:, :, None, None], x)
        captured.clear()
        model.net(model.preprocessing.normalize(x))
        outputs.append(captured[0].detach())
        return captured[0]

    occlusion = Occlusion(forward)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        occlusion.attribute(
            image[None],
            sliding_window_shapes=(3, 90, 90),
            strides=(3, stride, stride),
            baselines=SENTINEL,
            perturbations_per_eval=ppe,
        )
    handle.remove()
    values = torch.cat(outputs)[1:]  # the first evaluation is the unoccluded image
    n = int(round(len(values) ** 0.5))  # captum adds a clipped edge position when the stride does not divide
    return values.numpy().reshape(n, n).T  # captum enumerates positions column-major


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=os.environ.get("VIZPROBE_IMAGES", str(DEFAULT_IMAGES)))
    parser.add_argument("--n-images", type=int, default=300, help="photos scanned for the query images")
    parser.add_argument("--captum-queries", type=int, default=2)
    parser.add_argument("--queries", type=int, default=12, help="queries for the exact sweep and fast search")
    parser.add_argument("--whole-queries", type=int, default=4, help="queries for the sweep without windows")
    args = parser.parse_args()
    model = load_model("efficientnet-lite0", device="cpu")
    root = Path(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for name in find_images(root)[: args.n_images]:
            (folder / Path(name).name).symlink_to(root / name)
        layers = sorted({u.split(":")[0] for u in UNITS})
        result, _ = scan(model, folder, layers, Path(tmp) / "scan", progress=False)
        per_unit = -(-args.queries // len(UNITS))
        queries = []  # (unit, layer, channel, pixels)
        for rank in range(per_unit):
            for unit in UNITS:
                layer, channel = unit.split(":")
                exemplar = result.top(unit, per_unit)[rank]
                pixels = model.preprocessing.pixels(load_rgb(exemplar.path))
                queries.append((unit, layer, int(channel), pixels))
        queries = queries[: args.queries]

        occluders, wholes, setup = {}, {}, {}
        for layer in layers:
            start = time.perf_counter()
            occluders[layer] = Occluder(model, layer, compile=True)
            occluders[layer].sweep(queries[0][3], [0], stride=64)  # warm up
            setup[layer] = time.perf_counter() - start
            wholes[layer] = Occluder(model, layer, compile=True, incremental=False)
            wholes[layer].sweep(queries[0][3], [0], stride=64)
        _, layer, channel, pixels = queries[0]
        ppe_times = {}
        for ppe in (1, 4, 8, 16):
            start = time.perf_counter()
            captum_map(model, pixels, layer, channel, ppe, stride=16)
            ppe_times[ppe] = time.perf_counter() - start
        best_ppe = min(ppe_times, key=ppe_times.get)
        print(f"  captum perturbations_per_eval timings (81 positions): {ppe_times} -> {best_ppe}")
        # Every side runs on the same query one after the other, so that the machine's drift hits all.
        captum_s, agreement = [], []
        exact_s, fast_s, whole_s, exact_maps, fast_results, whole_diff = [], [], [], [], [], []
        for i, (unit, layer, channel, pixels) in enumerate(queries):
            start = time.perf_counter()
            exact_maps.append(occluders[layer].sweep(pixels, [channel]))
            exact_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            fast_results.append(occluders[layer].search(pixels, [channel]))
            fast_s.append(time.perf_counter() - start)
            line = f"  {unit:14s} exact {exact_s[-1]:6.1f} s   fast {fast_s[-1]:5.2f} s"
            if i < args.whole_queries:  # the same sweep on whole occluded images (no windows), compiled
                start = time.perf_counter()
                whole = wholes[layer].sweep(pixels, [channel]).channel(channel)
                whole_s.append(time.perf_counter() - start)
                ours = exact_maps[-1].channel(channel)
                whole_diff.append(float(np.abs(ours - whole).max() / np.abs(whole).max()))
                line += f"   whole images {whole_s[-1]:6.1f} s"
            if i < args.captum_queries:
                start = time.perf_counter()
                reference = captum_map(model, pixels, layer, channel, best_ppe)
                captum_s.append(time.perf_counter() - start)
                ours = exact_maps[-1].channel(channel)
                agreement.append(float(np.abs(ours - reference).max() / np.abs(reference).max()))
                line += f"   captum {captum_s[-1]:6.1f} s (max rel. diff to exact map {agreement[-1]:.1e})"
            print(line)

    same = within = 0
    gaps = []
    for (_, _, channel, _), exact, fast in zip(queries, exact_maps, fast_results, strict=True):
        values = exact.channel(channel)
        spread = float(values.max() - values.min())
        for highest, found in ((True, fast.best[channel]), (False, fast.worst[channel])):
            y, x, true = exact.extreme(channel, highest)
            same += (found[0], found[1]) == (y, x)
            gap = abs(found[2] - true)
            within += gap <= 0.005 * abs(true)
            if (found[0], found[1]) != (y, x):
                gaps.append(gap / spread)
    n = 2 * len(queries)
    captum = statistics.median(captum_s)
    exact = statistics.median(exact_s)
    fast = statistics.median(fast_s)
    evaluations = statistics.median(r.evaluations for r in fast_results)
    print(f"queries: {len(queries)} (captum: {len(captum_s)}), 4624 positions each, threads {torch.get_num_threads()}")
    print(f"captum Occlusion (ppe {best_ppe}):  {captum:7.2f} s/query")
    paired = [c / e for c, e in zip(captum_s, exact_s, strict=False)]
    paired_fast = [c / f for c, f in zip(captum_s, fast_s, strict=False)]
    print(
        f"  paired on the captum queries: exact {statistics.median(paired):.2f}x, "
        f"fast {statistics.median(paired_fast):.1f}x"
    )
    print(
        f"vizprobe exact sweep:          {exact:7.2f} s/query  {captum / exact:5.1f}x  "
        f"(compile + warm-up once per layer: {', '.join(f'{k} {v:.0f} s' for k, v in setup.items())}); "
        f"maps agree to {max(agreement):.1e}"
    )
    if whole_s:
        whole = statistics.median(whole_s)
        paired = statistics.median(w / e for w, e in zip(whole_s, exact_s, strict=False))
        print(
            f"  exact sweep on whole images:  {whole:7.2f} s/query  {captum / whole:5.1f}x  "
            f"(windows are {paired:.2f}x faster on the same queries; maps agree to {max(whole_diff):.1e})"
        )
    print(f"vizprobe fast search:          {fast:7.2f} s/query  {captum / fast:5.1f}x  ({evaluations:.0f} positions)")
    print(
        f"fast search: same extreme position {same}/{n}; activation within 0.5 % of the true extreme {within}/{n}; "
        f"gap where it differs: median {statistics.median(gaps) if gaps else 0:.2%} of the map's range, "
        f"max {max(gaps) if gaps else 0:.2%}"
    )


if __name__ == "__main__":
    main()
