"""The explorer's pictures: every image written once as a small thumbnail and a full-size copy, heatmaps of
occlusion sweeps, and histograms drawn as inline SVG (no image files, readable by screen readers)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

THUMB = 128  # px, the longer side of a thumbnail
FULL = 512  # px, at most, the longer side of the full-size copy
QUALITY = 82  # JPEG


class ImageWriter:
    """Writes each source once, under SITE/img/, as `KEY.jpg` (thumbnail) and `KEY-full.jpg`; a source that
    cannot be read is remembered (and shown as a placeholder) instead of stopping the build."""

    def __init__(self, site: Path):
        self.site = site
        self.written: dict[str, tuple[str, str] | None] = {}
        self.missing: list[str] = []

    def photo(self, key: str, source: Path | Image.Image) -> tuple[str, str] | None:
        """(thumbnail, full) paths relative to the site root, or None where the source could not be read."""
        if key in self.written:
            return self.written[key]
        try:
            image = source if isinstance(source, Image.Image) else _open(source)
        except OSError:
            self.missing.append(str(source))
            self.written[key] = None
            return None
        rel = f"img/{key}"
        (self.site / rel).parent.mkdir(parents=True, exist_ok=True)
        full = image.copy()
        full.thumbnail((FULL, FULL), Image.Resampling.LANCZOS)
        full.save(self.site / f"{rel}-full.jpg", quality=QUALITY)
        thumb = image.copy()
        thumb.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
        thumb.save(self.site / f"{rel}.jpg", quality=QUALITY)
        self.written[key] = (f"{rel}.jpg", f"{rel}-full.jpg")
        return self.written[key]

    def prefetch(self, sources: dict[str, Path], progress: bool = False) -> None:
        """Write many sources at once, in a thread per core (decoding, resizing and encoding release the GIL)."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        todo = [(k, v) for k, v in sources.items() if k not in self.written]
        with (
            ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool,
            tqdm(total=len(todo), desc="images", unit="img", disable=not progress) as bar,
        ):
            for _ in pool.map(lambda item: self.photo(*item), todo):
                bar.update(1)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def heatmap(image: Image.Image, drop: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """`image` with `drop` (how much occluding each place lowers the activation; any grid) laid over it in a
    colour map: bright where occluding costs the unit most."""
    from matplotlib import colormaps

    span = float(np.nanmax(drop) - np.nanmin(drop)) or 1.0
    scaled = (drop - np.nanmin(drop)) / span
    colours = (colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8)
    overlay = Image.fromarray(colours).resize(image.size, Image.Resampling.BILINEAR)
    return Image.blend(image.convert("RGB"), overlay, alpha)


def histogram_svg(
    values: np.ndarray,
    label: str,
    bins: int = 24,
    value_range: tuple[float, float] | None = None,
    width: int = 320,
    height: int = 90,
) -> str:
    """A bar histogram of `values` as inline SVG, with `label` as its accessible name and axis ends written out."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return f'<p class="note">{html.escape(label)}: no values</p>'
    low, high = value_range or (float(values.min()), float(values.max()))
    if high <= low:
        high = low + 1.0
    counts, _ = np.histogram(values, bins=bins, range=(low, high))
    top = counts.max() or 1
    bar = width / bins
    plot = height - 18
    rects = "".join(
        f'<rect x="{k * bar + 0.5:.1f}" y="{plot - c / top * plot:.1f}" width="{bar - 1:.1f}" '
        f'height="{c / top * plot:.1f}"/>'
        for k, c in enumerate(counts)
        if c
    )
    name = html.escape(f"{label}: {len(values)} values from {low:.3g} to {high:.3g}")
    return (
        f'<svg class="hist" role="img" aria-label="{name}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}"><title>{name}</title><g class="bars">{rects}</g>'
        f'<text x="0" y="{height - 4}">{low:.3g}</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">{high:.3g}</text></svg>'
    )
