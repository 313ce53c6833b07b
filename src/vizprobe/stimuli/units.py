"""Choosing units for a study when the user does not name them."""

from __future__ import annotations

import numpy as np

from vizprobe.scan import ScanResult


def sample_units(scan: ScanResult, n: int, seed: int = 0) -> list[str]:
    """`n` units spread evenly over the scanned layers (the paper: one per layer and branch), seeded."""
    rng = np.random.default_rng(seed)
    layers = scan.layers
    units = []
    for k in range(n):
        layer = layers[k % len(layers)]
        taken = {int(u.split(":")[1]) for u in units if u.split(":")[0] == layer.name}
        free = [c for c in range(layer.channels) if c not in taken]
        units.append(f"{layer.name}:{int(rng.choice(free))}")
    return units
