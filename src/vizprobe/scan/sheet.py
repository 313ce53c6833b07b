"""Contact sheets: a unit's top-9 and bottom-9 images side by side, one PNG per unit."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps
from tqdm.auto import tqdm

from vizprobe.images import UnreadableImage, load_rgb
from vizprobe.scan.result import Exemplar, ScanResult
from vizprobe.units import Unit

_PAD, _HEADER, _LABEL = 6, 26, 14


@lru_cache(maxsize=4096)
def _thumbnail(path: Path, size: int) -> Image.Image:
    try:
        image = load_rgb(path)
    except UnreadableImage:
        return Image.new("RGB", (size, size), (128, 128, 128))
    return ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)


def _grid(draw: ImageDraw.ImageDraw, canvas: Image.Image, items: list[Exemplar], x0: int, thumb: int, font) -> None:
    for n, item in enumerate(items):
        row, col = divmod(n, 3)
        x = x0 + col * (thumb + _PAD)
        y = _HEADER + row * (thumb + _LABEL + _PAD)
        canvas.paste(_thumbnail(item.path, thumb), (x, y))
        draw.text((x, y + thumb + 1), f"{item.activation:.3g}", fill=(40, 40, 40), font=font)


def contact_sheet(result: ScanResult, unit: Unit | str, k: int = 9, thumb: int = 96) -> Image.Image:
    """One unit's top-k (left, strongest first) and bottom-k (right, weakest first) images."""
    unit = result.resolve_unit(unit)
    top, bottom = result.top(unit, k), result.bottom(unit, k)
    cols = 3
    rows = max(1, -(-k // cols))
    half = cols * thumb + (cols - 1) * _PAD
    width = 2 * half + 4 * _PAD
    height = _HEADER + rows * (thumb + _LABEL + _PAD)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((_PAD, 6), f"{result.model}  {unit.display}   top {k}", fill="black", font=font)
    draw.text((half + 3 * _PAD, 6), f"bottom {k}", fill="black", font=font)
    _grid(draw, canvas, top, _PAD, thumb, font)
    _grid(draw, canvas, bottom, half + 3 * _PAD, thumb, font)
    draw.line([(half + 2 * _PAD, _HEADER), (half + 2 * _PAD, height - _PAD)], fill=(180, 180, 180), width=2)
    return canvas


def write_contact_sheets(
    result: ScanResult, out_dir: str | Path, units: Iterable[Unit | str] | None = None, progress: bool = True
) -> list[Path]:
    """Write `<layer>_<channel>.png` for each unit (default: every unit of the scan)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for unit in tqdm(list(units or result.units()), desc="sheets", unit="unit", disable=not progress):
        unit = result.resolve_unit(unit)
        target = out_dir / f"{unit.folder}.png"
        tmp = target.with_name(".tmp-" + target.name)
        contact_sheet(result, unit).save(tmp, format="PNG")
        tmp.replace(target)
        written.append(target)
    return written
