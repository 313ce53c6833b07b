"""The visualizations directory, format `vizprobe-visualizations` version 2.

    OUT/
      visualizations.json   model, weights, settings, and per unit: `unit` (canonical LAYER_PATH:CHANNEL,
                            the key readers look units up by), `label` (as the user wrote it), its
                            images (file, seed, final activation), their mean, with `--mixed-extra N`
                            `mixed_images` (a separate batch of N for the `mixed` condition), and with
                            a scan the unit's top-1 natural activation and the ratio mean/top-1
                            (`settings.param` is the method); accentuation images record their `start_image`
                            (the natural image they started from)
      LAYER_CHANNEL/00.png  one PNG per image (size x size, RGB)
      LAYER_CHANNEL/00_transparency.png  renderings through random crops (maco, accentuation): where the
                            objective's gradient fell over the optimization (Horama's transparency map: the
                            channel mean of the summed |gradient|, clipped at its 80th percentile, scaled to
                            0..255), recorded as the image's `transparency`; the image's `crop_activation` is its
                            activation as the crops showed it (the central box of the mean crop side)
      maco_spectrum.npy     maco: the Fourier magnitude (3, size, size // 2 + 1) the images were given, recorded
                            in the index's `spectrum` with where it was measured
      directions/NAME.npy|npz  copies of the directions sets of direction units (`LAYER:NAME:K`), recorded in
                            the index's `directions` with their sha256

Version 1 keyed units by the spelling the user typed (an alias, say); it is read by migrating its
keys to the canonical form (its images and seeds stay as they were rendered).

Written to a temporary sibling folder and renamed into place (`files.staged_dir`), so OUT is
never half-written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_bytes, atomic_write_json, staged_dir
from vizprobe.images import to_pil
from vizprobe.synthesis.rendering import Rendering
from vizprobe.units import Unit

FORMAT = "vizprobe-visualizations"
VERSION = 2
INDEX = "visualizations.json"


SPECTRUM_NPY = "maco_spectrum.npy"


def save_visualizations(rendering: Rendering, out: str | Path, model, scan=None, reference_paths=None) -> dict:
    """Write PNGs and the index for `rendering`; `scan` (a ScanResult) adds natural top-1 references;
    `reference_paths` (unit -> paths of the natural references it was rendered with) names start images."""
    import vizprobe

    with staged_dir(out, INDEX, "visualizations dir") as staging:
        units = []
        for k, unit in enumerate(rendering.units):
            folder = unit.folder
            (staging / folder).mkdir()
            flags = rendering.extra or [False] * len(rendering.unit_index)
            rows = [i for i, u in enumerate(rendering.unit_index) if u == k]
            images, mixed = [], []
            for j, i in enumerate(rows):
                name = f"{folder}/{j:02d}.png"
                to_pil(rendering.images[i]).save(staging / name)
                record = {"file": name, "seed": rendering.seeds[i], "activation": float(rendering.activations[i])}
                if rendering.transparency is not None:
                    record["transparency"] = f"{folder}/{j:02d}_transparency.png"
                    transparency_image(rendering.transparency[i]).save(staging / record["transparency"])
                    record["crop_activation"] = float(rendering.crop_activations[i])
                if rendering.targets:
                    record["steps"] = rendering.steps[i]  # fewer than the budget where it met its target
                if rendering.seed_images:
                    start = rendering.seed_images[i]
                    record["start_image"] = str(reference_paths[unit][start]) if reference_paths else start
                (mixed if flags[i] else images).append(record)
            entry = {
                "unit": str(unit),
                "label": unit.display,
                "layer_path": unit.layer,
                "channel": unit.channel,
                "images": images,
                "mean_activation": float(np.mean([im["activation"] for im in images])),
            }
            if rendering.crop_activations is not None:
                entry["mean_crop_activation"] = float(np.mean([im["crop_activation"] for im in images]))
            if rendering.targets:
                entry["target"] = rendering.targets[unit]
            if mixed:
                entry["mixed_images"] = mixed  # the separate batch the `mixed` condition takes its images from
            if scan is not None:
                top1 = scan.top(unit, 1)[0].activation
                entry["natural_top1"] = top1
                entry["ratio_to_natural_top1"] = entry["mean_activation"] / top1 if top1 else None
            units.append(entry)
        directions = {}
        for name in sorted({u.directions for u in rendering.units if u.directions}):
            found = model.directions[name]
            directions[name] = found.record(f"directions/{name}{found.suffix}")
            atomic_write_bytes(staging / directions[name]["file"], Path(found.source).read_bytes())
        index = {
            "format": FORMAT,
            "version": VERSION,
            "vizprobe_version": vizprobe.__version__,
            "model": model.name,
            "weights": model.weights,
            "settings": rendering.settings.to_dict(),
            **({"accent_layer": rendering.accent_layer} if rendering.accent_layer else {}),
            "precision": rendering.precision,
            "seconds": round(rendering.seconds, 2),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "units": units,
            **({"directions": directions} if directions else {}),
        }
        if rendering.spectrum is not None:
            np.save(staging / SPECTRUM_NPY, rendering.spectrum.cpu().numpy())
            index["spectrum"] = {"file": SPECTRUM_NPY, "source": rendering.spectrum_source}
        atomic_write_json(staging / INDEX, index)
    return index


def load_visualizations(path: str | Path) -> dict:
    """The index of a visualizations dir, with `dir` set; version 1 is migrated to canonical unit keys."""
    path = Path(path)
    if not (path / INDEX).is_file():
        raise VizprobeError(f"{path} is not a visualizations dir (no {INDEX}); run `vizprobe visualize` first")
    index = json.loads((path / INDEX).read_text())
    if index.get("format") != FORMAT or index.get("version") not in (1, VERSION):
        raise VizprobeError(f"{path / INDEX} is not {FORMAT} v{VERSION}; re-render with `vizprobe visualize`")
    if index["version"] == 1:
        for entry in index["units"]:
            entry["label"] = entry["unit"]
            entry["unit"] = f"{entry['layer_path']}:{entry['channel']}"
        index["version"] = VERSION
    index["dir"] = str(path)
    return index


def unit_entry(index: dict, unit: Unit) -> dict | None:
    """The index entry of a canonical unit, or None."""
    return next((entry for entry in index["units"] if entry["unit"] == str(unit)), None)


def transparency_image(summed: torch.Tensor, percentile: float = 80.0) -> Image.Image:
    """A transparency map (S, S) of summed |gradient| as a greyscale PNG, as Horama's `plot_maco` shows it:
    clipped at its `percentile`-th percentile and divided by that."""
    values = summed.float().numpy()
    top = float(np.percentile(values, percentile)) or 1.0
    return Image.fromarray((np.clip(values / top, 0, 1) * 255).round().astype(np.uint8), mode="L")


def with_transparency(image: Image.Image, alpha: Image.Image) -> Image.Image:
    """The image over white, opaque where the map is bright (how MACO's images are shown)."""
    white = Image.new("RGB", image.size, "white")
    return Image.composite(image.convert("RGB"), white, alpha.resize(image.size, Image.Resampling.BILINEAR))


def _shown(folder: Path, image: dict) -> Image.Image:
    """An image of a visualizations dir as the sheets show it: through its transparency map where it has one."""
    with Image.open(folder / image["file"]) as im:
        tile = im.convert("RGB")
    if "transparency" in image:
        with Image.open(folder / image["transparency"]) as alpha:
            tile = with_transparency(tile, alpha.convert("L"))
    return tile


def overview_sheet(vis_dir: str | Path, scan=None, thumb: int = 96, natural: int = 4):
    """One row per unit: its synthetic images, then (with a scan) its top natural images."""
    from PIL import ImageDraw, ImageFont, ImageOps

    from vizprobe.images import load_rgb

    index = load_visualizations(vis_dir)
    per_unit = max(len(u["images"]) for u in index["units"])
    cols = per_unit + (natural if scan is not None else 0)
    label_w, pad, gap = 110, 4, 16
    width = label_w + cols * (thumb + pad) + (gap if scan is not None else 0)
    height = 20 + len(index["units"]) * (thumb + pad)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((label_w, 4), "synthetic (feature visualizations)", fill="black", font=font)
    if scan is not None:
        draw.text((label_w + per_unit * (thumb + pad) + gap, 4), f"natural top-{natural}", fill="black", font=font)
    for row, unit in enumerate(index["units"]):
        y = 20 + row * (thumb + pad)
        draw.text((4, y + thumb // 2 - 12), unit.get("label", unit["unit"]), fill="black", font=font)
        draw.text((4, y + thumb // 2 + 2), f"act {unit['mean_activation']:.3g}", fill=(90, 90, 90), font=font)
        for j, image in enumerate(unit["images"]):
            tile = _shown(Path(vis_dir), image).resize((thumb, thumb), Image.Resampling.BICUBIC)
            canvas.paste(tile, (label_w + j * (thumb + pad), y))
        if scan is not None:
            x0 = label_w + per_unit * (thumb + pad) + gap
            for j, exemplar in enumerate(scan.top(unit["unit"], natural)):
                tile = ImageOps.fit(load_rgb(exemplar.path), (thumb, thumb), Image.Resampling.BICUBIC)
                canvas.paste(tile, (x0 + j * (thumb + pad), y))
    return canvas


def comparison_sheet(
    vis_dirs: dict[str, str | Path], scan=None, per_method: int = 3, thumb: int = 96, units: list[str] | None = None
):
    """Methods side by side: one row per unit (`units`, canonical, or every unit of the first dir),
    `per_method` images of each dir (labelled by its key), then (with a scan) the unit's top natural images."""
    from PIL import ImageDraw, ImageFont, ImageOps

    from vizprobe.images import load_rgb

    indexes = {name: load_visualizations(path) for name, path in vis_dirs.items()}
    first = next(iter(indexes.values()))
    rows = [u for u in first["units"] if units is None or u["unit"] in units]
    groups = [*indexes, *(["natural"] if scan is not None else [])]
    label_w, pad, gap = 110, 4, 12
    group_w = per_method * (thumb + pad) + gap
    canvas = Image.new("RGB", (label_w + len(groups) * group_w, 20 + len(rows) * (thumb + pad)), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for g, name in enumerate(groups):
        draw.text(
            (label_w + g * group_w, 4),
            name if name != "natural" else f"natural top-{per_method}",
            fill="black",
            font=font,
        )
    for row, unit in enumerate(rows):
        y = 20 + row * (thumb + pad)
        draw.text((4, y + thumb // 2 - 6), unit.get("label", unit["unit"]), fill="black", font=font)
        for g, index in enumerate(indexes.values()):
            entry = unit_entry(index, Unit.parse(unit["unit"]))
            for j, image in enumerate((entry or {"images": []})["images"][:per_method]):
                tile = _shown(Path(index["dir"]), image).resize((thumb, thumb), Image.Resampling.BICUBIC)
                canvas.paste(tile, (label_w + g * group_w + j * (thumb + pad), y))
        if scan is not None:
            for j, exemplar in enumerate(scan.top(unit["unit"], per_method)):
                tile = ImageOps.fit(load_rgb(exemplar.path), (thumb, thumb), Image.Resampling.BICUBIC)
                canvas.paste(tile, (label_w + (len(groups) - 1) * group_w + j * (thumb + pad), y))
    return canvas
