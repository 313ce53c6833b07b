"""`vizprobe` verbs: analyze."""

from __future__ import annotations

import argparse
import dataclasses

from vizprobe.cli.common import (
    _csv,
    _given,
    _protocol_arg,
    _setting,
)
from vizprobe.protocol import get_protocol


def cmd_analyze(args: argparse.Namespace) -> int:
    from vizprobe.analysis import StatsSettings, analyze

    thresholds = _given(
        args,
        "min_catch_accuracy",
        "min_instruction_time_s",
        "min_total_time_s",
        "max_total_time_s",
        "max_practice_attempts",
    )
    if args.allow_one_side:
        thresholds["require_both_sides"] = False
    if args.require_two_confidence_levels:
        thresholds["require_two_confidence_levels"] = True
    if args.same_thresholds:
        thresholds["per_condition"] = {}
    criteria = dataclasses.replace(_base_criteria(args), **thresholds)
    settings = StatsSettings(**_given(args, "resamples", "ci_method", "seed", rename={"resamples": "n_resamples"}))
    options = _given(args, "min_shared_trials")
    options["include_incomplete"] = args.include_incomplete
    if args.baselines is not None:
        options["baselines"] = _csv(args.baselines) if args.baselines != "none" else []
    results = analyze(args.responses, args.out, args.stimuli, criteria=criteria, settings=settings, **options)
    ex = results["exclusion"]
    print(f"report: {results['paths']['report']}  (numbers: {results['paths']['results']})")
    print(f"participants: {ex['n_before']}, excluded {ex['n_excluded']}, analyzed {ex['n_after']}")
    if ex["incomplete_sessions"]:
        listed = ", ".join(f"{n} {status}" for status, n in ex["incomplete_sessions"].items())
        print(f"left out before exclusion (sessions not finished): {listed}; --include-incomplete keeps them")
    for name, entry in results["input"]["invalid_values"].items():
        print(f"treated as missing: {entry['count']} invalid value(s) in column {name!r} (first: {entry['first']})")
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


def _base_criteria(args: argparse.Namespace):
    """The exclusion criteria before explicit thresholds: the package's (what its server re-posted by), unless
    --protocol names others or there is no package; else the protocol's."""
    if args.stimuli and args.protocol is None:
        from vizprobe.stimuli.manifest import Manifest

        recorded = Manifest.load(args.stimuli).exclusion
        if recorded is not None:
            return recorded
    return get_protocol(args.protocol).exclusion


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    criteria = "vizprobe.exclusion:ExclusionCriteria"
    stats = "vizprobe.analysis.accuracy:StatsSettings"
    analyze = "vizprobe.analysis.report:analyze"
    p = verb("analyze", "exclusion, accuracy, baselines, error consistency -> report folder", cmd_analyze)
    p.add_argument("--responses", required=True, help="responses CSV (vizprobe export) or database URL")
    p.add_argument("--stimuli", default=None, help="stimulus package dir: adds the baselines and trial details")
    p.add_argument("--out", required=True, help="report dir (report.html, results.json, figures/)")
    _protocol_arg(p)
    p.add_argument(
        "--include-incomplete",
        action="store_true",
        help="keep sessions the server never saw finished (session_status running or expired)",
    )
    _setting(p, "--baselines", f"{analyze}.baselines", "with --stimuli: comma-separated observers, or none")
    _setting(p, "--min-catch-accuracy", f"{criteria}.min_catch_accuracy", "exclude below", type=float)
    _setting(
        p,
        "--min-instruction-time",
        f"{criteria}.min_instruction_time_s",
        "seconds; exclude below",
        type=float,
        dest="min_instruction_time_s",
    )
    _setting(
        p,
        "--min-total-time",
        f"{criteria}.min_total_time_s",
        "seconds; exclude below",
        type=float,
        dest="min_total_time_s",
    )
    _setting(
        p,
        "--max-total-time",
        f"{criteria}.max_total_time_s",
        "seconds; exclude above",
        type=float,
        dest="max_total_time_s",
    )
    _setting(p, "--max-practice-attempts", f"{criteria}.max_practice_attempts", "exclude above", type=int)
    p.add_argument("--allow-one-side", action="store_true", help="keep participants who always chose one side")
    p.add_argument(
        "--require-two-confidence-levels",
        action="store_true",
        help="also exclude who always gave one confidence (not in the paper)",
    )
    p.add_argument(
        "--same-thresholds",
        action="store_true",
        help="these thresholds in every condition (default: the paper's none: 15 s, 40-900 s)",
    )
    _setting(p, "--resamples", f"{stats}.n_resamples", "bootstrap and permutation resamples", type=int)
    _setting(p, "--ci-method", f"{stats}.ci_method", "bootstrap interval", choices=("percentile", "BCa", "basic"))
    p.add_argument(
        "--min-shared-trials",
        type=int,
        default=None,
        help="error consistency over every pair sharing N trials (default: only pairs that answered the same trials)",
    )
    _setting(p, "--seed", f"{stats}.seed", "resampling seed", type=int)
