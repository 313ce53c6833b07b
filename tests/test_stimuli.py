"""Stimulus packages built from the real scan, real visualizations and the real model."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import STIMULUS_CANONICAL as CANONICAL
from conftest import STIMULUS_SETTINGS as SETTINGS
from conftest import STIMULUS_UNITS as UNITS
from conftest import reference_ranks
from PIL import Image

from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb, to_pil
from vizprobe.stimuli import BuildSettings, Manifest, build_stimuli


@pytest.fixture
def package(stimulus_package):
    return stimulus_package


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_manifest_validates_and_images_match_their_hashes(package):
    manifest = Manifest.load(package, check_images=True).data
    assert manifest["schema_version"] == 2 and manifest["image_size"] == 224
    main = [u for u in manifest["units"] if u["role"] == "main"]
    assert [u["unit"] for u in main] == CANONICAL
    assert [u["label"] for u in main] == UNITS  # as the user wrote them
    assert main[1]["layer"] == "_blocks.8" and main[1]["channel"] == 12
    assert Counter(u["role"] for u in manifest["units"]) == {"main": 3, "catch": 3, "practice": 10}
    kinds = Counter(t["kind"] for t in manifest["trials"])
    assert kinds["main"] == 3 * 2 and kinds["catch"] == 3 + 3 and kinds["practice"] == 10  # catch: + `none` variants
    assert len(manifest["practice_trial_ids"]) == 10  # the practice pool; a round shows 4 of them


def test_options_are_occluded_where_the_manifest_says(package):
    manifest = Manifest.load(package).data
    for trial in (t for t in manifest["trials"] if t["kind"] == "main"):
        base = pixels(package / trial["base_image"])
        for option in trial["options"]:
            x0, y0, size = option["patch"]
            assert size == 90
            image = pixels(package / option["image"])
            inside = np.zeros(base.shape[:2], dtype=bool)
            inside[y0 : y0 + size, x0 : x0 + size] = True
            assert (image[~inside] == base[~inside]).all()
            patch = image[inside]
            assert (patch == patch[0]).all()  # one colour: the patch's mean
            assert np.abs(patch[0] - base[inside].mean(axis=0)).max() <= 1
        assert trial["options"][trial["correct"]]["activation"] >= trial["options"][1 - trial["correct"]]["activation"]


def test_options_are_the_extremes_of_the_saved_activation_map(package):
    manifest = Manifest.load(package).data
    for trial in (t for t in manifest["trials"] if t["kind"] == "main"):
        activation_map = np.load(package / trial["activation_map"])
        assert activation_map.shape == (9, 9)  # stride 16 over 134 px of offsets
        high = trial["options"][trial["correct"]]
        low = trial["options"][1 - trial["correct"]]
        assert high["activation"] == pytest.approx(float(activation_map.max()))
        assert low["activation"] == pytest.approx(float(activation_map.min()))
        x0, y0, _ = high["patch"]
        assert activation_map[y0 // 16, x0 // 16] == pytest.approx(high["activation"])


def test_blur_keeps_the_square_a_plain_loop_finds_best(package, lite0):
    """With the exact search (the package's), the blurred reference keeps sharp the square whose retention
    activates the unit most among every stride position: checked against a loop over the 9 x 9 positions
    (torchvision's gaussian_blur of the saved natural reference, the natural square pasted back, the model)."""
    from torchvision.transforms.functional import gaussian_blur

    assert SETTINGS.search == "exact"
    manifest = Manifest.load(package).data
    trial = next(t for t in manifest["trials"] if t["kind"] == "main")
    natural_png, blurred_png = trial["references"]["natural"][0], trial["references"]["blur"][0]
    natural, kept = pixels(package / natural_png), pixels(package / blurred_png)
    side, patch = natural.shape[0], round(0.4 * natural.shape[0])
    same = (natural == kept).all(axis=2)
    offsets = range(0, side - patch + 1, SETTINGS.stride)
    where = [(y, x) for y in offsets for x in offsets if same[y : y + patch, x : x + patch].all()]
    assert len(where) == 1, where
    image = torch.from_numpy(natural).permute(2, 0, 1).float() / 255
    blurred = gaussian_blur(image, [SETTINGS.blur_kernel, SETTINGS.blur_kernel])
    candidates = []
    for y in offsets:
        for x in offsets:
            candidate = blurred.clone()
            candidate[:, y : y + patch, x : x + patch] = image[:, y : y + patch, x : x + patch]
            candidates.append(candidate)
    with torch.no_grad():
        acts = lite0.unit_activations(lite0.preprocessing.normalize(torch.stack(candidates)), [trial["unit"]])[:, 0]
    best = float(acts.max())
    at_kept = float(acts[list((y, x) for y in offsets for x in offsets).index(where[0])])
    assert at_kept >= best - 0.01 * abs(best), (where, at_kept, best)


def test_references_per_condition_and_no_query_among_them(package):
    manifest = Manifest.load(package).data
    for trial in (t for t in manifest["trials"] if t["kind"] == "main"):
        refs = trial["references"]
        assert {k: len(v) for k, v in refs.items()} == {"synthetic": 9, "natural": 9, "mixed": 9, "blur": 9, "none": 0}
        mixed_natural = [r for r in refs["mixed"] if r in refs["natural"]]
        mixed_synthetic = [r for r in refs["mixed"] if r not in refs["natural"]]
        assert len(mixed_natural) == 5 and len(mixed_synthetic) == 4
        assert refs["mixed"] == mixed_natural + mixed_synthetic  # the authors' grid: natural first, then synthetic
        assert all("/synthetic-mixed/" in r for r in mixed_synthetic)  # the separate batch (--mixed-extra)
        assert not set(mixed_synthetic) & set(refs["synthetic"])
        query_hash = manifest["images"][trial["base_image"]]
        assert query_hash not in {manifest["images"][r] for r in refs["natural"]}
        for natural, blurred in zip(refs["natural"], refs["blur"], strict=True):
            a, b = pixels(package / natural), pixels(package / blurred)
            same = np.pad((a == b).all(axis=2).astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
            boxes = same[90:, 90:] - same[:-90, 90:] - same[90:, :-90] + same[:-90, :-90]
            assert boxes.max() == 90 * 90  # a sharp 90 px square is kept exactly...
            assert same[-1, -1] < 224 * 224 - 2000  # ...and much of the rest is blurred


def _images_of(trial: dict) -> set[str]:
    return {
        trial["base_image"],
        *(o["image"] for o in trial["options"]),
        *(r for refs in trial["references"].values() for r in refs),
    }


def test_catch_and_practice_trials_are_occlusion_trials_of_other_units(package):
    """The paper's catch and practice trials: ordinary occlusion trials of units that are not main units,
    whose images never appear in a main trial (compared by content: the sha256 of every image)."""
    manifest = Manifest.load(package)
    roles = {role: {u.unit for u in manifest.units_of(role)} for role in ("main", "catch", "practice")}
    assert not (
        roles["main"] & roles["catch"] or roles["main"] & roles["practice"] or roles["catch"] & roles["practice"]
    )
    layers = {manifest.layer_of(u) for u in roles["main"]}
    data = manifest.data
    hashes = data["images"]
    main_images = {hashes[i] for t in data["trials"] if t["kind"] == "main" for i in _images_of(t)}
    for trial in (t for t in data["trials"] if t["kind"] != "main"):
        assert trial["unit"] in roles["catch" if trial["kind"] == "catch" else "practice"]
        assert manifest.layer_of(trial["unit"]) in layers
        assert not {hashes[i] for i in _images_of(trial)} & main_images
        strong, weak = trial["options"][trial["correct"]], trial["options"][1 - trial["correct"]]
        assert strong["activation"] > weak["activation"] and strong["patch"] is not None
        if trial["trial_id"].startswith("catch-none-"):
            assert trial["references"] == {"none": []}
        else:
            refs = trial["references"]
            expected = {"synthetic": 9, "natural": 9, "mixed": 9, "blur": 9}
            expected |= {"none": 0} if trial["kind"] == "practice" else {}  # catch in `none`: the variant above
            assert {k: len(v) for k, v in refs.items()} == expected
            assert hashes[trial["base_image"]] not in {hashes[r] for r in refs["natural"]}
            activation_map = np.load(package / trial["activation_map"])
            assert strong["activation"] == pytest.approx(float(activation_map.max()))
            assert weak["activation"] == pytest.approx(float(activation_map.min()))


def test_catch_trials_in_none_replace_the_minimal_option_by_another_units_image(package):
    """In `none` (no references to go by) the paper replaced a catch trial's minimal option by an image of a
    unit used nowhere else, so an attentive participant picks the occluded query."""
    data = Manifest.load(package).data
    trials = {t["trial_id"]: t for t in data["trials"]}
    elsewhere = [i for t in data["trials"] if not t["trial_id"].startswith("catch-none-") for i in _images_of(t)]
    for unit in (u["unit"] for u in data["units"] if u["role"] == "catch"):
        layer, channel = unit.split(":")
        folder = f"{layer}_{int(channel):04d}"
        catch, variant = trials[f"catch-{folder}"], trials[f"catch-none-{folder}"]
        assert variant["options"][variant["correct"]] == catch["options"][catch["correct"]]
        decoy = variant["options"][1 - variant["correct"]]
        assert decoy["image"].endswith("/decoy/min.png") and not decoy["image"].startswith(folder)
        assert data["images"][decoy["image"]] not in {data["images"][i] for i in elsewhere}
        assert decoy["activation"] < variant["options"][variant["correct"]]["activation"]
    for task in data["tasks"]:
        catch_ids = [i for i in task["trial_ids"] if trials[i]["kind"] == "catch"]
        assert len(catch_ids) == 3
        assert all(i.startswith("catch-none-") == (task["condition"] == "none") for i in catch_ids)


def test_catch_units_have_the_largest_occlusion_gaps(protocol, photo_scan, lite0):
    """The picked units' best and worst occlusions, recomputed with a plain forward pass per occluded image,
    and the order of the picks: catch units have the largest gaps, practice the next (most obvious first)."""
    import torch

    from vizprobe.occlusion import occlude, patch_size

    scan, _ = photo_scan
    modules = dict(lite0.net.named_modules())
    patch = patch_size(224, 0.4)
    for c in protocol.catch + protocol.practice:
        pixels = lite0.preprocessing.pixels(load_rgb(c.query.path))
        occluded = occlude(pixels, torch.tensor([[c.best[0], c.best[1]], [c.worst[0], c.worst[1]]]), patch)
        seen = []
        hook = modules[c.unit.layer].register_forward_hook(
            lambda _m, _i, out, seen=seen: seen.append(out.detach().clone())
        )
        with torch.no_grad():
            lite0.net(lite0.preprocessing.normalize(occluded))
        hook.remove()
        acts = seen[0][:, c.unit.channel].mean(dim=(1, 2))
        assert acts[0].item() == pytest.approx(c.best[2], rel=1e-3, abs=1e-3)
        assert acts[1].item() == pytest.approx(c.worst[2], rel=1e-3, abs=1e-3)
        spread = float(np.nanstd(scan.unit_activations(c.unit)))
        assert c.gap == pytest.approx((c.best[2] - c.worst[2]) / spread)
    gaps = [c.gap for c in protocol.catch], [c.gap for c in protocol.practice], [c.gap for c in protocol.decoys]
    assert min(gaps[0]) >= max(gaps[1] + gaps[2]) and min(gaps[1]) >= max(gaps[2], default=-np.inf)
    assert gaps[1] == sorted(gaps[1], reverse=True)


def test_tasks_are_balanced(package):
    manifest = Manifest.load(package).data
    trials = {t["trial_id"]: t for t in manifest["trials"]}
    for condition in ("synthetic", "natural", "mixed", "blur", "none"):
        tasks = [t for t in manifest["tasks"] if t["condition"] == condition]
        assert len(tasks) == 4
        counts = Counter()
        for task in tasks:
            kinds = Counter(trials[i]["kind"] for i in task["trial_ids"])
            assert kinds == {"main": 3, "catch": 3}  # every catch unit once
            assert {trials[i]["unit"] for i in task["trial_ids"] if trials[i]["kind"] == "main"} == set(CANONICAL)
            counts.update(
                (trials[i]["unit"], trials[i]["image_set"]) for i in task["trial_ids"] if trials[i]["kind"] == "main"
            )
        assert set(counts.values()) == {2}  # 4 tasks over 2 image sets: each (unit, set) twice


def test_same_seed_same_bytes(tmp_path, photo_scan, lite0, package):
    scan, _ = photo_scan
    settings = BuildSettings(
        image_sets=2,
        tasks_per_condition=3,
        stride=32,
        conditions=("natural", "none"),
        search="fast",
        reference_ranks=reference_ranks(len(scan.images)),
    )
    a = build_stimuli(scan, UNITS[:2], tmp_path / "a", None, settings, model=lite0, progress=False)
    build_stimuli(scan, UNITS[:2], tmp_path / "b", None, settings, model=lite0, progress=False)
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert json.loads((tmp_path / "a" / "manifest.json").read_text()) == a.data
    other = build_stimuli(
        scan,
        UNITS[:2],
        tmp_path / "c",
        None,
        BuildSettings(**{**settings.__dict__, "seed": 1}),
        model=lite0,
        progress=False,
    )
    assert other.data["tasks"] != a.data["tasks"]


def test_bad_input_is_refused_and_leaves_nothing(tmp_path, photo_scan, visualizations, lite0):
    scan, _ = photo_scan
    with pytest.raises(VizprobeError, match="no visualizations"):
        build_stimuli(scan, ["_blocks.5:11"], tmp_path / "x", visualizations, SETTINGS, model=lite0, progress=False)
    with pytest.raises(VizprobeError, match=f"scan ranks {len(scan.images)} images"):
        build_stimuli(
            scan,
            UNITS,
            tmp_path / "x",
            visualizations,
            BuildSettings(reference_ranks=(21, 1995)),
            model=lite0,
            progress=False,
        )
    with pytest.raises(VizprobeError, match="not in this scan"):
        build_stimuli(
            scan,
            ["_blocks.9:1"],
            tmp_path / "x",
            None,
            BuildSettings(conditions=("natural",), reference_ranks=reference_ranks(len(scan.images))),
            model=lite0,
            progress=False,
        )
    with pytest.raises(VizprobeError, match="patch fraction"):
        build_stimuli(
            scan,
            UNITS[:1],
            tmp_path / "x",
            None,
            BuildSettings(conditions=("none",), patch_frac=1.2, reference_ranks=reference_ranks(len(scan.images))),
            model=lite0,
            progress=False,
        )
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x")]


def test_build_and_inspect_cli(tmp_path, photo_scan, capsys):
    from vizprobe.cli import main

    scan, _ = photo_scan
    out = tmp_path / "pkg"
    code = main(
        [
            "-q",
            "build",
            "--scan",
            str(scan.run_dir),
            "--sample-units",
            "2",
            "--conditions",
            "natural,blur,none",
            "--tasks-per-condition",
            "2",
            "--image-sets",
            "2",
            "--stride",
            "32",
            "--device",
            "cpu",
            "--reference-ranks",
            "{}-{}".format(*reference_ranks(len(scan.images))),
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "units: 2 main, 3 catch, 10 practice" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "trials: 4 main, 6 catch, 10 practice" in text and "natural 2" in text
    # Each catch trial's gap, by hand from the manifest and the scan's activations: (more - less) / std.
    manifest = json.loads((out / "manifest.json").read_text())
    gaps = {}
    for trial in (t for t in manifest["trials"] if t["kind"] == "catch"):
        more, less = (trial["options"][i]["activation"] for i in (trial["correct"], 1 - trial["correct"]))
        gaps[trial["trial_id"]] = (more - less) / np.std(scan.unit_activations(trial["unit"]))
        assert f"  {trial['trial_id']}: {gaps[trial['trial_id']]:.2f}" in text
    assert "clearly easy at >= 1" in text and ("NOT CLEARLY EASY" in text) == (min(gaps.values()) < 1)
    assert main(["inspect", str(out), "--min-catch-gap", str(max(gaps.values()) + 1)]) == 0
    assert capsys.readouterr().out.count("NOT CLEARLY EASY") == len(gaps)
    pictures = sorted(p.name for p in (out / "inspect").glob("*.png"))
    assert pictures == ["activation_map.png", "trial_blur.png", "trial_natural.png", "trial_none.png"]
    assert Image.open(out / "inspect" / "trial_natural.png").width > 600
    assert (
        main(
            [
                "-q",
                "build",
                "--scan",
                str(scan.run_dir),
                "--units",
                "block8:1",
                "--sample-units",
                "2",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )


def test_a_manifest_that_breaks_its_schema_is_refused(tmp_path, package):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(package, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["trials"][0]["correct"] = 2
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VizprobeError, match=r"fails its schema at trials/0/correct"):
        Manifest.load(broken)
    manifest["trials"][0]["correct"] = 0
    (broken / "manifest.json").write_text(json.dumps(manifest))
    first = next(iter(manifest["images"]))
    (broken / first).write_bytes(b"tampered")
    with pytest.raises(VizprobeError, match="does not match its sha256"):
        Manifest.load(broken, check_images=True)


def test_visualizations_and_builds_agree_on_units_whatever_the_spelling(
    tmp_path, photo_scan, visualizations, lite0, protocol
):
    """The visualizations were rendered for `block8:12` (alias) and `_blocks.5:10` (path); a build naming
    them the other way round finds both, and its synthetic references are those very images."""
    scan, _ = photo_scan
    ranks = reference_ranks(len(scan.images))
    settings = BuildSettings(
        conditions=("synthetic",), image_sets=1, tasks_per_condition=1, stride=32, search="fast", reference_ranks=ranks
    )
    out = tmp_path / "pkg"
    named = {"catch_units": [c.unit for c in protocol.catch], "practice_units": [c.unit for c in protocol.practice]}
    manifest = build_stimuli(
        scan, ["_blocks.8:12", "block5:10"], out, visualizations, settings, model=lite0, progress=False, **named
    )
    assert [u.unit for u in manifest.units_of("main")] == ["_blocks.8:12", "_blocks.5:10"]
    assert [u.unit for u in manifest.units_of("practice")] == [str(c.unit) for c in protocol.practice]
    index = json.loads((visualizations / "visualizations.json").read_text())
    rendered = {u["unit"]: u for u in index["units"]}
    for unit in manifest.units:
        trial = next(t for t in manifest.trials.values() if t.unit == unit)
        shown = {pixels(out / r).tobytes() for r in trial.references_for("synthetic")}
        assert shown == {pixels(visualizations / im["file"]).tobytes() for im in rendered[unit]["images"]}
    with pytest.raises(VizprobeError, match="named twice"):
        build_stimuli(
            scan,
            ["_blocks.8:12", "block8:12"],
            tmp_path / "twice",
            visualizations,
            settings,
            model=lite0,
            progress=False,
        )
    with pytest.raises(VizprobeError, match="catch/practice units .* have no visualizations"):
        build_stimuli(
            scan,
            ["_blocks.8:12", "block5:10"],
            tmp_path / "unrendered",
            visualizations,
            settings,
            model=lite0,
            progress=False,
        )
    with pytest.raises(VizprobeError, match="two roles"):
        build_stimuli(
            scan,
            ["_blocks.8:12"],
            tmp_path / "roles",
            visualizations,
            settings,
            model=lite0,
            catch_units=["block8:12"],
            progress=False,
        )
    with pytest.raises(VizprobeError, match="a practice pool of 2 trials is smaller than one round of 4"):
        build_stimuli(
            scan,
            ["_blocks.8:12"],
            tmp_path / "small",
            visualizations,
            replace(settings, practice_units=2),
            model=lite0,
            progress=False,
        )
    assert not (tmp_path / "small").exists()


def test_an_old_or_inconsistent_manifest_is_refused_in_one_line(tmp_path, package):
    import shutil

    broken = tmp_path / "old"
    shutil.copytree(package, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps(dict(manifest, schema_version=1)))
    with pytest.raises(VizprobeError, match="schema_version 1; this vizprobe reads 2: rebuild the package"):
        Manifest.load(broken)
    manifest["tasks"][0]["trial_ids"][0] = "no-such-trial"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VizprobeError, match="names unknown trial 'no-such-trial'"):
        Manifest.load(broken)


def test_the_papers_schedule_and_reference_draws(package, photo_scan, lite0):
    """Task k of every condition holds the same main trials; image set b's query is rank 20 - b; no reference
    image appears in two image sets of a unit; the grid order differs between trials."""
    manifest = Manifest.load(package).data
    trials = {t["trial_id"]: t for t in manifest["trials"]}
    by_condition = {}
    for task in manifest["tasks"]:
        main = sorted(i for i in task["trial_ids"] if trials[i]["kind"] == "main")
        by_condition.setdefault(task["condition"], []).append(main)
    first, *others = by_condition.values()
    assert all(other == first for other in others) and len({tuple(m) for m in first}) == 2
    scan, _ = photo_scan
    for unit in CANONICAL:
        mains = [t for t in manifest["trials"] if t["unit"] == unit and t["kind"] == "main"]
        references = [r for t in mains for r in t["references"]["natural"]]
        assert len(references) == len(set(references)) == 9 * len(mains)
        for trial in mains:
            expected = scan.top(unit, 20)[20 - 1 - trial["image_set"]].path  # rank 20 - b
            crop = np.asarray(to_pil(lite0.preprocessing.pixels(load_rgb(expected))), dtype=np.int16)
            assert np.array_equal(pixels(package / trial["base_image"]), crop)
    orders = {tuple(t["references"]["synthetic"]) for t in manifest["trials"] if t["kind"] == "main"}
    assert len(orders) > 1


def picked_references(argument: str, unit: str, n: int) -> list[str]:
    """A `vizprobe.conditions` plugin's function, as an entry point names it: 3 photos of ARGUMENT per unit."""
    files = sorted(Path(argument).iterdir())
    start = sum(map(ord, unit)) % len(files)
    return [str(files[(start + j) % len(files)]) for j in range(min(n, 3))]


def test_conditions_the_user_brings(photo_scan, visualizations, lite0, protocol, photo_files, tmp_path, monkeypatch):
    """`mine=images:DIR` shows the user's own images (first 9 per unit in name order; fewer allowed),
    `second=visualizations:DIR` another visualizations dir, and `picked=picked:DIR` a plugin's kind (through an
    entry point); the manifest records each file's sha256, tasks exist for each, an observer answers them and
    `analyze` reports them by name. A unit without its folder is a one-line error and nothing is written."""
    import hashlib
    import shutil
    from importlib.metadata import EntryPoint

    from vizprobe.stimuli import conditions

    plugin = EntryPoint("picked", f"{__name__}:picked_references", "vizprobe.conditions")
    monkeypatch.setattr(conditions, "plugin_kinds", lambda: {"picked": plugin})
    pool = tmp_path / "pool"
    pool.mkdir()
    for photo in photo_files[-5:]:
        shutil.copy(photo, pool / photo.name)

    from vizprobe.analysis import analyze
    from vizprobe.observers.answer import answer_package

    scan, _ = photo_scan
    every = [*CANONICAL, *(str(c.unit) for c in protocol.catch + protocol.practice)]
    mine = tmp_path / "mine"
    expected = {}
    for k, unit in enumerate(every):
        folder = mine / unit.replace(":", "_")
        folder.mkdir(parents=True)
        chosen = photo_files[k * 4 : k * 4 + 4]  # 4 per unit: fewer than 9 is allowed
        for j, photo in enumerate(reversed(chosen)):
            shutil.copy(photo, folder / f"{j:02d}_{photo.name}")
        expected[unit] = sorted(folder.iterdir())
    settings = BuildSettings(
        **{
            **SETTINGS.__dict__,
            "conditions": (
                "natural",
                "none",
                f"mine=images:{mine}",
                f"Min-Max-9/second=visualizations:{visualizations}",
                f"picked=picked:{pool}",
            ),
        }
    )
    out = tmp_path / "pkg"
    manifest = build_stimuli(scan, UNITS, out, visualizations, settings, model=lite0, protocol=protocol, progress=False)
    assert set(manifest.conditions) == {"natural", "none", "mine", "Min-Max-9/second", "picked"}
    raw = json.loads((out / "manifest.json").read_text())
    sources = raw["condition_sources"]
    assert sources["mine"]["kind"] == "images" and sources["Min-Max-9/second"]["kind"] == "visualizations"
    for files in expected.values():
        for path in files:
            key = str(path.relative_to(mine))
            assert sources["mine"]["files"][key] == hashlib.sha256(path.read_bytes()).hexdigest()
    for trial in raw["trials"]:
        if trial["trial_id"].startswith("catch-none-"):
            assert set(trial["references"]) == {"none"}  # the `none` variant of a catch trial
            continue
        shown = trial["references"]["mine"]
        sources_of_unit = expected[trial["unit"]]
        assert len(shown) == len(sources_of_unit) == 4
        size = raw["image_size"]
        want = {np.asarray(Image.open(p).convert("RGB").resize((size, size))).tobytes() for p in sources_of_unit}
        assert {np.asarray(Image.open(out / r)).tobytes() for r in shown} == want
        assert len(trial["references"]["Min-Max-9/second"]) == 9
        files = sorted(pool.iterdir())
        start = sum(map(ord, trial["unit"])) % 5
        chosen = [files[(start + j) % 5] for j in range(3)]
        want = [np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p in chosen]
        shown_picked = sorted(np.asarray(Image.open(out / r)).tobytes() for r in trial["references"]["picked"])
        assert shown_picked == sorted(w.tobytes() for w in want)  # the trial shows them in an order of its own
        for path in chosen:
            assert sources["picked"]["files"][str(path.resolve())] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sources["picked"] | {"files": {}} == {"kind": "picked", "source": str(pool), "files": {}}
    names = Counter(t["condition"] for t in raw["tasks"])
    conditions_built = ("natural", "none", "mine", "Min-Max-9/second", "picked")
    assert names == {c: SETTINGS.tasks_per_condition for c in conditions_built}
    # The server hands the user's images to a participant of that condition (the second to arrive: conditions
    # fill in order of fewest tasks taken, ties by name, and "Min-Max-9/second" sorts before "mine").
    from fastapi.testclient import TestClient

    from vizprobe.experiment.app import create_app

    app = create_app(out, str(tmp_path / "study.db"), admin_token="t" * 20, static_dir=tmp_path / "static")
    client = TestClient(app)
    first = client.post("/api/sessions", json={"platform_ids": {}}).json()
    client.cookies.clear()  # another participant (the cookie would reopen the first session)
    second = client.post("/api/sessions", json={"platform_ids": {}}).json()
    assert (first["condition"], second["condition"]) == ("Min-Max-9/second", "mine")
    by_id = {t["trial_id"]: t for t in raw["trials"]}
    for view in second["trials"]:
        shown = by_id[view["trial_id"]]["references"]["mine"]
        assert view["references"] == ["/stimuli/" + r for r in shown]
        assert client.get(view["references"][0]).content == (out / shown[0]).read_bytes()
    app.state.db.dispose()
    responses = answer_package(out, "similarity")
    assert set(responses["condition"]) == set(conditions_built)
    results = analyze(responses, tmp_path / "report", baselines=[])
    assert "Min-Max-9/second" in (tmp_path / "report" / "report.html").read_text()
    assert set(results["observers"]) or set(results["accuracy"])

    shutil.rmtree(mine / every[-1].replace(":", "_"))
    with pytest.raises(VizprobeError, match=rf"condition mine: unit {every[-1]} has no folder"):
        build_stimuli(
            scan, UNITS, tmp_path / "broken", visualizations, settings, model=lite0, protocol=protocol, progress=False
        )
    assert not (tmp_path / "broken").exists()
    with pytest.raises(VizprobeError, match="unknown condition 'natrual'"):
        build_stimuli(
            scan,
            UNITS,
            tmp_path / "typo",
            visualizations,
            BuildSettings(**{**SETTINGS.__dict__, "conditions": ("natrual",)}),
            model=lite0,
        )


def test_a_scan_without_activations_feeds_the_same_study(photo_scan, protocol, lite0, photos_dir, tmp_path):
    """A `--no-keep-activations` scan (as many top images per unit as the reference ranks reach, and moments)
    picks the same catch and practice units and plans the same main trials (queries and references) as the
    full scan; a build that needs ranks past its top-k says how to rescan."""
    from vizprobe.scan import scan as run_scan
    from vizprobe.stimuli.build import _main_plan, protocol_units

    full, _ = photo_scan
    last = SETTINGS.reference_ranks[1]
    lean, _ = run_scan(
        lite0,
        photos_dir,
        ["_blocks.5", "block8", "_blocks.12"],
        tmp_path / "lean",
        keep_activations=False,
        top_k=last,
        progress=False,
    )
    picked = protocol_units(lean, UNITS, SETTINGS, model=lite0)
    assert [c.unit for c in picked.catch] == [c.unit for c in protocol.catch]
    assert [c.unit for c in picked.practice] == [c.unit for c in protocol.practice]
    for unit in lean.units()[::40]:
        plan = [(q.index, [r.index for r in refs]) for q, refs in _main_plan(lean, unit, SETTINGS)]
        assert plan == [(q.index, [r.index for r in refs]) for q, refs in _main_plan(full, unit, SETTINGS)]
    wide = BuildSettings(**{**SETTINGS.__dict__, "reference_ranks": (21, last + 1)})
    with pytest.raises(VizprobeError, match=f"ranks {last} images per unit.*rescan with --top-k {last + 1}"):
        build_stimuli(lean, UNITS, tmp_path / "pkg", None, wide, model=lite0, progress=False)
