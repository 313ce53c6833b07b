"""Choosing units for a study when the user does not name them."""

from __future__ import annotations

import numpy as np

from vizprobe.scan import ScanResult
from vizprobe.units import Unit


def sample_units(scan: ScanResult, n: int, seed: int = 0) -> list[Unit]:
    """`n` canonical units spread evenly over the scanned layers (the paper: one per layer and branch), seeded."""
    rng = np.random.default_rng(seed)
    layers = scan.layers
    units: list[Unit] = []
    for k in range(n):
        layer = layers[k % len(layers)]
        taken = {u.channel for u in units if u.layer == layer.path}
        free = [c for c in range(layer.channels) if c not in taken]
        units.append(Unit(layer.path, int(rng.choice(free))))
    return units
