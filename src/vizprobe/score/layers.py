"""Every unit of whole layers scored (`vizprobe score --layers`), for one scan or several, resumably, here or on Ray.

A scores run folder (format `vizprobe-scores` v2):
  scores.json            task, settings, the scans (run dir, model, image fingerprint, layers, embedder), status
  embeddings/NET/*.npz   the images' embeddings, committed in chunks (`paths`, `vectors`): each image file is
                         embedded once per embedding network, shared by every scan that ranks it (several models
                         over the same photos with the same embedder embed them once); `embeddings=DIR` keeps
                         them in a folder that several runs share
  parts/S/LAYER.csv      one layer of scan S scored, committed when the layer is done
  scores.csv             every unit: `exemplar_scores`' columns, plus model and scan
  summary.csv            per scan and layer: depth (0: the scan's first layer .. 1: its last), units, mean score,
                         quartiles, mean control
A killed run continues where it stopped: committed chunks are not embedded again, committed layers not scored
again; the same command with another design (settings, scans, layers) is refused rather than mixed in.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_bytes, atomic_write_json, atomic_write_text, safe_name
from vizprobe.observers.colour import NAME as COLOUR_EMBEDDER
from vizprobe.score.exemplar import ScoreSettings, pack_pools, pool_images, score_pools, unit_pools
from vizprobe.score.folder import MARKER, SCORES_FORMAT, calibration

log = logging.getLogger(__name__)

LAYERS_VERSION = 3  # 3: colour_score and colour_accuracy, calibration
EMBED_CHUNK = 256  # images per committed embedding chunk
SUMMARY_COLUMNS = ["model", "scan", "layer", "depth", "units", "mean", "q25", "median", "q75", "control_mean"]


@dataclass(frozen=True, eq=False)  # eq=False: a plan is its own identity (hashable, a key of the pending layers)
class ScanPlan:
    """One scan of a run: its layers (in the scan's order) and the network that embeds its images."""

    scan: object  # ScanResult
    layers: list[str]  # layer paths
    embedder: object  # EmbedderChoice
    key: str  # its folder under OUT/parts and its `scan` column: position and model

    def part(self, out: Path, layer: str) -> Path:
        """Where a layer's scores are committed."""
        return out / "parts" / self.key / f"{safe_name(layer)}.csv"

    @property
    def record(self) -> dict:
        return {
            "key": self.key,
            "scan": str(Path(self.scan.run_dir).resolve()),
            "model": self.scan.model,
            "images_fingerprint": self.scan.meta.get("images_fingerprint", ""),
            "layers": self.layers,
            "embedder": asdict(self.embedder),
        }


def layer_pools(scan, layer: str, size: int, needed: int) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """Every unit of `layer`, with its pools as `unit_pools` gives them, from the layer's activation matrix at once
    (a scan that kept no activations: unit by unit from its top/bottom-k)."""
    from vizprobe.units import Unit

    info = scan.layer(layer)
    units = [Unit(info.path, c) for c in range(info.channels)]
    size = min(size, scan.rank_limit)
    if not scan.keeps_activations:
        return (units, *unit_pools(scan, units, size, needed))
    values = np.asarray(scan.activations(info.path), dtype=np.float64)  # (N, C), NaN where an image was skipped
    valid = ~np.isnan(values)
    # strongest first, ties by image order (as `ScanResult.top`); invalid rows last on either side
    high = np.argsort(np.where(valid, -values, np.inf), axis=0, kind="stable")[:size].T
    low = np.argsort(np.where(valid, values, np.inf), axis=0, kind="stable")[:size].T
    n_valid = valid.sum(axis=0)
    rankings = ((high[u, :k].tolist(), low[u, :k].tolist()) for u, k in enumerate(np.minimum(n_valid, size)))
    return (units, *pack_pools(units, rankings, size, needed))


class EmbeddingStore:
    """The run's embeddings of image files by one network, committed in chunks under OUT/embeddings/LABEL/."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.vectors: dict[str, np.ndarray] = {}
        for chunk in sorted(folder.glob("*.npz")):
            with np.load(chunk) as data:
                self.vectors.update(zip(data["paths"].tolist(), data["vectors"], strict=True))

    def missing(self, paths: Iterable[str]) -> list[str]:
        return sorted({p for p in paths if p not in self.vectors})

    def commit(self, paths: list[str], vectors: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{time.time_ns()}-{os.getpid()}.npz"  # unique: runs may share a store
        buffer = io.BytesIO()
        np.savez(buffer, paths=np.asarray(paths), vectors=np.asarray(vectors, dtype=np.float32))
        atomic_write_bytes(target, buffer.getvalue())
        self.vectors.update(zip(paths, vectors, strict=True))

    def matrix(self, paths: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[p] for p in paths]) if paths else np.zeros((0, 0), np.float32)


def _local_chunks(choice, device: str, paths: list[str]) -> Iterator[tuple[list[str], np.ndarray]]:
    from vizprobe.observers.embedding import build_embedder

    embedder = build_embedder(choice, device=device)
    for start in range(0, len(paths), EMBED_CHUNK):
        chunk = paths[start : start + EMBED_CHUNK]
        yield chunk, embedder.embed(chunk, whole=False)


def embed_missing(store: EmbeddingStore, choice, paths: Iterable[str], device: str, engine: str, ray: dict, bar):
    """Embed the files the store lacks, chunk by chunk (locally, or spread over Ray workers), committing each."""
    todo = store.missing(paths)
    if not todo:
        return
    if engine == "ray":
        from vizprobe.score import ray_engine

        chunks = ray_engine.embedded_chunks(choice, todo, EMBED_CHUNK, **ray)
    else:
        chunks = _local_chunks(choice, device, todo)
    for chunk, vectors in chunks:
        store.commit(chunk, vectors)
        bar.update(len(chunk))


def embedder_label(choice) -> str:
    """The embeddings' folder name for an embedding network (and its layers, when chosen)."""
    return safe_name(choice.model + ("-" + "_".join(choice.layers) if choice.layers else ""))


def _depths(scan) -> dict[str, float]:
    paths = [layer.path for layer in scan.layers]
    return {p: (k / (len(paths) - 1) if len(paths) > 1 else 0.0) for k, p in enumerate(paths)}


def summarize(frame: pd.DataFrame, depths: dict[tuple[str, str], float]) -> pd.DataFrame:
    """Per scan and layer: units, mean score, quartiles and mean control; `depths[(scan, layer)]` in [0, 1]."""
    rows = []
    for (model, scan, layer), part in frame.groupby(["model", "scan", "layer"], sort=False):
        score = part["score"]
        rows.append(
            {
                "model": model,
                "scan": scan,
                "layer": layer,
                "depth": round(depths[(scan, layer)], 4),
                "units": len(part),
                "mean": score.mean(),
                "q25": score.quantile(0.25),
                "median": score.median(),
                "q75": score.quantile(0.75),
                "control_mean": part["control"].mean(),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def by_depth(summary: pd.DataFrame, bins: int = 4) -> pd.DataFrame:
    """Mean score of each model's layers in `bins` equal ranges of relative depth (rows) - how models compare."""
    edges = np.linspace(0, 1, bins + 1)
    labels = [f"{a:.2f}-{b:.2f}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    binned = summary.assign(depth_range=pd.cut(summary["depth"], edges, labels=labels, include_lowest=True))
    weighted = binned.assign(total=binned["mean"] * binned["units"])
    grouped = weighted.groupby(["depth_range", "model"], observed=True)[["total", "units"]].sum()
    return (grouped["total"] / grouped["units"]).unstack("model")


def _open_run(out: Path, record: dict) -> dict:
    """The run's scores.json: new, or an unfinished (or finished) run of the same design; else a one-line error."""
    marker = out / MARKER
    if out.exists() and not marker.is_file():
        raise VizprobeError(f"--out {out} exists and is not a scores folder; choose a new folder")
    if marker.is_file():
        stored = json.loads(marker.read_text())
        same = {k: stored.get(k) for k in ("version", "task", "settings", "scans")}
        if same != {k: record[k] for k in same}:
            raise VizprobeError(
                f"{out} holds scores of another design (settings, scans or layers differ); pass a new --out, "
                "or the same options to continue it"
            )
        return stored
    out.mkdir(parents=True)
    atomic_write_json(marker, record)
    return record


def score_layers(
    scans: Sequence,
    layers: Sequence[str],
    out: str | Path,
    settings: ScoreSettings | None = None,
    *,
    embedder=None,
    same_as_model: bool = False,
    device: str = "auto",
    engine: str = "local",
    ray: dict | None = None,
    embeddings: str | Path | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score every unit of `layers` (names, or ["all"]: every scanned layer) of each scan (run dirs or
    ScanResults) on the exemplar task into the run folder `out` (see the module doc), resuming an unfinished
    one. Each scan's images are embedded by `embedder` (default: the observers' default for its network).
    `embeddings` (default OUT/embeddings) is where the images' embeddings are kept: give several runs the same
    folder (scans of several models over the same images) and each image is embedded once for all of them.
    Returns (scores, summary, the run's record)."""
    settings = settings or ScoreSettings()
    settings.check()
    if engine not in ("local", "ray"):
        raise VizprobeError(f"engine={engine!r}: use local or ray")
    plans = _plans(scans, layers, embedder, same_as_model)
    out = Path(out)
    stored = _open_run(out, _run_record(plans, settings))
    if stored.get("status") == "complete":
        log.info("scores in %s are already complete; nothing to do", out)
        return pd.read_csv(out / "scores.csv"), pd.read_csv(out / "summary.csv"), stored
    ray = ray or {}
    if engine == "ray":
        from vizprobe.scan.ray_engine import connect

        connect(**ray)  # the scan's: join the cluster, or start Ray here
    started = time.perf_counter()
    pending = {  # (plan, layer) -> the layer's pools, for the layers not committed yet
        (plan, layer): layer_pools(plan.scan, layer, settings.pool, settings.needed)
        for plan in plans
        for layer in plan.layers
        if not plan.part(out, layer).is_file()
    }
    root = Path(embeddings) if embeddings is not None else out / "embeddings"
    stores, embedded = _embed_pools(plans, pending, root, device, engine, ray, progress)
    scoring_started = time.perf_counter()
    _score_pending(out, pending, stores, settings, engine, progress)
    scores, summary = _collect(out, plans)
    final = stored | {
        "status": "complete",
        "units": len(scores),
        "images_embedded_now": embedded,
        "embedding_s": round(scoring_started - started, 3),
        "scoring_s": round(time.perf_counter() - scoring_started, 3),
        "engine": engine,
    }
    atomic_write_json(out / MARKER, final)
    return scores, summary, final


def _plans(scans: Sequence, layers: Sequence[str], embedder, same_as_model: bool) -> list[ScanPlan]:
    """Each scan with its layers and embedding network; a layer a scan lacks is a one-line error naming both."""
    from vizprobe.observers.embedding import choose_embedder
    from vizprobe.scan import ScanResult

    if not scans:
        raise VizprobeError("pass at least one --scan RUN_DIR")
    plans = []
    for k, given in enumerate(scans):
        scan = given if not isinstance(given, str | Path) else ScanResult.load(given)
        try:
            names = [layer.path for layer in scan.layers] if list(layers) == ["all"] else layers
            chosen = list(dict.fromkeys(scan.layer(name).path for name in names))
        except VizprobeError as error:
            raise VizprobeError(f"--scan {scan.run_dir}: {error}") from None
        choice = choose_embedder(scan.model, embedder, same_as_model)
        plans.append(ScanPlan(scan, chosen, choice, f"{k}-{safe_name(scan.model)}"))
    return plans


def _run_record(plans: list[ScanPlan], settings: ScoreSettings) -> dict:
    """scores.json of a run, as it is on disk (so that a resume compares like with like)."""
    record = {
        "format": SCORES_FORMAT,
        "version": LAYERS_VERSION,
        "task": "exemplar",
        "settings": {**asdict(settings), "temperature": settings.exemplar_temperature},
        "calibration": calibration(settings.exemplar_temperature),
        "scans": [plan.record for plan in plans],
        "status": "running",
    }
    return json.loads(json.dumps(record))


def _embed_pools(plans, pending, root: Path, device, engine, ray, progress) -> tuple[dict, int]:
    """Every image the pending layers' pools use, embedded into the store of its scan's embedding network, and its
    colour statistics into the colour baseline's store (computed here: decoding a small view costs little)."""
    from vizprobe.observers.embedding import EmbedderChoice

    stores, embedded = {}, 0
    colour = EmbedderChoice(COLOUR_EMBEDDER)
    for plan in plans:
        needed = [
            str(plan.scan.image_path(int(i)))
            for (owner, _), (_, top, bottom, _) in pending.items()
            if owner is plan
            for i in pool_images(top, bottom)
        ]
        for choice, where in ((plan.embedder, engine), (colour, "local")):
            label = embedder_label(choice)
            store = stores.setdefault(label, EmbeddingStore(root / label))
            todo = store.missing(needed)
            with tqdm(total=len(todo), desc=f"embedding ({choice.model})", unit="img", disable=not progress) as bar:
                embed_missing(store, choice, todo, device, where, ray, bar)
            embedded += len(todo) if choice is plan.embedder else 0
    return stores, embedded


def _score_pending(out: Path, pending: dict, stores: dict, settings: ScoreSettings, engine: str, progress) -> None:
    """Score the pending layers (here or as Ray tasks), committing each layer's scores as it finishes."""
    jobs = []
    for (plan, layer), (units, top, bottom, counts) in pending.items():
        images = pool_images(top, bottom)
        paths = [str(plan.scan.image_path(int(i))) for i in images]
        vectors = stores[embedder_label(plan.embedder)].matrix(paths)
        colour = stores[COLOUR_EMBEDDER].matrix(paths)
        jobs.append(((plan, layer), (units, top, bottom, counts, images, vectors, settings, colour)))
    with tqdm(total=sum(len(job[1][0]) for job in jobs), desc="scoring", unit="unit", disable=not progress) as bar:
        for (plan, layer), frame in _scored(jobs, engine):
            part = plan.part(out, layer)
            part.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(part, frame.to_csv(index=False, float_format="%.6g"))
            bar.update(len(frame))


def _collect(out: Path, plans: list[ScanPlan]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """scores.csv and summary.csv from the committed layers."""
    frames, depths = [], {}
    for plan in plans:
        depth = _depths(plan.scan)
        for layer in plan.layers:
            frames.append(pd.read_csv(plan.part(out, layer)).assign(model=plan.scan.model, scan=plan.key))
            depths[(plan.key, layer)] = depth[layer]
    scores = pd.concat(frames, ignore_index=True)
    summary = summarize(scores, depths)
    atomic_write_text(out / "scores.csv", scores.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False, float_format="%.6g"))
    return scores, summary


def _scored(jobs: list, engine: str) -> Iterator[tuple[tuple[str, str], pd.DataFrame]]:
    if engine == "ray":
        from vizprobe.score import ray_engine

        yield from ray_engine.scored_layers(jobs)
        return
    for name, args in jobs:
        yield name, score_pools(*args)
