"""Feature visualizations on the real model, measured against the real photos' activations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from vizprobe.cli import main
from vizprobe.synthesis import objectives as obj
from vizprobe.synthesis import preset, render_units
from vizprobe.synthesis import transforms as tf
from vizprobe.synthesis.objectives import gram_similarity
from vizprobe.synthesis.rng import ImageRNG

DEPTHS = ["_blocks.2:3", "_blocks.5:10", "_blocks.8:12", "_blocks.12:7"]


@pytest.fixture(scope="module")
def quick_rendering(lite0):
    return render_units(lite0, DEPTHS, preset("quick"), progress=False)


def median_top9(scan, unit) -> float:
    return float(np.median([e.activation for e in scan.top(unit, 9)]))


def test_quick_preset_beats_natural_top9(quick_rendering, photo_scan):
    scan, _ = photo_scan
    for k, unit in enumerate(DEPTHS):
        synthetic = float(quick_rendering.unit_activations(k).mean())
        natural = median_top9(scan, unit.replace("_blocks.8", "block8"))
        assert synthetic > natural, f"{unit}: synthetic {synthetic:.3g} <= natural median top-9 {natural:.3g}"


def test_final_activation_is_the_unit_activation(quick_rendering, lite0):
    """The recorded activation is the scan's definition, on the saved image."""
    images = quick_rendering.unit_images(2)
    expected = lite0.unit_activations(lite0.preprocessing.normalize(images), [DEPTHS[2]])[:, 0]
    torch.testing.assert_close(quick_rendering.unit_activations(2), expected, rtol=1e-4, atol=1e-4)


def high_frequency_share(images: torch.Tensor) -> float:
    """Share of the spectral power (mean removed) above a quarter of the sampling frequency."""
    grey = images.mean(dim=1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().pow(2)
    fy = torch.fft.fftfreq(grey.shape[1])[:, None]
    fx = torch.fft.fftfreq(grey.shape[2])[None, :]
    high = (fx.pow(2) + fy.pow(2)).sqrt() > 0.25
    return float(power[:, high].sum() / power.sum())


def test_pixel_parameterization_is_high_frequency_rubbish(lite0, quick_rendering, photo_scan):
    scan, _ = photo_scan
    unit = "_blocks.8:12"
    settings = preset("quick", param="pixel", transforms="none", diversity=0.0)
    pixel = render_units(lite0, [unit], settings, progress=False)
    assert float(pixel.activations.mean()) > median_top9(scan, unit.replace("_blocks.8", "block8"))
    fourier_share = high_frequency_share(quick_rendering.unit_images(2))
    pixel_share = high_frequency_share(pixel.images)
    assert pixel_share > 3 * fourier_share, f"pixel {pixel_share:.3f} vs fourier {fourier_share:.3f}"


def mean_pairwise_gram_similarity(model, images, layer):
    acts = model.tap([layer])(model.preprocessing.normalize(images))[model.layer(layer).path]
    sims = gram_similarity(acts)
    n = sims.shape[0]
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


def test_diversity_makes_images_differ(lite0):
    unit = "_blocks.5:10"
    on = render_units(lite0, [unit], preset("quick", diversity=5.0), progress=False)
    off = render_units(lite0, [unit], preset("quick", diversity=0.0), progress=False)
    with torch.no_grad():
        sim_on = mean_pairwise_gram_similarity(lite0, on.images, "_blocks.5")
        sim_off = mean_pairwise_gram_similarity(lite0, off.images, "_blocks.5")
    assert sim_on < sim_off


def test_negative_objective_goes_below_bottom9(lite0, photo_scan):
    scan, _ = photo_scan
    unit = "_blocks.5:10"
    rendering = render_units(lite0, [unit], preset("quick", negative=True), progress=False)
    bottom9 = [e.activation for e in scan.bottom(unit, 9)]
    assert float(rendering.activations.max()) < min(bottom9), (rendering.activations, bottom9)


def test_same_seed_same_images_any_batch(lite0):
    settings = preset("quick", steps=12)
    a = render_units(lite0, ["_blocks.4:1", "_blocks.4:2"], settings, progress=False)
    b = render_units(lite0, ["_blocks.4:1", "_blocks.4:2"], settings, progress=False)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
    alone = render_units(lite0, ["_blocks.4:2"], settings, progress=False)
    torch.testing.assert_close(alone.images, a.unit_images(1), rtol=0, atol=2e-3)
    other_seed = render_units(lite0, ["_blocks.4:2"], preset("quick", steps=12, seed=1), progress=False)
    assert (other_seed.images - alone.images).abs().mean() > 0.01


def test_chunks_are_whole_units_of_one_layer_on_the_cpu():
    """A chunk's forward pass runs to its deepest layer: on the CPU no chunk mixes layers (by hand)."""
    from vizprobe.synthesis.rendering import _chunks, default_chunk_images

    layers = ["a", "a", "b", "c", "c", "c"]
    assert _chunks(layers, 2, 2, mix_layers=False) == [slice(0, 4), slice(4, 6), slice(6, 10), slice(10, 12)]
    assert _chunks(layers, 2, 2, mix_layers=True) == [slice(0, 4), slice(4, 8), slice(8, 12)]
    cpu = torch.device("cpu")
    assert [default_chunk_images(cpu, size) for size in (64, 128, 224)] == [64, 16, 5]


def test_chunking_and_stored_bfloat16_weights_leave_images_unchanged(lite0, monkeypatch):
    """One chunk per unit or both units in one; weights cast once or by autocast at every step: same images."""
    import vizprobe.synthesis.rendering as rendering

    settings = preset("quick", steps=8, size=64)
    units = ["_blocks.4:1", "_blocks.4:2", "_blocks.9:3"]
    together = render_units(lite0, units, settings, progress=False, precision="bf16", chunk_images=64)
    apart = render_units(lite0, units, settings, progress=False, precision="bf16", chunk_images=4)
    torch.testing.assert_close(together.images, apart.images, rtol=0, atol=2e-3)
    monkeypatch.setattr(rendering, "_to_bfloat16", lambda net, keep: None)
    autocast_only = render_units(lite0, units, settings, progress=False, precision="bf16", chunk_images=64)
    torch.testing.assert_close(together.images, autocast_only.images, rtol=0, atol=1e-6)


def test_seeds_differ_per_unit_and_not_per_spelling(lite0):
    """Initial images (0 steps) of different units differ, even where the old 8-byte label hash collided
    (`_blocks.8:12`, `_blocks.8:13`, `_blocks.5:10`); the alias of a unit gives its images bit for bit."""
    settings = preset("quick", steps=0, per_unit=2)
    units = ["_blocks.8:12", "_blocks.8:13", "_blocks.5:10"]
    rendering = render_units(lite0, units, settings, progress=False)
    firsts = [rendering.unit_images(k) for k in range(3)]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert (firsts[a] - firsts[b]).abs().max() > 1e-3, (units[a], units[b])
    assert len(set(rendering.seeds)) == len(rendering.seeds)
    again = render_units(lite0, ["_blocks.8:12"], settings, progress=False)
    alias = render_units(lite0, ["block8:12"], settings, progress=False)
    assert torch.equal(again.images, firsts[0]) and torch.equal(alias.images, firsts[0])
    assert alias.units[0] == again.units[0] and alias.units[0].display == "block8:12"
    assert alias.seeds == again.seeds


def test_core_render_takes_a_composed_objective(lite0):
    """`render` knows nothing of units: a hand-made objective, parameterization and optimizer go straight in,
    and the unit's activation (the one definition, measured independently) rises."""
    from vizprobe.synthesis import render
    from vizprobe.synthesis.param import FourierParam

    param = FourierParam([11, 12], 64)
    with torch.no_grad():
        before = lite0.unit_activations(lite0.preprocessing.normalize(param()), ["_blocks.5:10"])[:, 0]
    objective = obj.channel("_blocks.5", 10, 2) - 0.1 * obj.L2()
    result = render(
        lite0,
        objective,
        param,
        tf.compose(tf.standard()),
        lambda p: torch.optim.Adam(p, lr=0.05),
        steps=24,
        progress=False,
    )
    assert result.images.shape == (2, 3, 64, 64) and len(result.history) == 24
    after = lite0.unit_activations(lite0.preprocessing.normalize(result.images), ["_blocks.5:10"])[:, 0]
    assert (after > before + 1.0).all(), (before, after)


def test_each_image_gradient_reaches_only_its_unit(lite0):
    images = torch.rand(4, 3, 96, 96, requires_grad=True)
    paths, chans = ["_blocks.4"] * 2 + ["_blocks.8"] * 2, [1, 1, 5, 5]
    objective = obj.channels(paths, chans) + 2.0 * obj.diversity(paths, [0, 0, 1, 1]) - 0.1 * obj.L2()
    acts = lite0.tap(["_blocks.4", "_blocks.8"])(lite0.preprocessing.normalize(images))
    score = objective(obj.RenderState(acts, images, images))
    score[3].backward()
    grad = images.grad.abs().sum(dim=(1, 2, 3))
    assert grad[3] > 0 and grad[2] > 0  # diversity couples image 3 with its unit's other image
    assert grad[0] == 0 and grad[1] == 0  # but never with another unit's images


def test_objective_arithmetic():
    state = obj.RenderState({}, torch.full((2, 3, 4, 4), 0.75), torch.zeros(1))
    combined = 2 * obj.L1() - obj.L1() * 0.5 + 1.0
    torch.testing.assert_close(combined(state), torch.tensor([0.25 * 1.5 + 1.0] * 2))
    assert sum([obj.L1(), obj.L2()])(state).shape == (2,)


def test_transforms_are_batched_with_independent_randomness():
    base = torch.rand(1, 3, 40, 40).expand(6, 3, 40, 40).contiguous()
    rng = ImageRNG(list(range(6)))
    jittered = tf.jitter(8)(base, rng, step=3)
    assert jittered.shape == (6, 3, 32, 32)
    # Integer jitter is an exact crop: each output equals a slice of the input at some offset.
    for i in range(6):
        assert any(
            torch.allclose(jittered[i], base[i, :, y : y + 32, x : x + 32], atol=1e-5)
            for y in range(9)
            for x in range(9)
        )
    assert len({tuple(jittered[i].flatten()[:50].tolist()) for i in range(6)}) > 1
    standard = tf.compose(tf.standard())
    out = standard(base, rng, 3)
    assert out.shape == (6, 3, 40 + 2 * 12 - 8 - 4, 52)
    torch.testing.assert_close(tf.compose(tf.standard())(base, rng, 3), out)  # same seeds and step, same result
    # Image 5's randomness does not depend on the rest of the batch.
    torch.testing.assert_close(standard(base[5:], ImageRNG([5]), 3)[0], out[5])
    assert (standard(base, rng, 4) - out).abs().mean() > 0  # another step, another draw


def test_composed_affine_transforms_are_one_resampling_of_the_same_draws():
    """compose() multiplies consecutive affine transforms into one grid_sample: two integer jitters
    compose exactly, and lucid's whole standard chain matches stage-by-stage resampling up to the
    blur of the extra interpolations (a smooth test image, so interpolation error is small)."""
    smooth = torch.nn.functional.interpolate(torch.rand(6, 3, 8, 8), size=(64, 64), mode="bicubic")
    rng = ImageRNG(list(range(6)))

    def one_by_one(transforms, images, step):
        for k, transform in enumerate(transforms):
            images = transform(images, rng.fork(k + 1), step)
        return images

    jitters = [tf.jitter(8), tf.jitter(4)]
    torch.testing.assert_close(tf.compose(jitters)(smooth, rng, 5), one_by_one(jitters, smooth, 5), atol=1e-5, rtol=0)
    standard = tf.standard()
    merged, staged = tf.compose(standard)(smooth, rng, 3), one_by_one(standard, smooth, 3)
    assert merged.shape == staged.shape == (6, 3, 64 + 24 - 12, 64 + 24 - 12)
    inner = (slice(None), slice(None), slice(12, -12), slice(12, -12))  # away from the reflected borders
    assert (merged - staged)[inner].abs().mean() < 0.01 * smooth.std()
    assert (merged - staged).abs().mean() < 0.05 * smooth.std()


def test_generator_parameterization_raises_activation(lite0):
    torch.manual_seed(0)
    generator = nn.Sequential(
        nn.Linear(16, 32 * 8 * 8),
        nn.Unflatten(1, (32, 8, 8)),
        nn.Upsample(scale_factor=4),
        nn.Conv2d(32, 3, 3, padding=1),
        nn.Tanh(),
    )
    before = generator[0].weight.clone()
    settings = preset("quick", steps=30, size=96, diversity=0.0)
    rendering = render_units(lite0, ["_blocks.4:1"], settings, generator=generator, latent_shape=(16,), progress=False)
    first = rendering.history[0]
    assert rendering.history[-1] > first + 0.5
    assert torch.equal(generator[0].weight, before)  # the generator itself is not trained


def test_visualize_cli(tmp_path, photo_scan, capsys):
    scan, _ = photo_scan
    out = tmp_path / "vis"
    code = main(
        [
            "-q",
            "visualize",
            "--device",
            "cpu",
            "--units",
            "_blocks.4:1,block8:3",
            "--per-unit",
            "2",
            "--steps",
            "8",
            "--size",
            "64",
            "--scan",
            str(scan.run_dir),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    index = json.loads((out / "visualizations.json").read_text())
    assert index["format"] == "vizprobe-visualizations" and index["settings"]["steps"] == 8
    assert [u["unit"] for u in index["units"]] == ["_blocks.4:1", "_blocks.8:3"]  # canonical keys
    assert [u["label"] for u in index["units"]] == ["_blocks.4:1", "block8:3"]  # as typed, for display
    entry = index["units"][1]
    assert entry["layer_path"] == "_blocks.8" and len(entry["images"]) == 2
    assert entry["natural_top1"] == pytest.approx(scan.top("block8:3", 1)[0].activation)
    assert entry["ratio_to_natural_top1"] == pytest.approx(entry["mean_activation"] / entry["natural_top1"])
    from PIL import Image

    assert Image.open(out / entry["images"][0]["file"]).size == (64, 64)
    code = main(["-q", "visualize", "--device", "cpu", "--units", "_blocks.4:999", "--out", str(tmp_path / "bad")])
    assert code == 2 and "channels 0..39" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
