"""`vizprobe explore`: a static site of a scan's units, to browse what drives each unit next to its score.

SITE/index.html lists the layers (each with the histogram of its units' scores) and their units sorted by score,
with a thumbnail of each unit's top image and a filter; SITE/units/UNIT.html shows a unit: its score with
interval and control, its top and bottom exemplars with their activations, its feature visualizations (each
`--visualizations` dir), occlusion heatmaps of its top exemplars (from a stimulus package's exact sweeps, or
swept here with `occlusion=K`), the histogram of its activation over the scanned images, and its neighbours.
Every image is written once (SITE/img/: a 128 px thumbnail and a copy of at most 512 px), shared by the pages.
The site needs no server: it opens from the file system or any static host. SITE/explorer.json marks it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vizprobe.errors import VizprobeError
from vizprobe.explore.images import ImageWriter, heatmap, histogram_svg
from vizprobe.explore.pages import Picture, UnitPage, index_page, unit_page
from vizprobe.files import atomic_write_json, atomic_write_text, staged_dir

MARKER = "explorer.json"
FORMAT = "vizprobe-explorer"
VERSION = 1


@dataclass(frozen=True)
class ExploreSettings:
    """What the site shows per unit."""

    exemplars: int = 9  # top and bottom images per unit
    occlusion: int = 0  # top images per unit swept here for occlusion heatmaps (0: only a package's sweeps)
    stride: int = 8  # of those sweeps, in pixels (the patch is the paper's 0.4 of the image side)


def scores_for_scan(scores: str | Path, scan) -> pd.DataFrame:
    """The rows of a scores folder (or its scores.csv) that belong to `scan`; a one-line error when the scores
    come from another scan."""
    folder = Path(scores)
    folder = folder.parent if folder.suffix == ".csv" else folder
    record_path, table = folder / "scores.json", folder / "scores.csv"
    if not record_path.is_file() or not table.is_file():
        raise VizprobeError(f"{scores} is not a scores folder (scores.json, scores.csv); run `vizprobe score` first")
    record = json.loads(record_path.read_text())
    if record.get("task", "exemplar") != "exemplar":
        raise VizprobeError(f"{folder} holds {record.get('task')} scores; the explorer shows exemplar-task scores")
    here = str(Path(scan.run_dir).resolve())
    fingerprint = scan.meta.get("images_fingerprint")
    frame = pd.read_csv(table)
    if "scans" in record:  # several scans in one run: this scan's rows
        for entry in record["scans"]:
            same_images = entry.get("images_fingerprint") == fingerprint and entry.get("model") == scan.model
            if entry["scan"] == here or same_images:
                return frame[frame["scan"] == entry["key"]].reset_index(drop=True)
        scanned = ", ".join(entry["scan"] for entry in record["scans"])
    else:
        if str(Path(record.get("scan", "")).resolve()) == here or record.get("model") == scan.model:
            return frame
        scanned = record.get("scan", "?")
    raise VizprobeError(
        f"{folder} holds scores of {scanned}, not of the scan {here}; score this scan first "
        f"(vizprobe score --scan {here} --layers all --out DIR)"
    )


def _check_units(frame: pd.DataFrame, scan) -> None:
    known = {str(u) for u in scan.units()}
    unknown = sorted(set(frame["unit"].astype(str)) - known)
    if unknown:
        raise VizprobeError(
            f"the scores name {len(unknown)} units that are not in the scan ({', '.join(unknown[:5])}); "
            "pass the scores of this scan"
        )


def _layers(scan, layers: Sequence[str] | None) -> list:
    if not layers:
        return list(scan.layers)
    return [scan.layer(name) for name in layers]


def _exemplars(writer: ImageWriter, ranked: list, side: str) -> list[Picture]:
    return [
        Picture(
            writer.photo(f"p/{e.index}", e.path),
            f"#{e.rank}: {e.activation:.3g}",
            f"{side} {e.rank} image {Path(e.path).name}, activation {e.activation:.3g}",
        )
        for e in ranked
    ]


def _visualizations(writer: ImageWriter, indexes: list[tuple[str, Path, dict]], unit) -> dict[str, list[Picture]]:
    from vizprobe.synthesis.store import unit_entry

    out = {}
    for method, root, index in indexes:
        entry = unit_entry(index, unit)
        if entry is None:
            continue
        pictures = []
        for j, image in enumerate(entry["images"]):
            files = writer.photo(f"v/{method}/{unit.folder}-{j:02d}", root / image["file"])
            activation = image.get("activation")
            caption = f"{activation:.3g}" if activation is not None else ""
            pictures.append(Picture(files, caption, f"{method} visualization {j + 1} of {unit}, activation {caption}"))
        out[method] = pictures
    return out


def _visualization_indexes(dirs: Sequence[str | Path]) -> list[tuple[str, Path, dict]]:
    if not dirs:
        return []
    from vizprobe.synthesis.store import load_visualizations

    indexes, seen = [], set()
    for folder in dirs:
        index = load_visualizations(folder)
        method = index.get("settings", {}).get("param", "visualization")
        name = method if method not in seen else f"{method}-{Path(folder).name}"
        seen.add(name)
        indexes.append((name, Path(folder), index))
    return indexes


def _package_heatmaps(writer: ImageWriter, manifest, unit) -> list[Picture]:
    """Heatmaps of the package's exact sweeps of this unit's main queries."""
    from PIL import Image

    pictures = []
    for trial in manifest.trials.values():
        if trial.unit != str(unit) or trial.kind != "main" or not trial.activation_map:
            continue
        values = np.load(manifest.path(trial.activation_map))
        with Image.open(manifest.path(trial.base_image)) as query:
            image = heatmap(query.convert("RGB"), values.max() - values)
        files = writer.photo(f"o/{trial.trial_id}", image)
        caption = f"query of image set {trial.image_set}"
        pictures.append(Picture(files, caption, f"occlusion heatmap of {unit} on its {caption}"))
    return pictures


class _Sweeps:
    """Occlusion sweeps of the top exemplars, computed here: one sweep per (layer, image) serves every unit."""

    def __init__(self, scan, settings: ExploreSettings, device: str):
        from vizprobe.models import load_model

        self.scan, self.settings = scan, settings
        weights = scan.meta.get("weights")
        weights = weights if weights and Path(weights).is_file() else None  # else the model's own (by name)
        directions = scan.directions or None
        self.model = load_model(scan.model, weights=weights, device=device, directions=directions)
        self.occluders: dict = {}
        self.maps: dict = {}

    def pictures(self, writer: ImageWriter, unit) -> list[Picture]:
        from vizprobe.images import load_rgb, to_pil
        from vizprobe.occlusion import Occluder

        if unit.layer not in self.occluders:
            self.occluders = {unit.layer: Occluder(self.model, unit.layer)}  # one layer's at a time
            self.maps = {}
        out = []
        for e in self.scan.top(unit, self.settings.occlusion):
            key = (unit.layer, e.index)
            if key not in self.maps:
                try:
                    pixels = self.model.preprocessing.pixels(load_rgb(e.path))
                except OSError:
                    writer.missing.append(str(e.path))
                    continue
                channels = list(range(self.scan.layer(unit.layer).channels))
                sweep = self.occluders[unit.layer].sweep(pixels, channels, stride=self.settings.stride)
                self.maps[key] = (to_pil(pixels), sweep)
            image, sweep = self.maps[key]
            drop = sweep.base[unit.channel] - sweep.channel(unit.channel)
            files = writer.photo(f"s/{unit.folder}-{e.rank}", heatmap(image, drop))
            out.append(Picture(files, f"top {e.rank}", f"occlusion heatmap of {unit} on its top {e.rank} image"))
        return out


def explore(
    scan,
    out: str | Path,
    scores: str | Path | None = None,
    *,
    visualizations: Sequence[str | Path] = (),
    stimuli: str | Path | None = None,
    layers: Sequence[str] | None = None,
    settings: ExploreSettings | None = None,
    force: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """Write the explorer site of `scan` (a run dir or ScanResult) to `out`; returns the site's record
    (explorer.json: units, pages, images written, missing image files)."""
    from vizprobe.scan import ScanResult

    settings = settings or ExploreSettings()
    scan = scan if not isinstance(scan, str | Path) else ScanResult.load(scan)
    chosen = _layers(scan, layers)
    frame = scores_for_scan(scores, scan) if scores is not None else None
    if frame is not None:
        _check_units(frame, scan)
    indexes = _visualization_indexes(visualizations)
    manifest = None
    if stimuli is not None:
        from vizprobe.stimuli.manifest import Manifest

        manifest = Manifest.load(stimuli)
    out = Path(out)
    if out.exists() and not (out / MARKER).is_file():
        if not force:
            raise VizprobeError(f"--out {out} exists and is not an explorer site; choose a new folder or pass --force")
        shutil.rmtree(out)
    sweeps = _Sweeps(scan, settings, device) if settings.occlusion else None
    rows = {} if frame is None else {r["unit"]: r for r in frame.to_dict("records")}
    with staged_dir(out, MARKER, "explorer site") as staging:
        writer = ImageWriter(staging)
        ranked = _rankings(scan, chosen, settings.exemplars)
        writer.prefetch({f"p/{e.index}": e.path for top, bottom in ranked.values() for e in top + bottom}, progress)
        pages, by_layer = _unit_pages(scan, chosen, rows, ranked, writer, indexes, manifest, sweeps, progress)
        note = _scores_note(scores, frame)
        for page in pages:
            target = staging / page.href
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(unit_page(page, scan.model, note))  # the staged site is renamed in place as a whole
        sections = []
        for layer, layer_pages in by_layer:
            ranked = sorted(layer_pages, key=lambda p: -p.score["score"] if p.score else 0.0)
            values = [p.score["score"] for p in layer_pages if p.score]
            hist = histogram_svg(np.asarray(values), f"scores of {layer}", 20, (0.0, 1.0)) if values else ""
            sections.append((layer, hist, ranked))
        summary = f"{len(pages)} units of {len(by_layer)} layers, {len(scan.images)} scanned images; {note}"
        atomic_write_text(staging / "index.html", index_page(scan.model, sections, summary, writer.missing))
        assets = staging / "assets"
        assets.mkdir()
        for name in ("style.css", "filter.js"):
            (assets / name).write_text(resources.files("vizprobe.explore").joinpath("static", name).read_text())
        record = {
            "format": FORMAT,
            "version": VERSION,
            "scan": str(Path(scan.run_dir).resolve()),
            "model": scan.model,
            "scores": str(Path(scores).resolve()) if scores is not None else None,
            "visualizations": [str(Path(v).resolve()) for v in visualizations],
            "stimuli": str(Path(stimuli).resolve()) if stimuli is not None else None,
            "layers": [layer.path for layer in chosen],
            "units": len(pages),
            "images": sum(1 for v in writer.written.values() if v is not None),
            "missing": sorted(set(writer.missing)),
        }
        atomic_write_json(staging / MARKER, record)
    return record


def _rankings(scan, chosen, k: int) -> dict[str, tuple[list, list]]:
    """Every shown unit's top and bottom `k` exemplars, by unit."""
    from vizprobe.units import Unit

    units = [Unit(layer.path, c) for layer in chosen for c in range(layer.channels)]
    return {str(u): (scan.top(u, k), scan.bottom(u, k)) for u in units}


def _scores_note(scores, frame) -> str:
    """What the scores are and whether their probability is calibrated to people (from the scores' record)."""
    from vizprobe.score.folder import calibration_note

    if frame is None:
        return "no scores given (vizprobe score, then vizprobe explore SCAN SCORES)"
    folder = Path(scores)
    marker = folder / "scores.json" if folder.is_dir() else folder.parent / "scores.json"
    record = json.loads(marker.read_text()) if marker.is_file() else {}
    return (
        "score: the machine observer's exemplar-task score (MIS), 95% bootstrap interval over tasks; "
        f"{calibration_note(record)}; colour: the same tasks answered from colour statistics alone"
    )


def _unit_pages(scan, chosen, rows, ranked, writer, indexes, manifest, sweeps, progress):
    from vizprobe.units import Unit

    pages, by_layer = [], []
    total = sum(layer.channels for layer in chosen)
    with tqdm(total=total, desc="explore", unit="unit", disable=not progress) as bar:
        for layer in chosen:
            layer_pages = []
            for channel in range(layer.channels):
                unit = Unit(layer.path, channel)
                page = UnitPage(str(unit), str(unit), layer.name, f"units/{unit.folder}.html", rows.get(str(unit)))
                top, bottom = ranked[str(unit)]
                page.top, page.bottom = _exemplars(writer, top, "top"), _exemplars(writer, bottom, "bottom")
                page.visualizations = _visualizations(writer, indexes, unit)
                if manifest is not None:
                    page.occlusion = _package_heatmaps(writer, manifest, unit)
                if sweeps is not None:
                    page.occlusion += sweeps.pictures(writer, unit)
                if not page.occlusion:
                    page.occlusion_note = "no sweeps: pass --stimuli PACKAGE (exact search) or --occlusion K"
                if scan.keeps_activations:
                    values = scan.unit_activations(unit)
                    page.histogram = histogram_svg(values, f"activation of {unit} over {len(values)} images")
                layer_pages.append(page)
                bar.update(1)
            by_layer.append((layer.name, layer_pages))
            pages += layer_pages
    for before, after in zip(pages, pages[1:], strict=False):
        before.next, after.previous = after, before
    return pages, by_layer
