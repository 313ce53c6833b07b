"""Vision transformers from timm (`timm/NAME --weights FILE`): token layers are units like convolutional ones.

A ViT with random weights saved to a file stands in for a trained one (nothing may be downloaded). Each
check compares with an independent computation: a forward hook on the timm module and the mean over its
patch tokens (the class token excluded), by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import module_output

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb

ARCH = "vit_tiny_patch16_224"
LAYERS = ["blocks.5", "blocks.8.mlp.fc1"]


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory):
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit") / "vit_tiny.pth"
    torch.save(timm.create_model(ARCH, pretrained=False).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def vit(vit_weights):
    from vizprobe.models import load_model

    return load_model(f"timm/{ARCH}", weights=vit_weights, device="cpu")


def by_hand(vit, module_path: str, images: torch.Tensor) -> torch.Tensor:
    """The raw output of a timm module on normalized images ((N, T, C) for a token layer), through a plain hook."""
    return module_output(vit.net, module_path, images)


def test_layers_lists_token_layers_with_their_patch_grid(vit, vit_weights, capsys):
    blocks = {li.path: li for li in vit.layers}
    assert blocks["blocks.5"].layout == "tokens" and blocks["blocks.5"].shape == (192, 14, 14)
    assert blocks["blocks.8.mlp.fc1"].shape == (768, 14, 14)
    assert not [p for p in blocks if p.endswith(("q_norm", "k_norm"))]  # (N, heads, T, d): not maps of units
    assert main(["layers", "--model", f"timm/{ARCH}", "--weights", str(vit_weights), "--device", "cpu"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("blocks.5 "))
    assert "Block (tokens)" in line and "192x14x14" in line


def test_scan_of_token_units_equals_the_mean_over_patch_tokens(vit, photo_files, tmp_path):
    from vizprobe.scan import scan

    files = photo_files[:24]
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    result, _ = scan(vit, folder, LAYERS, tmp_path / "run", progress=False)
    images = torch.stack([vit.preprocessing(load_rgb(folder / name)) for name in result.images])
    for layer in LAYERS:
        tokens = by_hand(vit, layer, images)
        assert tokens.shape[1] == 197  # class token + 14 x 14 patches
        expected = tokens[:, 1:, :].mean(dim=1).numpy()
        got = result.activations(layer)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    unit = "blocks.5:7"
    order = np.argsort(-by_hand(vit, "blocks.5", images)[:, 1:, 7].mean(dim=1).numpy(), kind="stable")
    assert [e.path.name for e in result.top(unit, 5)] == [result.images[i] for i in order[:5]]


def test_occlusion_on_a_vit_equals_a_naive_loop(vit, photo_files):
    from vizprobe.occlusion import Occluder, occlude

    pixels = vit.preprocessing.pixels(load_rgb(photo_files[3]))
    occluder = Occluder(vit, "blocks.5")
    positions = torch.tensor([[0, 0], [32, 80], [150, 40], [200, 200]])
    got = occluder.activations(pixels, positions, 24)
    for k, (y, x) in enumerate(positions.tolist()):
        occluded = occlude(pixels, torch.tensor([[y, x]]), 24)
        tokens = by_hand(vit, "blocks.5", vit.preprocessing.normalize(occluded))
        np.testing.assert_allclose(got[k].numpy(), tokens[0, 1:, :].mean(dim=0).numpy(), rtol=1e-4, atol=1e-4)


def test_feature_visualization_of_a_token_unit_raises_its_activation(vit):
    from vizprobe.synthesis import preset, render_units

    rendering = render_units(vit, ["blocks.5:7"], preset("quick", per_unit=2, steps=24, size=224), progress=False)
    images = vit.preprocessing.normalize(rendering.unit_images(0).float())
    final = by_hand(vit, "blocks.5", images)[:, 1:, 7].mean(dim=1)
    noise = by_hand(vit, "blocks.5", vit.preprocessing.normalize(torch.rand(2, 3, 224, 224)))[:, 1:, 7].mean(dim=1)
    assert (final > noise.max()).all(), (final, noise)


def test_timm_errors_are_one_line(vit_weights, tmp_path):
    from vizprobe.models import load_model

    with pytest.raises(VizprobeError, match="timm has no model 'vit_tinyy_patch16_224'"):
        load_model("timm/vit_tinyy_patch16_224", weights=vit_weights)
    with pytest.raises(VizprobeError, match="has no embedded weights; pass --weights"):
        load_model(f"timm/{ARCH}")
    with pytest.raises(VizprobeError, match="does not exist"):
        load_model(f"timm/{ARCH}", weights=tmp_path / "missing.safetensors")
    with pytest.raises(VizprobeError, match="do not fit this architecture"):
        load_model("timm/vit_small_patch16_224", weights=vit_weights)


@pytest.mark.slow
def test_a_vit_study_end_to_end(vit, photo_files, tmp_path):
    """Scan, catch and practice units, visualizations, build, an observer's answers and the report, on a ViT's
    token layers, through the same calls as for a convolutional network (a small study: at most 220 photos,
    three conditions, a coarse stride, to keep the CPU time low)."""
    from conftest import reference_ranks

    from vizprobe.analysis import analyze
    from vizprobe.observers.answer import answer_package
    from vizprobe.scan import scan
    from vizprobe.stimuli import BuildSettings, build_stimuli
    from vizprobe.stimuli.build import protocol_units
    from vizprobe.synthesis import preset, render_units
    from vizprobe.synthesis.store import save_visualizations

    folder = tmp_path / "photos"
    folder.mkdir()
    chosen = photo_files[:220]  # ImageNet photos; a fresh clone's ~150 demo photos
    for f in chosen:
        (folder / f.name).symlink_to(f)
    ranks = reference_ranks(len(chosen))
    settings = BuildSettings(
        image_sets=2,
        tasks_per_condition=2,
        stride=32,
        reference_ranks=ranks,
        conditions=("natural", "synthetic", "none"),
    )
    result, _ = scan(vit, folder, LAYERS, tmp_path / "run", progress=False)
    units = ["blocks.5:7", "blocks.8.mlp.fc1:100"]
    protocol = protocol_units(result, units, settings, model=vit)
    everything = [*units, *(str(c.unit) for c in protocol.catch + protocol.practice)]
    assert all(u.split(":")[0] in LAYERS for u in everything)
    rendering = render_units(vit, everything, preset("quick", per_unit=9, steps=4, size=224), progress=False)
    save_visualizations(rendering, tmp_path / "vis", vit)
    manifest = build_stimuli(
        result, units, tmp_path / "pkg", tmp_path / "vis", settings, model=vit, protocol=protocol, progress=False
    )
    trial = next(t for t in manifest.trials.values() if t.kind == "main")
    a, b = trial.options  # the stored activations of the two occlusions are the unit's, recomputed by hand
    channel = int(trial.unit.split(":")[1])
    for option in (a, b):
        pixels = torch.from_numpy(np.asarray(load_rgb(tmp_path / "pkg" / option.image))).permute(2, 0, 1) / 255
        tokens = by_hand(vit, trial.unit.split(":")[0], vit.preprocessing.normalize(pixels[None].float()))
        assert tokens[0, 1:, channel].mean().item() == pytest.approx(option.activation, rel=0.05, abs=0.05)
    responses = answer_package(tmp_path / "pkg", "similarity")
    assert set(responses["condition"]) == set(manifest.conditions) == {"natural", "synthetic", "none"}
    results = analyze(responses, tmp_path / "report", tmp_path / "pkg", baselines=["oracle"])
    assert results["observers"] and results["baselines"]["oracle"]["accuracy"] == 1.0
    assert (tmp_path / "report" / "report.html").is_file()


def test_a_timm_resnet_loads_from_safetensors_and_its_units_are_channel_means(photo_files, tmp_path):
    """A convolutional timm model, its weights in a .safetensors file: the preprocessing is timm's config and
    a unit's activation is its channel's spatial mean, computed by hand through a hook."""
    import timm
    from safetensors.torch import save_file

    from vizprobe.models import load_model

    torch.manual_seed(1)
    net = timm.create_model("resnet18", pretrained=False)
    save_file(net.state_dict(), str(tmp_path / "resnet18.safetensors"))
    model = load_model("timm/resnet18", weights=tmp_path / "resnet18.safetensors", device="cpu")
    cfg = timm.get_pretrained_cfg("resnet18")
    assert model.preprocessing.crop == cfg.input_size[-1] and model.preprocessing.mean == tuple(cfg.mean)
    layer = {li.path: li for li in model.layers}["layer3"]
    assert layer.layout == "map" and layer.shape == (256, 14, 14)
    images = torch.stack([model.preprocessing(load_rgb(f)) for f in photo_files[:4]])
    got = model.unit_activations(images, ["layer3:5", "layer4.1:300"])
    for k, (path, channel) in enumerate([("layer3", 5), ("layer4.1", 300)]):
        expected = by_hand(model, path, images)[:, channel].mean(dim=(1, 2))
        np.testing.assert_allclose(got[:, k].numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
