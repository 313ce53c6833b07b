"""`vizprobe demo`: the pipeline on the embedded defaults, so a new user sees it work in minutes."""

from __future__ import annotations

from pathlib import Path

from vizprobe.images import demo_images_dir
from vizprobe.scan import scan
from vizprobe.scan.sheet import write_contact_sheets

# Units from several depths of EfficientNet-Lite0 (early, middle, late blocks).
DEMO_LAYERS = ["_blocks.2", "_blocks.5", "_blocks.8", "_blocks.12"]
DEMO_UNITS = ["_blocks.2:3", "_blocks.5:10", "_blocks.8:12", "_blocks.12:7"]


def run_demo(
    out: str | Path = "demo-output",
    images: str | Path | None = None,
    model: str = "efficientnet-lite0",
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Scan the images, then write contact sheets for the demo units; returns the output folder."""
    out = Path(out)
    images = Path(images) if images else demo_images_dir()
    print(f"[1/2] scanning {images} with {model}")
    result, stats = scan(model, images, DEMO_LAYERS, out / "scan", device=device, progress=progress)
    print(f"      {stats.computed} images at {stats.images_per_second:.1f} img/s, {stats.skipped} skipped")
    print("[2/2] contact sheets (top-9 | bottom-9) for the demo units")
    sheets = write_contact_sheets(result, out / "sheets", DEMO_UNITS, progress=progress)
    for sheet in sheets:
        print(f"      {sheet}")
    print(f"done: scan run dir {out / 'scan'}, sheets in {out / 'sheets'}")
    return out
