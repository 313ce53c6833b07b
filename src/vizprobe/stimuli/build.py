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
from vizprobe.files import staged_dir
from vizprobe.images import load_rgb, to_pil
from vizprobe.models import LoadedModel, load_model
from vizprobe.occlusion import Occluder, grid, occlude, patch_size
from vizprobe.scan import ScanResult
from vizprobe.stimuli.manifest import CONDITIONS, MANIFEST, SCHEMA_VERSION, Manifest, dumps, sha256
from vizprobe.stimuli.settings import SEARCHES, BuildSettings
from vizprobe.synthesis.store import load_visualizations, unit_entry
from vizprobe.units import Unit, parse_units


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


def _check_inputs(scan: ScanResult, vis: dict | None, units: list[Unit], s: BuildSettings) -> None:
    """Refuse settings and inputs that cannot give the package, before any work (`units` are canonical)."""
    unknown = [c for c in s.conditions if c not in CONDITIONS]
    if unknown:
        raise VizprobeError(f"unknown condition {unknown[0]!r}; use some of {', '.join(CONDITIONS)}")
    if s.search not in SEARCHES:
        raise VizprobeError(f"--search {s.search}: use one of {', '.join(SEARCHES)}")
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
    n_valid = int(scan.meta.get("n_scanned", len(scan.images)))
    if n_valid < needed + s.references:
        raise VizprobeError(
            f"the scan ranks {n_valid} images, but ranks up to {needed} plus {s.references} bottom exemplars "
            f"are needed; scan more images or lower --reference-ranks"
        )
    synthetic_needed = max(
        s.references if "synthetic" in s.conditions else 0,
        s.references - s.mixed_natural if "mixed" in s.conditions else 0,
    )
    for unit in units:
        if synthetic_needed:
            if vis is None:
                raise VizprobeError("conditions synthetic/mixed need --visualizations VIS_DIR (vizprobe visualize)")
            entry = unit_entry(vis, unit)
            if entry is None:
                raise VizprobeError(
                    f"unit {unit.display} has no visualizations in {vis['dir']}; render it with vizprobe visualize"
                )
            if len(entry["images"]) < synthetic_needed:
                raise VizprobeError(
                    f"unit {unit} has {len(entry['images'])} visualizations, {synthetic_needed} are needed; "
                    f"render with --per-unit {synthetic_needed}"
                )


def build_stimuli(
    scan: ScanResult | str | Path,
    units: list[Unit | str],
    out: str | Path,
    visualizations: str | Path | None = None,
    settings: BuildSettings | None = None,
    *,
    model: LoadedModel | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Manifest:
    """Write a stimulus package to `out` (via a temporary folder) and return its manifest."""
    s = settings or BuildSettings()
    scan = scan if isinstance(scan, ScanResult) else ScanResult.load(scan)
    vis = load_visualizations(visualizations) if visualizations else None
    units = [scan.resolve_unit(u) for u in parse_units(units)]
    if len(set(units)) != len(units):
        raise VizprobeError("a unit is named twice in --units (perhaps once by an alias); name each unit once")
    _check_inputs(scan, vis, units, s)
    if model is None:
        weights = scan.meta.get("weights")
        model = load_model(scan.model, weights=weights if weights and Path(weights).is_file() else None, device=device)
    with staged_dir(out, MANIFEST, "stimulus package") as staging:
        manifest = _build(scan, vis, units, staging, s, model, progress)
        manifest["images"] = {p.relative_to(staging).as_posix(): sha256(p) for p in sorted(staging.rglob("*.png"))}
        checked = Manifest.from_dict(manifest, out)
        (staging / MANIFEST).write_text(dumps(manifest))
    return checked


def _build(scan, vis, units, staging: Path, s: BuildSettings, model: LoadedModel, progress: bool) -> dict:
    size = model.preprocessing.crop
    patch = patch_size(size, s.patch_frac)
    grid(size, patch, s.stride)  # raises when the patch does not fit
    occluders: dict[str, Occluder] = {}
    trials, unit_entries, catch_ids, tags, practice = [], [], {}, {}, []
    bar = tqdm(total=len(units) * s.image_sets, desc="build", unit="query", disable=not progress)
    for unit in units:
        layer_path, channel = unit.layer, unit.channel
        if layer_path not in occluders:
            occluders[layer_path] = Occluder(
                model, layer_path, compile=s.search == "exact" and model.device.type == "cpu"
            )
        occluder = occluders[layer_path]
        unit_entries.append({"unit": str(unit), "label": unit.display, "layer": layer_path, "channel": channel})
        tag = unit.folder
        tags[str(unit)] = tag
        rng = _rng(s.seed, str(unit))
        ranked = scan.top(unit, s.reference_ranks[1])
        bottom = scan.bottom(unit, s.references)
        # The paper: image set b's query is rank q1 - b of the top images (ranks 20..11 for 10 sets), and each
        # of the 9 reference bins is permuted across the image sets, so no reference repeats within a unit.
        query_ranks = [s.query_ranks[1] - b for b in range(s.image_sets)]
        bins = np.array_split(np.arange(s.reference_ranks[0], s.reference_ranks[1] + 1), s.references)
        bin_draws = [rng.permutation(b)[: s.image_sets] for b in bins]
        entry = unit_entry(vis, unit) if vis is not None else None
        synthetic = _copy_visualizations(vis, entry, "images", s.references, staging, f"{tag}/synthetic")
        # `mixed` takes its synthetic images from a separate rendering (`vizprobe visualize --mixed-extra`), as
        # the paper did, else from the first ones of the main rendering.
        extra = _copy_visualizations(vis, entry, "mixed_images", s.references - s.mixed_natural, staging,
                                     f"{tag}/synthetic-mixed")  # fmt: skip
        mixed_synthetic = extra or synthetic[: s.references - s.mixed_natural]
        blurred_cache: dict[int, str] = {}
        for image_set, rank in enumerate(query_ranks):
            query = _load(model, ranked[rank - 1].path)
            base = _save(staging, f"{tag}/set{image_set:02d}/query.png", query)
            trial_id = f"{tag}-set{image_set:02d}"
            activation_map = None
            if s.search == "exact":
                result = occluder.sweep(query, [channel], s.patch_frac, s.stride)
                (hy, hx, high), (ly, lx, low) = result.extreme(channel, True), result.extreme(channel, False)
                activation_map = f"{tag}/set{image_set:02d}/activation_map.npy"
                np.save(staging / activation_map, result.channel(channel).astype(np.float32))
            else:
                found = occluder.search(query, [channel], s.patch_frac, s.stride)
                (hy, hx, high), (ly, lx, low) = found.best[channel], found.worst[channel]
            positions = torch.tensor([[hy, hx], [ly, lx]])
            occluded = occlude(query, positions, patch)
            option_a = {"image": _save(staging, f"{tag}/set{image_set:02d}/max.png", occluded[0]),
                        "patch": [hx, hy, patch], "activation": high}  # fmt: skip
            option_b = {"image": _save(staging, f"{tag}/set{image_set:02d}/min.png", occluded[1]),
                        "patch": [lx, ly, patch], "activation": low}  # fmt: skip
            trial_rng = _rng(s.seed, trial_id)
            flip = bool(trial_rng.integers(2))
            options = [option_b, option_a] if flip else [option_a, option_b]
            ref_ranks = [int(draw[image_set]) for draw in bin_draws]
            natural = [_save_photo(staging, f"{tag}/natural/{r:04d}.png", model, ranked[r - 1].path) for r in ref_ranks]
            references = {}
            if "natural" in s.conditions:
                references["natural"] = natural
            if "synthetic" in s.conditions:
                references["synthetic"] = synthetic[: s.references]
            if "mixed" in s.conditions:
                references["mixed"] = natural[: s.mixed_natural] + mixed_synthetic
            if "blur" in s.conditions:
                blurred = []
                for r in ref_ranks:
                    if r not in blurred_cache:
                        blurred_cache[r] = _blur_reference(
                            occluder, model, ranked[r - 1].path, channel, s, staging, f"{tag}/blur/{r:04d}.png"
                        )
                    blurred.append(blurred_cache[r])
                references["blur"] = blurred
            if "none" in s.conditions:
                references["none"] = []
            # The grid order is shuffled per trial (the paper shuffled each trial's references); one order for
            # all conditions keeps each blurred reference in the place of its natural image.
            order = trial_rng.permutation(s.references)
            references = {c: [refs[i] for i in order] if refs else [] for c, refs in references.items()}
            trial = {"trial_id": trial_id, "unit": str(unit), "image_set": image_set, "kind": "main",
                     "base_image": base, "options": options, "correct": 1 if flip else 0,
                     "references": references}  # fmt: skip
            if activation_map:
                trial["activation_map"] = activation_map
            trials.append(trial)
            # Catch: the query with its least harmful occlusion against a bottom exemplar of the unit.
            # Practice trials are made the same way, from the first image set of the first units.
            kinds = [("catch", image_set % len(bottom))]
            if image_set == 0 and len(practice) < s.practice_trials:
                kinds.append(("practice", (image_set + 1) % len(bottom)))
            for kind, pick in kinds:
                weak = bottom[pick]
                weak_rel = _save_photo(staging, f"{tag}/bottom/{weak.rank:04d}.png", model, weak.path)
                catch_first = bool(_rng(s.seed, kind, trial_id).integers(2))
                strong = {"image": option_a["image"], "patch": option_a["patch"], "activation": high}
                weak_option = {"image": weak_rel, "patch": None, "activation": weak.activation}
                pair = [strong, weak_option] if catch_first else [weak_option, strong]
                extra = dict(trial, trial_id=f"{kind}-{trial_id}", kind=kind, options=pair,
                             correct=0 if catch_first else 1)  # fmt: skip
                extra.pop("activation_map", None)
                if kind == "catch":
                    trials.append(extra)
                    catch_ids.setdefault(str(unit), []).append(extra["trial_id"])
                else:
                    practice.append(extra)
            bar.update(1)
    bar.close()
    trials.extend(practice)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model.name,
        "image_size": size,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()},
        "units": unit_entries,
        "trials": trials,
        "practice_trial_ids": [t["trial_id"] for t in practice],
        "tasks": _tasks(units, tags, catch_ids, s),
        "images": {},
    }


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
    found = occluder.search(blurred, [channel], s.patch_frac, s.stride, source=pixels, extremes="best")
    y, x, _ = found.best[channel]
    patch = patch_size(pixels.shape[-1], s.patch_frac)
    return _save(staging, rel, occlude(blurred, torch.tensor([[y, x]]), patch, source=pixels)[0])


def _tasks(units: list[Unit], tags: dict[str, str], catch_ids: dict[str, list[str]], s: BuildSettings) -> list[dict]:
    """Per condition, tasks with one main trial per unit and `catch_per_task` catch trials, shuffled.

    Task k of every condition holds image set k mod `image_sets` of every unit (the paper: "same numbering
    across conditions"), so participant k of each condition answers the same main trials, and each (unit,
    image set) appears equally often (exactly when the number of tasks is a multiple of the image sets)."""
    tasks = []
    for condition in s.conditions:
        rng = _rng(s.seed, "tasks", condition)
        for t in range(s.tasks_per_condition):
            main = [f"{tags[str(unit)]}-set{t % s.image_sets:02d}" for unit in units]
            chosen = rng.choice(len(units), size=min(s.catch_per_task, len(units)), replace=False)
            catch = [catch_ids[str(units[i])][int(rng.integers(s.image_sets))] for i in sorted(chosen)]
            trial_ids = main + catch
            order = rng.permutation(len(trial_ids))
            tasks.append(
                {"task_id": f"{condition}-{t:03d}", "condition": condition, "trial_ids": [trial_ids[i] for i in order]}
            )
    return tasks
