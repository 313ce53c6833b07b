"""`vizprobe` verbs of the score stage: score (every unit, no people), validate (the score against people)."""

from __future__ import annotations

import argparse

from vizprobe.cli.common import _csv, _device_arg, _embedder_args, _given, _setting
from vizprobe.cli.observers import _embedder_choice
from vizprobe.errors import VizprobeError


def cmd_score(args: argparse.Namespace) -> int:
    from vizprobe.score.api import ScoreSettings, score

    settings = ScoreSettings(**_given(args, "references", "tasks", "pool", "temperature", "seed"))
    if args.layers and args.task == "exemplar":
        return _score_layers(args, settings)
    if args.scan and len(args.scan) > 1:
        raise VizprobeError("several --scan go with --layers (every unit of some layers of each scan)")
    frame, record = score(
        args.task,
        scan=args.scan[0] if args.scan else None,
        units=args.units,
        stimuli=args.stimuli,
        out=args.out,
        settings=settings,
        embedder=_embedder_choice(args),
        same_as_model=args.embedder_same_as_model,
        rule=args.rule,
        device=args.device,
        progress=not args.quiet,
    )
    embedder = record["embedder"]
    at = f" at {', '.join(embedder['layers'])}" if embedder["layers"] else ""
    print(f"scored {len(frame)} rows ({args.task} task, embedding with {embedder['model']}{at}) -> {args.out}")
    if embedder.get("same_as_model"):
        print("  the embedder is the studied network: these scores read the unit's own features")
    print(f"  {record['calibration']['note']}")
    by = ["layer", "condition"] if "condition" in frame.columns else ["layer"]
    wanted = ("score", "accuracy", "control", "colour_score", "colour_accuracy")
    columns = [c for c in wanted if c in frame.columns]
    print(frame.groupby(by, sort=False)[columns].agg(["mean", "median"]).round(3).to_string())
    return 0


def _score_layers(args: argparse.Namespace, settings) -> int:
    from vizprobe.score.layers import by_depth, score_layers

    if args.units:
        raise VizprobeError("pass either --units L:C,... or --layers L1,L2 (every unit of those layers)")
    if not args.scan:
        raise VizprobeError("the exemplar task scores units of a scan: pass --scan RUN_DIR")
    ray = {"address": args.address, "workers": args.workers} if args.engine == "ray" else None
    scores, summary, record = score_layers(
        args.scan,
        _csv(args.layers),
        args.out,
        settings,
        embedder=_embedder_choice(args),
        same_as_model=args.embedder_same_as_model,
        device=args.device,
        engine=args.engine,
        ray=ray,
        embeddings=args.embeddings,
        progress=not args.quiet,
    )
    embedders = sorted({s["embedder"]["model"] for s in record["scans"]})
    print(f"scored {len(scores)} units of {len(summary)} layers (embedding with {', '.join(embedders)}) -> {args.out}")
    if any(s["embedder"]["same_as_model"] for s in record["scans"]):
        print("  an embedder is the studied network: its scores read the unit's own features")
    print(f"  {record['calibration']['note']}")
    colour = scores.groupby("layer", sort=False)[["accuracy", "colour_accuracy"]].mean()
    print(summary.drop(columns=["scan"]).round(3).to_string(index=False))
    print("\nmean accuracy of the observer and of the colour-statistics baseline on the same tasks:")
    print(colour.round(3).to_string())
    if len(record["scans"]) > 1:
        print("\nmean score by relative layer depth:")
        print(by_depth(summary).round(3).to_string())
        if len(embedders) > 1:
            print("  the scans were embedded by different networks (each not its own); --embedder sets one for all")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from vizprobe.score.validate import validate

    options = _given(args, "resamples", "splits", "seed")
    result = validate(args.responses, args.scores, args.out, **options)
    machine, colour, ceiling = result["machine"], result["colour"], result["noise_ceiling"]
    difference = result["machine_minus_colour"]
    print(
        f"{result['units']} units, {result['participants']} participants, {result['answers']} answers"
        f" ({result['units_fitted_left_out']} units the rule was fitted on left out) -> {args.out}"
    )
    print("  Spearman with people's per-unit accuracy (95% CI over units):")
    print(f"    machine score  {machine['spearman']:+.3f} [{machine['ci_low']:+.3f}, {machine['ci_high']:+.3f}]")
    print(f"    colour         {colour['spearman']:+.3f} [{colour['ci_low']:+.3f}, {colour['ci_high']:+.3f}]")
    low, high = difference["ci_low"], difference["ci_high"]
    print(f"    machine-colour {difference['difference']:+.3f} [{low:+.3f}, {high:+.3f}]")
    print(
        f"    noise ceiling  {ceiling['spearman_brown']:+.3f} (split halves, Spearman-Brown; splits "
        f"{ceiling['split_low']:+.3f} to {ceiling['split_high']:+.3f})"
    )
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    score = "vizprobe.score.exemplar:ScoreSettings"
    p = verb("score", "score units without people: the exemplar task (MIS) or the occlusion task", cmd_score)
    text = "exemplar: from a scan's top and bottom images; occlusion: a stimulus package's trials"
    p.add_argument("--task", default="exemplar", choices=("exemplar", "occlusion"), help=text)
    text = "exemplar task: scan run dir (with --layers, repeat it to score and compare several models' scans)"
    p.add_argument("--scan", action="append", default=None, help=text)
    p.add_argument("--units", default=None, help="exemplar task: comma-separated LAYER:CHANNEL")
    text = "exemplar task: every unit of these comma-separated layers (all: every scanned layer); resumable"
    p.add_argument("--layers", default=None, help=text)
    p.add_argument("--stimuli", default=None, help="occlusion task: stimulus package dir")
    _setting(p, "--references", f"{score}.references", "exemplar task: references a side (K)", type=int)
    _setting(p, "--tasks", f"{score}.tasks", "exemplar task: tasks per unit (N)", type=int)
    _setting(p, "--pool", f"{score}.pool", "exemplar task: top (and bottom) ranks drawn from", type=int)
    from vizprobe.observers.rule import DEFAULT_TEMPERATURE, EXEMPLAR_TEMPERATURE

    text = (
        f"of the logistic choice on the similarity margin (default {EXEMPLAR_TEMPERATURE} in the exemplar task; "
        f"in the occlusion task --rule's, else {DEFAULT_TEMPERATURE})"
    )
    p.add_argument("--temperature", type=float, default=None, help=text)
    _setting(p, "--seed", f"{score}.seed", "seed of the tasks, the controls and the bootstrap", type=int)
    _embedder_args(p)
    _device_arg(p)
    text = (
        "with --layers: local (default), or ray: embedding and scoring on a Ray cluster (pip install 'vizprobe[ray]')"
    )
    p.add_argument("--engine", default="local", choices=("local", "ray"), help=text)
    p.add_argument("--address", default=None, help="with --engine ray: the cluster (HOST:PORT or auto)")
    p.add_argument("--workers", type=int, default=None, help="with --engine ray: embedding workers")
    text = (
        "with --layers: folder of the images' embeddings, shared by runs over the same images (default OUT/embeddings)"
    )
    p.add_argument("--embeddings", default=None, help=text)
    text = "folder to write: scores.csv and scores.json (with --layers also summary.csv, resumed if unfinished)"
    p.add_argument("--out", required=True, help=text)

    validate = "vizprobe.score.validate:validate"
    p = verb(
        "validate", "a machine score against people's per-unit accuracy, their noise ceiling and colour", cmd_validate
    )
    p.add_argument("--responses", required=True, help="human responses CSV (vizprobe export, or simulate)")
    p.add_argument("--scores", required=True, help="scores folder (vizprobe score) of the units people answered")
    _setting(p, "--resamples", f"{validate}.resamples", "bootstrap resamples of the units", type=int)
    _setting(p, "--splits", f"{validate}.splits", "random split halves of the participants", type=int)
    _setting(p, "--seed", f"{validate}.seed", "seed of the resamples and splits", type=int)
    p.add_argument("--out", required=True, help="folder to write: validation.json, units.csv, validation.png")
