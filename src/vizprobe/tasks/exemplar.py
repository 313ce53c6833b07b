"""The exemplar task's stimulus package (Borowski et al., ICLR 2021; IMI, Zimmermann et al., NeurIPS 2023).

A trial shows a unit's 9 weakest-activating references ("Left Examples") and its 9 strongest ("Right Examples")
and two query images, one strongly and one weakly activating; the participant picks the query that belongs with
the strong references. The images are drawn as IMI's `stimuli_generation/extract_exemplars.py` draws them, for
B = `image_sets` trials per unit:
* references: the unit's top 9 x B images, cut into 9 bins of B consecutive ranks; trial b takes one image of each
  bin (each bin shuffled, seeded), so that no reference repeats within a unit and every trial spans the same ranks;
  the image of the most extreme bin is shown first (IMI shows it first and tells people it is special), the other
  8 in a shuffled order; the same on the bottom side;
* queries: the B ranks right after the references (IMI's and Borowski's design: ranks 9B + 1 .. 10B from either
  end), shuffled over the trials; or, with `query_quantile` q, the B ranks that end at the q-quantile from the top
  (and start at the (1 - q)-quantile from the bottom): IMI's harder variants (q = 0.99, 0.95, 0.85). The ranks
  used are recorded in the manifest's settings with the collection's size.
Conditions: `natural` (those photos), `synthetic` (feature visualizations that maximize the unit on the right and
minimize it on the left: `--visualizations` and `--negative-visualizations`), `none` (no references) and any user
condition (its images on the right side; the left side keeps the natural minimal references).
Catch trials (units that are not main units): a query on each side is one of that side's references, so an
attentive participant cannot miss (Borowski et al.'s catch trials); their gap is checked. Practice: a pool of
units' first trials, the easiest (largest gap between the queries) first.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vizprobe.errors import VizprobeError
from vizprobe.files import staged_dir
from vizprobe.images import load_rgb
from vizprobe.models import LoadedModel
from vizprobe.scan import Exemplar, ScanResult
from vizprobe.stimuli.build import (
    _copy_directions,
    _copy_visualizations,
    _resolved,
    _rng,
    _scan_model,
    _tasks,
    _Writer,
)
from vizprobe.stimuli.manifest import MANIFEST, SCHEMA_VERSION, Manifest, dumps, sha256
from vizprobe.stimuli.settings import PRACTICE_PER_ROUND, BuildSettings
from vizprobe.synthesis.store import load_visualizations, unit_entry
from vizprobe.tasks import get_task
from vizprobe.units import Unit

EXEMPLAR = get_task("exemplar")


def exemplar_design(n_images: int, s: BuildSettings) -> dict:
    """Reference and query ranks (1 = the most extreme, counted from either end) of the design for a collection of
    `n_images` images; a collection too small for it is a one-line error that says how many images it needs."""
    k, b = s.references, s.image_sets
    references = (1, k * b)
    if s.query_quantile is None:
        queries = (k * b + 1, k * b + b)
    else:
        last = n_images - math.ceil(n_images * s.query_quantile) + b
        queries = (last - b + 1, last)
    needed = max(queries[1], references[1]) * 2
    if queries[0] <= references[1] or needed > n_images:
        at_least = max(2 * (k + 1) * b, needed) if s.query_quantile is None else needed
        hint = f"scan at least {at_least} images or lower --image-sets"
        if s.query_quantile is not None:
            hint = (
                f"with --query-quantile {s.query_quantile} the queries (ranks {queries[0]}-{queries[1]} of "
                f"{n_images}) must lie past the references (ranks 1-{references[1]}): scan more images, "
                "lower the quantile or --image-sets"
            )
        raise VizprobeError(
            f"the exemplar design (references {references[0]}-{references[1]}, queries {queries[0]}-{queries[1]} "
            f"from either end) needs {needed} distinct images of each unit; the scan has {n_images}: {hint}"
        )
    return {
        "references": list(references),
        "queries": list(queries),
        "images": n_images,
        "query_quantile": s.query_quantile,
        "query_fraction_from_end": round((queries[0] - 1) / n_images, 6),
    }


def fair_batches(ranked: list, bins: int, batches: int, rng: np.random.Generator) -> list[list]:
    """IMI's fair lists: `ranked` (most extreme first, bins x batches long) cut into `bins` bins of consecutive
    ranks, each shuffled; list b takes the b-th element of every bin, the most extreme bin's first."""
    cut = [list(ranked[j * batches : (j + 1) * batches]) for j in range(bins)]
    for part in cut:
        rng.shuffle(part)
    return [[cut[j][b] for j in range(bins)] for b in range(batches)]


def unit_plan(scan: ScanResult, unit: Unit, s: BuildSettings, design: dict) -> list[dict]:
    """Each image set's references and query on both sides (`Exemplar`s), as the module doc describes."""
    k, b = s.references, s.image_sets
    low, high = design["queries"]
    sides = {}
    for side, ranked in (("max", scan.top(unit, high)), ("min", scan.bottom(unit, high))):
        rng = _rng(s.seed, "exemplar", side, str(unit))
        references = fair_batches(ranked[: k * b], k, b, rng)
        queries = list(ranked[low - 1 : high])
        rng.shuffle(queries)
        sides[side] = (references, queries)
    top = {e.index for refs in sides["max"][0] for e in refs} | {e.index for e in sides["max"][1]}
    bottom = {e.index for refs in sides["min"][0] for e in refs} | {e.index for e in sides["min"][1]}
    if top & bottom:
        raise VizprobeError(
            f"unit {unit} ranks {len(top & bottom)} images among both its strongest and its weakest (ties, or too "
            "few images): scan more images or lower --image-sets"
        )
    return [
        {
            "max_refs": sides["max"][0][i],
            "min_refs": sides["min"][0][i],
            "max_query": sides["max"][1][i],
            "min_query": sides["min"][1][i],
        }
        for i in range(b)
    ]


def _shown_order(refs: list, rng: np.random.Generator) -> list:
    """The most extreme reference first (IMI's "special" image), the others in a drawn order."""
    rest = list(refs[1:])
    rng.shuffle(rest)
    return [refs[0], *rest]


class _ExemplarWriter:
    """What every exemplar trial of a build shares: the occlusion task's writer (photos, user conditions, synthetic
    references) and the minimizing visualizations."""

    def __init__(self, model: LoadedModel, s: BuildSettings, vis: dict | None, negative: dict | None):
        self.base = _Writer(model, replace(s, mixed_natural=0), vis)
        self.s, self.model, self.negative = s, model, negative
        self.negative_of: dict[Unit, list[str]] = {}
        self.photos: dict[str, Path] = {}  # package path -> scan image, written by `write_photos`

    @property
    def staging(self) -> Path:
        return self.base.staging

    def photo(self, unit: Unit, side: str, exemplar: Exemplar) -> str:
        """A scan image's package path: one file per image, however many units and trials show it."""
        rel = f"photos/{exemplar.index:07d}.png"
        self.photos[rel] = exemplar.path
        return rel

    def write_photos(self, progress: bool) -> None:
        """Every photo the trials name, cropped as the model sees it, decoded and encoded on two threads."""
        geometry = self.model.preprocessing.pil_geometry()
        (self.staging / "photos").mkdir(parents=True, exist_ok=True)

        def write(item: tuple[str, Path]) -> None:
            rel, path = item
            geometry(load_rgb(path)).save(self.staging / rel, compress_level=1)

        with ThreadPoolExecutor(max_workers=2) as pool:
            done = pool.map(write, sorted(self.photos.items()))
            for _ in tqdm(done, total=len(self.photos), desc="photos", unit="img", disable=not progress):
                pass

    def minimizing(self, unit: Unit) -> list[str]:
        if unit not in self.negative_of:
            entry = unit_entry(self.negative, unit) if self.negative is not None else None
            folder = f"{unit.folder}/synthetic-min"
            self.negative_of[unit] = _copy_visualizations(
                self.negative, entry, "images", self.s.references, self.staging, folder
            )
        return self.negative_of[unit]

    def references(self, unit: Unit, plan: dict, trial_rng: np.random.Generator) -> tuple[dict, dict]:
        """Each condition's (max, min) references of a trial."""
        natural_max = _shown_order([self.photo(unit, "max", e) for e in plan["max_refs"]], trial_rng)
        natural_min = _shown_order([self.photo(unit, "min", e) for e in plan["min_refs"]], trial_rng)
        high: dict[str, list[str]] = {}
        low: dict[str, list[str]] = {}
        for spec in self.base.specs:
            if not spec.builtin:
                high[spec.name], low[spec.name] = self.base.user_references(spec, unit), natural_min
            elif spec.kind == "natural":
                high["natural"], low["natural"] = natural_max, natural_min
            elif spec.kind == "synthetic":
                high["synthetic"] = self.base.synthetic(unit)[0][: self.s.references]
                low["synthetic"] = self.minimizing(unit)
            elif spec.kind == "none":
                high["none"], low["none"] = [], []
        return high, low


def _check(scan: ScanResult, units: list[Unit], s: BuildSettings, vis, negative) -> dict:
    """Refuse what cannot give the package, before any work; the design's ranks."""
    from vizprobe.stimuli.conditions import parse_conditions

    if not units:
        raise VizprobeError("no main units: pass --units L:C,... or --units-by-score SCORES_DIR --stratify N")
    unsupported = [c.name for c in parse_conditions(s.conditions) if c.builtin and c.kind not in EXEMPLAR.conditions]
    if unsupported:
        raise VizprobeError(
            f"the exemplar task has no condition {unsupported[0]!r} (it builds {', '.join(EXEMPLAR.conditions)} and "
            "user conditions); pass --conditions natural,synthetic,none"
        )
    n_images = int(scan.meta.get("n_scanned", len(scan.images)))
    design = exemplar_design(min(n_images, scan.rank_limit * 2), s)
    if "synthetic" in s.conditions:
        for name, found in (("--visualizations", vis), ("--negative-visualizations", negative)):
            if found is None:
                raise VizprobeError(
                    f"condition synthetic of the exemplar task needs {name} VIS_DIR: visualizations that maximize "
                    "the unit, and ones that minimize it (vizprobe visualize --negative)"
                )
    return design


def _pick_protocol_units(
    scan: ScanResult, units: list[Unit], s: BuildSettings, design: dict, count: int, skip
) -> dict[Unit, list[dict]]:
    """`count` other channels of the main units' layers (seeded) with their plans, the largest first trial's gap
    first."""
    rng = _rng(s.seed, "exemplar-protocol")
    layers = list(dict.fromkeys(u.layer for u in units))
    candidates = [
        Unit(layer, c) for layer in layers for c in range(scan.layer(layer).channels) if Unit(layer, c) not in skip
    ]
    plans, gaps = {}, []
    for i in rng.permutation(len(candidates)):
        if len(plans) == count:
            break
        try:
            plan = unit_plan(scan, candidates[i], s, design)
        except VizprobeError:  # ties between its strongest and weakest images: not a clear unit
            continue
        plans[candidates[i]] = plan
        first = plan[0]
        gaps.append(
            (first["max_query"].activation - first["min_query"].activation) / (scan.unit_std(candidates[i]) or 1)
        )
    picked = list(plans)
    return {picked[i]: plans[picked[i]] for i in np.argsort(-np.asarray(gaps), kind="stable")}


def build_exemplar_stimuli(
    scan: ScanResult | str | Path,
    units: list[Unit | str],
    out: str | Path,
    visualizations: str | Path | None = None,
    negative_visualizations: str | Path | None = None,
    settings: BuildSettings | None = None,
    *,
    catch_units: list[Unit | str] | None = None,
    practice_units: list[Unit | str] | None = None,
    model: LoadedModel | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Manifest:
    """Write an exemplar-task stimulus package to `out` (via a temporary folder) and return its manifest. Catch
    and practice units are other channels of the main units' layers unless named."""
    s = replace(settings or BuildSettings(), task="exemplar")
    scan = scan if isinstance(scan, ScanResult) else ScanResult.load(scan)
    vis = load_visualizations(visualizations) if visualizations else None
    negative = load_visualizations(negative_visualizations) if negative_visualizations else None
    units = _resolved(scan, units)
    design = _check(scan, units, s, vis, negative)
    plans = {unit: unit_plan(scan, unit, s, design) for unit in units}
    extra: dict[Unit, list[dict]] = {}
    catch = _resolved(scan, catch_units) if catch_units is not None else None
    if catch is None:
        extra |= _pick_protocol_units(scan, units, s, design, s.catch_units, set(units))
        catch = list(extra)
    practice = _resolved(scan, practice_units) if practice_units is not None else None
    if practice is None:
        picked = _pick_protocol_units(scan, units, s, design, s.practice_units, {*units, *catch})
        extra |= picked
        practice = list(picked)
    if practice_units is None and 0 < len(practice) < PRACTICE_PER_ROUND:
        raise VizprobeError(
            f"a practice pool of {len(practice)} trials is smaller than one round of {PRACTICE_PER_ROUND}; "
            f"use --practice-units {PRACTICE_PER_ROUND} or more"
        )
    extra |= {unit: unit_plan(scan, unit, s, design) for unit in [*catch, *practice] if unit not in {*plans, *extra}}
    model = model.with_directions(scan.directions) if model else _scan_model(scan, device)
    writer = _ExemplarWriter(model, s, vis, negative)
    writer.base.check_user_sources([*units, *catch, *practice])
    with staged_dir(out, MANIFEST, "stimulus package") as staging:
        writer.base.staging = staging
        manifest = _build(units, catch, practice, plans | extra, writer, design, progress)
        writer.write_photos(progress)
        for entry in manifest["units"]:
            entry["activation_std"] = scan.unit_std(entry["unit"])
        _copy_directions(manifest, model, staging)
        manifest["images"] = {p.relative_to(staging).as_posix(): sha256(p) for p in sorted(staging.rglob("*.png"))}
        checked = Manifest.from_dict(manifest, out)
        (staging / MANIFEST).write_text(dumps(manifest))
    return checked


def _trial(w: _ExemplarWriter, unit: Unit, trial_id: str, kind: str, image_set: int, plan: dict) -> dict:
    """One exemplar trial: the two queries as options (a drawn side), each condition's max and min references.
    A catch trial's queries are references of its own sides, and every condition with references shows the
    natural ones there, so that it is easy whatever the condition."""
    trial_rng = _rng(w.s.seed, trial_id)
    if kind == "catch":
        plan = {**plan, "max_query": plan["max_refs"][1], "min_query": plan["min_refs"][1]}
        natural_high = [w.photo(unit, "max", e) for e in plan["max_refs"]]
        natural_low = [w.photo(unit, "min", e) for e in plan["min_refs"]]
        names = [c.name for c in w.base.specs if c.name != "none"]
        high, low = dict.fromkeys(names, natural_high), dict.fromkeys(names, natural_low)
    else:
        high, low = w.references(unit, plan, trial_rng)
    options = [
        {"image": w.photo(unit, "max", plan["max_query"]), "patch": None, "activation": plan["max_query"].activation},
        {"image": w.photo(unit, "min", plan["min_query"]), "patch": None, "activation": plan["min_query"].activation},
    ]
    flip = bool(trial_rng.integers(2))
    return {
        "trial_id": trial_id,
        "unit": str(unit),
        "image_set": image_set,
        "kind": kind,
        "base_image": "",
        "options": options[::-1] if flip else options,
        "correct": 1 if flip else 0,
        "references": high,
        "min_references": low,
    }


def _build(units, catch, practice, plans, w: _ExemplarWriter, design: dict, progress: bool) -> dict:
    s = w.s
    trials, catch_trials, practice_trials = [], [], []
    total = len(units) * s.image_sets + len(catch) + len(practice)
    with tqdm(total=total, desc="build", unit="trial", disable=not progress) as bar:
        for unit in units:
            for image_set, plan in enumerate(plans[unit]):
                trials.append(_trial(w, unit, f"{unit.folder}-set{image_set:02d}", "main", image_set, plan))
                bar.update(1)
        for kind, chosen, out in (("catch", catch, catch_trials), ("practice", practice, practice_trials)):
            for unit in chosen:
                out.append(_trial(w, unit, f"{kind}-{unit.folder}", kind, 0, plans[unit][0]))
                bar.update(1)
    roles = [(u, "main") for u in units] + [(u, "catch") for u in catch] + [(u, "practice") for u in practice]
    conditions = [c.name for c in w.base.specs]
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "task": "exemplar",
        "model": w.model.name,
        "image_size": w.model.preprocessing.crop,
        "settings": settings | {"exemplar_design": design},
        "units": [
            {"unit": str(u), "label": u.display, "layer": u.layer, "channel": u.channel, "role": role}
            for u, role in roles
        ],
        "trials": trials + catch_trials + practice_trials,
        "practice_trial_ids": [t["trial_id"] for t in practice_trials],
        "tasks": _tasks(units, catch_trials, [], s, conditions),
        "images": {},
        **({"condition_sources": w.base.sources} if w.base.sources else {}),
    }
