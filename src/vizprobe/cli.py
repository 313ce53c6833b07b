"""`vizprobe <verb>`: parse arguments, call the Python API, print. Nothing else lives here.

Options that are settings leave their value None when not given, so the API's default applies; their
help shows that default, read from where it is defined (a settings dataclass or a function's signature)
only when help is printed, so `--help` cannot disagree with the code and the CLI starts without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import sys
from importlib import import_module
from pathlib import Path

from vizprobe import DEFAULT_MODEL
from vizprobe.device import BATCH_SIZES, DEVICE_CHOICES
from vizprobe.errors import VizprobeError
from vizprobe.protocol import get_protocol, list_protocols


def default_of(where: str) -> object:
    """The default of `module:Owner.name`: a dataclass field's default or a function parameter's."""
    module, _, path = where.partition(":")
    owner_name, _, name = path.rpartition(".")
    owner = getattr(import_module(module), owner_name)
    if dataclasses.is_dataclass(owner):
        return next(f.default for f in dataclasses.fields(owner) if f.name == name)
    return inspect.signature(owner).parameters[name].default


class _Help(argparse.HelpFormatter):
    """Appends each option's default, read from its source (`action.default_from`), to its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        where = getattr(action, "default_from", None)
        if where is None:
            return action.help or ""
        return f"{action.help} (default {_as_typed(default_of(where))})"


def _as_typed(value) -> str:
    """A default as a user types it: `21-200` for a range of two numbers, `a,b,c` for a list."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple | list):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{value[0]}-{value[1]}"
        return ",".join(map(str, value))
    return str(value)


def _setting(parser: argparse.ArgumentParser, flag: str, where: str, help: str, **kwargs) -> None:
    """An option whose default lives in the API (`where`): None here, shown in --help."""
    action = parser.add_argument(flag, default=None, help=help, **kwargs)
    action.default_from = where


def _given(args: argparse.Namespace, *names: str, rename: dict[str, str] | None = None) -> dict:
    """The named options the user gave (None ones left out, so the API's defaults apply)."""
    rename = rename or {}
    return {rename.get(n, n): getattr(args, n) for n in names if getattr(args, n) is not None}


def _protocol_arg(parser: argparse.ArgumentParser) -> None:
    text = f"study protocol whose defaults apply: {', '.join(list_protocols())} (default zimmermann2021; see docs)"
    parser.add_argument("--protocol", default=None, help=text)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model name (see `vizprobe models`; default {DEFAULT_MODEL}), or module.path:factory for your own",
    )
    parser.add_argument("--weights", default=None, help="local state dict (.pth) for models without embedded weights")
    text = "with --model module.path:factory: a JSON of resize, crop, interpolation, mean, std (default ImageNet's)"
    parser.add_argument("--preprocessing", default=None, help=text)
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: the GPU when present")


def _directions_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--directions",
        default=None,
        help="NAME=FILE[,NAME=FILE]: directions as units LAYER:NAME:K (.npy (K, C) projections, or .npz with a "
        "sparse autoencoder's W (K, C) and b (K))",
    )


def _embedder_args(parser: argparse.ArgumentParser) -> None:
    from vizprobe.observers.embedding import DEFAULT_EMBEDDER, FALLBACK_EMBEDDER

    text = (
        f"MODEL[:LAYER,...] the similarity observer embeds images with (default {DEFAULT_EMBEDDER}; "
        f"{FALLBACK_EMBEDDER} when the studied network is {DEFAULT_EMBEDDER})"
    )
    parser.add_argument("--embedder", default=None, help=text)
    parser.add_argument("--embedder-weights", default=None, help="local state dict (.pth) for the --embedder model")
    text = "allow embedding with the studied network (its answers then read the unit; marked so)"
    parser.add_argument("--embedder-same-as-model", action="store_true", help=text)
    parser.add_argument("--rule", default=None, help="a decision rule fitted with vizprobe observe --fit (JSON)")


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

    model = load_model(args.model, weights=args.weights, device=args.device, directions=args.directions)
    layers = model.layers + model.direction_layers
    if args.json:
        rows = [
            {
                "path": li.path,
                "kind": li.kind,
                "layout": li.layout,
                "shape": list(li.shape),
                "aliases": list(li.aliases),
            }
            for li in layers
        ]
        print(json.dumps({"model": model.name, "layers": rows}, indent=2))
        return 0
    width = max(len(li.path) for li in layers)
    for li in layers:
        alias = f"  ({', '.join(li.aliases)})" if li.aliases else ""
        kind = f"{li.kind} (tokens)" if li.layout == "tokens" else li.kind
        print(f"{li.path:{width}s}  {kind:40s} {'x'.join(map(str, li.shape)):>14s}{alias}")
    return 0


def cmd_directions(args: argparse.Namespace) -> int:
    from vizprobe.units import Directions, import_saelens

    path = import_saelens(args.folder, args.out, args.reduce)
    found = Directions.load("imported", path)
    print(
        f"{found.count} {found.encoder} SAE features of {found.channels} channels, each the {found.reduce} over "
        f"positions -> {path} (use: --directions NAME={path})"
    )
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from vizprobe.images import demo_images_dir
    from vizprobe.scan import scan
    from vizprobe.scan.sheet import write_contact_sheets

    images = args.images or demo_images_dir()
    layers = _csv(args.layers) if args.layers else get_protocol(args.protocol).layers_for(args.model)
    result, stats = scan(
        args.model,
        images,
        layers,
        args.out,
        weights=args.weights,
        device=args.device,
        progress=not args.quiet,
        engine=args.engine,
        ray={"address": args.address, "workers": args.workers, "gpus_per_worker": args.gpus_per_worker}
        if args.engine == "ray"
        else None,
        **_given(args, "batch_size", "top_k", "compile", "backend", "directions", "keep_activations", "precision"),
        **(_given(args, "workers") if args.engine == "local" else {}),
    )
    print(
        f"scanned {stats.computed} images ({stats.images_per_second:.1f} img/s, {stats.backend or 'nothing to do'}), "
        f"{stats.resumed_from} already done, {stats.skipped} skipped -> {args.out}"
    )
    if args.sheet:
        sheets = write_contact_sheets(result, Path(args.out) / "sheets", progress=not args.quiet)
        print(f"wrote {len(sheets)} contact sheets to {Path(args.out) / 'sheets'}")
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from vizprobe.models import load_model
    from vizprobe.scan import ScanResult
    from vizprobe.synthesis import preset, render_units
    from vizprobe.synthesis.store import save_visualizations

    settings = preset(
        args.preset or get_protocol(args.protocol).visualization_preset,
        per_unit=args.per_unit,
        steps=args.steps,
        size=args.size,
        param=args.param,
        seed=args.seed,
        negative=True if args.negative else None,
        mixed_extra=args.mixed_extra,
        closeness=args.closeness,
        accent_layer=args.accent_layer,
        accent_alpha=args.accent_alpha,
        crops=args.crops,
        colour=args.colour,
        coherence=args.coherence,
    )
    scan = ScanResult.load(args.scan) if args.scan else None
    model = load_model(args.model, weights=args.weights, device=args.device, directions=args.directions)
    if scan is not None:  # the scan's directions sets, unless given again
        model = model.with_directions({k: v for k, v in scan.directions.items() if k not in model.directions})
    units = model.resolve_units(args.units)  # fail on a bad unit before any work
    references, paths, spectrum = None, None, None
    if scan is not None:
        from vizprobe.synthesis.natural import scan_inputs

        references, paths, spectrum = scan_inputs(scan, units, model.preprocessing, settings, args.start_rank)
    if args.spectrum:
        from vizprobe.synthesis.natural import load_spectrum

        if settings.param != "maco":
            raise VizprobeError("--spectrum is MACO's Fourier magnitude: use it with --method maco")
        spectrum = load_spectrum(args.spectrum, settings.size)
    until = _until(args.until, units, scan)
    rendering = render_units(
        model,
        units,
        settings,
        precision=args.precision,
        progress=not args.quiet,
        references=references,
        spectrum=spectrum,
        until=until,
    )
    index = save_visualizations(rendering, args.out, model, scan, reference_paths=paths)
    steps_per_s = settings.steps / rendering.seconds if rendering.seconds else float("nan")
    print(
        f"rendered {len(rendering.seeds)} images of {len(units)} units in {rendering.seconds:.1f} s "
        f"({steps_per_s:.2f} steps/s) -> {args.out}"
    )
    for entry in index["units"]:
        extra = f"  as cropped {entry['mean_crop_activation']:.3g}" if "mean_crop_activation" in entry else ""
        extra += f"  natural top-1 {entry['natural_top1']:.3g}" if "natural_top1" in entry else ""
        print(f"  {entry['unit']:20s} mean activation {entry['mean_activation']:.3g}{extra}")
    return 0


def _until(text: str | None, units, scan) -> float | dict | None:
    """`--until 12.5` (an activation) or `--until 2x` (twice each unit's natural top-1, from --scan)."""
    if text is None:
        return None
    relative = text.strip().lower().endswith("x")
    try:
        value = float(text.strip().lower().removesuffix("x"))
    except ValueError:
        raise VizprobeError(
            f"--until {text!r}: give an activation (12.5) or a multiple of the natural top-1 (2x)"
        ) from None
    if not relative:
        return value
    if scan is None:
        raise VizprobeError(f"--until {text}: a multiple of the natural top-1 needs --scan RUN_DIR")
    return {unit: value * scan.top(unit, 1)[0].activation for unit in units}


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
    from vizprobe.stimuli import build_stimuli
    from vizprobe.stimuli.build import protocol_units
    from vizprobe.stimuli.manifest import TRIAL_KINDS
    from vizprobe.stimuli.units import sample_units

    scan = ScanResult.load(args.scan)
    if bool(args.units) == bool(args.sample_units):
        raise VizprobeError("pass either --units L:C,... or --sample-units N")
    units = _csv(args.units) if args.units else sample_units(scan, args.sample_units, seed=args.seed or 0)
    given = _given(args, "tasks_per_condition", "image_sets", "patch_frac", "stride", "search", "seed")
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
    if args.pick_only:
        picked = protocol_units(scan, units, settings, device=args.device, **named)
        everything = [*map(str, units), *(str(c.unit) for c in picked.catch + picked.practice)]
        for role, chosen in (("catch", picked.catch), ("practice", picked.practice)):
            print(f"{role:8s} " + ", ".join(f"{c.unit} (gap {c.gap:.2f})" for c in chosen))
        print(f"render them with the main units: vizprobe visualize --units {','.join(everything)} ...")
        return 0
    if not args.out:
        raise VizprobeError("--out DIR is required (the stimulus package to write)")
    manifest = build_stimuli(
        scan, units, args.out, args.visualizations, settings, device=args.device, progress=not args.quiet, **named
    )
    counts = ", ".join(f"{len(manifest.trials_of([kind]))} {kind}" for kind in TRIAL_KINDS)
    roles = ", ".join(f"{len(manifest.units_of(role))} {role}" for role in ("main", "catch", "practice"))
    print(
        f"stimulus package {args.out}: units: {roles}, trials: {counts}, "
        f"{len(manifest.tasks)} tasks, {len(manifest.images)} images"
    )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from vizprobe.stimuli.pictures import inspect_package

    text, pictures = inspect_package(args.stimuli, args.out, args.min_catch_gap)
    print(text)
    for picture in pictures:
        print(f"wrote {picture}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from vizprobe.experiment.server import serve
    from vizprobe.experiment.settings import load_texts

    options = _given(args, "platform", "completion_code", "practice", "practice_attempts", "max_assignments")
    if args.task_timeout is not None:
        options["task_timeout_s"] = args.task_timeout * 60.0
    options["expert"] = args.expert
    if args.texts:
        options["texts"] = load_texts(args.texts)
    settings = dataclasses.replace(get_protocol(args.protocol).experiment, **options)
    serve(
        args.stimuli,
        args.db,
        settings,
        host=args.host,
        port=args.port,
        admin_token_file=args.admin_token_file,
        secret_file=args.secret_file,
        debug=args.debug,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        change_settings=args.change_settings,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vizprobe.experiment.export import export_responses

    path = export_responses(args.db, args.out)
    print(f"wrote {path}")
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    from vizprobe.experiment.approvals import decide, write_decisions

    decisions = decide(args.db, args.submissions, args.platform, args.secret_file)
    write_decisions(decisions, args.out)
    counts = decisions["decision"].value_counts()
    summary = ", ".join(f"{counts.get(d, 0)} {d}" for d in ("approve", "reject", "returned", "unknown"))
    print(f"{len(decisions)} submissions: {summary} -> {args.out}")
    return 0


def cmd_mturk_hit(args: argparse.Namespace) -> int:
    from vizprobe.experiment.mturk import with_overrides, write_hit

    countries = tuple(c.strip().upper() for c in args.countries.split(",")) if args.countries else None
    settings = with_overrides(
        get_protocol(args.protocol).mturk,
        reward_usd=args.reward,
        reward_none_usd=args.reward,
        assignment_duration_s=args.assignment_duration,
        min_hits_approved=args.min_hits_approved,
        min_percent_approved=args.min_percent_approved,
        countries=countries,
    )
    request = write_hit(args.stimuli, args.url, args.out, settings, args.assignments)
    print(
        f"wrote {args.out}: {request['MaxAssignments']} assignments at {request['Reward']} USD, "
        f"{request['AssignmentDurationInSeconds']} s each; post it with "
        f"`aws mturk create-hit --cli-input-json file://{args.out}` (sandbox first: --endpoint-url "
        "https://mturk-requester-sandbox.us-east-1.amazonaws.com)"
    )
    return 0


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

    if not hasattr(observer, "rule"):
        raise VizprobeError(f"--fit fits the similarity observer's rule; observer {observer.name!r} has none")
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
    frame, record = score(
        args.task,
        scan=args.scan,
        units=args.units,
        layers=_csv(args.layers) if args.layers else None,
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


def cmd_demo(args: argparse.Namespace) -> int:
    from vizprobe.demo import run_demo

    run_demo(
        out=args.out,
        images=args.images,
        model=args.model,
        device=args.device,
        progress=not args.quiet,
        methods=_csv(args.methods) if args.methods else None,
        **_given(args, "steps", "image_sets", "stride", "participants"),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from vizprobe.experiment.settings import PLATFORMS
    from vizprobe.scan.settings import (
        BACKEND_CHOICES,
        COMPILE_CHOICES,
        COMPILE_MIN_IMAGES,
        ENGINE_CHOICES,
        ONNX_BATCH_SIZE,
        PRECISION_CHOICES,
    )
    from vizprobe.stimuli.settings import SEARCHES
    from vizprobe.synthesis.settings import METHODS, PRECISIONS, PRESETS

    parser = argparse.ArgumentParser(prog="vizprobe", description=__doc__, formatter_class=_Help)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
        p.set_defaults(func=func)
        return p

    verb("models", "list the model zoo", cmd_models)

    p = verb("layers", "list a model's layers with output shapes", cmd_layers)
    _add_model_args(p)
    _directions_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = verb("directions", "bring directions in from other tools", cmd_directions)
    p.add_argument("action", choices=("import-saelens",), help="import-saelens: a SAELens SAE folder -> .npz")
    p.add_argument("folder", help="the SAE's folder (cfg.json and sae_weights.safetensors)")
    p.add_argument("--out", required=True, help="the .npz to write (then --directions NAME=FILE)")
    p.add_argument(
        "--reduce",
        default="max",
        choices=("mean", "max"),
        help="an image's activation of a feature: its maximum over positions (default, for sparse "
        "features) or the mean (as the paper's channels)",
    )

    scan = "vizprobe.scan.settings:ScanSettings"
    p = verb("scan", "record every image's activation for every channel of some layers", cmd_scan)
    _add_model_args(p)
    p.add_argument("--images", default=None, help="image folder, searched recursively (default: embedded demo)")
    text = "comma-separated layer paths or aliases (default: the layers --protocol names for the model)"
    p.add_argument("--layers", default=None, help=text + "; LAYER:NAME scans directions NAME")
    _directions_arg(p)
    _protocol_arg(p)
    _setting(p, "--top-k", f"{scan}.top_k", "top/bottom images to index per unit", type=int)
    text = "write every image's activations (--no-keep-activations: only each unit's top/bottom-k, mean and std)"
    _setting(p, "--keep-activations", f"{scan}.keep_activations", text, action=argparse.BooleanOptionalAction)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"default {ONNX_BATCH_SIZE} with ONNX Runtime, {BATCH_SIZES['cpu']} with PyTorch on the CPU, "
        f"{BATCH_SIZES['cuda']} on a GPU",
    )
    _setting(
        p,
        "--workers",
        f"{scan}.workers",
        "decoding threads (on a GPU: processes, default one per CPU core); "
        "with --engine ray: model workers (default: half the cluster's CPUs, or its GPUs / --gpus-per-worker)",
        type=int,
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=ENGINE_CHOICES,
        help="local (default), or ray: Ray Data on a cluster or this machine (pip install 'vizprobe[ray]')",
    )
    p.add_argument(
        "--address",
        default=None,
        help="with --engine ray: the cluster (HOST:PORT or auto; default: start Ray on this machine)",
    )
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="with --engine ray: GPUs per model worker")
    _setting(
        p,
        "--backend",
        f"{scan}.backend",
        "what runs the network (auto: ONNX Runtime on the CPU, PyTorch on a GPU)",
        choices=BACKEND_CHOICES,
    )
    _setting(
        p,
        "--precision",
        f"{scan}.precision",
        "the network's arithmetic: fp32 (the same activations on every "
        "device), tf32 (a GPU's cuDNN default), bf16 (autocast; PyTorch backend)",
        choices=PRECISION_CHOICES,
    )
    _setting(
        p,
        "--compile",
        f"{scan}.compile",
        f"torch.compile for --backend torch (auto: from {COMPILE_MIN_IMAGES} images)",
        choices=COMPILE_CHOICES,
    )
    p.add_argument("--sheet", action="store_true", help="also write a contact sheet PNG per unit")
    p.add_argument("--out", required=True, help="run directory (an unfinished one is resumed)")

    p = verb("visualize", "render feature visualizations (activation maximization)", cmd_visualize)
    _add_model_args(p)
    p.add_argument("--units", required=True, help="comma-separated LAYER:CHANNEL or LAYER:DIRECTIONS:K")
    _directions_arg(p)
    p.add_argument(
        "--preset",
        default=None,
        choices=tuple(PRESETS),
        help="default: the protocol's (zimmermann2021: paper, 9 images per unit); quick for a first look",
    )
    _protocol_arg(p)
    for flag, name, kind, text in [
        ("--per-unit", "per_unit", int, "images per unit"),
        ("--steps", "steps", int, "optimization steps"),
        ("--size", "size", int, "image side in pixels"),
        ("--seed", "seed", int, "base seed of the images"),
    ]:
        p.add_argument(
            flag,
            type=kind,
            default=None,
            help=f"{text} (default: the preset's; paper "
            f"{getattr(PRESETS['paper'], name)}, quick {getattr(PRESETS['quick'], name)})",
        )
    p.add_argument(
        "--method",
        "--param",
        dest="param",
        default=None,
        choices=METHODS,
        help="fourier (lucid's, default), pixel, maco (Fel et al. 2023: natural Fourier magnitude, "
        "phase optimized), accentuation (Hamblin et al. 2024: from each unit's top scan images, kept "
        "close to them in an early layer; needs --scan); maco and accentuation run their authors' "
        "recipe (a canvas seen through random crops; scaled down in quick and fast)",
    )
    p.add_argument(
        "--accent-layer",
        default=None,
        help="accentuation: the layer whose activations stay close to the start image's (default: the "
        "model's, e.g. inceptionv1 mixed3a, else the first block at 1/8 of the input side); 'pixels': "
        "the pixel distance weighted by --closeness instead",
    )
    p.add_argument(
        "--accent-alpha",
        type=float,
        default=None,
        help="accentuation: the regularizer's weight, relative to the objective's gradient at the start "
        f"(default {PRESETS['quick'].accent_alpha:g}, faccent's)",
    )
    p.add_argument(
        "--closeness",
        type=float,
        default=None,
        help=f"accentuation with --accent-layer pixels: weight of the pixel distance to the start image "
        f"(default {PRESETS['quick'].closeness:g})",
    )
    p.add_argument(
        "--crops",
        type=int,
        default=None,
        help="random crops of the canvas per step (default: the method's recipe, maco 6 and "
        "accentuation 16 in the paper preset; 0: the whole image through lucid's transforms)",
    )
    p.add_argument(
        "--coherence",
        type=float,
        default=None,
        help="weight of a centre-bias prior (low-frequency energy away from the centre; default 0: off)",
    )
    p.add_argument(
        "--start-rank",
        type=int,
        default=1,
        help="accentuation and the colour prior use the unit's scan images from this rank on (default 1, "
        "the top exemplar; for a study, start past the query ranks, e.g. 21)",
    )
    p.add_argument(
        "--colour",
        type=float,
        default=None,
        help="weight of the patch colour prior toward the unit's top scan images (default 0: off; needs --scan)",
    )
    p.add_argument(
        "--until",
        default=None,
        help="stop each image once its activation reaches X (12.5), or X times the unit's natural "
        "top-1 (2x, needs --scan); --steps stays the budget",
    )
    p.add_argument("--negative", action="store_true", help="minimize instead: images the unit dislikes")
    p.add_argument(
        "--mixed-extra",
        type=int,
        default=None,
        help="a separate batch of N per unit for mixed (default: the preset's; paper 4)",
    )
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto: bf16 where native")
    p.add_argument(
        "--scan",
        default=None,
        help="scan run dir: record natural top-1 activations beside (and take its directions); the "
        "natural images of accentuation, the colour prior and maco's spectrum",
    )
    text = (
        "maco: a published Fourier magnitude .npy (3, S, S // 2 + 1), e.g. xplique's spectrum_decorrelated.npy "
        "(default: measured on --scan's images, else the demo photos)"
    )
    p.add_argument("--spectrum", default=None, help=text)
    p.add_argument("--out", required=True, help="visualizations dir")

    build = "vizprobe.stimuli.settings:BuildSettings"
    p = verb("build", "build a stimulus package (trials, references, tasks)", cmd_build)
    p.add_argument("--scan", required=True, help="scan run dir")
    p.add_argument("--visualizations", default=None, help="visualizations dir (for synthetic and mixed)")
    p.add_argument("--units", default=None, help="comma-separated LAYER:CHANNEL")
    p.add_argument("--sample-units", type=int, default=None, help="or: sample N units from the scanned layers")
    _setting(
        p,
        "--conditions",
        f"{build}.conditions",
        "comma-separated: natural, synthetic, mixed, blur, none, and your own as NAME=images:DIR (a folder "
        "per unit, LAYER_CHANNEL) or NAME=visualizations:DIR",
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
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
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

    serve = "vizprobe.experiment.settings:Settings"
    p = verb("serve", "run the experiment server for participants", cmd_serve)
    p.add_argument("--stimuli", required=True, help="stimulus package dir")
    _protocol_arg(p)
    p.add_argument("--db", default=None, help="SQLite path/URL or postgresql://... (default ./vizprobe-experiment.db)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    _setting(p, "--platform", f"{serve}.platform", "crowd platform", choices=tuple(PLATFORMS))
    p.add_argument("--completion-code", default=None, help="code shown at the end (default: generated once)")
    p.add_argument(
        "--practice",
        type=int,
        default=None,
        help="practice trials per round, drawn anew from the package's pool each round (default 4: "
        "one obvious + 3, as the authors; 0 skips)",
    )
    _setting(p, "--practice-attempts", f"{serve}.practice_attempts", "practice rounds allowed", type=int)
    _setting(
        p,
        "--max-assignments",
        f"{serve}.max_assignments",
        "sessions a task may have before a failed one is no longer re-posted (the authors': 3)",
        type=int,
    )
    p.add_argument("--expert", action="store_true", help="mark sessions as expert")
    p.add_argument("--texts", default=None, help="JSON file of page texts to replace (keys: see docs)")
    p.add_argument(
        "--admin-token-file",
        default=None,
        help="file holding the admin token (default: beside the secret file; made and shown once on the "
        "first start); $VIZPROBE_ADMIN_TOKEN overrides it",
    )
    p.add_argument(
        "--task-timeout",
        type=float,
        default=None,
        help=f"minutes of silence before a task is reassigned (default {default_of(f'{serve}.task_timeout_s') / 60:g})",
    )
    text = "HMAC key file (default: beside the SQLite file; ~/.vizprobe/secrets/ for PostgreSQL)"
    p.add_argument("--secret-file", default=None, help=text)
    p.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM; with --ssl-keyfile)")
    p.add_argument("--ssl-keyfile", default=None, help="the certificate's private key (PEM)")
    p.add_argument("--debug", action="store_true", help="log the traceback of unexpected errors")
    text = "accept platform, practice, expert or completion-code changes once participants exist (recorded)"
    p.add_argument("--change-settings", action="store_true", help=text)

    p = verb("export", "write the experiment's responses CSV", cmd_export)
    p.add_argument("--db", required=True, help="the database `vizprobe serve` used")
    p.add_argument("--out", required=True, help="responses CSV to write")

    p = verb("approvals", "which platform submissions to approve (from the platform's export)", cmd_approvals)
    p.add_argument("--db", required=True, help="the database `vizprobe serve` used")
    p.add_argument("--platform", required=True, choices=("prolific", "mturk"))
    p.add_argument("--submissions", required=True, help="the platform's CSV export of the study's submissions")
    p.add_argument("--secret-file", default=None, help="the study's secret (default: where `vizprobe serve` keeps it)")
    p.add_argument("--out", required=True, help="CSV to write: the submissions with decision, reason, session_status")

    hit = "vizprobe.experiment.mturk:MTurkSettings"
    p = verb(
        "mturk-hit",
        "write the MTurk HIT request (CreateHIT JSON) for a study served with --platform mturk",
        cmd_mturk_hit,
    )
    p.add_argument("--stimuli", required=True, help="the stimulus package being served")
    p.add_argument("--url", required=True, help="the study's public https:// address")
    p.add_argument("--out", required=True, help="JSON file to write (for `aws mturk create-hit --cli-input-json`)")
    p.add_argument("--assignments", type=int, default=None, help="places (default: one per task of the package)")
    _protocol_arg(p)
    _setting(
        p, "--reward", f"{hit}.reward_usd", "USD per assignment (default: the protocol's; 0.70 in none)", type=float
    )
    _setting(p, "--assignment-duration", f"{hit}.assignment_duration_s", "seconds a worker may hold it", type=int)
    _setting(p, "--min-hits-approved", f"{hit}.min_hits_approved", "workers' approved HITs at least", type=int)
    _setting(p, "--min-percent-approved", f"{hit}.min_percent_approved", "workers' approval rate at least", type=int)
    _setting(p, "--countries", f"{hit}.countries", "comma-separated ISO country codes workers must be in")

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
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--out", required=True, help="responses CSV to write (with --fit: the rule's JSON)")

    score = "vizprobe.observers.score:ScoreSettings"
    p = verb("score", "score units without people: the exemplar task (MIS) or the occlusion task", cmd_score)
    text = "exemplar: from a scan's top and bottom images; occlusion: a stimulus package's trials"
    p.add_argument("--task", default="exemplar", choices=("exemplar", "occlusion"), help=text)
    p.add_argument("--scan", default=None, help="exemplar task: scan run dir")
    p.add_argument("--units", default=None, help="exemplar task: comma-separated LAYER:CHANNEL")
    p.add_argument("--layers", default=None, help="exemplar task: every unit of these comma-separated layers")
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
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--out", required=True, help="folder to write: scores.csv and scores.json")

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
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
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

    demo = "vizprobe.demo:run_demo"
    p = verb("demo", "run the pipeline on the embedded defaults", cmd_demo)
    p.add_argument("--out", default="demo-output")
    p.add_argument("--images", default=None, help="image folder (default: embedded demo photos)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--steps", type=int, default=None, help="visualization steps (default: the quick preset's)")
    _setting(p, "--image-sets", f"{demo}.image_sets", "image sets per unit in the stimulus package", type=int)
    _setting(p, "--stride", f"{demo}.stride", "occlusion stride in pixels", type=int)
    _setting(p, "--participants", f"{demo}.participants", "simulated participants per condition", type=int)
    p.add_argument(
        "--methods",
        default=None,
        help=f"also compare synthesis methods as conditions, e.g. fourier,maco,accentuation (of "
        f"{', '.join(METHODS)}; fourier is the `synthetic` condition)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if getattr(args, "preprocessing", None) is not None:
            from vizprobe.models.plugins import factory_name

            args.model = factory_name(args.model, args.preprocessing)
        return args.func(args)
    except VizprobeError as exc:
        print(f"vizprobe {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
