"""`vizprobe <verb>`: parse arguments, call the Python API, print. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vizprobe.device import DEVICE_CHOICES
from vizprobe.errors import VizprobeError


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="efficientnet-lite0", help="model name (see `vizprobe models`)")
    parser.add_argument("--weights", default=None, help="local state dict (.pth) for models without embedded weights")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: the GPU when present")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def cmd_models(args: argparse.Namespace) -> int:
    from vizprobe.models import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:20s} {spec.description}  [weights: {spec.weights_source}]")
    print("(any other torchvision classifier loads by name with --weights PATH)")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from vizprobe.models import load_model

    model = load_model(args.model, weights=args.weights, device=args.device)
    layers = model.layers
    if args.json:
        rows = [
            {"path": li.path, "kind": li.kind, "shape": list(li.shape), "aliases": list(li.aliases)} for li in layers
        ]
        print(json.dumps({"model": model.name, "layers": rows}, indent=2))
        return 0
    width = max(len(li.path) for li in layers)
    for li in layers:
        alias = f"  ({', '.join(li.aliases)})" if li.aliases else ""
        print(f"{li.path:{width}s}  {li.kind:26s} {'x'.join(map(str, li.shape)):>14s}{alias}")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from vizprobe.images import demo_images_dir
    from vizprobe.scan import scan
    from vizprobe.scan.sheet import write_contact_sheets

    images = args.images or demo_images_dir()
    result, stats = scan(
        args.model,
        images,
        _csv(args.layers),
        args.out,
        weights=args.weights,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        top_k=args.top_k,
        compile=args.compile,
        progress=not args.quiet,
    )
    print(
        f"scanned {stats.computed} images ({stats.images_per_second:.1f} img/s), "
        f"{stats.resumed_from} already done, {stats.skipped} skipped -> {args.out}"
    )
    if args.sheet:
        sheets = write_contact_sheets(result, Path(args.out) / "sheets", progress=not args.quiet)
        print(f"wrote {len(sheets)} contact sheets to {Path(args.out) / 'sheets'}")
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from vizprobe.models import load_model
    from vizprobe.scan import ScanResult
    from vizprobe.synthesis import preset, render
    from vizprobe.synthesis.store import save_visualizations
    from vizprobe.units import parse_units

    settings = preset(
        args.preset,
        per_unit=args.per_unit,
        steps=args.steps,
        size=args.size,
        param=args.param,
        seed=args.seed,
        negative=True if args.negative else None,
    )
    units = parse_units(args.units)
    model = load_model(args.model, weights=args.weights, device=args.device)
    for unit in units:
        model.resolve_unit(unit)  # fail on a bad unit before any work
    scan = ScanResult.load(args.scan) if args.scan else None
    rendering = render(model, units, settings, device=args.device, precision=args.precision, progress=not args.quiet)
    index = save_visualizations(rendering, args.out, model, scan)
    steps_per_s = settings.steps / rendering.seconds if rendering.seconds else float("nan")
    print(f"rendered {len(rendering.seeds)} images of {len(units)} units in {rendering.seconds:.1f} s "
          f"({steps_per_s:.2f} steps/s) -> {args.out}")  # fmt: skip
    for entry in index["units"]:
        extra = f"  natural top-1 {entry['natural_top1']:.3g}" if "natural_top1" in entry else ""
        print(f"  {entry['unit']:20s} mean activation {entry['mean_activation']:.3g}{extra}")
    return 0


def _ranks(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high)
    except ValueError:
        raise VizprobeError(f"bad rank range {text!r}: write FIRST-LAST, e.g. 21-200") from None


def cmd_build(args: argparse.Namespace) -> int:
    from vizprobe.scan import ScanResult
    from vizprobe.stimuli import BuildSettings, build_stimuli
    from vizprobe.stimuli.units import sample_units

    scan = ScanResult.load(args.scan)
    if bool(args.units) == bool(args.sample_units):
        raise VizprobeError("pass either --units L:C,... or --sample-units N")
    units = _csv(args.units) if args.units else sample_units(scan, args.sample_units, seed=args.seed)
    settings = BuildSettings(
        conditions=tuple(_csv(args.conditions)),
        tasks_per_condition=args.tasks_per_condition,
        image_sets=args.image_sets,
        query_ranks=_ranks(args.query_ranks),
        reference_ranks=_ranks(args.reference_ranks),
        patch_frac=args.patch_frac,
        stride=args.stride,
        search=args.search,
        seed=args.seed,
    )
    manifest = build_stimuli(scan, units, args.out, args.visualizations, settings, device=args.device,
                             progress=not args.quiet)  # fmt: skip
    kinds = {k: sum(t["kind"] == k for t in manifest["trials"]) for k in ("main", "catch", "practice")}
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    print(
        f"stimulus package {args.out}: {len(manifest['units'])} units, trials: {counts}, "
        f"{len(manifest['tasks'])} tasks, {len(manifest['images'])} images"
    )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from vizprobe.stimuli.inspect import inspect_package

    text, pictures = inspect_package(args.stimuli, args.out)
    print(text)
    for picture in pictures:
        print(f"wrote {picture}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from vizprobe.experiment.server import serve

    if args.task_timeout <= 0:
        raise VizprobeError("--task-timeout must be a positive number of minutes")
    serve(
        args.stimuli,
        args.db,
        host=args.host,
        port=args.port,
        platform=args.platform,
        completion_code=args.completion_code,
        practice=args.practice,
        practice_attempts=args.practice_attempts,
        expert=args.expert,
        admin_token=args.admin_token,
        task_timeout_s=args.task_timeout * 60.0,
        secret_file=args.secret_file,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vizprobe.experiment.export import export_responses

    path = export_responses(args.db, args.out)
    print(f"wrote {path}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from vizprobe.analysis import ExclusionCriteria, StatsSettings, analyze

    criteria = ExclusionCriteria(
        min_catch_accuracy=args.min_catch_accuracy,
        min_instruction_time_s=args.min_instruction_time,
        min_total_time_s=args.min_total_time,
        max_total_time_s=args.max_total_time,
        max_practice_attempts=args.max_practice_attempts,
        require_both_sides=not args.allow_one_side,
        require_two_confidence_levels=not args.allow_one_confidence,
    )
    settings = StatsSettings(n_resamples=args.resamples, ci_method=args.ci_method, seed=args.seed)
    baselines = _csv(args.baselines) if args.baselines != "none" else []
    results = analyze(args.responses, args.out, args.stimuli, criteria=criteria, settings=settings,
                      baselines=baselines, min_shared_trials=args.min_shared_trials)  # fmt: skip
    ex = results["exclusion"]
    print(f"report: {results['paths']['report']}  (numbers: {results['paths']['results']})")
    print(f"participants: {ex['n_before']}, excluded {ex['n_excluded']}, analyzed {ex['n_after']}")
    for condition, s in results["accuracy"].items():
        ci = f"[{s['ci_low']:.1%}, {s['ci_high']:.1%}]" if s["ci_low"] is not None else "[n/a]"
        sem = f"{2 * s['sem']:.1%}" if s["sem"] is not None else "n/a"
        print(f"  {condition:24s} {s['mean']:6.1%} +- {sem} (2 SEM), 95% CI {ci}, n = {s['n_participants']}")
    machines = {f"baseline:{k}": v for k, v in results["baselines"].items()} | results["observers"]
    for name, s in machines.items():
        print(f"  {name:24s} {s['accuracy']:6.1%}  ({s['n_trials']} trials)")
    for name, reason in results["skipped"].items():
        print(f"  skipped {name}: {reason}")
    return 0


def cmd_observe(args: argparse.Namespace) -> int:
    from vizprobe.observers.answer import answer_package, as_observer, predicted_accuracy
    from vizprobe.responses import write_responses

    observer = as_observer(args.observer, device=args.device)
    conditions = _csv(args.conditions) if args.conditions else None
    responses = answer_package(args.stimuli, observer, conditions)
    write_responses(responses, args.out)
    print(f"{observer.name} answered {len(responses)} trials -> {args.out}")
    for row in predicted_accuracy(responses).itertuples():
        print(f"  {row.condition:10s} {row.accuracy:6.1%}  95% CI [{row.ci_low:.1%}, {row.ci_high:.1%}] "
              f"(Wilson, {row.n_trials} main trials)")  # fmt: skip
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from vizprobe.observers.answer import as_observer
    from vizprobe.observers.simulate import simulate
    from vizprobe.responses import write_responses

    observer = as_observer(args.observer, device=args.device)
    conditions = _csv(args.conditions) if args.conditions else None
    responses = simulate(args.stimuli, observer, participants=args.participants, lapse=args.lapse,
                         noise=args.noise, seed=args.seed, conditions=conditions)  # fmt: skip
    write_responses(responses, args.out)
    n = responses["participant_id"].nunique()
    print(f"{n} simulated participants ({observer.name}, lapse {args.lapse}, noise {args.noise}), "
          f"{len(responses)} answers -> {args.out}")  # fmt: skip
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from vizprobe.observers.power import power_analysis

    result = power_analysis(args.effect, args.baseline_accuracy, args.trials, args.alpha, args.power,
                            between_sd=args.between_sd, simulations=args.simulations, seed=args.seed)  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    n, achieved = result.participants_per_condition, result.achieved_power
    print(f"participants per condition: {n} (simulated power {achieved:.3f} over {result.simulations} studies; "
          f"{result.test})")  # fmt: skip
    print(f"closed-form two-proportion test (trials pooled, no between-participant sd): "
          f"{result.closed_form_participants}")  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vizprobe.demo import run_demo

    run_demo(
        out=args.out,
        images=args.images,
        model=args.model,
        device=args.device,
        progress=not args.quiet,
        steps=args.steps,
        image_sets=args.image_sets,
        stride=args.stride,
        participants=args.participants,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vizprobe", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("models", help="list the model zoo")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("layers", help="list a model's layers with output shapes")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("scan", help="record every image's activation for every channel of some layers")
    _add_model_args(p)
    p.add_argument("--images", default=None, help="image folder, searched recursively (default: embedded demo)")
    p.add_argument("--layers", required=True, help="comma-separated layer paths or aliases")
    p.add_argument("--top-k", type=int, default=200, help="top/bottom images to index per unit (default 200)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 16 on the CPU, 128 on a GPU")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    p.add_argument(
        "--compile", default="auto", choices=("auto", "on", "off"), help="torch.compile (auto: >=500 images)"
    )
    p.add_argument("--sheet", action="store_true", help="also write a contact sheet PNG per unit")
    p.add_argument("--out", required=True, help="run directory (an unfinished one is resumed)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("visualize", help="render feature visualizations (activation maximization)")
    _add_model_args(p)
    p.add_argument("--units", required=True, help="comma-separated LAYER:CHANNEL")
    p.add_argument("--preset", default="quick", choices=("quick", "paper"), help="paper: Zimmermann et al. 2021")
    p.add_argument("--per-unit", type=int, default=None, help="images per unit (paper: 9)")
    p.add_argument("--steps", type=int, default=None, help="optimization steps (paper: 2560)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels")
    p.add_argument("--param", default=None, choices=("fourier", "pixel"), help="parameterization (default fourier)")
    p.add_argument("--negative", action="store_true", help="minimize instead: images the unit dislikes")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="auto: bf16 where native")
    p.add_argument("--scan", default=None, help="scan run dir: record natural top-1 activations beside")
    p.add_argument("--out", required=True, help="visualizations dir")
    p.set_defaults(func=cmd_visualize)

    p = sub.add_parser("build", help="build a stimulus package (trials, references, tasks)")
    p.add_argument("--scan", required=True, help="scan run dir")
    p.add_argument("--visualizations", default=None, help="visualizations dir (for synthetic and mixed)")
    p.add_argument("--units", default=None, help="comma-separated LAYER:CHANNEL")
    p.add_argument("--sample-units", type=int, default=None, help="or: sample N units from the scanned layers")
    p.add_argument("--conditions", default="synthetic,natural,mixed,blur,none")
    p.add_argument("--tasks-per-condition", type=int, default=50)
    p.add_argument("--image-sets", type=int, default=10)
    p.add_argument("--query-ranks", default="1-20")
    p.add_argument("--reference-ranks", default="21-200")
    p.add_argument("--patch-frac", type=float, default=0.4)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--search", default="exact", choices=("exact", "fast"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--out", required=True, help="stimulus package dir")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="summarize a stimulus package and draw its trials")
    p.add_argument("stimuli", help="stimulus package dir")
    p.add_argument("--out", default=None, help="where to write the PNGs (default STIMULI/inspect)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("serve", help="run the experiment server for participants")
    p.add_argument("--stimuli", required=True, help="stimulus package dir")
    p.add_argument("--db", default=None, help="SQLite path/URL or postgresql://... (default ./vizprobe-experiment.db)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--platform", default="local", choices=("local", "prolific", "mturk"))
    p.add_argument("--completion-code", default=None, help="code shown at the end (default: generated once)")
    p.add_argument("--practice", type=int, default=None, help="practice trials (default: all in the package; 0 skips)")
    p.add_argument("--practice-attempts", type=int, default=5, help="practice rounds allowed (default 5)")
    p.add_argument("--expert", action="store_true", help="mark sessions as expert")
    p.add_argument("--admin-token", default=None, help="default: generated and printed at start")
    p.add_argument("--task-timeout", type=float, default=30.0, help="minutes before an abandoned task is reassigned")
    p.add_argument("--secret-file", default=None, help="HMAC key file (default: beside the SQLite file, or ./)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="write the experiment's responses CSV")
    p.add_argument("--db", required=True, help="the database `vizprobe serve` used")
    p.add_argument("--out", required=True, help="responses CSV to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("analyze", help="exclusion, accuracy, baselines, error consistency -> report folder")
    p.add_argument("--responses", required=True, help="responses CSV (vizprobe export) or database URL")
    p.add_argument("--stimuli", default=None, help="stimulus package dir: adds the baselines and trial details")
    p.add_argument("--out", required=True, help="report dir (report.html, results.json, figures/)")
    p.add_argument("--baselines", default="center,variance,saliency,random,oracle", help="with --stimuli; or none")
    p.add_argument("--min-catch-accuracy", type=float, default=2 / 3, help="exclude below (default 2/3)")
    p.add_argument("--min-instruction-time", type=float, default=20.0, help="seconds; exclude below (default 20)")
    p.add_argument("--min-total-time", type=float, default=90.0, help="seconds; exclude below (default 90)")
    p.add_argument("--max-total-time", type=float, default=900.0, help="seconds; exclude above (default 900)")
    p.add_argument("--max-practice-attempts", type=int, default=5, help="exclude above (default 5)")
    p.add_argument("--allow-one-side", action="store_true", help="keep participants who always chose one side")
    p.add_argument("--allow-one-confidence", action="store_true", help="keep who always gave one confidence")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap and permutation resamples")
    p.add_argument("--ci-method", default="percentile", choices=("percentile", "BCa", "basic"))
    p.add_argument("--min-shared-trials", type=int, default=1, help="for a participant pair's kappa (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("observe", help="a machine observer answers every trial and condition of a stimulus package")
    p.add_argument("--stimuli", required=True, help="stimulus package dir")
    p.add_argument("--observer", default="similarity", help="registered observer (default similarity)")
    p.add_argument("--conditions", default=None, help="comma-separated (default: all in the package)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--out", required=True, help="responses CSV to write")
    p.set_defaults(func=cmd_observe)

    p = sub.add_parser("simulate", help="simulated participants from a machine observer, to rehearse an analysis")
    p.add_argument("--stimuli", required=True, help="stimulus package dir")
    p.add_argument("--observer", default="similarity", help="registered observer (default similarity)")
    p.add_argument("--participants", type=int, default=20, help="per condition (default 20)")
    p.add_argument("--lapse", type=float, default=0.05, help="rate of random answers (default 0.05)")
    p.add_argument("--noise", type=float, default=0.5, help="sd of per-trial noise on the logit (default 0.5)")
    p.add_argument("--conditions", default=None, help="comma-separated (default: all in the package)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--out", required=True, help="responses CSV to write")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("power", help="participants per condition to detect an accuracy difference (simulation)")
    p.add_argument("--effect", type=float, required=True, help="accuracy difference between conditions, e.g. 0.05")
    p.add_argument("--baseline-accuracy", type=float, default=0.6, help="accuracy of the weaker condition")
    p.add_argument("--trials", type=int, default=18, help="main trials per participant (default 18)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--between-sd", type=float, default=0.0, help="sd of participants' true accuracies (default 0)")
    p.add_argument("--simulations", type=int, default=2000, help="simulated studies per N (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_power)

    p = sub.add_parser("demo", help="run the pipeline on the embedded defaults")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--images", default=None, help="image folder (default: embedded demo photos)")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--steps", type=int, default=None, help="visualization steps (default: the quick preset's)")
    p.add_argument("--image-sets", type=int, default=3, help="image sets per unit in the stimulus package")
    p.add_argument("--stride", type=int, default=2, help="occlusion stride in pixels")
    p.add_argument("--participants", type=int, default=10, help="simulated participants per condition")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except VizprobeError as exc:
        print(f"vizprobe {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
