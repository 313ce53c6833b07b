"""`vizprobe score`: a score per unit from an observer, with no people and no reading of the unit.

Exemplar task: every unit's tasks drawn from a scan and answered by the similarity observer
(`vizprobe.score.exemplar`); whole layers of one or several scans into a resumable run folder
(`vizprobe.score.layers`). Occlusion task: the observer answers a stimulus package's main trials (the paper's task);
per unit and condition the score is the mean probability it gives the right answer, with a bootstrap interval over
trials, beside the colour-statistics observer's. Every output says whether its probability is calibrated to people
(`vizprobe.score.folder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from vizprobe.errors import VizprobeError
from vizprobe.observers.rule import DecisionRule
from vizprobe.score.exemplar import ScoreSettings, bootstrap_interval, exemplar_scores
from vizprobe.score.folder import calibration, write_scores

TASKS = ("exemplar", "occlusion")


def occlusion_scores(package, observer, settings: ScoreSettings | None = None) -> pd.DataFrame:
    """Per unit and condition of a stimulus package: the observer's mean probability of the right answer on the
    main trials, with a bootstrap interval over trials."""
    settings = settings or ScoreSettings()
    from vizprobe.observers.answer import predict_package

    predicted = predict_package(package, observer, kinds=("main",))
    correct_side = predicted["max_side"].to_numpy()
    predicted["p_correct"] = np.where(correct_side == 1, predicted["p_right"], 1 - predicted["p_right"])
    rows = []
    for (unit, condition), part in predicted.groupby(["unit", "condition"], sort=False):
        p = part["p_correct"].to_numpy()[None, :]
        low, high = bootstrap_interval(p, settings)
        rows.append(
            {
                "unit": unit,
                "layer": part["layer"].iloc[0],
                "condition": condition,
                "score": float(p.mean()),
                "ci_low": float(low[0]),
                "ci_high": float(high[0]),
                "tasks": p.shape[1],
                "accuracy": float((p > 0.5).mean()),
            }
        )
    return pd.DataFrame(rows)


def score(
    task: str = "exemplar",
    scan: str | Path | None = None,
    units: Sequence[str] | str | None = None,
    layers: Sequence[str] | None = None,
    stimuli: str | Path | None = None,
    out: str | Path | None = None,
    settings: ScoreSettings | None = None,
    embedder=None,
    same_as_model: bool = False,
    rule=None,
    device: str = "auto",
    progress: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Score units on `task` (exemplar: from a scan's `units`, or every unit of `layers` of one or more scans into
    a resumable run folder, see `vizprobe.score.layers`; occlusion: from a stimulus package) with the
    similarity observer; write OUT/scores.csv and scores.json when `out` is given."""
    settings = settings or ScoreSettings()
    if task not in TASKS:
        raise VizprobeError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if isinstance(rule, str | Path):
        rule = DecisionRule.load(rule)
    if rule is not None and task == "exemplar":
        settings = _exemplar_rule(rule, settings)
    if task == "exemplar" and layers:
        from vizprobe.score.layers import score_layers

        if rule is not None:
            raise VizprobeError("--rule applies to --units (the units of a calibration study's model); not to --layers")
        if units:
            raise VizprobeError("pass either --units L:C,... or --layers L1,L2 (every unit of those layers)")
        if out is None:
            raise VizprobeError("scoring whole layers writes a resumable run folder: pass out=DIR")
        scans = scan if isinstance(scan, list | tuple) else [scan]
        frame, _, record = score_layers(
            scans,
            layers,
            out,
            settings,
            embedder=embedder,
            same_as_model=same_as_model,
            device=device,
            progress=progress,
        )
        return frame, record
    if task == "exemplar":
        frame, record = _exemplar(scan, units, layers, settings, embedder, same_as_model, device, progress, rule)
        settings = replace(settings, temperature=settings.exemplar_temperature)
        record["calibration"] = calibration(settings.exemplar_temperature, settings.bias, rule.fitted if rule else None)
    else:
        frame, record = _occlusion(stimuli, settings, embedder, same_as_model, rule, device)
    record = {"task": task, **record, "settings": asdict(settings)}
    if out is not None:
        write_scores(frame, out, record)
    return frame, record


def _exemplar_rule(rule: DecisionRule, settings: ScoreSettings) -> ScoreSettings:
    """The settings with a rule fitted to people's exemplar-task answers; a rule of another task is refused."""
    if rule.task != "exemplar":
        raise VizprobeError(
            f"--rule was fitted to {rule.task or 'no'} answers; the exemplar score needs one fitted to exemplar-task "
            "answers (vizprobe observe --stimuli EXEMPLAR_PACKAGE --fit responses.csv), whose margins it shares"
        )
    if settings.temperature is not None:
        raise VizprobeError("pass either --rule (a fitted temperature) or --temperature, not both")
    return replace(settings, temperature=rule.temperature, bias=rule.bias)


def _exemplar(scan, units, layers, settings, embedder, same_as_model, device, progress, rule=None):
    from vizprobe.observers.embedding import make_embedder
    from vizprobe.scan import ScanResult
    from vizprobe.units import parse_units

    if scan is None:
        raise VizprobeError("the exemplar task scores units of a scan: pass --scan RUN_DIR")
    result = scan if not isinstance(scan, str | Path) else ScanResult.load(scan)
    if bool(units) == bool(layers):
        raise VizprobeError("pass either --units L:C,... or --layers L1,L2 (every unit of those layers)")
    chosen = parse_units(units) if units else [u for name in layers for u in _layer_units(result, name)]
    embedding = make_embedder(result.model, embedder, same_as_model, device)
    if rule is not None and rule.embedder not in (None, embedding.label):
        raise VizprobeError(
            f"--rule was fitted to margins of {rule.embedder}, not {embedding.label}; use --embedder "
            f"{rule.embedder.split(':')[0]} or fit the rule again"
        )
    frame, details = exemplar_scores(result, chosen, embedding, settings, progress)
    return frame, {"scan": str(result.run_dir), "model": result.model, "embedder": embedding.record, **details}


def _layer_units(result, name: str) -> list:
    from vizprobe.units import Unit

    layer = result.layer(name)
    return [Unit(layer.path, c) for c in range(layer.channels)]


def _occlusion(stimuli, settings, embedder, same_as_model, rule, device):
    from vizprobe.observers.base import as_manifest
    from vizprobe.observers.colour import ColourEmbedder
    from vizprobe.observers.similarity import SimilarityObserver

    if stimuli is None:
        raise VizprobeError("the occlusion task scores a stimulus package: pass --stimuli DIR")
    manifest = as_manifest(stimuli)
    rule = rule or (DecisionRule(settings.temperature) if settings.temperature is not None else None)
    observer = SimilarityObserver(
        embedder, studied_model=manifest.model, same_as_model=same_as_model, device=device, rule=rule
    )
    frame = occlusion_scores(manifest, observer, settings)
    colour = SimilarityObserver(ColourEmbedder(), rule=DecisionRule(observer.rule.temperature, observer.rule.bias))
    baseline = occlusion_scores(manifest, colour, settings)[["unit", "condition", "score", "accuracy"]]
    frame = frame.merge(
        baseline.rename(columns={"score": "colour_score", "accuracy": "colour_accuracy"}), on=["unit", "condition"]
    )
    record = {
        "stimuli": str(stimuli),
        "model": manifest.model,
        "embedder": observer.embedder.record,
        "rule": {"temperature": observer.rule.temperature, "bias": observer.rule.bias},
        "calibration": calibration(observer.rule.temperature, observer.rule.bias, observer.rule.fitted),
    }
    return frame, record
