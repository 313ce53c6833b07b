"""`vizprobe` verbs: observe, power, score, simulate."""

from __future__ import annotations

import argparse
import json

from vizprobe.cli.common import (
    _csv,
    _device_arg,
    _embedder_args,
    _given,
    _setting,
)
from vizprobe.errors import VizprobeError


def _observer_options(args: argparse.Namespace) -> dict:
    """The similarity observer's embedder and rule options, as given."""
    options = {"same_as_model": True} if args.embedder_same_as_model else {}
    choice = _embedder_choice(args)
    return options | _given(args, "rule") | ({"embedder": choice} if choice is not None else {})


def _embedder_choice(args: argparse.Namespace):
    """`--embedder MODEL[:LAYERS]` with `--embedder-weights`, or None for the default."""
    from vizprobe.observers.embedding import EmbedderChoice

    if args.embedder is None:
        if args.embedder_weights:
            raise VizprobeError("--embedder-weights needs --embedder MODEL (the network those weights belong to)")
        return None
    return EmbedderChoice.parse(args.embedder, args.embedder_weights)


def cmd_observe(args: argparse.Namespace) -> int:
    from vizprobe.observers import get_observer
    from vizprobe.observers.answer import answer_package, predicted_accuracy
    from vizprobe.responses import write_responses
    from vizprobe.stimuli.manifest import Manifest

    manifest = Manifest.load(args.stimuli)
    observer = get_observer(args.observer, device=args.device, manifest=manifest, **_observer_options(args))
    if args.fit:
        return _fit(args, manifest, observer)
    conditions = _csv(args.conditions) if args.conditions else None
    responses = answer_package(manifest, observer, conditions)
    write_responses(responses, args.out)
    embeds = f" (embedding with {observer.embedder_label})" if observer.embedder_label else ""
    print(f"{observer.name}{embeds} answered {len(responses)} trials -> {args.out}")
    for row in predicted_accuracy(responses).itertuples():
        control = ""
        if getattr(row, "control_accuracy", float("nan")) == getattr(row, "control_accuracy", 0):
            control = f"; control {row.control_accuracy:.1%} [{row.control_ci_low:.1%}, {row.control_ci_high:.1%}]"
        print(
            f"  {row.condition:10s} {row.accuracy:6.1%}  95% CI [{row.ci_low:.1%}, {row.ci_high:.1%}] "
            f"(Wilson, {row.n_trials} main trials){control}"
        )
    return 0


def _fit(args: argparse.Namespace, manifest, observer) -> int:
    from vizprobe.observers.fit import fit_rule

    rule, report = fit_rule(manifest, args.fit, observer, folds=args.folds)
    rule.save(args.out)
    low, high = rule.fitted["temperature_ci"]
    print(
        f"fitted to {rule.fitted['participants']} participants, {rule.fitted['trials']} trials: temperature "
        f"{rule.temperature:.4g} [{low:.4g}, {high:.4g}], bias {rule.bias:+.3f} -> {args.out}"
    )
    print(f"  held out over participants ({rule.fitted['folds']} folds)   log-lik/trial   majority agreement   kappa")
    for condition, fitted in report["fitted"].items():
        plain = report["unfitted"][condition]
        print(
            f"  {condition:10s} fitted   {fitted['loglik_per_trial']:12.3f} {fitted['majority_agreement']:16.1%}"
            f" {fitted['kappa']:9.3f}\n  {'':10s} unfitted {plain['loglik_per_trial']:12.3f} "
            f"{plain['majority_agreement']:16.1%} {plain['kappa']:9.3f}"
        )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from vizprobe.observers.score import ScoreSettings, score

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
    print(
        f"scored {len(frame)} rows ({args.task} task, embedding with {embedder['model']} at "
        f"{', '.join(embedder['layers'])}) -> {args.out}"
    )
    if embedder.get("same_as_model"):
        print("  the embedder is the studied network: these scores read the unit's own features")
    by = ["layer", "condition"] if "condition" in frame.columns else ["layer"]
    columns = ["score", "control"] if "control" in frame.columns else ["score"]
    print(frame.groupby(by, sort=False)[columns].agg(["mean", "median"]).round(3).to_string())
    return 0


def _score_layers(args: argparse.Namespace, settings) -> int:
    from vizprobe.observers.scoring import by_depth, score_layers

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
    print(summary.drop(columns=["scan"]).round(3).to_string(index=False))
    if len(record["scans"]) > 1:
        print("\nmean score by relative layer depth:")
        print(by_depth(summary).round(3).to_string())
        if len(embedders) > 1:
            print("  the scans were embedded by different networks (each not its own); --embedder sets one for all")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from vizprobe.observers import get_observer
    from vizprobe.observers.simulate import simulate
    from vizprobe.responses import write_responses
    from vizprobe.stimuli.manifest import Manifest

    manifest = Manifest.load(args.stimuli)
    observer = get_observer(args.observer, device=args.device, manifest=manifest)
    conditions = _csv(args.conditions) if args.conditions else None
    options = _given(args, "participants", "lapse", "noise", "seed", "catch")
    responses = simulate(manifest, observer, conditions=conditions, **options)
    write_responses(responses, args.out)
    n = responses["participant_id"].nunique()
    print(f"{n} simulated participants ({observer.name}), {len(responses)} answers -> {args.out}")
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from vizprobe.observers.power import power_analysis

    options = _given(args, "baseline_accuracy", "trials", "alpha", "power", "between_sd", "simulations", "seed")
    result = power_analysis(args.effect, **options)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    n, achieved = result.participants_per_condition, result.achieved_power
    print(
        f"participants per condition: {n} (simulated power {achieved:.3f} over {result.simulations} studies; "
        f"{result.test})"
    )
    print(
        f"closed-form two-proportion test (trials pooled, no between-participant sd): {result.closed_form_participants}"
    )
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    p = verb("observe", "a machine observer answers every trial and condition of a stimulus package", cmd_observe)
    p.add_argument("--stimuli", required=True, help="stimulus package dir")
    p.add_argument("--observer", default="similarity", help="registered observer (see vizprobe.observers)")
    p.add_argument("--conditions", default=None, help="comma-separated (default: all in the package)")
    _embedder_args(p)
    p.add_argument(
        "--fit",
        default=None,
        help="human responses CSV of this package: fit the similarity observer's "
        "temperature and bias to them and write the rule to --out (JSON)",
    )
    p.add_argument("--folds", type=int, default=5, help="with --fit: cross-validation folds over participants")
    _device_arg(p)
    p.add_argument("--out", required=True, help="responses CSV to write (with --fit: the rule's JSON)")

    score = "vizprobe.observers.score:ScoreSettings"
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

    simulate = "vizprobe.observers.simulate:simulate"
    p = verb("simulate", "simulated participants from a machine observer, to rehearse an analysis", cmd_simulate)
    p.add_argument("--stimuli", required=True, help="stimulus package dir")
    p.add_argument("--observer", default="similarity", help="registered observer (see vizprobe.observers)")
    _setting(p, "--participants", f"{simulate}.participants", "per condition", type=int)
    _setting(p, "--lapse", f"{simulate}.lapse", "rate of random answers", type=float)
    _setting(p, "--noise", f"{simulate}.noise", "sd of per-trial noise on the logit", type=float)
    _setting(
        p,
        "--catch",
        f"{simulate}.catch",
        "catch trials: attentive (right but for lapses) or observer",
        choices=("attentive", "observer"),
    )
    p.add_argument("--conditions", default=None, help="comma-separated (default: all in the package)")
    _setting(p, "--seed", f"{simulate}.seed", "seed", type=int)
    _device_arg(p)
    p.add_argument("--out", required=True, help="responses CSV to write")

    power = "vizprobe.observers.power:power_analysis"
    p = verb("power", "participants per condition to detect an accuracy difference (simulation)", cmd_power)
    p.add_argument("--effect", type=float, required=True, help="accuracy difference between conditions, e.g. 0.05")
    _setting(p, "--baseline-accuracy", f"{power}.baseline_accuracy", "accuracy of the weaker condition", type=float)
    _setting(p, "--trials", f"{power}.trials", "main trials per participant", type=int)
    _setting(p, "--alpha", f"{power}.alpha", "significance level", type=float)
    _setting(p, "--power", f"{power}.power", "wanted power", type=float)
    _setting(p, "--between-sd", f"{power}.between_sd", "sd of participants' true accuracies", type=float)
    _setting(p, "--simulations", f"{power}.simulations", "simulated studies per N", type=int)
    _setting(p, "--seed", f"{power}.seed", "seed", type=int)
    p.add_argument("--json", action="store_true", help="machine-readable output")
