"""The synthesis methods beyond lucid's: MACO, feature accentuation and the colour-statistics prior, on the
real model with the units' real top images; measured with numpy and scipy, not with the code under test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import wasserstein_distance

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb
from vizprobe.synthesis import preset, render_units
from vizprobe.synthesis.natural import scan_references

UNITS = ["_blocks.5:10", "block8:12"]


@pytest.fixture(scope="module")
def references(photo_scan, lite0):
    """Each unit's top-9 photos as the model sees them (224 px), strongest first."""
    scan, _ = photo_scan
    images, _ = scan_references(scan, lite0.resolve_units(UNITS), lite0.preprocessing, 9)
    return images


def radial_slope(magnitude: np.ndarray) -> float:
    """Log-log slope of a (.., S, S) centred-FFT magnitude, averaged over rings, between 2/S and 1/2."""
    size = magnitude.shape[-1]
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2)
    rings = np.arange(2, size // 2) / size
    profile = [magnitude[..., np.abs(radius - r) < 0.5 / size].mean() for r in rings]
    return float(np.polyfit(np.log(rings), np.log(profile), 1)[0])


def as_seen(images: torch.Tensor, fraction: float = 0.5, side: int = 224) -> torch.Tensor:
    """The central `fraction` of each image resized to `side` px with PIL (bilinear): a crop's view."""
    out = []
    for image in images:
        pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        size = pil.size[0]
        box = round(size * fraction)
        start = (size - box) // 2
        crop = pil.crop((start, start, start + box, start + box)).resize((side, side), Image.Resampling.BILINEAR)
        out.append(torch.from_numpy(np.asarray(crop, np.float32) / 255).permute(2, 0, 1))
    return torch.stack(out)


def test_maco_images_keep_the_natural_spectrum_and_activate_highly(lite0, photo_scan, references):
    """The authors' recipe (canvas, random crops, NAdam): the spectrum comes from the scan's photos; the images'
    radially averaged magnitude spectrum (numpy FFT of each RGB channel) has its log-log slope within 0.2; seen
    as the crops showed them (the canvas's centre half at 224 px, cropped with PIL) they out-activate the natural
    top-1; mean colours are free; the transparency map is where the crops fell (the centre)."""
    from vizprobe.synthesis.natural import scan_spectrum

    scan, _ = photo_scan
    settings = preset("quick", param="maco", per_unit=2)
    assert (settings.crops, settings.optimizer, settings.lr, settings.diversity) == (4, "nadam", 1.0, 0.0)
    spectrum, source = scan_spectrum(scan, lite0.preprocessing, settings.size)
    assert "images of the scan" in source
    size = settings.size
    photos = np.stack(
        [
            np.asarray(load_rgb(scan.image_path(i)).resize((size, size)), np.float64) / 255
            for i in range(0, len(scan.images), max(1, len(scan.images) // 64))
        ]
    )
    natural = np.abs(np.fft.fft2(photos - photos.mean(axis=(1, 2), keepdims=True), axes=(1, 2))).mean(axis=(0, 3))
    rendering = render_units(lite0, UNITS, settings, spectrum=(spectrum, source), progress=False)
    images = rendering.images.numpy()
    assert images.shape[-1] == size
    made = np.abs(np.fft.fft2(images - images.mean(axis=(2, 3), keepdims=True), axes=(2, 3))).mean(axis=(0, 1))
    assert abs(radial_slope(made) - radial_slope(natural)) < 0.2, (radial_slope(made), radial_slope(natural))
    seen = as_seen(rendering.images)
    for k, unit in enumerate(lite0.resolve_units(UNITS)):
        rows = [i for i, u in enumerate(rendering.unit_index) if u == k]
        activations = lite0.unit_activations(lite0.preprocessing.normalize(seen[rows]), [unit])[:, 0]
        assert float(activations.min()) > scan.top(unit, 1)[0].activation, (unit, activations)
    channel_means = images.mean(axis=(2, 3))
    assert np.abs(channel_means - 0.5).max() > 0.03, channel_means
    alpha = rendering.transparency.numpy()
    assert alpha.shape == (len(images), size, size) and alpha.min() >= 0
    centre = alpha[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4].mean()
    border = alpha.sum(axis=(1, 2)) - alpha[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4].sum(axis=(1, 2))
    assert centre > 3 * border.mean() / (size * size * 3 / 4), (centre, border.mean())


def test_maco_images_are_horamas(lite0):
    """The parameterization equals Horama's `maco_preconditioner` (serre-lab, Fel et al.'s code) on the same
    magnitude and phase: standardized phase, standardized image, recorrelated colours, sigmoid."""
    from horama import maco_fv  # installed without its pins by `make test`

    from vizprobe.synthesis.param import MacoParam

    magnitude = torch.rand(3, 64, 33, generator=torch.Generator().manual_seed(0)) * 10
    param = MacoParam([1, 2, 3], 64, magnitude)
    ours = param().detach()
    theirs = torch.stack(
        [maco_fv.maco_preconditioner(param.magnitude[0], phase, (0, 1), "cpu") for phase in param.phase.detach()]
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-3)  # lucid's colour matrix, rounded differently


def test_box_crops_sample_the_drawn_boxes_with_the_given_noise():
    """On a horizontal ramp (bilinear sampling of a linear function is exact) each crop spans its box: the crop's
    first and last columns sit half a sample inside the box's edges; uniform boxes stay inside the image; an
    image's crops do not depend on its batch; the noise has std noise * sqrt(1 + 1/12)."""
    from vizprobe.synthesis.rng import ImageRNG
    from vizprobe.synthesis.transforms import BoxCrops

    size, out = 200, 16
    ramp = torch.linspace(0.5 / size, 1 - 0.5 / size, size).expand(3, 3, size, size).clone()  # value = x centre
    crops = BoxCrops(8, out, (0.2, 0.6), "uniform")
    rng = ImageRNG([11, 12, 13])
    got = crops(ramp, rng, step=5)
    assert got.shape == (24, 3, out, out)
    left, right = got[:, 0, 0, 0], got[:, 0, 0, -1]  # centres of the first and last 2x2-pooled samples
    side = (right - left) * out / (out - 1)  # the box's width as a fraction of the image
    assert bool(((side > 0.2 - 1e-4) & (side < 0.6 + 1e-4)).all()), side
    assert float((left - side / (2 * out)).min()) >= -1e-5 and float((right + side / (2 * out)).max()) <= 1 + 1e-5
    torch.testing.assert_close(crops(ramp[1:2], rng[1:2], step=5), got[8:16])
    noisy = BoxCrops(8, out, (0.2, 0.6), "uniform", noise=0.1)(ramp, rng, step=5)
    assert abs(float((noisy - got).std()) - 0.1 * (1 + 1 / 12) ** 0.5) < 0.005


def test_balanced_weights_are_the_ratio_of_gradient_sizes(lite0):
    """`objectives.Balanced` weighs its penalty by |d main / d params| / |d penalty / d params| per image,
    measured once by `render` before the first step: equal to the ratio computed with autograd on the original
    network (forward hook, no rendering code), for a channel objective and an L2 penalty."""
    from vizprobe.synthesis import objectives as obj
    from vizprobe.synthesis.param import FourierParam
    from vizprobe.synthesis.rendering import render

    unit = lite0.resolve_units(["_blocks.5:10"])[0]
    start = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    balanced = obj.Balanced(obj.channel(unit.layer, unit.channel, 2), obj.L2(), alpha=0.5)
    render(lite0, balanced, FourierParam.from_images(start, [1, 2]), steps=0, progress=False, precision="fp32")
    module = dict(lite0.net.named_modules())[unit.layer]
    expected = []
    for i in range(2):
        param = FourierParam.from_images(start[i : i + 1], [i + 1])
        seen: dict[str, torch.Tensor] = {}
        handle = module.register_forward_hook(lambda _m, _i, output, seen=seen: seen.__setitem__("a", output))
        image = param()
        lite0.net(lite0.preprocessing.normalize(image))
        handle.remove()
        (main,) = torch.autograd.grad(seen["a"][0, unit.channel].mean(), param.spectrum, retain_graph=True)
        (penalty,) = torch.autograd.grad((image - 0.5).pow(2).mean().add(1e-12).sqrt(), param.spectrum)
        expected.append(float(main.abs().sum() / penalty.abs().sum()))
    np.testing.assert_allclose(balanced.weights.numpy(), expected, rtol=1e-3)


def layer_distance(model, layer: str, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """faccent's regularizer measured independently: mean over positions of the L2 distance over channels
    between the images' and the seeds' activations at `layer` (forward hook on the original network)."""
    seen = []
    handle = dict(model.net.named_modules())[layer].register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model.net(model.preprocessing.normalize(images))
        model.net(model.preprocessing.normalize(seeds))
    handle.remove()
    return (seen[0] - seen[1]).norm(dim=1).mean(dim=(1, 2))


def test_accentuation_keeps_the_seed_s_features_at_its_layer_and_raises_the_unit(lite0, photo_scan, references):
    """faccent's recipe: image j of a unit starts from its j-th top photo and activates the unit at least 1.1x as
    much; its activations at the regularization layer stay clearly closer to the photo's than without the
    regularizer (alpha 0; at most 0.7x), both measured with a forward hook on the original network.
    `accent_layer="pixels"` is the pixel-distance variant: within 0.12 mean absolute pixel difference of the
    photo, 1.5x the activation."""
    scan, _ = photo_scan
    settings = preset("quick", param="accentuation", per_unit=2)
    assert (settings.crops, settings.optimizer, settings.box) == (4, "adam", (0.05, 0.99))
    kept = render_units(lite0, UNITS, settings, references=references, progress=False)
    free = render_units(
        lite0,
        UNITS,
        preset("quick", param="accentuation", per_unit=2, accent_alpha=0.0),
        references=references,
        progress=False,
    )
    assert kept.accent_layer == "_blocks.3"
    for k, unit in enumerate(lite0.resolve_units(UNITS)):
        starts = torch.nn.functional.interpolate(
            references[unit][:2], size=settings.size, mode="bilinear", antialias=True
        )
        before = lite0.unit_activations(lite0.preprocessing.normalize(starts), [unit])[:, 0]
        after = lite0.unit_activations(lite0.preprocessing.normalize(kept.unit_images(k)), [unit])[:, 0]
        assert bool((after >= 1.1 * before).all()), (unit, before, after)
        near = layer_distance(lite0, "_blocks.3", kept.unit_images(k), starts)
        far = layer_distance(lite0, "_blocks.3", free.unit_images(k), starts)
        assert bool((near <= 0.7 * far).all()), (unit, near, far)  # ImageNet photos 0.24-0.35, demo photos 0.54-0.58
    pixels = preset(
        "quick",
        param="accentuation",
        per_unit=2,
        size=224,
        steps=48,
        accent_layer="pixels",
        crops=0,
        transforms="standard",
    )
    rendering = render_units(lite0, UNITS, pixels, references=references, progress=False)
    assert rendering.accent_layer == "pixels"
    for k, unit in enumerate(UNITS):
        images = rendering.unit_images(k)
        starts = torch.stack([lite0.preprocessing.pixels(load_rgb(e.path)) for e in scan.top(unit, 2)])
        before = lite0.unit_activations(lite0.preprocessing.normalize(starts), [unit])[:, 0]
        after = lite0.unit_activations(lite0.preprocessing.normalize(images), [unit])[:, 0]
        assert float((images - starts).abs().mean(dim=(1, 2, 3)).max()) < 0.12, unit
        assert bool((after >= 1.5 * before).all()), (unit, before, after)
    with pytest.raises(VizprobeError, match="accentuation needs each unit's natural images.*--scan"):
        render_units(lite0, UNITS, settings, progress=False)


def colour_distance(images: torch.Tensor, photos: torch.Tensor) -> float:
    """Mean over RGB channels of scipy's 1-D Wasserstein distance between 8x8-patch mean colours."""

    def patches(x):
        x = x.numpy()
        n, c, s, _ = x.shape
        return x.reshape(n, c, s // 8, 8, s // 8, 8).mean(axis=(3, 5)).transpose(1, 0, 2, 3).reshape(c, -1)

    ours, theirs = patches(images), patches(torch.nn.functional.interpolate(photos, size=images.shape[-1], mode="area"))
    return float(np.mean([wasserstein_distance(a, b) for a, b in zip(ours, theirs, strict=True)]))


def test_the_colour_prior_moves_patch_colours_toward_the_exemplars(lite0, references):
    plain = render_units(lite0, UNITS, preset("quick", per_unit=2), references=references, progress=False)
    coloured = render_units(
        lite0, UNITS, preset("quick", per_unit=2, colour=100.0), references=references, progress=False
    )
    units = lite0.resolve_units(UNITS)
    for k, unit in enumerate(units):
        before = colour_distance(plain.unit_images(k), references[unit])
        after = colour_distance(coloured.unit_images(k), references[unit])
        assert after < 0.7 * before, (unit, before, after)


@pytest.mark.parametrize("method", ["maco", "accentuation"])
def test_a_unit_renders_the_same_alone_or_in_a_batch(lite0, references, method):
    settings = preset("quick", param=method, steps=12, per_unit=2, colour=10.0)
    both = render_units(lite0, UNITS, settings, references=references, progress=False)
    alone = render_units(lite0, UNITS[1:], settings, references=references, progress=False)
    torch.testing.assert_close(alone.images, both.unit_images(1), rtol=0, atol=2e-3)


def test_visualize_cli_records_the_method_s_natural_inputs(tmp_path, photo_scan, capsys):
    scan, _ = photo_scan
    for method in ("maco", "accentuation"):
        out = tmp_path / method
        code = main(
            [
                "-q",
                "visualize",
                "--device",
                "cpu",
                "--units",
                "block8:3",
                "--per-unit",
                "2",
                "--steps",
                "4",
                "--size",
                "64",
                "--method",
                method,
                "--scan",
                str(scan.run_dir),
                "--out",
                str(out),
            ]
        )
        assert code == 0
        index = json.loads((out / "visualizations.json").read_text())
        assert index["settings"]["param"] == method
        images = index["units"][0]["images"]
        for image in images:  # the transparency map beside each image, as a greyscale PNG of its size
            with Image.open(out / image["transparency"]) as alpha:
                assert alpha.mode == "L" and alpha.size == (64, 64)
            assert image["crop_activation"] > 0
        if method == "maco":
            assert index["spectrum"]["source"].endswith(f"images of the scan in {scan.run_dir}")
            assert np.load(out / index["spectrum"]["file"]).shape == (3, 64, 33)
            assert "start_image" not in images[0]
        else:
            assert [im["start_image"] for im in images] == [str(e.path) for e in scan.top("block8:3", 2)]
            assert "spectrum" not in index
            assert index["accent_layer"] == "_blocks.3"
    from vizprobe.synthesis.store import comparison_sheet

    sheet = comparison_sheet(
        {"maco": tmp_path / "maco", "accentuation": tmp_path / "accentuation"}, scan, per_method=2, thumb=32
    )
    assert sheet.size == (110 + 3 * (2 * 36 + 12), 20 + 36)  # label, 3 groups of 2 tiles, one unit row
    # shown through its transparency map: the image over white, opaque where the map is bright
    image = Image.open(tmp_path / "accentuation" / images[1]["file"]).convert("RGB")
    alpha = Image.open(tmp_path / "accentuation" / images[1]["transparency"])
    second = Image.composite(image, Image.new("RGB", image.size, "white"), alpha)
    second = second.resize((32, 32), Image.Resampling.BICUBIC)
    x = 110 + (2 * 36 + 12) + 36  # the accentuation group's second tile
    assert np.array_equal(np.asarray(sheet.crop((x, 20, x + 32, 52))), np.asarray(second))
    assert (
        main(
            [
                "-q",
                "visualize",
                "--device",
                "cpu",
                "--units",
                "block8:3",
                "--method",
                "accentuation",
                "--out",
                str(tmp_path / "no-scan"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "no-scan").exists()
    bad_layer = ["--accent-layer", "block99", "--out", str(tmp_path / "bad")]
    assert (
        main(
            [
                "-q",
                "visualize",
                "--device",
                "cpu",
                "--units",
                "block8:3",
                "--method",
                "accentuation",
                "--scan",
                str(scan.run_dir),
                *bad_layer,
            ]
        )
        == 2
    )
    assert "has no layer 'block99'" in capsys.readouterr().err
    assert (
        main(
            [
                "-q",
                "visualize",
                "--device",
                "cpu",
                "--units",
                "block8:3",
                "--crops",
                "2",
                "--out",
                str(tmp_path / "diverse"),
            ]
        )
        == 2
    )
    assert "diversity term compares whole images" in capsys.readouterr().err


def test_until_stops_each_image_at_its_target_and_freezes_it(lite0, photo_scan):
    """Each image stops at the first 8-step check where it reaches its unit's target (the natural top-1): its
    final activation is at least that, and it equals the image a plain render of that many steps makes."""
    scan, _ = photo_scan
    targets = {unit: scan.top(unit, 1)[0].activation for unit in UNITS}
    settings = preset("quick", per_unit=2, steps=96)
    rendering = render_units(lite0, UNITS, settings, until=targets, progress=False)
    assert all(s % 8 == 0 and s < 96 for s in rendering.steps), rendering.steps
    for k, unit in enumerate(UNITS):
        assert float(rendering.unit_activations(k).min()) >= targets[unit]
    first = rendering.steps[0]  # image 0 of the first unit rendered (the shallower layer)
    unit = UNITS[rendering.unit_index[0]]
    plain = render_units(lite0, [unit], preset("quick", per_unit=2, steps=first), progress=False)
    torch.testing.assert_close(plain.images[0], rendering.images[0], rtol=0, atol=2e-3)
    with pytest.raises(VizprobeError, match="no target activation for block8:12"):
        render_units(lite0, UNITS, settings, until={UNITS[0]: 1.0}, progress=False)


def test_fast_presets_adam_reaches_a_target_in_fewer_steps_than_adams_defaults(lite0, photo_scan):
    """`fast`'s Adam (lr 0.08, betas 0.3, 0.8) against Adam's defaults (lr 0.05, betas 0.9, 0.999), other
    settings equal, on units and a size the benchmark did not use: fewer steps to 5x the natural top-1."""
    scan, _ = photo_scan
    targets = {unit: 5 * scan.top(unit, 1)[0].activation for unit in UNITS}
    fast = preset("fast", size=128, per_unit=2, steps=320)
    steps = {}
    for name, settings in [
        ("fast", fast),
        ("defaults", preset("fast", size=128, per_unit=2, steps=320, lr=0.05, betas=(0.9, 0.999))),
    ]:
        rendering = render_units(lite0, UNITS, settings, until=targets, progress=False)
        for k, unit in enumerate(UNITS):
            assert float(rendering.unit_activations(k).min()) >= targets[unit], (name, unit)
        steps[name] = sum(rendering.steps)
    assert steps["fast"] < 0.85 * steps["defaults"], steps


def test_visualize_until_a_multiple_of_the_natural_top1(tmp_path, photo_scan, capsys):
    scan, _ = photo_scan
    out = tmp_path / "until"
    code = main(
        [
            "-q",
            "visualize",
            "--device",
            "cpu",
            "--units",
            "block8:3",
            "--per-unit",
            "2",
            "--steps",
            "64",
            "--size",
            "96",
            "--until",
            "1.5x",
            "--scan",
            str(scan.run_dir),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    entry = json.loads((out / "visualizations.json").read_text())["units"][0]
    assert entry["target"] == pytest.approx(1.5 * scan.top("block8:3", 1)[0].activation)
    assert all(im["steps"] <= 64 for im in entry["images"])
    assert all(im["activation"] >= entry["target"] or im["steps"] == 64 for im in entry["images"])
    assert (
        main(
            [
                "-q",
                "visualize",
                "--device",
                "cpu",
                "--units",
                "block8:3",
                "--until",
                "2x",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "needs --scan" in capsys.readouterr().err


def test_accentuated_references_never_start_from_a_query(photo_scan, lite0, protocol, tmp_path):
    """A method as a condition: accentuation from the top exemplars would show a query's own image among the
    references, so the build refuses it; from the first reference rank on, the package is built and its
    condition shows those images."""
    from conftest import STIMULUS_SETTINGS, STIMULUS_UNITS

    from vizprobe.demo import render_method
    from vizprobe.stimuli import build_stimuli

    scan, _ = photo_scan
    units = [*STIMULUS_UNITS, *(str(c.unit) for c in protocol.catch + protocol.practice)]
    settings = preset("quick", param="accentuation", per_unit=9, steps=4, size=64)
    conditions = ("natural", "acc=visualizations:{}")
    for start_rank, ok in ((1, False), (STIMULUS_SETTINGS.reference_ranks[0], True)):
        vis = tmp_path / f"acc-{start_rank}"
        index = render_method(lite0, scan, units, settings, start_rank, vis, progress=False)
        starts = {(entry["unit"], im["start_image"]) for entry in index["units"] for im in entry["images"]}
        build = STIMULUS_SETTINGS.__class__(
            **{**STIMULUS_SETTINGS.__dict__, "conditions": (conditions[0], conditions[1].format(vis))}
        )
        out = tmp_path / f"pkg-{start_rank}"
        if not ok:
            with pytest.raises(VizprobeError, match="starts from its query image.*--start-rank 21"):
                build_stimuli(scan, STIMULUS_UNITS, out, None, build, model=lite0, protocol=protocol, progress=False)
            assert not out.exists()
            continue
        manifest = build_stimuli(scan, STIMULUS_UNITS, out, None, build, model=lite0, protocol=protocol, progress=False)
        assert set(manifest.conditions) == {"natural", "acc"}
        ranks = {(unit, str(e.path)): e.rank for unit, _ in starts for e in scan.top(unit, start_rank + 9)}
        assert sorted({ranks[start] for start in starts}) == list(range(start_rank, start_rank + 9))


def test_coarse_to_fine_halves_the_input_then_leaves_it():
    """Before `steps` the network sees the image at half size (torch's bilinear downsampling, computed
    independently), from then on the image itself."""
    from vizprobe.synthesis import transforms as tf
    from vizprobe.synthesis.rng import ImageRNG

    images = torch.rand(3, 3, 64, 64)
    coarse = tf.CoarseToFine(steps=10)
    half = torch.nn.functional.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False)
    torch.testing.assert_close(coarse(images, ImageRNG([1, 2, 3]), 9), half, rtol=0, atol=1e-5)
    torch.testing.assert_close(coarse(images, ImageRNG([1, 2, 3]), 10), images, rtol=0, atol=1e-5)
    chained = tf.compose([tf.jitter(4), coarse])(images, ImageRNG([1, 2, 3]), 0)
    assert chained.shape[-2:] == (30, 30)  # jitter crops 64 -> 60, then halved


def centre_share(images: torch.Tensor) -> np.ndarray:
    """Per image: the share of its 8x8-patch colour variance that lies within a quarter of the side from the
    centre (numpy)."""
    x = images.numpy()
    n, c, s, _ = x.shape
    patches = x.reshape(n, c, s // 8, 8, s // 8, 8).mean(axis=(3, 5))
    energy = ((patches - patches.mean(axis=(2, 3), keepdims=True)) ** 2).sum(axis=1)
    centre = (np.arange(s // 8) + 0.5) / (s // 8) - 0.5
    inside = np.hypot(centre[:, None], centre[None, :]) < 0.25
    return energy[:, inside].sum(axis=1) / energy.sum(axis=(1, 2))


def test_the_centre_bias_gathers_the_image_in_the_middle(lite0):
    plain = render_units(lite0, UNITS, preset("quick", per_unit=2), progress=False)
    biased = render_units(lite0, UNITS, preset("quick", per_unit=2, coherence=COHERENCE), progress=False)
    before, after = centre_share(plain.images), centre_share(biased.images)
    assert after.mean() > 1.5 * before.mean(), (before, after)
    assert float(biased.activations.min()) > 0.5 * float(plain.activations.mean())  # still drives the unit


COHERENCE = 300.0


def test_maco_takes_a_published_spectrum_file_and_refuses_bad_ones(tmp_path, photo_files):
    """A (3, 128, 65) spectrum file (here measured on 32 photos, as a published one would be on ImageNet): the images
    get its magnitude resized to their size, and the index records the file with its sha256."""
    import hashlib

    from vizprobe.synthesis.param import natural_spectrum

    arrays = [np.asarray(load_rgb(f).resize((128, 128)), np.float32) / 255 for f in photo_files[:32]]
    photos = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    path = tmp_path / "spectrum_decorrelated.npy"
    np.save(path, natural_spectrum(photos).numpy() * 1000.0)  # a published file's scale differs: it must not matter
    out = tmp_path / "vis"
    assert (
        main(
            [
                "-q",
                "visualize",
                "--device",
                "cpu",
                "--units",
                "block8:3",
                "--per-unit",
                "2",
                "--steps",
                "4",
                "--size",
                "64",
                "--method",
                "maco",
                "--spectrum",
                str(path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    index = json.loads((out / "visualizations.json").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() in index["spectrum"]["source"]
    assert np.load(out / index["spectrum"]["file"]).shape == (3, 64, 33)
    for bad, why in (
        (np.ones((3, 64, 64), np.float32), "expected \\(3, S, S // 2 \\+ 1\\)"),
        (-np.ones((3, 64, 33), np.float32), "negative"),
    ):
        np.save(tmp_path / "bad.npy", bad)
        with pytest.raises(VizprobeError, match=why):
            from vizprobe.synthesis.natural import load_spectrum

            load_spectrum(tmp_path / "bad.npy")
    code = main(
        [
            "-q",
            "visualize",
            "--device",
            "cpu",
            "--units",
            "block8:3",
            "--spectrum",
            str(path),
            "--out",
            str(tmp_path / "fourier"),
        ]
    )
    assert code == 2 and not (tmp_path / "fourier").exists()
