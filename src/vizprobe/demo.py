"""`vizprobe demo`: the pipeline on the embedded defaults, so a new user sees it work in minutes."""

from __future__ import annotations

from pathlib import Path

from vizprobe.images import demo_images_dir
from vizprobe.models import load_model
from vizprobe.scan import scan
from vizprobe.scan.sheet import write_contact_sheets
from vizprobe.synthesis import preset, render
from vizprobe.synthesis.store import overview_sheet, save_visualizations

# Units from several depths of EfficientNet-Lite0 (early, middle, late blocks).
DEMO_LAYERS = ["_blocks.2", "_blocks.5", "_blocks.8", "_blocks.12"]
DEMO_UNITS = ["_blocks.2:3", "_blocks.5:10", "_blocks.8:12", "_blocks.12:7"]


def run_demo(
    out: str | Path = "demo-output",
    images: str | Path | None = None,
    model: str = "efficientnet-lite0",
    device: str = "auto",
    progress: bool = True,
    steps: int | None = None,
) -> Path:
    """Scan the images, write contact sheets, render feature visualizations; returns the output folder."""
    out = Path(out)
    images = Path(images) if images else demo_images_dir()
    loaded = load_model(model, device=device)
    print(f"[1/3] scanning {images} with {model}")
    result, stats = scan(loaded, images, DEMO_LAYERS, out / "scan", progress=progress)
    print(f"      {stats.computed} images at {stats.images_per_second:.1f} img/s, {stats.skipped} skipped")
    print("[2/3] contact sheets (top-9 | bottom-9) for the demo units")
    sheets = write_contact_sheets(result, out / "sheets", DEMO_UNITS, progress=progress)
    for sheet in sheets:
        print(f"      {sheet}")
    print("[3/3] feature visualizations (preset quick) for the demo units")
    rendering = render(loaded, DEMO_UNITS, preset("quick", steps=steps), progress=progress)
    index = save_visualizations(rendering, out / "visualizations", loaded, result)
    overview_sheet(out / "visualizations", result).save(out / "overview.png")
    for entry in index["units"]:
        print(
            f"      {entry['unit']:14s} synthetic {entry['mean_activation']:6.3g}  "
            f"natural top-1 {entry['natural_top1']:6.3g}"
        )
    print(f"done: scan run dir {out / 'scan'}, sheets in {out / 'sheets'}, visualizations in {out / 'visualizations'}")
    print(f"      overview (synthetic | natural top-4 per unit): {out / 'overview.png'}")
    return out
