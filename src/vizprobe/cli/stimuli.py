"""`vizprobe` verbs: build, inspect."""

from __future__ import annotations

import argparse
import dataclasses

from vizprobe.cli.common import (
    _csv,
    _device_arg,
    _given,
    _protocol_arg,
    _setting,
)
from vizprobe.errors import VizprobeError
from vizprobe.protocol import get_protocol


def _ranks(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high)
    except ValueError:
        raise VizprobeError(f"bad rank range {text!r}: write FIRST-LAST, e.g. 21-200") from None


def _count_or_units(text: str | None, flag: str) -> tuple[int | None, list[str] | None]:
    """`--catch-units 3` (how many to pick) or `--catch-units L:C,...` (these units)."""
    if text is None:
        return None, None
    if text.strip().isdigit():
        return int(text), None
    units = _csv(text)
    if not units:
        raise VizprobeError(f"{flag}: give a number of units or LAYER:CHANNEL,...")
    return None, units


def cmd_build(args: argparse.Namespace) -> int:
    from vizprobe.scan import ScanResult
    from vizprobe.stimuli.build import protocol_units
    from vizprobe.stimuli.manifest import TRIAL_KINDS
    from vizprobe.stimuli.units import sample_units
    from vizprobe.tasks import get_task

    scan = ScanResult.load(args.scan)
    units = _main_units(args, scan, sample_units)
    given = _given(args, "tasks_per_condition", "image_sets", "patch_frac", "stride", "search", "seed", "task")
    if args.query_quantile is not None:
        given["query_quantile"] = args.query_quantile
    if args.conditions:
        given["conditions"] = tuple(_csv(args.conditions))
    for name in ("query_ranks", "reference_ranks"):
        if getattr(args, name):
            given[name] = _ranks(getattr(args, name))
    named = {}
    for role in ("catch_units", "practice_units"):
        count, named[role] = _count_or_units(getattr(args, role), "--" + role.replace("_", "-"))
        if count is not None:
            given[role] = count
    settings = dataclasses.replace(
        get_protocol(args.protocol).build, protocol=get_protocol(args.protocol).name, **given
    )
    if settings.task == "exemplar":
        return _build_exemplar(args, scan, units, settings, named)
    if args.pick_only:
        picked = protocol_units(scan, units, settings, device=args.device, **named)
        everything = [*map(str, units), *(str(c.unit) for c in picked.catch + picked.practice)]
        for role, chosen in (("catch", picked.catch), ("practice", picked.practice)):
            print(f"{role:8s} " + ", ".join(f"{c.unit} (gap {c.gap:.2f})" for c in chosen))
        print(f"render them with the main units: vizprobe visualize --units {','.join(everything)} ...")
        return 0
    if not args.out:
        raise VizprobeError("--out DIR is required (the stimulus package to write)")
    build = get_task(settings.task).build_function()  # the occlusion task's: build_stimuli
    manifest = build(
        scan, units, args.out, args.visualizations, settings, device=args.device, progress=not args.quiet, **named
    )
    counts = ", ".join(f"{len(manifest.trials_of([kind]))} {kind}" for kind in TRIAL_KINDS)
    roles = ", ".join(f"{len(manifest.units_of(role))} {role}" for role in ("main", "catch", "practice"))
    print(
        f"stimulus package {args.out}: units: {roles}, trials: {counts}, "
        f"{len(manifest.tasks)} tasks, {len(manifest.images)} images"
    )
    return 0


def _main_units(args: argparse.Namespace, scan, sample_units) -> list[str]:
    """--units, --sample-units N, or --units-by-score SCORES --stratify N (units spread over the score range)."""
    given = [bool(args.units), bool(args.sample_units), bool(args.units_by_score)]
    if sum(given) != 1:
        raise VizprobeError("pass one of --units L:C,..., --sample-units N or --units-by-score SCORES_DIR --stratify N")
    if args.units:
        return _csv(args.units)
    if args.sample_units:
        return sample_units(scan, args.sample_units, seed=args.seed or 0)
    import pandas as pd

    from vizprobe.explore.site import scores_for_scan
    from vizprobe.score.select import stratified_units

    if not args.stratify:
        raise VizprobeError("--units-by-score needs --stratify N: how many units to spread over the score range")
    return stratified_units(pd.DataFrame(scores_for_scan(args.units_by_score, scan)), args.stratify, args.seed or 0)


def _build_exemplar(args: argparse.Namespace, scan, units: list[str], settings, named: dict) -> int:
    from vizprobe.stimuli.manifest import TRIAL_KINDS
    from vizprobe.stimuli.settings import BuildSettings
    from vizprobe.tasks import get_task

    build_exemplar_stimuli = get_task("exemplar").build_function()
    if not args.conditions and settings.conditions == BuildSettings().conditions:  # the occlusion task's five
        chosen = ("natural", "synthetic", "none") if args.visualizations else ("natural", "none")
        settings = dataclasses.replace(settings, conditions=chosen)
    if not args.out:
        raise VizprobeError("--out DIR is required (the stimulus package to write)")
    manifest = build_exemplar_stimuli(
        scan,
        units,
        args.out,
        args.visualizations,
        args.negative_visualizations,
        settings,
        device=args.device,
        progress=not args.quiet,
        **named,
    )
    design = manifest.settings["exemplar_design"]
    counts = ", ".join(f"{len(manifest.trials_of([kind]))} {kind}" for kind in TRIAL_KINDS)
    print(
        f"exemplar-task package {args.out}: {len(manifest.units_of('main'))} units, trials: {counts}, conditions "
        f"{', '.join(manifest.conditions)}, {len(manifest.tasks)} tasks; references ranks {design['references'][0]}-"
        f"{design['references'][1]} and queries {design['queries'][0]}-{design['queries'][1]} from either end of "
        f"{design['images']} images"
    )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from vizprobe.stimuli.pictures import inspect_package

    text, pictures = inspect_package(args.stimuli, args.out, args.min_catch_gap)
    print(text)
    for picture in pictures:
        print(f"wrote {picture}")
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    from vizprobe.stimuli.settings import SEARCHES

    build = "vizprobe.stimuli.settings:BuildSettings"
    p = verb("build", "build a stimulus package (trials, references, tasks)", cmd_build)
    p.add_argument("--scan", required=True, help="scan run dir")
    p.add_argument("--visualizations", default=None, help="visualizations dir (for synthetic and mixed)")
    p.add_argument("--units", default=None, help="comma-separated LAYER:CHANNEL")
    p.add_argument("--sample-units", type=int, default=None, help="or: sample N units from the scanned layers")
    text = "or: units spread over a scores folder's range (vizprobe score), with --stratify N"
    p.add_argument("--units-by-score", default=None, help=text)
    text = "with --units-by-score: N units, a third the highest scores, a third the lowest, the rest at random"
    p.add_argument("--stratify", type=int, default=None, help=text)
    _setting(p, "--task", f"{build}.task", "what participants judge", choices=("occlusion", "exemplar"))
    text = "exemplar task, condition synthetic: visualizations that minimize the units (vizprobe visualize --negative)"
    p.add_argument("--negative-visualizations", default=None, help=text)
    text = "exemplar task: queries at this quantile from either end (IMI: 0.99, 0.95, 0.85), not next to the references"
    p.add_argument("--query-quantile", type=float, default=None, help=text)
    _setting(
        p,
        "--conditions",
        f"{build}.conditions",
        "comma-separated: natural, synthetic, mixed, blur, none, and your own as NAME=images:DIR (a folder "
        "per unit, LAYER_CHANNEL), NAME=visualizations:DIR or NAME=KIND:ARGUMENT (a plugin's kind)",
    )
    _setting(p, "--tasks-per-condition", f"{build}.tasks_per_condition", "tasks (participants) per condition", type=int)
    _setting(p, "--image-sets", f"{build}.image_sets", "image sets (queries) per unit", type=int)
    _setting(p, "--query-ranks", f"{build}.query_ranks", "ranks of the queries among the top images, FIRST-LAST")
    _setting(p, "--reference-ranks", f"{build}.reference_ranks", "ranks of the natural references, FIRST-LAST")
    _setting(p, "--patch-frac", f"{build}.patch_frac", "occluding square's side, fraction of the image", type=float)
    _setting(p, "--stride", f"{build}.stride", "occlusion stride in pixels", type=int)
    _setting(p, "--search", f"{build}.search", "occlusion: whole map or coarse-to-fine", choices=SEARCHES)
    _setting(p, "--seed", f"{build}.seed", "seed of every random draw", type=int)
    _setting(p, "--catch-units", f"{build}.catch_units", "catch units: how many to pick, or L:C,... to use")
    _setting(p, "--practice-units", f"{build}.practice_units", "practice units: how many to pick, or L:C,... to use")
    _setting(p, "--min-catch-gap", f"{build}.min_catch_gap", "gap below which inspect flags a catch trial", type=float)
    p.add_argument("--pick-only", action="store_true", help="print the catch and practice units, build nothing")
    _protocol_arg(p)
    _device_arg(p)
    p.add_argument("--out", default=None, help="stimulus package dir")

    p = verb("inspect", "summarize a stimulus package and draw its trials", cmd_inspect)
    p.add_argument("stimuli", help="stimulus package dir")
    p.add_argument("--out", default=None, help="where to write the PNGs (default STIMULI/inspect)")
    p.add_argument(
        "--min-catch-gap",
        type=float,
        default=None,
        help="flag catch trials whose gap is below this (default: the package's protocol's, 1.0)",
    )
