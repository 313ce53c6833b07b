"""Reading a scan run directory back: each unit's most and least activating images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vizprobe.errors import VizprobeError
from vizprobe.scan import format as fmt
from vizprobe.units import Unit


@dataclass(frozen=True)
class Exemplar:
    """One image's activation on a unit; `rank` counts from 1 within top() or bottom()."""

    path: Path
    activation: float
    index: int
    rank: int


@dataclass(frozen=True)
class ScannedLayer:
    name: str
    path: str
    aliases: tuple[str, ...]
    channels: int
    file: str


class ScanResult:
    """A finished (or, with `allow_incomplete`, partial) scan, memory-mapped from RUN_DIR."""

    def __init__(self, run_dir: Path, meta: dict, images: list[str]):
        self.run_dir = run_dir
        self.meta = meta
        self.images = images
        self.root = Path(meta["images_root"])
        self.layers = [
            ScannedLayer(d["name"], d["path"], tuple(d.get("aliases", ())), int(d["channels"]), d["file"])
            for d in meta["layers"]
        ]
        self._arrays: dict[str, np.ndarray] = {}
        self._rankings: dict[Path, dict[str, np.ndarray]] = {}

    @classmethod
    def load(cls, run_dir: str | Path, *, allow_incomplete: bool = False) -> ScanResult:
        run_dir = Path(run_dir)
        meta_path = run_dir / fmt.SCAN_JSON
        if not meta_path.is_file():
            raise VizprobeError(f"{run_dir} is not a scan run dir (no {fmt.SCAN_JSON}); run `vizprobe scan` first")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != fmt.FORMAT or meta.get("version") not in fmt.READABLE_VERSIONS:
            raise VizprobeError(
                f"{meta_path} has format {meta.get('format')!r} v{meta.get('version')}; "
                f"this vizprobe reads {fmt.FORMAT} v{fmt.VERSION}: rescan with this version"
            )
        if meta.get("status") != "complete" and not allow_incomplete:
            raise VizprobeError(f"scan in {run_dir} is unfinished; rerun the same `vizprobe scan` command to resume it")
        images = (run_dir / fmt.IMAGES_TXT).read_text().splitlines()
        return cls(run_dir, meta, images)

    @property
    def model(self) -> str:
        return self.meta["model"]

    @property
    def directions(self) -> dict[str, Path]:
        """The directions sets of the scan's direction layers, by name: their copies in the run dir."""
        return {name: self.run_dir / record["file"] for name, record in self.meta.get("directions", {}).items()}

    @property
    def keeps_activations(self) -> bool:
        """Whether the scan wrote every image's activations (else only each unit's top/bottom-k and moments)."""
        return bool(self.meta.get("keep_activations", True))

    @property
    def rank_limit(self) -> int:
        """How many of each unit's top (or bottom) images `top` and `bottom` can give."""
        n = int(self.meta.get("n_scanned", len(self.images)))
        return n if self.keeps_activations else min(n, int(self.meta.get("top_k", n)))

    @property
    def status(self) -> np.ndarray:
        return np.load(self.run_dir / fmt.STATUS_NPY, mmap_mode="r")

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of the images that could not be read."""
        tsv = self.run_dir / fmt.SKIPPED_TSV
        if not tsv.is_file():
            return []
        rows = dict(line.split("\t", 1) for line in tsv.read_text().splitlines() if "\t" in line)
        return sorted(rows.items())

    def image_path(self, index: int) -> Path:
        return self.root / self.images[index]

    def layer(self, name: str) -> ScannedLayer:
        """A scanned layer by the name it was scanned under, its module path, or an alias."""
        for layer in self.layers:
            if name in (layer.name, layer.path, *layer.aliases):
                return layer
        names = ", ".join(layer.name for layer in self.layers)
        raise VizprobeError(f"layer {name!r} is not in this scan (scanned: {names}); rescan with it in --layers")

    def activations(self, layer: str) -> np.ndarray:
        """The (images x channels) float32 array of a layer, memory-mapped; NaN rows are skipped images."""
        scanned = self.layer(layer)
        if not self.keeps_activations:
            raise VizprobeError(
                f"the scan in {self.run_dir} kept only each unit's top/bottom {self.meta.get('top_k')} images "
                "(--no-keep-activations); rescan with --keep-activations to read every image's activation"
            )
        if scanned.file not in self._arrays:
            self._arrays[scanned.file] = np.load(self.run_dir / fmt.ACTS_DIR / scanned.file, mmap_mode="r")
        return self._arrays[scanned.file]

    def resolve_unit(self, unit: Unit | str) -> Unit:
        """The canonical unit (layer as module path) of any spelling the scan knows, checked; the spelling
        given is kept as its label."""
        given = Unit.parse(unit)
        scanned = self.layer(given.layer)
        if not 0 <= given.channel < scanned.channels:
            raise VizprobeError(f"unit {given}: layer has channels 0..{scanned.channels - 1}")
        label = given.label or (str(given) if given.layer != scanned.path else None)
        return Unit(scanned.path, given.channel, label)

    def unit_activations(self, unit: Unit | str) -> np.ndarray:
        """Activation of one unit on every image (NaN where an image was skipped)."""
        unit = self.resolve_unit(unit)
        return np.asarray(self.activations(unit.layer)[:, unit.channel], dtype=np.float32)

    def units(self) -> list[Unit]:
        """Every scanned unit, canonical."""
        return [Unit(layer.path, c) for layer in self.layers for c in range(layer.channels)]

    def _ranked(self, unit: Unit | str, k: int, descending: bool) -> list[Exemplar]:
        unit = self.resolve_unit(unit)
        cached = self._cached_ranking(unit, k, descending)
        if cached is not None:
            indices, values = cached
        elif not self.keeps_activations:
            raise VizprobeError(
                f"the scan in {self.run_dir} ranked {self.meta.get('top_k')} images per unit and kept no "
                f"activations; {k} were asked for: rescan with a larger --top-k"
            )
        else:
            values_all = self.unit_activations(unit)
            valid = np.flatnonzero(~np.isnan(values_all))
            order = np.lexsort((valid, -values_all[valid] if descending else values_all[valid]))
            indices = valid[order[:k]]
            values = values_all[indices]
        return [
            Exemplar(self.image_path(int(i)), float(v), int(i), rank)
            for rank, (i, v) in enumerate(zip(indices, values, strict=True), start=1)
        ]

    def unit_std(self, unit: Unit | str) -> float:
        """The standard deviation (ddof 0) of a unit's activation over the scanned images."""
        unit = self.resolve_unit(unit)
        if self.keeps_activations:
            return float(np.nanstd(self.unit_activations(unit)))
        with np.load(self._topk_path(unit)) as data:
            n = int(data["count"])
            mean = data["sum"][unit.channel] / n
            return float(np.sqrt(max(data["sum_sq"][unit.channel] / n - mean * mean, 0.0)))

    def _topk_path(self, unit: Unit) -> Path:
        return self.run_dir / fmt.TOPK_DIR / self.layer(unit.layer).file.replace(".npy", ".npz")

    def _cached_ranking(self, unit: Unit, k: int, descending: bool):
        data = self._ranking_file(unit)
        if data is None:
            return None
        side = "top" if descending else "bottom"
        indices, values, count = data[f"{side}_index"], data[f"{side}_value"], int(data["count"])
        stored = indices.shape[1]
        if k > stored and stored < count:
            return None
        n = min(k, stored, count)
        return indices[unit.channel, :n], values[unit.channel, :n]

    def _ranking_file(self, unit: Unit) -> dict[str, np.ndarray] | None:
        """The unit's layer's top/bottom-k arrays; read once per layer of a finished scan (pages, builds and
        scores ask unit by unit), every time while a scan is still being written."""
        path = self._topk_path(unit)
        if path in self._rankings:
            return self._rankings[path]
        if not path.is_file():
            return None
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        if self.meta.get("status") == "complete":
            self._rankings[path] = arrays
        return arrays

    def top(self, unit: Unit | str, k: int = 9) -> list[Exemplar]:
        """The k images that activate `unit` most, strongest first (ties broken by image order)."""
        return self._ranked(unit, k, descending=True)

    def bottom(self, unit: Unit | str, k: int = 9) -> list[Exemplar]:
        """The k images that activate `unit` least, weakest first."""
        return self._ranked(unit, k, descending=False)
