"""Building a stimulus package: queries, occluded options, references per condition, catch and
practice trials, and balanced per-participant task lists (Zimmermann et al. 2021)."""

from __future__ import annotations

import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_bytes, staged_dir
from vizprobe.images import load_rgb, to_pil
from vizprobe.models import LoadedModel, load_model
from vizprobe.occlusion import Occluder, grid, occlude, patch_size
from vizprobe.scan import Exemplar, ScanResult
from vizprobe.stimuli.conditions import ConditionSpec, file_hashes, parse_conditions, unit_images
from vizprobe.stimuli.manifest import MANIFEST, SCHEMA_VERSION, Manifest, dumps, sha256
from vizprobe.stimuli.protocol import Candidate, ProtocolUnits, occlusion_extremes, pick_protocol_units
from vizprobe.stimuli.settings import PRACTICE_PER_ROUND, SEARCHES, BuildSettings
from vizprobe.synthesis.store import load_visualizations, unit_entry
from vizprobe.units import Unit, parse_units, split_layer


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


def _load(model: LoadedModel, path: Path) -> torch.Tensor:
    return model.preprocessing.pixels(load_rgb(path))


def _save(staging: Path, rel: str, pixels: torch.Tensor) -> str:
    """Write `pixels` (3, H, W) in [0, 1] as the PNG `rel` of the package."""
    target = staging / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    to_pil(pixels).save(target)
    return rel


def _save_photo(staging: Path, rel: str, model: LoadedModel, path: Path) -> str:
    """A natural image, cropped as the model sees it; decoded only once however many trials share it."""
    return rel if (staging / rel).exists() else _save(staging, rel, _load(model, path))


def _check_inputs(scan: ScanResult, units: list[Unit], s: BuildSettings) -> None:
    """Refuse settings and inputs that cannot give the package, before any work (`units` are canonical)."""
    parse_conditions(s.conditions)
    if s.search not in SEARCHES:
        raise VizprobeError(f"--search {s.search}: use one of {', '.join(SEARCHES)}")
    if not units:
        raise VizprobeError("no main units: pass --units L:C,... or --sample-units N")
    needed = max(s.reference_ranks[1], s.query_ranks[1])
    if s.query_ranks[1] - s.query_ranks[0] + 1 < s.image_sets:
        raise VizprobeError(
            f"{s.image_sets} image sets need {s.image_sets} query ranks, --query-ranks gives "
            f"{s.query_ranks[1] - s.query_ranks[0] + 1}; widen them or lower --image-sets"
        )
    if s.reference_ranks[1] - s.reference_ranks[0] + 1 < s.references or s.reference_ranks[0] <= s.query_ranks[1]:
        raise VizprobeError(f"--reference-ranks must lie below --query-ranks and hold at least {s.references} ranks")
    bin_size = (s.reference_ranks[1] - s.reference_ranks[0] + 1) // s.references
    if bin_size < s.image_sets:
        raise VizprobeError(
            f"--reference-ranks {s.reference_ranks[0]}-{s.reference_ranks[1]} give {s.references} bins of "
            f"{bin_size} ranks, fewer than the {s.image_sets} image sets (no reference may repeat); "
            "widen them or lower --image-sets"
        )
    if scan.rank_limit < needed:
        n_valid = int(scan.meta.get("n_scanned", len(scan.images)))
        more = "scan more images" if n_valid < needed else f"rescan with --top-k {needed}"
        raise VizprobeError(
            f"the scan ranks {scan.rank_limit} images per unit, but ranks up to {needed} are needed; "
            f"{more} or lower --reference-ranks"
        )


def _check_visualizations(vis: dict | None, units: list[Unit], s: BuildSettings, main: list[Unit] | None = None):
    """With synthetic or mixed conditions, every unit needs enough visualizations; `main` set: `units` are
    the catch and practice units, and the error says how to render them beside the main ones."""
    needed = max(
        s.references if "synthetic" in s.conditions else 0,
        s.references - s.mixed_natural if "mixed" in s.conditions else 0,
    )
    if not needed:
        return
    if vis is None:
        raise VizprobeError("conditions synthetic/mixed need --visualizations VIS_DIR (vizprobe visualize)")
    missing = [u for u in units if unit_entry(vis, u) is None]
    if missing and main is not None:
        everything = ",".join(str(u) for u in [*main, *units])
        raise VizprobeError(
            f"catch/practice units {', '.join(str(u) for u in missing)} have no visualizations in {vis['dir']}; "
            f"render all units into it (vizprobe visualize --units {everything} ...) or name rendered units "
            "with --catch-units/--practice-units"
        )
    if missing:
        raise VizprobeError(
            f"unit {missing[0].display} has no visualizations in {vis['dir']}; render it with vizprobe visualize"
        )
    for unit in units:
        count = len(unit_entry(vis, unit)["images"])
        if count < needed:
            raise VizprobeError(
                f"unit {unit} has {count} visualizations, {needed} are needed; render with --per-unit {needed}"
            )


def _check_no_query_starts(indexes: dict[str, dict | None], queries: dict[Unit, set[str]], s: BuildSettings) -> None:
    """No reference may be made from a query of its unit (accentuation starts from natural images): a
    participant would see the answer's image among the references."""
    for name, index in indexes.items():
        for entry in (index or {}).get("units", []):
            unit = Unit.parse(entry["unit"])
            for image in entry["images"] + entry.get("mixed_images", []):
                if str(image.get("start_image")) in queries.get(unit, ()):
                    raise VizprobeError(
                        f"condition {name}: a visualization of {unit} starts from its query image "
                        f"{Path(image['start_image']).name}; render it with --start-rank {s.reference_ranks[0]} "
                        "(past the query ranks)"
                    )


def build_stimuli(
    scan: ScanResult | str | Path,
    units: list[Unit | str],
    out: str | Path,
    visualizations: str | Path | None = None,
    settings: BuildSettings | None = None,
    *,
    catch_units: list[Unit | str] | None = None,
    practice_units: list[Unit | str] | None = None,
    protocol: ProtocolUnits | None = None,
    model: LoadedModel | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Manifest:
    """Write a stimulus package to `out` (via a temporary folder) and return its manifest.

    Catch and practice trials come from `catch_units` and `practice_units` where given, else from units
    the builder picks (`vizprobe.stimuli.protocol`); with synthetic or mixed conditions they need
    visualizations too (`protocol_units` names them before the visualize stage)."""
    s = settings or BuildSettings()
    scan = scan if isinstance(scan, ScanResult) else ScanResult.load(scan)
    vis = load_visualizations(visualizations) if visualizations else None
    units = _resolved(scan, units)
    _check_inputs(scan, units, s)
    _check_visualizations(vis, units, s)
    model = model.with_directions(scan.directions) if model else _scan_model(scan, device)
    _check_same_directions(vis, model)
    writer = _Writer(model, s, vis)
    plans = {unit: _main_plan(scan, unit, s) for unit in units}
    # `protocol`: what `protocol_units` returned for the same arguments, so that the units are not measured twice.
    protocol = protocol or _protocol(scan, units, plans, writer, catch_units, practice_units)
    if practice_units is None and 0 < len(protocol.practice) < PRACTICE_PER_ROUND:  # named units are the user's pick
        raise VizprobeError(
            f"a practice pool of {len(protocol.practice)} trials is smaller than one round of {PRACTICE_PER_ROUND} "
            f"(one obvious + {PRACTICE_PER_ROUND - 1}); use --practice-units {PRACTICE_PER_ROUND} or more (the "
            "authors: 10)"
        )
    _check_visualizations(vis, [c.unit for c in protocol.catch + protocol.practice], s, units)
    writer.check_user_sources([*units, *(c.unit for c in protocol.catch + protocol.practice)])
    queries = {unit: {str(query.path) for query, _ in plan} for unit, plan in plans.items()}
    queries.update({c.unit: {str(c.query.path)} for c in protocol.catch + protocol.practice})
    _check_no_query_starts({"synthetic": vis, **writer.user_vis}, queries, s)
    with staged_dir(out, MANIFEST, "stimulus package") as staging:
        writer.staging = staging
        manifest = _build(units, plans, protocol, writer, progress)
        for entry in manifest["units"]:  # what `inspect` measures a trial's ease against (Manifest.trial_gap)
            entry["activation_std"] = scan.unit_std(entry["unit"])
        _copy_directions(manifest, writer.model, staging)
        manifest["images"] = {p.relative_to(staging).as_posix(): sha256(p) for p in sorted(staging.rglob("*.png"))}
        checked = Manifest.from_dict(manifest, out)
        (staging / MANIFEST).write_text(dumps(manifest))
    return checked


def protocol_units(
    scan: ScanResult | str | Path,
    units: list[Unit | str],
    settings: BuildSettings | None = None,
    *,
    catch_units: list[Unit | str] | None = None,
    practice_units: list[Unit | str] | None = None,
    model: LoadedModel | None = None,
    device: str = "auto",
) -> ProtocolUnits:
    """The catch and practice units a build with these arguments uses, without building (so that the
    visualize stage can render them beside the main units)."""
    s = settings or BuildSettings()
    scan = scan if isinstance(scan, ScanResult) else ScanResult.load(scan)
    units = _resolved(scan, units)
    _check_inputs(scan, units, s)
    writer = _Writer(model.with_directions(scan.directions) if model else _scan_model(scan, device), s, None)
    plans = {unit: _main_plan(scan, unit, s) for unit in units}
    return _protocol(scan, units, plans, writer, catch_units, practice_units)


def _check_same_directions(vis: dict | None, model: LoadedModel) -> None:
    """Visualizations of direction units must have been rendered with the scan's directions sets."""
    for name, record in (vis or {}).get("directions", {}).items():
        if name in model.directions and record["sha256"] != model.directions[name].sha256:
            raise VizprobeError(
                f"directions {name!r} in {vis['dir']} differ from the scan's ({model.directions[name].source}); "
                "re-render the visualizations with the scan's directions (vizprobe visualize --scan RUN_DIR)"
            )


def _resolved(scan: ScanResult, units: list[Unit | str] | None) -> list[Unit]:
    resolved = [scan.resolve_unit(u) for u in parse_units(units or [])]
    if len(set(resolved)) != len(resolved):
        raise VizprobeError("a unit is named twice in --units (perhaps once by an alias); name each unit once")
    return resolved


def _scan_model(scan: ScanResult, device: str) -> LoadedModel:
    weights = scan.meta.get("weights")
    weights = weights if weights and Path(weights).is_file() else None
    return load_model(scan.model, weights=weights, device=device, directions=scan.directions)


class _Writer:
    """What every trial of a build shares: model, settings, visualizations, occluders and image caches."""

    def __init__(self, model: LoadedModel, s: BuildSettings, vis: dict | None):
        self.model, self.s, self.vis = model, s, vis
        self.staging: Path | None = None
        self.occluders: dict[str, Occluder] = {}
        self.synthetic_of: dict[Unit, tuple[list[str], list[str]]] = {}
        self.blurred: dict[tuple[Unit, int], str] = {}
        self.specs = parse_conditions(s.conditions)
        self.user_vis = {c.name: load_visualizations(c.source) for c in self.specs if c.kind == "visualizations"}
        self.user_refs: dict[tuple[str, Unit], list[str]] = {}
        self.user_files: dict[tuple[str, Unit], list[Path]] = {}
        self.sources = {
            c.name: {"kind": c.kind, "source": str(c.source), "files": {}} for c in self.specs if not c.builtin
        }
        self.patch = patch_size(model.preprocessing.crop, s.patch_frac)
        grid(model.preprocessing.crop, self.patch, s.stride)  # raises when the patch does not fit

    def occluder(self, layer: str) -> Occluder:
        if layer not in self.occluders:
            exact_on_cpu = self.s.search == "exact" and self.model.device.type == "cpu"
            self.occluders[layer] = Occluder(self.model, layer, compile=exact_on_cpu)
        return self.occluders[layer]

    def extremes(self, unit: Unit, exemplar: Exemplar):
        """(best, worst, activation map or None) of occluding `exemplar` for `unit`."""
        return occlusion_extremes(self.occluder(unit.layer), _load(self.model, exemplar.path), unit.channel, self.s)

    def save(self, rel: str, pixels: torch.Tensor) -> str:
        return _save(self.staging, rel, pixels)

    def save_array(self, rel: str, values: np.ndarray) -> str:
        np.save(self.staging / rel, np.asarray(values, dtype=np.float32))
        return rel

    def photo(self, unit: Unit, exemplar: Exemplar) -> str:
        return _save_photo(self.staging, f"{unit.folder}/natural/{exemplar.rank:04d}.png", self.model, exemplar.path)

    def synthetic(self, unit: Unit) -> tuple[list[str], list[str]]:
        """The unit's synthetic references and the synthetic part of `mixed`, copied into the package once.

        `mixed` takes them from a separate rendering (`vizprobe visualize --mixed-extra`), as the paper did,
        else from the first ones of the main rendering."""
        if unit not in self.synthetic_of:
            s, tag = self.s, unit.folder
            entry = unit_entry(self.vis, unit) if self.vis is not None else None
            synthetic = _copy_visualizations(self.vis, entry, "images", s.references, self.staging, f"{tag}/synthetic")
            extra = _copy_visualizations(
                self.vis, entry, "mixed_images", s.references - s.mixed_natural, self.staging, f"{tag}/synthetic-mixed"
            )
            self.synthetic_of[unit] = (synthetic, extra or synthetic[: s.references - s.mixed_natural])
        return self.synthetic_of[unit]

    def check_user_sources(self, units: list[Unit]) -> None:
        """Before anything is written: every unit has its images (`images:` or a plugin's kind) or visualizations."""
        for spec in self.specs:
            for unit in units:
                if spec.builtin:
                    continue
                if spec.kind != "visualizations":  # images: or a plugin's kind
                    self.user_images(spec, unit)
                elif spec.kind == "visualizations" and unit_entry(self.user_vis[spec.name], unit) is None:
                    raise VizprobeError(
                        f"condition {spec.name}: unit {unit} has no visualizations in {spec.source}; render it there"
                    )

    def user_images(self, spec: ConditionSpec, unit: Unit) -> list[Path]:
        """The image files an `images:` folder or a plugin gives for `unit` (a plugin is asked once)."""
        key = (spec.name, unit)
        if key not in self.user_files:
            self.user_files[key] = unit_images(spec, unit, self.s.references)
        return self.user_files[key]

    def user_references(self, spec: ConditionSpec, unit: Unit) -> list[str]:
        """A user condition's references of `unit`, copied into the package once (file hashes recorded): the
        user's images at the model's crop size, or a visualizations dir's images as `synthetic` copies them."""
        key = (spec.name, unit)
        if key not in self.user_refs:
            n, folder = self.s.references, f"{unit.folder}/{spec.name.replace('/', '_')}"
            if spec.kind != "visualizations":
                files = self.user_images(spec, unit)
                self.user_refs[key] = [self._copy_resized(p, f"{folder}/{j:02d}.png") for j, p in enumerate(files)]
            else:
                vis = self.user_vis[spec.name]
                entry = unit_entry(vis, unit)
                files = [spec.source / image["file"] for image in entry["images"][:n]]
                self.user_refs[key] = _copy_visualizations(vis, entry, "images", n, self.staging, folder)
            self.sources[spec.name]["files"].update(file_hashes(spec, files))
        return self.user_refs[key]

    def _copy_resized(self, path: Path, rel: str) -> str:
        with Image.open(path) as im:
            (self.staging / rel).parent.mkdir(parents=True, exist_ok=True)
            im.convert("RGB").resize((self.model.preprocessing.crop,) * 2).save(self.staging / rel)
        return rel

    def blur(self, unit: Unit, exemplar: Exemplar) -> str:
        key = (unit, exemplar.rank)
        if key not in self.blurred:
            rel = f"{unit.folder}/blur/{exemplar.rank:04d}.png"
            self.blurred[key] = _blur_reference(
                self.occluder(unit.layer), self.model, exemplar.path, unit.channel, self.s, self.staging, rel
            )
        return self.blurred[key]


def _main_plan(scan: ScanResult, unit: Unit, s: BuildSettings) -> list[tuple[Exemplar, list[Exemplar]]]:
    """(query, references) of each image set of a main unit.

    The paper: image set b's query is rank q1 - b of the top images (ranks 20..11 for 10 sets), and each of
    the 9 reference bins is permuted across the image sets, so no reference repeats within a unit."""
    rng = _rng(s.seed, str(unit))
    ranked = scan.top(unit, s.reference_ranks[1])
    bins = np.array_split(np.arange(s.reference_ranks[0], s.reference_ranks[1] + 1), s.references)
    draws = [rng.permutation(b)[: s.image_sets] for b in bins]
    return [(ranked[s.query_ranks[1] - b - 1], [ranked[int(d[b]) - 1] for d in draws]) for b in range(s.image_sets)]


def _protocol(scan, units, plans, writer: _Writer, catch_units, practice_units) -> ProtocolUnits:
    """Catch and practice units, measured on images that no main trial uses."""
    used = {e.path for plan in plans.values() for query, refs in plan for e in (query, *refs)}
    named = [None if given is None else _resolved(scan, given) for given in (catch_units, practice_units)]
    decoys = writer.s.catch_units if "none" in writer.s.conditions else 0
    return pick_protocol_units(scan, units, used, writer.extremes, writer.s, *named, decoys=decoys)


def _build(units: list[Unit], plans, protocol: ProtocolUnits, w: _Writer, progress: bool) -> dict:
    s = w.s
    trials: list[dict] = []
    bar = tqdm(
        total=len(units) * s.image_sets + len(protocol.catch) + len(protocol.practice),
        desc="build",
        unit="query",
        disable=not progress,
    )
    for unit in units:
        for image_set, (query, refs) in enumerate(plans[unit]):
            found = w.extremes(unit, query)
            trials.append(_trial(w, unit, f"{unit.folder}-set{image_set:02d}", "main", image_set, query, refs, found))
            bar.update(1)
    catch, practice = [], []
    for kind, chosen, out in (("catch", protocol.catch, catch), ("practice", protocol.practice, practice)):
        for c in chosen:
            refs = _protocol_references(c, w.s)
            found = (c.best, c.worst, c.activation_map)
            out.append(_trial(w, c.unit, f"{kind}-{c.unit.folder}", kind, 0, c.query, refs, found))
            bar.update(1)
    bar.close()
    none_catch = _none_catch_trials(w, catch, protocol) if "none" in s.conditions else []
    if "none" in s.conditions:
        for trial in catch:
            trial["references"].pop("none", None)
    roles = [(u, "main") for u in units] + [(c.unit, "catch") for c in protocol.catch]
    roles += [(c.unit, "practice") for c in protocol.practice]
    return {
        "schema_version": SCHEMA_VERSION,
        "model": w.model.name,
        "image_size": w.model.preprocessing.crop,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()},
        "units": [
            {"unit": str(u), "label": u.display, "layer": u.layer, "channel": u.channel, "role": role}
            for u, role in roles
        ],
        "trials": trials + catch + none_catch + practice,
        "practice_trial_ids": [t["trial_id"] for t in practice],
        "tasks": _tasks(units, catch, none_catch, s, [c.name for c in w.specs]),
        "images": {},
        **({"condition_sources": w.sources} if w.sources else {}),
    }


def _copy_directions(manifest: dict, model: LoadedModel, staging: Path) -> None:
    """Copy the directions sets of the package's direction units into it and record them, so that a package
    says exactly what its units were."""
    names = sorted({name for u in manifest["units"] if (name := split_layer(u["layer"])[1])})
    records = {}
    for name in names:
        found = model.directions[name]
        records[name] = found.record(f"directions/{name}{found.suffix}")
        atomic_write_bytes(staging / records[name]["file"], Path(found.source).read_bytes())
    if records:
        manifest["directions"] = records


def _protocol_references(c: Candidate, s: BuildSettings) -> list[Exemplar]:
    """One reference from each of the 9 bins of the reference ranks among the unit's unused top images."""
    rng = _rng(s.seed, "protocol", str(c.unit))
    last = min(s.reference_ranks[1], len(c.available))
    bins = np.array_split(np.arange(s.reference_ranks[0], last + 1), s.references)
    return [c.available[int(rng.choice(b)) - 1] for b in bins]


def _trial(
    w: _Writer, unit: Unit, trial_id: str, kind: str, image_set: int, query: Exemplar, refs: list[Exemplar], found
) -> dict:
    """An occlusion trial: the query, its best and worst occlusion, and each condition's references."""
    s, folder = w.s, trial_id.replace(f"{unit.folder}-", f"{unit.folder}/") if kind == "main" else None
    folder = folder or f"{unit.folder}/{kind}"
    pixels = _load(w.model, query.path)
    base = w.save(f"{folder}/query.png", pixels)
    (hy, hx, high), (ly, lx, low), activation_map = found
    occluded = occlude(pixels, torch.tensor([[hy, hx], [ly, lx]]), w.patch)
    option_a = {"image": w.save(f"{folder}/max.png", occluded[0]), "patch": [hx, hy, w.patch], "activation": high}
    option_b = {"image": w.save(f"{folder}/min.png", occluded[1]), "patch": [lx, ly, w.patch], "activation": low}
    trial_rng = _rng(s.seed, trial_id)
    flip = bool(trial_rng.integers(2))
    natural = [w.photo(unit, r) for r in refs]
    references: dict[str, list[str]] = {}
    for spec in w.specs:
        if not spec.builtin:
            references[spec.name] = w.user_references(spec, unit)
        elif spec.kind == "natural":
            references["natural"] = natural
        elif spec.kind == "synthetic":
            references["synthetic"] = w.synthetic(unit)[0][: s.references]
        elif spec.kind == "mixed":
            references["mixed"] = natural[: s.mixed_natural] + w.synthetic(unit)[1]
        elif spec.kind == "blur":
            references["blur"] = [w.blur(unit, r) for r in refs]
        elif spec.kind == "none":
            references["none"] = []
    # The grid order is shuffled once per trial at build time, seeded by the trial (the same for every participant);
    # one order for all conditions keeps each blurred reference in the place of its natural image. The mixed grid
    # is the authors': its natural references first, then its synthetic ones, each kind in that shuffled order.
    order = trial_rng.permutation(s.references)
    arranged = {c: [r[i] for i in order if i < len(r)] for c, r in references.items()}
    if "mixed" in references:
        first = [i for i in order if i < s.mixed_natural]
        arranged["mixed"] = [references["mixed"][i] for i in first] + [
            references["mixed"][i] for i in order if s.mixed_natural <= i < len(references["mixed"])
        ]
    trial = {
        "trial_id": trial_id,
        "unit": str(unit),
        "image_set": image_set,
        "kind": kind,
        "base_image": base,
        "options": [option_b, option_a] if flip else [option_a, option_b],
        "correct": 1 if flip else 0,
        "references": arranged,
    }
    if activation_map is not None:
        trial["activation_map"] = w.save_array(f"{folder}/activation_map.npy", activation_map)
    return trial


def _none_catch_trials(w: _Writer, catch: list[dict], protocol: ProtocolUnits) -> list[dict]:
    """The `none` variant of each catch trial: its minimal option is replaced by another unit's image (the
    worst occlusion of a leftover candidate's query), so that an attentive participant can tell without
    references; the decoy that activates the catch unit least is used, each decoy once."""
    shown = {c.query.path for c in protocol.catch + protocol.practice}
    decoys = [d for d in protocol.decoys if d.query.path not in shown]
    if len(decoys) < len(catch):
        raise VizprobeError(
            f"{len(decoys)} decoy images for {len(catch)} catch trials in `none`; raise protocol_candidates"
        )
    images = {}
    for d in decoys:
        pixels = _load(w.model, d.query.path)
        y, x, _ = d.worst
        images[d.unit] = occlude(pixels, torch.tensor([[y, x]]), w.patch)[0]
    out = []
    for trial, c in zip(catch, protocol.catch, strict=True):
        occluder = w.occluder(c.unit.layer)
        activation = {u: float(occluder.base(img)[c.unit.channel]) for u, img in images.items()}
        decoy = min(activation, key=activation.get)
        d = next(d for d in decoys if d.unit == decoy)
        rel = w.save(f"{decoy.folder}/decoy/min.png", images.pop(decoy))
        weak = {"image": rel, "patch": [d.worst[1], d.worst[0], w.patch], "activation": activation[decoy]}
        options = [weak if i != trial["correct"] else o for i, o in enumerate(trial["options"])]
        variant = {**trial, "trial_id": f"catch-none-{c.unit.folder}", "options": options, "references": {"none": []}}
        variant.pop("activation_map", None)
        out.append(variant)
    return out


def _copy_visualizations(
    vis: dict | None, entry: dict | None, key: str, n: int, staging: Path, folder: str
) -> list[str]:
    """The first `n` images under `key` of a unit's visualizations entry, copied into the package."""
    copied = []
    for j, image in enumerate((entry or {}).get(key, [])[:n]):
        with Image.open(Path(vis["dir"]) / image["file"]) as im:
            rel = f"{folder}/{j:02d}.png"
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            im.convert("RGB").save(staging / rel)
        copied.append(rel)
    return copied


def _blur_reference(occluder, model, path, channel, s: BuildSettings, staging: Path, rel: str) -> str:
    """The reference blurred everywhere except the square whose retention activates the unit most."""
    if (staging / rel).exists():
        return rel
    pixels = _load(model, path)
    blurred = gaussian_blur(pixels, [s.blur_kernel, s.blur_kernel])
    if s.search == "exact":  # every position, as the main trials' occlusions
        found = occluder.sweep(blurred, [channel], s.patch_frac, s.stride, source=pixels)
        iy, ix = np.unravel_index(int(np.argmax(found.activations[0])), found.activations[0].shape)
        y, x = int(found.ys[iy]), int(found.xs[ix])
    else:
        found = occluder.search(blurred, [channel], s.patch_frac, s.stride, source=pixels, extremes="best")
        y, x, _ = found.best[channel]
    patch = patch_size(pixels.shape[-1], s.patch_frac)
    return _save(staging, rel, occlude(blurred, torch.tensor([[y, x]]), patch, source=pixels)[0])


def _tasks(
    units: list[Unit], catch: list[dict], none_catch: list[dict], s: BuildSettings, conditions: list[str]
) -> list[dict]:
    """Per condition, tasks with one main trial per unit and one trial of each catch unit, shuffled.

    Task k of every condition holds image set k mod `image_sets` of every unit (the paper: "same numbering
    across conditions"), so participant k of each condition answers the same main trials, and each (unit,
    image set) appears equally often (exactly when the number of tasks is a multiple of the image sets)."""
    tasks = []
    for condition in conditions:
        rng = _rng(s.seed, "tasks", condition)
        catch_ids = [t["trial_id"] for t in (none_catch if condition == "none" else catch)]
        for k in range(s.tasks_per_condition):
            trial_ids = [f"{unit.folder}-set{k % s.image_sets:02d}" for unit in units] + catch_ids
            order = rng.permutation(len(trial_ids))
            tasks.append(
                {
                    "task_id": f"{condition.replace('/', '_')}-{k:03d}",
                    "condition": condition,
                    "trial_ids": [trial_ids[i] for i in order],
                }
            )
    return tasks
