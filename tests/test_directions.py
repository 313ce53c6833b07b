"""Directions as units (`LAYER:NAME:K`): projections (.npy) and sparse-autoencoder features (.npz) on
efficientnet-lite0's `_blocks.8`, each checked against an independent computation: a plain forward hook on
the original network and the projection or ReLU(W a + b) by hand in numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import module_output

from vizprobe.cli import main
from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb

LAYER = "_blocks.8"  # 112 channels, 14 x 14
C, ONE_HOT_CHANNEL = 112, 17


@pytest.fixture(scope="module")
def direction_files(tmp_path_factory):
    """A one-hot direction set (K=3; direction 1 is channel 17), a random projection (K=5), an SAE (K=6)."""
    folder = tmp_path_factory.mktemp("directions")
    rng = np.random.default_rng(7)
    one_hot = np.zeros((3, C), np.float32)
    one_hot[1, ONE_HOT_CHANNEL] = 1.0
    one_hot[[0, 2], [3, 50]] = 1.0
    np.save(folder / "onehot.npy", one_hot)
    np.save(folder / "rand.npy", rng.normal(size=(5, C)).astype(np.float32))
    W = rng.normal(size=(6, C)).astype(np.float32) / np.sqrt(C)
    np.savez(folder / "sae.npz", W=W, b=rng.normal(scale=0.2, size=6).astype(np.float32))
    return {name: folder / f"{name}.{'npz' if name == 'sae' else 'npy'}" for name in ("onehot", "rand", "sae")}


@pytest.fixture(scope="module")
def few_photos(photo_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for f in photo_files[:60]:
        (folder / f.name).symlink_to(f)
    return folder


@pytest.fixture(scope="module")
def direction_scan(lite0, direction_files, few_photos, tmp_path_factory):
    from vizprobe.scan import scan

    out = tmp_path_factory.mktemp("scan") / "run"
    layers = [LAYER, f"{LAYER}:onehot", f"{LAYER}:rand", f"{LAYER}:sae"]
    result, _ = scan(lite0, few_photos, layers, out, directions=direction_files, top_k=20, progress=False)
    return result


def layer_output(model, images: torch.Tensor, path: str = LAYER) -> np.ndarray:
    """(N, C, H, W) output of a module of the original network, through a plain hook."""
    return module_output(model.net, path, images).numpy()


def test_a_one_hot_direction_ranks_images_exactly_as_its_channel(direction_scan):
    channel = direction_scan.unit_activations(f"{LAYER}:{ONE_HOT_CHANNEL}")
    direction = direction_scan.unit_activations(f"{LAYER}:onehot:1")
    np.testing.assert_allclose(direction, channel, rtol=1e-5, atol=1e-6)
    for side in ("top", "bottom"):
        by_channel = getattr(direction_scan, side)(f"{LAYER}:{ONE_HOT_CHANNEL}", 20)
        by_direction = getattr(direction_scan, side)(f"{LAYER}:onehot:1", 20)
        assert [e.index for e in by_direction] == [e.index for e in by_channel]


def test_a_random_direction_scan_equals_the_projection_by_hand(direction_scan, direction_files):
    W = np.load(direction_files["rand"])
    channel_means = direction_scan.activations(LAYER)  # (N, C): the mean commutes with a projection
    np.testing.assert_allclose(direction_scan.activations(f"{LAYER}:rand"), channel_means @ W.T, rtol=1e-4, atol=1e-4)
    assert direction_scan.layer(f"{LAYER}:rand").channels == 5


def test_an_sae_feature_equals_relu_of_w_a_plus_b_averaged_over_positions(direction_scan, direction_files, lite0):
    saved = np.load(direction_files["sae"])
    W, b = saved["W"], saved["b"]
    rows = [0, 7, 33]
    images = torch.stack([lite0.preprocessing(load_rgb(direction_scan.image_path(i))) for i in rows])
    maps = layer_output(lite0, images)  # (3, C, 14, 14), original network (no folded batch norms)
    per_position = np.einsum("kc,nchw->nkhw", W, maps) + b[None, :, None, None]
    expected = np.maximum(per_position, 0).mean(axis=(2, 3))
    got = direction_scan.activations(f"{LAYER}:sae")[rows]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    linear = (np.einsum("kc,nchw->nkhw", W, maps) + b[None, :, None, None]).mean(axis=(2, 3))
    assert not np.allclose(expected, linear, atol=1e-3)  # the ReLU matters: these are not projections


def test_the_run_dir_keeps_the_directions_and_a_resume_with_others_is_refused(direction_scan, direction_files, lite0):
    from vizprobe.scan import scan

    meta = json.loads((direction_scan.run_dir / "scan.json").read_text())
    assert set(meta["directions"]) == {"onehot", "rand", "sae"}
    assert meta["directions"]["sae"]["kind"] == "sae" and meta["directions"]["rand"]["kind"] == "projection"
    copy = direction_scan.directions["sae"]
    assert copy.read_bytes() == direction_files["sae"].read_bytes()
    other = direction_scan.run_dir.parent / "other.npy"
    np.save(other, np.ones((5, C), np.float32))
    layers = [LAYER, f"{LAYER}:onehot", f"{LAYER}:rand", f"{LAYER}:sae"]
    with pytest.raises(VizprobeError, match="another directions"):
        scan(
            lite0,
            direction_scan.root,
            layers,
            direction_scan.run_dir,
            directions={**direction_files, "rand": other},
            progress=False,
        )


def test_the_synthetic_images_of_a_direction_out_activate_its_natural_top_9(direction_scan, lite0):
    from vizprobe.synthesis import preset, render_units

    model = lite0.with_directions(direction_scan.directions)
    unit = f"{LAYER}:rand:2"
    rendering = render_units(model, [unit], preset("quick", per_unit=2, steps=48, size=224), progress=False)
    images = model.preprocessing.normalize(rendering.unit_images(0).float())
    W = np.load(direction_scan.directions["rand"])
    synthetic = np.einsum("c,nchw->n", W[2], layer_output(lite0, images)) / (14 * 14)
    natural = [e.activation for e in direction_scan.top(unit, 9)]
    assert synthetic.min() > max(natural), (synthetic, natural)


def test_bad_directions_are_one_line_errors_and_write_nothing(lite0, direction_files, few_photos, tmp_path):
    from vizprobe.models import load_model
    from vizprobe.scan import scan

    out = tmp_path / "run"
    with pytest.raises(VizprobeError, match=r"are 5x112 but layer '_blocks.2' has 24 channels"):
        scan(lite0, few_photos, ["_blocks.2:rand"], out, directions=direction_files, progress=False)
    assert not out.exists()
    with pytest.raises(VizprobeError, match="unknown directions 'sea'"):
        lite0.with_directions(direction_files).resolve_unit(f"{LAYER}:sea:1")
    with pytest.raises(VizprobeError, match=r"layer '_blocks.8:rand' has channels 0..4"):
        lite0.with_directions(direction_files).resolve_unit(f"{LAYER}:rand:5")
    bad = tmp_path / "bad.npz"
    np.savez(bad, W_enc=np.zeros((C, 4)))
    with pytest.raises(VizprobeError, match="an .npz needs W"):
        load_model(directions=f"x={bad}")
    with pytest.raises(VizprobeError, match="no file"):
        load_model(directions=f"x={tmp_path / 'missing.npy'}")
    with pytest.raises(VizprobeError, match="write NAME=FILE"):
        load_model(directions="just-a-file.npy")


def test_the_cli_lists_direction_layers_and_scans_them(direction_files, few_photos, tmp_path, capsys):
    given = f"sae={direction_files['sae']}"
    assert main(["layers", "--directions", given, "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(ln for ln in lines if ln.startswith(f"{LAYER}:sae "))
    assert "SparseAutoencoder(sae.npz)" in line and "6x14x14" in line
    assert sum(":sae " in ln for ln in lines) == sum(" 112x" in ln for ln in lines if ":" not in ln.split()[0])
    out = tmp_path / "run"
    args = [
        "-q",
        "scan",
        "--images",
        str(few_photos),
        "--layers",
        "block8:sae",
        "--directions",
        given,
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert json.loads((out / "scan.json").read_text())["layers"][0]["path"] == f"{LAYER}:sae"


@pytest.mark.slow
def test_a_direction_unit_goes_through_visualize_and_build(direction_scan, tmp_path):
    """The CLI, as a user runs it: visualize takes the scan's directions, build copies them into the package,
    and the stored activations of a trial's two occlusions are the direction's, recomputed by hand."""
    from conftest import reference_ranks

    from vizprobe.models import load_model
    from vizprobe.stimuli.manifest import Manifest

    run, unit = str(direction_scan.run_dir), f"{LAYER}:rand:2"
    vis, pkg = tmp_path / "vis", tmp_path / "pkg"
    assert (
        main(
            [
                "-q",
                "visualize",
                "--scan",
                run,
                "--units",
                f"{unit},{LAYER}:sae:0,{LAYER}:sae:1",
                "--per-unit",
                "9",
                "--steps",
                "4",
                "--out",
                str(vis),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    index = json.loads((vis / "visualizations.json").read_text())
    assert index["directions"]["rand"]["sha256"] == direction_scan.meta["directions"]["rand"]["sha256"]
    low, high = reference_ranks(60)
    assert (
        main(
            [
                "-q",
                "build",
                "--scan",
                run,
                "--visualizations",
                str(vis),
                "--units",
                unit,
                "--catch-units",
                f"{LAYER}:sae:0",
                "--practice-units",
                f"{LAYER}:sae:1",
                "--image-sets",
                "1",
                "--tasks-per-condition",
                "1",
                "--stride",
                "32",
                "--reference-ranks",
                f"{low}-{high}",
                "--query-ranks",
                f"1-{low - 1}",
                "--conditions",
                "natural,synthetic,none",
                "--out",
                str(pkg),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    manifest = Manifest.load(pkg)
    assert set(manifest.data["directions"]) == {"rand", "sae"}
    assert (pkg / "directions" / "rand.npy").read_bytes() == direction_scan.directions["rand"].read_bytes()
    trial = next(t for t in manifest.trials.values() if t.kind == "main")
    assert trial.unit == unit
    W = np.load(pkg / "directions" / "rand.npy")[2]
    model = load_model(device="cpu")
    for option in trial.options:
        pixels = torch.from_numpy(np.array(load_rgb(pkg / option.image))).permute(2, 0, 1)[None].float() / 255
        by_hand = np.einsum("c,nchw->n", W, layer_output(model, model.preprocessing.normalize(pixels))) / 196
        assert by_hand[0] == pytest.approx(option.activation, rel=1e-3, abs=1e-3)


def test_occlusion_of_a_direction_unit_equals_a_naive_loop(lite0, direction_files, photo_files):
    """The occluder recomputes only the patch's neighbourhood (incremental), and the SAE's ReLU applies per
    position after it: each occluded copy is checked against a full forward pass and numpy by hand."""
    from vizprobe.occlusion import Occluder, occlude

    model = lite0.with_directions(direction_files)
    saved = np.load(direction_files["sae"])
    pixels = model.preprocessing.pixels(load_rgb(photo_files[5]))
    occluder = Occluder(model, f"{LAYER}:sae")
    assert occluder.incremental_chain(90) is not None
    positions = torch.tensor([[0, 0], [40, 120], [134, 30], [134, 134]])
    got = occluder.activations(pixels, positions, 90)
    for k, (y, x) in enumerate(positions.tolist()):
        maps = layer_output(lite0, model.preprocessing.normalize(occlude(pixels, torch.tensor([[y, x]]), 90)))
        encoded = np.einsum("kc,nchw->nkhw", saved["W"], maps) + saved["b"][None, :, None, None]
        np.testing.assert_allclose(got[k].numpy(), np.maximum(encoded, 0).mean(axis=(2, 3))[0], rtol=1e-3, atol=1e-4)


def _sae_reference(kind: str, arrays: dict, maps: np.ndarray) -> np.ndarray:
    """SAELens's encoders, per position, in numpy: (N, C, H, W) activations -> (N, K, H, W) features."""
    x = maps - arrays.get("b_dec", np.zeros(maps.shape[1]))[None, :, None, None]

    def linear(w, b):
        return np.einsum("kc,nchw->nkhw", w, x) + b[None, :, None, None]

    if kind == "gated":
        gate = linear(arrays["W"], arrays["b_gate"]) > 0
        magnitude = linear(arrays["W"] * np.exp(arrays["r_mag"])[:, None], arrays["b_mag"])
        return gate * np.maximum(magnitude, 0)
    pre = linear(arrays["W"], arrays["b"])
    if kind == "jumprelu":
        return np.maximum(pre, 0) * (pre > arrays["threshold"][None, :, None, None])
    if kind == "topk":
        out = np.zeros_like(pre)
        for n, h, w in np.ndindex(pre.shape[0], pre.shape[2], pre.shape[3]):
            keep = np.argsort(-pre[n, :, h, w])[: int(arrays["k"])]
            out[n, keep, h, w] = np.maximum(pre[n, keep, h, w], 0)
        return out
    return np.maximum(pre, 0)


def _sae_arrays(kind: str, channels: int, features: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(features, channels)) / np.sqrt(channels)
    arrays = {"kind": np.array(kind), "W": weight, "b_dec": rng.normal(scale=0.1, size=channels)}
    if kind == "gated":
        arrays |= {
            "b_gate": rng.normal(scale=0.2, size=features),
            "r_mag": rng.normal(scale=0.3, size=features),
            "b_mag": rng.normal(scale=0.2, size=features),
        }
    else:
        arrays["b"] = rng.normal(scale=0.2, size=features)
    if kind == "jumprelu":
        arrays["threshold"] = np.abs(rng.normal(scale=0.3, size=features))
    if kind == "topk":
        arrays["k"] = np.array(3)
    return {k: np.asarray(v, np.float32) if k not in ("kind", "k") else v for k, v in arrays.items()}


@pytest.mark.parametrize("kind", ["relu", "jumprelu", "topk", "gated"])
def test_each_sae_kind_encodes_as_saelens_in_numpy(kind, tmp_path):
    from vizprobe.units import Directions

    arrays = _sae_arrays(kind, channels=16, features=8, seed=3)
    np.savez(tmp_path / "sae.npz", **arrays)
    loaded = Directions.load("sae", tmp_path / "sae.npz")
    maps = np.random.default_rng(4).normal(size=(2, 16, 5, 5)).astype(np.float32)
    got = loaded.apply(torch.from_numpy(maps)).numpy()
    expected = _sae_reference(kind, arrays, maps)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert loaded.record("x.npz")["encoder"] == kind and loaded.kind == "sae"
    if kind != "relu":  # the kind matters: not the plain ReLU encoder
        plain = dict(arrays, b=arrays["b"] if "b" in arrays else arrays["b_mag"])
        assert not np.allclose(expected, _sae_reference("relu", plain, maps))


def test_a_scan_of_topk_and_jumprelu_features_equals_numpy(lite0, few_photos, tmp_path):
    """Through the scan (its exported ONNX graph on the CPU), averaged over positions (or their maximum, for a set
    saved with reduce max), against a plain hook; the visualization objective reads the same maximum."""
    from vizprobe.scan import scan
    from vizprobe.synthesis import preset, render_units

    files = {}
    for kind, reduce in (("topk", "mean"), ("jumprelu", "mean"), ("relu", "max")):
        arrays = _sae_arrays(kind, channels=C, features=12, seed=5)
        name = f"{kind}{reduce}"
        np.savez(tmp_path / f"{name}.npz", **arrays, reduce=np.array(reduce))
        files[name] = (tmp_path / f"{name}.npz", arrays, kind, reduce)
    result, _ = scan(
        lite0,
        few_photos,
        [f"{LAYER}:{name}" for name in files],
        tmp_path / "run",
        directions={k: v[0] for k, v in files.items()},
        top_k=20,
        progress=False,
    )
    rows = [0, 9, 41]
    images = torch.stack([lite0.preprocessing(load_rgb(result.image_path(i))) for i in rows])
    maps = layer_output(lite0, images)
    for name, (_, arrays, kind, reduce) in files.items():
        encoded = _sae_reference(kind, arrays, maps)
        expected = encoded.max(axis=(2, 3)) if reduce == "max" else encoded.mean(axis=(2, 3))
        np.testing.assert_allclose(result.activations(f"{LAYER}:{name}")[rows], expected, rtol=1e-3, atol=1e-4)
    assert result.meta["directions"]["relumax"]["reduce"] == "max"
    model = lite0.with_directions({"relumax": files["relumax"][0]})
    assert model.layer(f"{LAYER}:relumax").shape == (12, 1, 1)
    rendering = render_units(
        model, [f"{LAYER}:relumax:2"], preset("quick", per_unit=2, steps=2, size=64), progress=False
    )
    seen = layer_output(lite0, lite0.preprocessing.normalize(rendering.images))
    expected = _sae_reference("relu", files["relumax"][1], seen).max(axis=(2, 3))[:, 2]
    np.testing.assert_allclose(rendering.activations.numpy(), expected, rtol=1e-3, atol=1e-4)


def test_an_unknown_sae_kind_or_a_missing_array_is_a_clear_error(tmp_path):
    from vizprobe.units import Directions

    arrays = _sae_arrays("relu", channels=16, features=4, seed=1)
    np.savez(tmp_path / "odd.npz", **(arrays | {"kind": np.array("batchtopk")}))
    with pytest.raises(VizprobeError, match="kind 'batchtopk'; use one of relu, jumprelu, topk, gated"):
        Directions.load("odd", tmp_path / "odd.npz")
    np.savez(tmp_path / "half.npz", **(arrays | {"kind": np.array("jumprelu")}))
    with pytest.raises(VizprobeError, match=r"\(jumprelu\) lacks threshold"):
        Directions.load("half", tmp_path / "half.npz")


def _saelens_encode(architecture: str, cfg: dict, w: dict, x: np.ndarray) -> np.ndarray:
    """SAELens's encode on (..., d_in) inputs, written from its layout (W_enc is (d_in, d_sae))."""
    x = x - w["b_dec"]
    if architecture == "gated":
        gate = (x @ w["W_enc"] + w["b_gate"]) > 0
        return gate * np.maximum(x @ (w["W_enc"] * np.exp(w["r_mag"])) + w["b_mag"], 0)
    pre = x @ w["W_enc"] + w["b_enc"]
    if architecture == "jumprelu":
        return np.maximum(pre, 0) * (pre > w["threshold"])
    if architecture == "topk":
        keep = np.argsort(-pre, axis=-1)[..., : cfg["k"]]
        out = np.zeros_like(pre)
        np.put_along_axis(out, keep, np.maximum(np.take_along_axis(pre, keep, axis=-1), 0), axis=-1)
        return out
    return np.maximum(pre, 0)


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "topk", "gated"])
def test_import_saelens_folders_of_each_architecture(architecture, tmp_path, capsys):
    from safetensors.numpy import save_file

    from vizprobe.units import Directions

    rng = np.random.default_rng(11)
    d_in, d_sae = 16, 10
    w = {
        "W_enc": rng.normal(size=(d_in, d_sae)) / 4,
        "W_dec": rng.normal(size=(d_sae, d_in)),
        "b_dec": rng.normal(scale=0.1, size=d_in),
    }
    if architecture == "gated":
        w |= {name: rng.normal(scale=0.2, size=d_sae) for name in ("b_gate", "r_mag", "b_mag")}
    else:
        w["b_enc"] = rng.normal(scale=0.2, size=d_sae)
    if architecture == "jumprelu":
        w["threshold"] = np.abs(rng.normal(scale=0.3, size=d_sae))
    w = {k: v.astype(np.float32) for k, v in w.items()}
    cfg = {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        **({"k": 3} if architecture == "topk" else {}),
    }
    folder = tmp_path / "sae"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(w, str(folder / "sae_weights.safetensors"))
    out = tmp_path / "imported.npz"
    assert main(["directions", "import-saelens", str(folder), "--out", str(out)]) == 0
    assert f"{d_sae}" in capsys.readouterr().out
    loaded = Directions.load("sae", out)
    maps = np.random.default_rng(12).normal(size=(2, d_in, 3, 3)).astype(np.float32)
    expected = _saelens_encode(architecture, cfg, w, maps.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert loaded.reduce == "max"  # sparse features: an image's activation is the feature's maximum over positions
    got = loaded.apply(torch.from_numpy(maps)).numpy()
    np.testing.assert_allclose(got, expected.max(axis=(2, 3), keepdims=True), rtol=1e-4, atol=1e-5)
    assert main(["directions", "import-saelens", str(folder), "--out", str(out), "--reduce", "mean"]) == 0
    loaded = Directions.load("sae", out)
    np.testing.assert_allclose(loaded.apply(torch.from_numpy(maps)).numpy(), expected, rtol=1e-4, atol=1e-5)

    (folder / "cfg.json").write_text(json.dumps(cfg | {"normalize_activations": "expected_average_only_in"}))
    assert main(["directions", "import-saelens", str(folder), "--out", str(tmp_path / "no.npz")]) == 2
    assert "normalize_activations" in capsys.readouterr().err and not (tmp_path / "no.npz").exists()


def test_diversity_of_a_single_direction_acts_in_its_base_layer(lite0, tmp_path):
    """A set of K = 1 direction has a 1 x 1 Gram matrix in its own output; diversity is computed on the base layer's
    channels instead, so it still separates the images of the unit (lower mean pairwise Gram similarity there)."""
    from vizprobe.synthesis import preset, render_units
    from vizprobe.synthesis.objectives import gram_similarity

    np.save(tmp_path / "one.npy", np.random.default_rng(2).normal(size=(1, C)).astype(np.float32))
    model = lite0.with_directions({"one": tmp_path / "one.npy"})
    unit = f"{LAYER}:one:0"
    renders = {
        w: render_units(model, [unit], preset("quick", per_unit=3, steps=48, size=128, diversity=w), progress=False)
        for w in (0.0, 5.0)
    }
    assert not torch.allclose(renders[0.0].images, renders[5.0].images)

    def similarity(images):
        with torch.no_grad():
            sims = gram_similarity(model.tap([LAYER])(model.preprocessing.normalize(images.float()))[LAYER])
        return float((sims.sum() - sims.diagonal().sum()) / (sims.shape[0] * (sims.shape[0] - 1)))

    assert similarity(renders[5.0].images) < similarity(renders[0.0].images)


def test_direction_units_are_scored_and_get_explorer_pages(direction_scan, tmp_path):
    """Every direction of a set is a unit of its own for `vizprobe score --layers` and for the explorer."""
    from vizprobe.explore import explore
    from vizprobe.score.exemplar import ScoreSettings
    from vizprobe.score.layers import score_layers

    layer = f"{LAYER}:sae"
    settings = ScoreSettings(references=3, tasks=6, pool=8)
    scores, summary, _ = score_layers([direction_scan], [layer], tmp_path / "scores", settings, progress=False)
    assert list(scores["unit"]) == [f"{layer}:{k}" for k in range(6)] and summary["units"].tolist() == [6]
    record = explore(direction_scan, tmp_path / "site", tmp_path / "scores", layers=[layer], progress=False)
    assert record["units"] == 6
    page = (tmp_path / "site" / "units" / "_blocks.8_sae_0002.html").read_text()
    top = direction_scan.top(f"{layer}:2", 1)[0]
    assert f"#1: {top.activation:.3g}</figcaption>" in page
    row = scores.set_index("unit").loc[f"{layer}:2"]
    assert f"{row['score']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in page
