"""`vizprobe demo`: the pipeline on the embedded defaults, so a new user sees it work in minutes."""

from __future__ import annotations

from pathlib import Path

from vizprobe.analysis import analyze, run_baselines
from vizprobe.images import demo_images_dir
from vizprobe.models import load_model
from vizprobe.scan import scan
from vizprobe.scan.sheet import write_contact_sheets
from vizprobe.stimuli import BuildSettings, build_stimuli
from vizprobe.stimuli.inspect import inspect_package
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
    image_sets: int = 3,
    stride: int = 2,
) -> Path:
    """The whole study on one machine: scan, sheets, visualizations, stimuli, machine answers, report."""
    out = Path(out)
    images = Path(images) if images else demo_images_dir()
    loaded = load_model(model, device=device)
    print(f"[1/6] scanning {images} with {model}")
    result, stats = scan(loaded, images, DEMO_LAYERS, out / "scan", progress=progress)
    print(f"      {stats.computed} images at {stats.images_per_second:.1f} img/s, {stats.skipped} skipped")
    print("[2/6] contact sheets (top-9 | bottom-9) for the demo units")
    sheets = write_contact_sheets(result, out / "sheets", DEMO_UNITS, progress=progress)
    for sheet in sheets:
        print(f"      {sheet}")
    print("[3/6] feature visualizations (preset quick, 9 per unit) for the demo units")
    rendering = render(loaded, DEMO_UNITS, preset("quick", steps=steps, per_unit=9), progress=progress)
    index = save_visualizations(rendering, out / "visualizations", loaded, result)
    overview_sheet(out / "visualizations", result).save(out / "overview.png")
    for entry in index["units"]:
        print(
            f"      {entry['unit']:14s} synthetic {entry['mean_activation']:6.3g}  "
            f"natural top-1 {entry['natural_top1']:6.3g}"
        )
    print("[4/6] stimulus package: all five conditions (fast occlusion search, small ranks for the demo photos)")
    n_images = int(result.meta["n_scanned"])
    reference_last = min(200, n_images - 10)
    settings = BuildSettings(
        image_sets=image_sets,
        tasks_per_condition=4,
        query_ranks=(1, max(image_sets, 5)),
        reference_ranks=(max(image_sets, 5) + 1, reference_last),
        search="fast",
        stride=stride,
    )
    build_stimuli(
        result, DEMO_UNITS, out / "stimuli", out / "visualizations", settings, model=loaded, progress=progress
    )
    text, pictures = inspect_package(out / "stimuli")
    print("      " + text.replace("\n", "\n      "))
    print("[5/6] machine observers and baselines answer every trial")
    machine = _machine_answers(out / "stimuli", device=device, progress=progress)
    machine.to_csv(out / "machine-responses.csv", index=False)
    print(f"      {len(machine)} answers -> {out / 'machine-responses.csv'}")
    print("[6/6] report")
    results = analyze(machine, out / "report", out / "stimuli")
    for name, entry in (results["baselines"] | results["observers"]).items():
        print(f"      {name:28s} {entry['accuracy']:6.1%} of {entry['n_trials']} trials")
    print(f"done: report {out / 'report' / 'report.html'}")
    print(f"      stimulus package {out / 'stimuli'} (pictures of its trials in {out / 'stimuli' / 'inspect'})")
    print(f"      scan {out / 'scan'}, sheets {out / 'sheets'}, visualizations {out / 'visualizations'},")
    print(f"      overview {out / 'overview.png'} (synthetic | natural top-4 per unit)")
    print(f"start the experiment on it: vizprobe serve --stimuli {out / 'stimuli'}")
    return out


def _machine_answers(package: Path, device: str, progress: bool):
    """Baselines (and the machine observers, where registered) on every main trial of every condition."""
    return run_baselines(package)
