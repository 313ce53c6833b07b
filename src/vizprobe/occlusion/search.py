"""Fast search: a unit's most and least activating occlusion positions without measuring the whole map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vizprobe.errors import VizprobeError
from vizprobe.occlusion.incremental import ceil_to


@dataclass
class SearchResult:
    """Extreme positions per channel found by the fast search, and how many images it evaluated."""

    best: dict[int, tuple[int, int, float]]
    worst: dict[int, tuple[int, int, float]]
    evaluations: int


def coarse_to_fine(
    evaluate,
    ys: np.ndarray,
    xs: np.ndarray,
    channels: list[int],
    coarse: int = 8,
    candidates: int = 8,
    radius: int | None = None,
    extremes: str = "both",
) -> SearchResult:
    """Extreme positions of each channel's occlusion map without measuring the whole map.

    `evaluate(points)` returns (N, C) activations for (y0, x0) points of the fine grid `ys` x `xs`.
    Measures a coarse grid (every `coarse` px, edges included), then every fine position within
    `radius` px of the `candidates` highest and lowest coarse points of each channel, and returns
    the best measured. The default radius is half the coarse spacing rounded up to the fine grid, so
    that a candidate's window reaches its neighbours' windows at any stride. Occlusion maps are
    smooth at the scale of a 90 px patch, which is what makes this work (its hit rate is measured
    in benchmarks/occlusion.py). `extremes="best"` (or `"worst"`) refines only around the highest
    (lowest) candidates, for callers that need one side; the other side is then the coarse one.
    """
    if extremes not in ("both", "best", "worst"):
        raise VizprobeError(f"extremes={extremes!r}: use both, best or worst")
    fine = {(int(y), int(x)) for y in ys for x in xs}
    ystep = int(ys[1] - ys[0]) if len(ys) > 1 else 1
    coarse = max(ystep, coarse - coarse % ystep)
    if radius is None:
        radius = ceil_to(coarse // 2, ystep)
    cy = np.unique(np.append(ys[:: coarse // ystep], ys[-1]))
    cx = np.unique(np.append(xs[:: coarse // ystep], xs[-1]))
    seen: dict[tuple[int, int], torch.Tensor] = {}

    def measure(points) -> None:
        new = sorted({p for p in points if p not in seen})
        if new:
            for p, row in zip(new, evaluate(new), strict=True):
                seen[p] = row

    measure((int(y), int(x)) for y in cy for x in cx)
    offsets = range(-radius, radius + 1)
    wanted = set()
    for c in channels:
        ranked = sorted(seen, key=lambda p, c=c: (float(seen[p][c]), p))
        chosen = (ranked[:candidates] if extremes != "best" else []) + (
            ranked[-candidates:] if extremes != "worst" else []
        )
        for y, x in chosen:
            wanted |= {(y + dy, x + dx) for dy in offsets for dx in offsets} & fine
    measure(wanted)
    best = {}
    worst = {}
    for c in channels:
        # Ties go to the first position in (y0, x0) order, as in OcclusionMap.extreme.
        hi = max(seen, key=lambda p, c=c: (float(seen[p][c]), -p[0], -p[1]))
        lo = min(seen, key=lambda p, c=c: (float(seen[p][c]), p[0], p[1]))
        best[c] = (*hi, float(seen[hi][c]))
        worst[c] = (*lo, float(seen[lo][c]))
    return SearchResult(best, worst, len(seen))
