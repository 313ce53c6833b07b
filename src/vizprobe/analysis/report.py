"""`analyze`: responses (+ optional stimulus package) -> report folder with report.html, results.json, figures.

Every analysis that needs an optional column which the responses lack is skipped and listed, with the
reason, under `skipped` in results.json and in the report. The folder is written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from vizprobe.analysis import figures
from vizprobe.analysis.accuracy import (
    StatsSettings,
    accuracy_table,
    machine_summary,
    pairwise_tests,
    participant_accuracy,
    summarize,
)
from vizprobe.analysis.consistency import kappa_matrix
from vizprobe.analysis.exclusion import ExclusionCriteria, apply_exclusion
from vizprobe.analysis.groups import group_order, main_trials, with_groups
from vizprobe.analysis.html import render_html
from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_json, atomic_write_text, staged_dir
from vizprobe.observers.answer import run_baselines
from vizprobe.observers.baselines import BASELINES, SaliencyModel
from vizprobe.responses import FINISHED_STATUSES, read_responses, validate_responses
from vizprobe.stimuli.manifest import Manifest
from vizprobe.units import unit_layer

REPORT_VERSION = 1
MARKER = "results.json"
DEFAULT_STATS = StatsSettings()


def load_responses(responses: pd.DataFrame | str | Path) -> tuple[pd.DataFrame, str]:
    """A validated responses table from a DataFrame, a CSV path or a database URL (via the export)."""
    if isinstance(responses, pd.DataFrame):
        return validate_responses(responses), "DataFrame"
    text = str(responses)
    scheme = text.split("://")[0].split("+")[0] if "://" in text else ""
    if scheme in ("sqlite", "postgresql", "postgres") or Path(text).suffix in (".db", ".sqlite", ".sqlite3"):
        from vizprobe.experiment.export import export_frame  # the server's export, imported only when needed

        return validate_responses(export_frame(text)), f"{scheme}://…" if scheme else text  # no credentials
    return _read_file(text), text


def _read_file(path: str) -> pd.DataFrame:
    """A responses CSV, or the raw data of Borowski et al. 2021 (recognised by its columns) converted to one."""
    from vizprobe.analysis.borowski2021 import from_borowski2021, is_borowski2021

    if Path(path).is_file():
        try:
            header = pd.read_csv(path, dtype=str, nrows=0)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
            header = pd.DataFrame()
        if is_borowski2021(header):
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
            return validate_responses(from_borowski2021(raw))
    return read_responses(path)


def _fill_from_manifest(frame: pd.DataFrame, manifest: Manifest) -> pd.DataFrame:
    """Fill missing unit/layer/image_set/is_catch/is_practice cells from the manifest, by trial_id."""
    known = manifest.trials
    fields = {
        "unit": lambda t: t.unit,
        "layer": lambda t: manifest.layer_of(t.unit),
        "image_set": lambda t: t.image_set,
        "is_catch": lambda t: int(t.kind == "catch"),
        "is_practice": lambda t: int(t.kind == "practice"),
    }
    out = frame.copy()
    for column, get in fields.items():
        values = out["trial_id"].map(lambda tid, get=get: get(known[tid]) if tid in known else None)
        if column in out.columns:
            out[column] = out[column].astype(object).where(out[column].notna(), values)
        else:
            out[column] = values
    return validate_responses(out)


def _confidence(frame: pd.DataFrame, groups: Sequence[str]) -> dict:
    """Accuracy per confidence rating, pooled over trials, with Wilson 95 % intervals."""
    out: dict = {}
    for (group, rating), part in frame.dropna(subset=["confidence"]).groupby(["group", "confidence"]):
        if group not in groups:
            continue
        k, n = int(part["correct"].sum()), len(part)
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        out.setdefault(group, {})[str(int(rating))] = {"accuracy": k / n, "n_trials": n, "ci_low": low, "ci_high": high}
    return {g: out[g] for g in groups if g in out}


def _response_times(frame: pd.DataFrame, groups: Sequence[str], settings: StatsSettings) -> tuple[dict, pd.DataFrame]:
    """Per condition: summary of the participants' median response times (s), and medians by correctness."""
    rows = frame.dropna(subset=["rt_ms"]).assign(rt_s=lambda d: d["rt_ms"].astype(float) / 1000)
    rows = rows[rows["group"].isin(groups)]
    per = rows.groupby(["group", "participant_id"])["rt_s"].median().rename("median_rt_s").reset_index()
    out = {}
    for group in groups:
        values = per.loc[per["group"] == group, "median_rt_s"].to_numpy(float)
        if not len(values):
            continue
        part = rows[rows["group"] == group]
        out[group] = summarize(values, settings) | {
            "median_of_medians": float(np.median(values)),
            "median_correct": float(part.loc[part["correct"] == 1, "rt_s"].median()),
            "median_incorrect": float(part.loc[part["correct"] == 0, "rt_s"].median()),
        }
    return out, per


def _levels(frame: pd.DataFrame, column: str, manifest: Manifest | None) -> list[str]:
    """Layers or units in manifest order when a manifest is given, else sorted."""
    present = [str(v) for v in frame[column].dropna().unique()]
    if manifest is not None:
        order = [getattr(u, column) for u in manifest.units.values()]
        return [v for v in dict.fromkeys(order) if v in present] + sorted(set(present) - set(order))
    return sorted(present)


def _clean(value):
    """JSON-safe: NaN/inf -> null, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _machine_stats(
    main: pd.DataFrame,
    machines: Sequence[str],
    per: pd.DataFrame,
    settings: StatsSettings,
    extra: pd.DataFrame,
    manifest: Manifest | None,
) -> dict:
    """Per machine group: accuracy over its main trials (Wilson CI), a participant summary if it has several, and
    from `extra` (its catch and control rows) `catch` and `control` accuracies; `embedder` and `reads_unit` (the
    embedding network is the package's studied one) for observers that embed images."""
    out = {}
    for group in machines:
        part = main[main["group"] == group]
        out[group] = machine_summary(part["correct"], settings.ci_level)
        if part["participant_id"].nunique() > 1:
            out[group]["participants"] = summarize(per.loc[per["group"] == group, "accuracy"].to_numpy(), settings)
        mine = extra[extra["group"] == group]
        control, catch = mine[_flag(mine, "control")], mine[_flag(mine, "is_catch") & ~_flag(mine, "control")]
        if len(catch):
            out[group]["catch"] = _brief(machine_summary(catch["correct"], settings.ci_level))
        control = main_trials(control)
        if len(control):
            entry = out[group]["control"] = _brief(machine_summary(control["correct"], settings.ci_level))
            entry["far_from_chance"] = bool(entry["ci_low"] > 0.5 or entry["ci_high"] < 0.5)
        if "embedder" in part.columns and part["embedder"].notna().any():
            label = str(part["embedder"].dropna().iloc[0])
            out[group]["embedder"] = label
            out[group]["reads_unit"] = label.split(":")[0] == manifest.model if manifest is not None else None
    return out


def _flag(frame: pd.DataFrame, column: str) -> pd.Series:
    """True where a 0/1 column is 1 (False where it is missing or absent)."""
    if column not in frame.columns:
        return pd.Series(False, index=frame.index)
    return (frame[column] == 1).fillna(False).astype(bool)


def _brief(summary: dict) -> dict:
    """An accuracy summary's numbers: accuracy, ci_low, ci_high, n."""
    return {
        "accuracy": summary["accuracy"],
        "ci_low": summary["ci_low"],
        "ci_high": summary["ci_high"],
        "n": summary["n_trials"],
    }


def finished_sessions(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows of sessions the server saw finished (or with no status: machines, other studies' files), and the
    number of participants left out per status."""
    if "session_status" not in frame.columns:
        return frame, {}
    status = frame["session_status"]
    unfinished = status.notna() & ~status.isin(FINISHED_STATUSES)
    left = frame.loc[unfinished, ["condition", "participant_id", "session_status"]].drop_duplicates()
    return frame[~unfinished], {str(k): int(v) for k, v in sorted(left["session_status"].value_counts().items())}


def compute(
    frame: pd.DataFrame,
    manifest: Manifest | None = None,
    baselines: pd.DataFrame | None = None,
    criteria: ExclusionCriteria | None = None,
    settings: StatsSettings = DEFAULT_STATS,
    min_shared_trials: int | None = None,
) -> tuple[dict, dict]:
    """Every number of the report (results.json) and the tables the figures need."""
    criteria = criteria or (manifest.exclusion if manifest is not None else None) or ExclusionCriteria()
    skipped: dict[str, str] = {}
    if manifest is not None:
        frame = _fill_from_manifest(frame, manifest)
        unknown = set(frame["trial_id"]) - set(manifest.trials)
        if unknown:
            skipped["trial_lookup"] = f"{len(unknown)} trial ids are not in the stimulus package (not looked up)"
    if "layer" not in frame.columns and "unit" in frame.columns:
        frame = frame.assign(layer=frame["unit"].map(lambda u: unit_layer(u) if isinstance(u, str) else pd.NA))
    excluded = apply_exclusion(frame, criteria)
    for name, entry in excluded.criteria.items():
        if entry["skipped"]:
            skipped[f"exclusion.{name}"] = entry["skipped"]
    data = excluded.kept
    if baselines is not None and len(baselines):
        present = set(data["observer"].dropna()) if "observer" in data.columns else set()
        data = pd.concat([data, baselines[~baselines["observer"].isin(present)]], ignore_index=True)
    elif manifest is None:
        skipped["baselines"] = "no stimulus package given (--stimuli)"
    data = with_groups(data)
    is_control = _flag(data, "control")
    extra = data[~data["is_human"] & (is_control | _flag(data, "is_catch"))]
    data = data[~is_control]
    main = main_trials(data)
    if main.empty:
        raise VizprobeError("the responses hold no main trials after exclusion; nothing to analyze")
    order = group_order(main["group"])
    humans = [g for g in order if main.loc[main["group"] == g, "is_human"].all()]
    machines = [g for g in order if g not in humans]
    per_participant = participant_accuracy(main)
    human_main = main[main["is_human"]]
    results: dict = {"format": "vizprobe-report", "version": REPORT_VERSION}
    results["settings"] = {
        "exclusion": asdict(criteria),
        "stats": asdict(settings),
        "min_shared_trials": min_shared_trials,
    }
    n_participants = len(frame[["condition", "participant_id"]].drop_duplicates())
    results["input"] = {"rows": len(frame), "columns": list(frame.columns), "participants": n_participants}
    results["exclusion"] = excluded.summary()
    accuracy = accuracy_table(human_main, settings=settings)
    results["accuracy"] = {g: accuracy[g] for g in humans if g in accuracy}
    machine_stats = _machine_stats(main, machines, per_participant, settings, extra, manifest)
    results["baselines"] = {
        g.removeprefix("baseline:"): v for g, v in machine_stats.items() if g.startswith("baseline:")
    }
    results["observers"] = {g: v for g, v in machine_stats.items() if not g.startswith("baseline:")}
    results["pairwise"] = pairwise_tests(per_participant, humans, settings)
    if len(humans) < 2:
        skipped["pairwise"] = "fewer than two human conditions"
    if "expertise" in human_main.columns and human_main["expertise"].notna().any():
        table = accuracy_table(human_main.dropna(subset=["expertise"]), ["expertise"], settings)
        results["accuracy_by_expertise"] = {g: table[g] for g in order if g in table}
    else:
        skipped["accuracy_by_expertise"] = "no expertise column (or no values)"
    if "away_count" in human_main.columns and human_main["away_count"].notna().any():
        results["attention"] = _attention(human_main, humans, settings)
    else:
        skipped["attention"] = "no away_count column (recorded by the participant page since responses format 2026-12)"
    tables: dict = {"per_participant": per_participant, "humans": humans, "machines": machines}
    for column in ("layer", "unit"):
        if column in main.columns and main[column].notna().any():
            table = accuracy_table(main.dropna(subset=[column]), [column], settings)
            results[f"accuracy_by_{column}"] = {g: table[g] for g in order if g in table}
            tables[f"{column}_order"] = _levels(main, column, manifest)
        else:
            skipped[f"accuracy_by_{column}"] = f"no {column} column (and no --stimuli to look it up)"
    results["kappa"] = kappa_matrix(main, order, min_shared_trials)
    if "confidence" in human_main.columns and human_main["confidence"].notna().any():
        results["confidence"] = _confidence(human_main, humans)
    else:
        skipped["confidence"] = "no confidence column (or no values)"
    if "rt_ms" in human_main.columns and human_main["rt_ms"].notna().any():
        results["response_time"], tables["rt"] = _response_times(human_main, humans, settings)
    else:
        skipped["response_time"] = "no rt_ms column (or no values)"
    results["skipped"] = skipped
    return _clean(results), tables


def _figures(results: dict, tables: dict, folder: Path) -> dict[str, str]:
    """Draw and save every figure whose numbers exist; return name -> base64 PNG."""
    machines = tables["machines"]
    machine_bars = {
        g: results["baselines"].get(g.removeprefix("baseline:")) or results["observers"][g] for g in machines
    }
    drawn = {
        "accuracy": figures.accuracy_chart(results["accuracy"], machine_bars, tables["per_participant"]),
        "kappa": figures.kappa_heatmap(results["kappa"]),
    }
    for column, what in (("layer", "layer"), ("unit", "unit")):
        if f"accuracy_by_{column}" in results:
            table = results[f"accuracy_by_{column}"]
            table = {g: table[g] for g in tables["humans"] + machines if g in table}
            drawn[f"per_{column}"] = figures.by_level(table, tables[f"{column}_order"], machines, what)
    if "confidence" in results:
        drawn["confidence"] = figures.confidence_curve(results["confidence"])
    if "response_time" in results:
        drawn["response_time"] = figures.response_times(tables["rt"], list(results["response_time"]))
    return {name: figures.save(figure, folder, name) for name, figure in drawn.items()}


def _attention(human_main: pd.DataFrame, humans: list[str], settings: StatsSettings) -> dict:
    """Main trials during which the window lost focus or the tab was hidden, and accuracy without them (nobody
    is excluded for it unless the criteria say so)."""
    away = human_main["away_count"].fillna(0) > 0
    attentive = accuracy_table(human_main[~away], settings=settings)
    return {
        "trials_away": int(away.sum()),
        "trials": int(len(human_main)),
        "participants_away": int(human_main.loc[away, ["condition", "participant_id"]].drop_duplicates().shape[0]),
        "away_ms_median": float(human_main.loc[away, "away_ms"].median()) if away.any() else 0.0,
        "accuracy_without_away_trials": {g: attentive[g] for g in humans if g in attentive},
    }


def analyze(
    responses: pd.DataFrame | str | Path,
    out_dir: str | Path,
    stimuli: str | Path | None = None,
    *,
    criteria: ExclusionCriteria | None = None,
    settings: StatsSettings = DEFAULT_STATS,
    baselines: Sequence[str] = BASELINES,
    saliency_model: SaliencyModel | None = None,
    min_shared_trials: int | None = None,
    include_incomplete: bool = False,
) -> dict:
    """Analyze responses and write OUT_DIR/report.html, results.json and figures/ (PNG + SVG); return results.

    `criteria` default to the stimulus package's (those its server re-posted tasks by), else the paper's.
    Sessions the server did not see finished (`session_status` running, expired or returned) are left out unless
    `include_incomplete`; the report says how many and why."""
    frame, source = load_responses(responses)
    invalid_values = dict(frame.attrs.get("invalid_values", {}))
    manifest = Manifest.load(stimuli) if stimuli is not None else None
    rows = run_baselines(manifest, baselines, settings.seed, saliency_model) if manifest and baselines else None
    frame, left_out = finished_sessions(frame) if not include_incomplete else (frame, {})
    results, tables = compute(frame, manifest, rows, criteria, settings, min_shared_trials)
    results["exclusion"]["incomplete_sessions"] = left_out
    results["settings"]["include_incomplete"] = include_incomplete
    results["input"]["source"] = source
    results["input"]["invalid_values"] = invalid_values
    results["input"]["stimuli"] = str(stimuli) if stimuli is not None else None
    out_dir = Path(out_dir)
    with staged_dir(out_dir, MARKER, "vizprobe report folder") as staging:
        images = _figures(results, tables, staging / "figures")
        atomic_write_text(staging / "report.html", render_html(results, images))
        atomic_write_json(staging / MARKER, results)
    results["paths"] = {
        "report": str(out_dir / "report.html"),
        "results": str(out_dir / MARKER),
        "figures": str(out_dir / "figures"),
    }
    return results
