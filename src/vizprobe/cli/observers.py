"""`vizprobe` verbs: observe, power, simulate."""

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


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.task == "exemplar":
        return _simulate_exemplar(args)
    if args.stimuli is None:
        raise VizprobeError("the occlusion task simulates answers to a stimulus package: pass --stimuli DIR")
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


def _simulate_exemplar(args: argparse.Namespace) -> int:
    from vizprobe.observers.embedding import make_embedder
    from vizprobe.responses import write_responses
    from vizprobe.scan import ScanResult
    from vizprobe.score.simulate import simulate_exemplar

    if not args.scan or not args.units:
        raise VizprobeError("the exemplar task simulates people on a scan's units: pass --scan RUN_DIR --units L:C,...")
    scan = ScanResult.load(args.scan)
    embedder = make_embedder(scan.model, _embedder_choice(args), args.embedder_same_as_model, args.device)
    options = _given(args, "participants", "lapse", "noise", "seed", "temperature")
    if args.tasks is not None:
        options["tasks"] = args.tasks
    responses = simulate_exemplar(scan, _csv(args.units), embedder, **options)
    write_responses(responses, args.out)
    n = responses["participant_id"].nunique()
    print(f"{n} simulated people deciding by {embedder.label}, {len(responses)} answers -> {args.out}")
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

    simulate = "vizprobe.observers.simulate:simulate"
    p = verb("simulate", "simulated participants from a machine observer, to rehearse an analysis", cmd_simulate)
    text = "occlusion: a stimulus package's trials; exemplar: tasks of a scan's units (simulated people for validate)"
    p.add_argument("--task", default="occlusion", choices=("occlusion", "exemplar"), help=text)
    p.add_argument("--stimuli", default=None, help="occlusion task: stimulus package dir")
    p.add_argument("--scan", default=None, help="exemplar task: scan run dir")
    p.add_argument("--units", default=None, help="exemplar task: comma-separated LAYER:CHANNEL")
    exemplar = "vizprobe.score.simulate:simulate_exemplar"
    _setting(p, "--tasks", f"{exemplar}.tasks", "exemplar task: tasks per unit and participant", type=int)
    _setting(p, "--temperature", f"{exemplar}.temperature", "exemplar task: the people's temperature", type=float)
    _embedder_args(p)
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
