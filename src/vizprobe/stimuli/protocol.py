"""Catch and practice units: easy occlusion trials of units that are not main units (Zimmermann et al. 2021).

The authors hand-picked three easy units for catch trials and others for practice, none of them used in
main trials, and in `none` replaced a catch trial's minimal option by an image of yet another unit. The
builder picks them by a documented criterion instead: among candidate units of the main units' layers,
a unit's *gap* is (activation with the best occlusion - activation with the worst) / the unit's standard
deviation over the scanned images, measured on its strongest query image that no main trial uses. The
largest gaps make the catch units, the next ones the practice units (the largest of those first: the
obvious first practice trial), and leftover candidates give the `none` condition's decoy images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vizprobe.errors import VizprobeError
from vizprobe.scan import Exemplar, ScanResult
from vizprobe.stimuli.settings import BuildSettings
from vizprobe.units import Unit

Extreme = tuple[int, int, float]  # (y, x, activation) of an occlusion position


@dataclass(frozen=True)
class Candidate:
    """A unit measured as a catch or practice unit: its query, occlusion extremes and their gap."""

    unit: Unit
    query: Exemplar
    best: Extreme
    worst: Extreme
    spread: float
    available: tuple[Exemplar, ...]  # the unit's top images that no main trial uses, strongest first
    activation_map: np.ndarray | None = None

    @property
    def gap(self) -> float:
        """(best - worst occlusion) in units of the unit's standard deviation over the scan."""
        return (self.best[2] - self.worst[2]) / self.spread if self.spread > 0 else 0.0


@dataclass(frozen=True)
class ProtocolUnits:
    catch: list[Candidate]
    practice: list[Candidate]
    decoys: list[Candidate]  # leftover candidates, for the `none` catch trials' minimal option


def candidate_units(scan: ScanResult, layers: list[str], excluded: set[Unit], n: int, seed: int) -> list[Unit]:
    """`n` units of `layers` (round robin) not in `excluded`, drawn with `seed`."""
    rng = np.random.default_rng([seed, 0x70726F74])
    free = {layer: [c for c in range(scan.layer(layer).channels) if Unit(layer, c) not in excluded] for layer in layers}
    for channels in free.values():
        rng.shuffle(channels)
    out: list[Unit] = []
    while len(out) < n and any(free.values()):
        for layer in layers:
            if free[layer] and len(out) < n:
                out.append(Unit(layer, int(free[layer].pop())))
    return out


def measure(scan: ScanResult, unit: Unit, used: set[Path], extremes, s: BuildSettings) -> Candidate:
    """Measure `unit` on its strongest image outside `used`; `extremes(unit, exemplar)` gives the occlusions."""
    ranked = scan.top(unit, min(scan.rank_limit, s.reference_ranks[1] + len(used)))  # a lean scan ranks top_k
    available = tuple(e for e in ranked if e.path not in used)[: s.reference_ranks[1]]
    if len(available) < s.reference_ranks[0] + s.references:
        raise VizprobeError(
            f"unit {unit.display} has {len(available)} top images that main trials do not use, too few for a catch "
            f"or practice trial with {s.references} references from rank {s.reference_ranks[0]}; scan more images"
        )
    best, worst, activation_map = extremes(unit, available[0])
    spread = scan.unit_std(unit)
    return Candidate(unit, available[0], best, worst, spread, available, activation_map)


def pick_protocol_units(
    scan: ScanResult,
    main: list[Unit],
    used: set[Path],
    extremes,
    s: BuildSettings,
    catch: list[Unit] | None = None,
    practice: list[Unit] | None = None,
    decoys: int = 0,
) -> ProtocolUnits:
    """Catch and practice units (named ones as given, the rest picked by gap) and `decoys` leftovers."""
    catch, practice = list(catch or []), list(practice or [])
    named = set(catch) | set(practice)
    overlap = (set(catch) & set(practice)) | (named & set(main))
    if overlap:
        raise VizprobeError(
            f"unit {sorted(overlap, key=str)[0].display} is named in two roles (main, catch, practice); "
            "each unit may have one role"
        )
    n_catch = 0 if catch else s.catch_units
    n_practice = 0 if practice else s.practice_units
    wanted = n_catch + n_practice + decoys
    layers = list(dict.fromkeys(u.layer for u in main))
    size = max(s.protocol_candidates, wanted) if wanted else 0
    pool = candidate_units(scan, layers, set(main) | named, size, s.seed)
    if len(pool) < wanted:
        raise VizprobeError(
            f"the main units' layers have {len(pool)} other channels, {wanted} are needed for catch, practice and "
            "decoy images; name the units with --catch-units and --practice-units"
        )
    measured = sorted((measure(scan, u, used, extremes, s) for u in pool), key=lambda c: -c.gap)
    chosen_catch = [measure(scan, u, used, extremes, s) for u in catch] + measured[:n_catch]
    rest = measured[n_catch:]
    chosen_practice = [measure(scan, u, used, extremes, s) for u in practice] + rest[:n_practice]
    if not practice:
        chosen_practice.sort(key=lambda c: -c.gap)  # the most obvious practice trial first
    return ProtocolUnits(chosen_catch, chosen_practice, rest[n_practice:])


def occlusion_extremes(occluder, query: torch.Tensor, channel: int, s: BuildSettings):
    """(best, worst, activation map or None) of occluding `query` for `channel`, by the build's search."""
    if s.search == "exact":
        result = occluder.sweep(query, [channel], s.patch_frac, s.stride)
        return result.extreme(channel, True), result.extreme(channel, False), result.channel(channel)
    found = occluder.search(query, [channel], s.patch_frac, s.stride)
    return found.best[channel], found.worst[channel], None
