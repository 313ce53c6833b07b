"""Occlusion sweeps on real photos: exact against a naive loop, fast search against the exact map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import pick

from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb
from vizprobe.occlusion import Occluder, grid, occlude, patch_size


def pixels(model, path) -> torch.Tensor:
    return model.preprocessing.pixels(load_rgb(path))


def naive_map(model, image: torch.Tensor, layer: str, channel: int, patch: int, stride: int) -> np.ndarray:
    """Independent reference: numpy builds each occluded image; the full model runs on each one."""
    array = image.permute(1, 2, 0).numpy().astype(np.float64)
    positions = range(0, array.shape[0] - patch + 1, stride)
    captured = []
    module = dict(model.net.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o[0, channel].mean().item()))
    with torch.no_grad():
        for y in positions:
            for x in positions:
                occluded = array.copy()
                mean = occluded[y : y + patch, x : x + patch].reshape(-1, 3).mean(axis=0)
                occluded[y : y + patch, x : x + patch] = np.round(mean * 255) / 255
                tensor = torch.from_numpy(occluded).permute(2, 0, 1).float()
                model.net(model.preprocessing.normalize(tensor[None]))
    handle.remove()
    n = len(positions)
    return np.array(captured).reshape(n, n)


@pytest.mark.parametrize("compile", [False, True])
def test_exact_sweep_equals_naive_loop(lite0, photo_files, compile):
    occluder = Occluder(lite0, "block8", compile=compile)
    for index in (207, 948):
        image = pixels(lite0, pick(photo_files, index))
        result = occluder.sweep(image, [12, 40], stride=16)
        assert result.patch == 90 and list(result.ys) == list(range(0, 135, 16))
        for channel in (12, 40):
            expected = naive_map(lite0, image, "_blocks.8", channel, 90, 16)
            got = result.channel(channel)
            relative = np.abs(got - expected).max() / np.abs(expected).max()
            assert relative < 1e-4, f"image {index} channel {channel}: {relative:.2e}"


def test_paper_grid_and_patch():
    assert patch_size(224, 0.4) == 90
    assert len(grid(224, 90, 2)) == 68 and grid(224, 90, 2)[-1] == 134
    with pytest.raises(VizprobeError, match="does not fit"):
        grid(64, 90, 2)
    with pytest.raises(VizprobeError, match="patch fraction"):
        patch_size(224, 1.5)


def test_occlude_fills_exactly_the_patch_with_its_mean(lite0, photo_files):
    image = pixels(lite0, pick(photo_files, 3))
    out = occlude(image, torch.tensor([[10, 120]]), 90)[0]
    region = image[:, 10:100, 120:210]
    fill = torch.round(region.double().mean(dim=(1, 2)) * 255) / 255
    assert torch.allclose(out[:, 10:100, 120:210], fill.float()[:, None, None].expand(3, 90, 90))
    outside = torch.ones(224, 224, dtype=torch.bool)
    outside[10:100, 120:210] = False
    assert torch.equal(out[:, outside], image[:, outside])


def test_extremes_are_argmax_and_argmin(lite0, photo_files):
    result = Occluder(lite0, "_blocks.5").sweep(pixels(lite0, pick(photo_files, 100)), [10], stride=8)
    values = result.channel(10)
    y, x, a = result.extreme(10, highest=True)
    assert a == values.max() and values[list(result.ys).index(y), list(result.xs).index(x)] == a
    y, x, a = result.extreme(10, highest=False)
    assert a == values.min() and values[list(result.ys).index(y), list(result.xs).index(x)] == a


def test_fast_search_finds_the_extremes_of_top_images(lite0, photo_scan):
    """On a unit's strongly activating photos, the fast search lands on (or next to) the exact extremes."""
    scan, _ = photo_scan
    occluder = Occluder(lite0, "block8", compile=True)
    for exemplar in scan.top("block8:12", 2):
        image = pixels(lite0, exemplar.path)
        exact = occluder.sweep(image, [12], stride=4)
        fast = occluder.search(image, [12], stride=4)
        assert fast.evaluations < 0.6 * exact.activations.size
        spread = float(exact.activations.max() - exact.activations.min())
        assert fast.best[12][2] >= exact.extreme(12, True)[2] - 0.01 * spread
        assert fast.worst[12][2] <= exact.extreme(12, False)[2] + 0.01 * spread
        # One side only (blurred references need the best square): fewer images, the same best.
        best_only = occluder.search(image, [12], stride=4, extremes="best")
        assert best_only.evaluations < fast.evaluations
        assert best_only.best[12] == fast.best[12]


@pytest.mark.parametrize("layer", ["_blocks.1", "_blocks.5", "_blocks.12"])
def test_incremental_equals_whole_image_computation(lite0, photo_files, layer):
    """Windows around the patch give the same activations as whole occluded images, corners included."""
    incremental = Occluder(lite0, layer)
    whole = Occluder(lite0, layer, incremental=False)
    chain = incremental.incremental_chain(90)
    assert chain is not None and chain.windowed >= 2  # the early stages really run on windows
    assert whole.incremental_chain(90) is None
    image, other = pixels(lite0, pick(photo_files, 412)), pixels(lite0, pick(photo_files, 77))
    ys = grid(224, 90, 14)
    positions = torch.cartesian_prod(torch.from_numpy(ys), torch.from_numpy(ys))
    for source in (None, other):  # mean-colour fill, and retention of another image's pixels
        expected = whole.activations(image, positions, 90, source)
        got = incremental.activations(image, positions, 90, source)
        assert (expected - whole.base(image)).abs().max() > 1e-3  # occlusion matters on this layer
        relative = (got - expected).abs().max() / expected.abs().max()
        assert relative < 1e-5, f"{layer}: {relative:.2e}"
