"""`vizprobe demo`: the pipeline on the embedded defaults, so a new user sees it work in minutes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from vizprobe import DEFAULT_MODEL
from vizprobe.analysis import analyze
from vizprobe.errors import VizprobeError
from vizprobe.explore import explore
from vizprobe.images import demo_images_dir
from vizprobe.models import load_model
from vizprobe.observers.answer import answer_package, predicted_accuracy, run_baselines
from vizprobe.observers.colour import ColourEmbedder
from vizprobe.observers.embedding import make_embedder
from vizprobe.observers.similarity import SimilarityObserver
from vizprobe.observers.simulate import simulate
from vizprobe.responses import write_responses
from vizprobe.scan import scan
from vizprobe.scan.sheet import write_contact_sheets
from vizprobe.score.layers import score_layers
from vizprobe.score.select import stratified_units
from vizprobe.score.simulate import simulate_exemplar
from vizprobe.score.validate import validate
from vizprobe.stimuli import BuildSettings, build_stimuli
from vizprobe.stimuli.build import protocol_units
from vizprobe.stimuli.pictures import inspect_package
from vizprobe.synthesis import preset, render_units
from vizprobe.synthesis.natural import scan_inputs
from vizprobe.synthesis.settings import METHODS
from vizprobe.synthesis.store import comparison_sheet, overview_sheet, save_visualizations

# Units from several depths of EfficientNet-Lite0 (early, middle, late blocks).
DEMO_LAYERS = ["_blocks.2", "_blocks.5", "_blocks.8", "_blocks.12"]
DEMO_UNITS = ["_blocks.2:3", "_blocks.5:10", "_blocks.8:12", "_blocks.12:7"]


def run_demo(
    out: str | Path = "demo-output",
    images: str | Path | None = None,
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    progress: bool = True,
    steps: int | None = None,
    image_sets: int = 3,
    stride: int = 2,
    participants: int = 10,
    methods: list[str] | None = None,
) -> Path:
    """The whole study on one machine: scan, sheets, visualizations, stimuli, machine answers, report, and every
    unit of the demo layers scored and browsable (the unit explorer).

    `methods` (of `vizprobe.synthesis.settings.METHODS`) adds each synthesis method but fourier (which is the
    `synthetic` condition) as a condition of its own, rendered for the same units: a machine-only first
    answer to whether a method's references help more than natural exemplars."""
    out = Path(out)
    methods = [m for m in (methods or []) if m != "fourier"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise VizprobeError(f"--methods: unknown method {unknown[0]!r}; use some of {', '.join(METHODS)}")
    images = Path(images) if images else demo_images_dir()
    loaded = load_model(model, device=device)
    print(f"[1/10] scanning {images} with {model}")
    result, stats = scan(loaded, images, DEMO_LAYERS, out / "scan", progress=progress)
    print(f"      {stats.computed} images at {stats.images_per_second:.1f} img/s, {stats.skipped} skipped")
    print("[2/10] contact sheets (top-9 | bottom-9) for the demo units")
    sheets = write_contact_sheets(result, out / "sheets", DEMO_UNITS, progress=progress)
    for sheet in sheets:
        print(f"      {sheet}")
    n_images = int(result.meta["n_scanned"])
    reference_last = min(200, n_images - 10)
    build_settings = BuildSettings(
        image_sets=image_sets,
        tasks_per_condition=4,
        query_ranks=(1, max(image_sets, 5)),
        reference_ranks=(max(image_sets, 5) + 1, reference_last),
        search="fast",
        stride=stride,
    )
    picked = protocol_units(result, DEMO_UNITS, build_settings, model=loaded)
    protocol = [str(c.unit) for c in picked.catch + picked.practice]
    print(
        f"[3/10] feature visualizations (preset quick, 9 per unit) for the demo units and {len(protocol)} catch "
        "and practice units"
    )
    settings = preset("quick", steps=steps, per_unit=9, mixed_extra=4)
    rendering = render_units(loaded, DEMO_UNITS + protocol, settings, progress=progress)
    index = save_visualizations(rendering, out / "visualizations", loaded, result)
    overview_sheet(out / "visualizations", result).save(out / "overview.png")
    for entry in index["units"][: len(DEMO_UNITS)]:
        print(
            f"      {entry['unit']:14s} synthetic {entry['mean_activation']:6.3g}  "
            f"natural top-1 {entry['natural_top1']:6.3g}"
        )
    conditions = list(build_settings.conditions)
    dirs = {"fourier": out / "visualizations"}
    for method in methods:
        target = dirs[method] = out / f"visualizations-{method}"
        print(f"      method {method}: the same units -> {target}")
        render_method(
            loaded,
            result,
            DEMO_UNITS + protocol,
            preset("quick", steps=steps, per_unit=9, param=method),
            build_settings.reference_ranks[0],
            target,
            progress,
        )
        conditions.append(f"{method}=visualizations:{target}")
    build_settings = replace(build_settings, conditions=tuple(conditions))
    if methods:
        comparison_sheet(dirs, result, units=DEMO_UNITS).save(out / "methods.png")
        print(f"      the methods side by side: {out / 'methods.png'}")
    print(
        f"[4/10] stimulus package: conditions {', '.join(c.split('=')[0] for c in conditions)} (fast occlusion "
        "search, small ranks for the demo photos)"
    )
    build_stimuli(
        result,
        DEMO_UNITS,
        out / "stimuli",
        out / "visualizations",
        build_settings,
        model=loaded,
        progress=progress,
        protocol=picked,
    )
    text, pictures = inspect_package(out / "stimuli")
    print("      " + text.replace("\n", "\n      "))
    observer = SimilarityObserver(studied_model=loaded.name, device=loaded.device)
    print(
        f"[5/10] machine observers (similarity, embedding with {observer.embedder_label}, not the studied "
        f"{loaded.name}) and baselines answer every trial of every condition, and a control of each trial "
        "(another unit's references)"
    )
    machine = pd.concat([answer_package(out / "stimuli", observer), run_baselines(out / "stimuli")])
    write_responses(machine, out / "machine-responses.csv")
    for row in predicted_accuracy(machine[machine["is_catch"] == 0]).itertuples():
        control = getattr(row, "control_accuracy", float("nan"))
        control = f"  control {control:6.1%}" if control == control else ""
        print(
            f"      {row.observer:18s} {row.condition:9s} {row.accuracy:6.1%} [{row.ci_low:.0%}, {row.ci_high:.0%}]"
            f"{control}"
        )
    print(f"[6/10] {participants} simulated participants per condition (the similarity observer + lapses and noise)")
    simulated = simulate(out / "stimuli", observer, participants=participants, seed=0)
    write_responses(simulated, out / "simulated-responses.csv")
    print("      a rehearsal of the analysis, not data: run `vizprobe serve` for real participants")
    print("[7/10] report (simulated participants beside the machine observers and baselines)")
    combined = write_responses(pd.concat([simulated, machine]), out / "demo-responses.csv")
    results = analyze(combined, out / "report", out / "stimuli")
    for condition, entry in results["accuracy"].items():
        print(f"      simulated {condition:9s} {entry['mean']:6.1%} (n = {entry['n_participants']})")
    print("[8/10] every unit of the demo layers scored (exemplar task) and the unit explorer")
    scores, summary, _ = score_layers([result], DEMO_LAYERS, out / "scores", device=device, progress=progress)
    for row in summary.itertuples():
        print(f"      {row.layer:10s} {row.units:4d} units  mean score {row.mean:.3f}  median {row.median:.3f}")
    explore(result, out / "explorer", out / "scores", visualizations=[out / "visualizations"], progress=progress)
    validate_on_simulated_people(result, scores, out, device)
    exemplar_study(result, loaded, scores, out, participants, progress)
    print(f"done: report {out / 'report' / 'report.html'}")
    print(f"      unit explorer {out / 'explorer' / 'index.html'} ({len(scores)} units; opens from the file system)")
    print(f"      stimulus package {out / 'stimuli'} (pictures of its trials in {out / 'stimuli' / 'inspect'})")
    print(f"      scan {out / 'scan'}, sheets {out / 'sheets'}, visualizations {out / 'visualizations'},")
    print(f"      overview {out / 'overview.png'} (synthetic | natural top-4 per unit)")
    print(f"start the experiment on it: vizprobe serve --stimuli {out / 'stimuli'}")
    return out


def exemplar_study(result, loaded, scores: pd.DataFrame, out: Path, participants: int, progress: bool) -> None:
    """The exemplar task's package for 12 units spread over the score range, answered by simulated participants
    (the similarity observer with lapses and noise), and its report with accuracy per unit."""
    from vizprobe.tasks.exemplar import build_exemplar_stimuli

    print("[10/10] the exemplar task (vizprobe build --task exemplar): package, simulated participants, report")
    settings = BuildSettings(
        conditions=("natural", "none"), image_sets=3, tasks_per_condition=6, catch_units=2, practice_units=4
    )
    units = stratified_units(scores, 12)
    folder = out / "exemplar"
    package = build_exemplar_stimuli(result, units, folder, settings=settings, model=loaded, progress=progress)
    observer = SimilarityObserver(studied_model=loaded.name, device=loaded.device)
    simulated = simulate(package, observer, participants=participants, seed=0)
    write_responses(simulated, out / "exemplar-responses.csv")
    results = analyze(simulated, out / "exemplar-report", out / "exemplar")
    for condition, entry in results["accuracy"].items():
        print(f"      simulated {condition:9s} {entry['mean']:6.1%} (n = {entry['n_participants']})")
    report = out / "exemplar-report" / "report.html"
    print(f"      accuracy per unit: {report}; serve it to people: vizprobe serve --stimuli {folder}")


def validate_on_simulated_people(result, scores: pd.DataFrame, out: Path, device: str) -> None:
    """The exemplar-task score against two groups of simulated people on 30 units spread over the score range:
    people who see only colour statistics, and people who see what the observer's embedder sees (with noise)."""
    print("[9/10] the score against simulated people on the exemplar task (vizprobe validate)")
    units = stratified_units(scores, 30)
    embedder = make_embedder(result.model, device=device)
    for name, sees, temperature in (("colour", ColourEmbedder(), 0.5), ("embedder", embedder, 0.05)):
        people = simulate_exemplar(result, units, sees, participants=12, tasks=6, temperature=temperature)
        write_responses(people, out / f"people-{name}.csv")
        found = validate(people, out / "scores", out / f"validation-{name}", resamples=1000, splits=100)
        machine, colour = found["machine"]["spearman"], found["colour"]["spearman"]
        ceiling = found["noise_ceiling"]["spearman_brown"]
        print(
            f"      people who see {name:8s}: Spearman with their per-unit accuracy: score {machine:+.2f}, "
            f"colour baseline {colour:+.2f}, noise ceiling {ceiling:.2f}"
        )
    print("      simulated people whose rule is known: the validation must rank the observer they were made from first")


def render_method(loaded, scan, units: list[str], settings, start_rank: int, out: Path, progress: bool) -> dict:
    """Render `units` with a method's settings into `out`, with the natural inputs it needs from `scan`:
    accentuation and the colour prior start past the query ranks (`start_rank`), maco's spectrum comes
    from the scan's images."""
    resolved = loaded.resolve_units(units)
    references, paths, spectrum = scan_inputs(scan, resolved, loaded.preprocessing, settings, start_rank)
    rendering = render_units(loaded, resolved, settings, progress=progress, references=references, spectrum=spectrum)
    return save_visualizations(rendering, out, loaded, scan, reference_paths=paths)
