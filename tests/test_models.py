"""The model zoo: real weights, exact preprocessing, unit addressing, clear errors."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import pick

from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb
from vizprobe.models import load_model
from vizprobe.units import LayerTap, Unit


def test_efficientnet_lite0_top1_on_imagenet_samples(lite0, imagenet_files):
    """>= 85 % top-1 on every 4th photo: only the exact preprocessing and weights reach this."""
    transform = lite0.preprocessing.pil_transform()
    indices = list(range(0, 1000, 4))
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(indices), 50):
            chunk = indices[start : start + 50]
            batch = torch.stack([transform(load_rgb(imagenet_files[i])) for i in chunk])
            predicted = lite0.net(batch).argmax(1).tolist()
            correct += sum(p == i for p, i in zip(predicted, chunk, strict=True))
    accuracy = correct / len(indices)
    assert accuracy >= 0.85, f"top-1 {accuracy:.3f} on {len(indices)} photos"


@pytest.mark.slow
def test_efficientnet_lite1_and_lite2_load_offline_with_their_preprocessing(imagenet_files):
    """The observers' embedding networks: >= 87 % top-1 on every 10th photo at their own input sizes (240, 260 px;
    the published ImageNet top-1 is 76.7 and 77.6 % against Lite0's 75.1 %, and these photos are easier)."""
    for name, side in (("efficientnet-lite1", 240), ("efficientnet-lite2", 260)):
        model = load_model(name, device="cpu")
        assert model.preprocessing.crop == side and model.preprocessing.resize == side + 32
        transform = model.preprocessing.pil_transform()
        indices = list(range(0, 1000, 10))
        with torch.inference_mode():
            batch = torch.stack([transform(load_rgb(imagenet_files[i])) for i in indices])
            predicted = model.net(batch).argmax(1).tolist()
        accuracy = sum(p == i for p, i in zip(predicted, indices, strict=True)) / len(indices)
        assert accuracy >= 0.87, f"{name}: top-1 {accuracy:.3f} on {len(indices)} photos"


def test_wrong_preprocessing_fails_the_accuracy_bar(lite0, imagenet_files):
    """ImageNet mean/std instead of the model's own convention visibly costs accuracy."""
    from vizprobe.models import Preprocessing

    wrong = Preprocessing(256, 224, "bilinear").pil_transform()
    indices = list(range(0, 1000, 10))
    with torch.inference_mode():
        batch = torch.stack([wrong(load_rgb(imagenet_files[i])) for i in indices])
        predicted = lite0.net(batch).argmax(1).tolist()
    right = lite0.preprocessing.pil_transform()
    with torch.inference_mode():
        batch = torch.stack([right(load_rgb(imagenet_files[i])) for i in indices])
        predicted_right = lite0.net(batch).argmax(1).tolist()
    wrong_acc = sum(p == i for p, i in zip(predicted, indices, strict=True)) / len(indices)
    right_acc = sum(p == i for p, i in zip(predicted_right, indices, strict=True)) / len(indices)
    assert right_acc > wrong_acc


def test_unit_activation_is_spatial_mean_of_channel(lite0, photo_files):
    image = lite0.preprocessing(load_rgb(photo_files[0]))[None]
    captured = {}
    handle = dict(lite0.net.named_modules())["_blocks.8"].register_forward_hook(
        lambda m, i, o: captured.setdefault("out", o)
    )
    with torch.inference_mode():
        lite0.net(image)
        ours = lite0.unit_activations(image, ["_blocks.8:12", "block8:3"])
    handle.remove()
    expected = captured["out"][0, [12, 3]].mean(dim=(1, 2))
    torch.testing.assert_close(ours[0], expected)


def test_bad_layer_name_lists_close_matches(lite0):
    with pytest.raises(VizprobeError, match=r"close matches: .*_blocks\.8"):
        lite0.layer("_blocks.8x")
    with pytest.raises(VizprobeError, match="channels 0..79"):
        lite0.resolve_unit("_blocks.5:80")
    with pytest.raises(VizprobeError, match="LAYER:CHANNEL"):
        Unit.parse("_blocks.8")


def test_unknown_model_suggests_names():
    with pytest.raises(VizprobeError, match="did you mean .*efficientnet-lite0"):
        load_model("efficientnet-lite", device="cpu")


@pytest.fixture(scope="module")
def googlenet_weights(tmp_path_factory):
    """A torchvision googlenet state dict of random weights, as the real one would be saved."""
    torch.manual_seed(0)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    net.eval()
    # Random BN statistics so that branches differ measurably.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "googlenet.pth"
    torch.save(net.state_dict(), path)
    return path


def test_googlenet_without_weights_says_how_to_pass_them():
    with pytest.raises(VizprobeError, match="--weights PATH"):
        load_model("googlenet", device="cpu")


def test_googlenet_paper_names_and_branches(googlenet_weights, photo_files):
    model = load_model("googlenet", weights=googlenet_weights, device="cpu")
    assert model.layer("mixed4a").path == "inception4a"
    assert model.layer("mixed4a/pool").path == "inception4a.branch4"
    image = model.preprocessing(load_rgb(pick(photo_files, 10)))[None]
    info_1x1 = model.layer("mixed4a/1x1")
    with torch.inference_mode():
        acts = model.unit_activations(image, ["mixed4a/3x3:12", "mixed4a/pool:7", "mixed4a:0"])
        whole = model.unit_activations(image, [f"mixed4a:{info_1x1.channels + 12}"])
        # Independent: the branch module's own output, via a plain hook on the full network.
        captured = {}
        modules = dict(model.net.named_modules())
        handles = [
            modules[f"inception4a.{b}"].register_forward_hook(lambda m, i, o, b=b: captured.setdefault(b, o))
            for b in ("branch2", "branch4")
        ]
        model.net(image)
        for handle in handles:
            handle.remove()
    assert captured["branch2"].abs().sum() > 0 and captured["branch4"].abs().sum() > 0
    torch.testing.assert_close(acts[0, 0], captured["branch2"][0, 12].mean())
    torch.testing.assert_close(acts[0, 1], captured["branch4"][0, 7].mean())
    # The 3x3 branch sits after the 1x1 branch inside the concatenated mixed layer.
    torch.testing.assert_close(acts[0, 0], whole[0, 0])


def test_the_protocol_scans_the_papers_pre_relu_branches(googlenet_weights, subset_dir, tmp_path, capsys):
    """`vizprobe scan --model googlenet` with no --layers scans the protocol's 18 layers: two branches of each
    mixed layer, pre-ReLU (the branch's last batch norm: negative values survive, unlike after the ReLU)."""
    from vizprobe.cli import main
    from vizprobe.protocol import get_protocol
    from vizprobe.scan import ScanResult

    layers = get_protocol().layers_for("googlenet")
    assert len(layers) == 18 and len({layer.split("/")[0] for layer in layers}) == 9
    model = load_model("googlenet", weights=googlenet_weights, device="cpu")
    modules = dict(model.net.named_modules())
    assert all(isinstance(modules[model.layer(layer).path], torch.nn.BatchNorm2d) for layer in layers)
    images = subset_dir(3)
    code = main(
        [
            "-q",
            "scan",
            "--model",
            "googlenet",
            "--weights",
            str(googlenet_weights),
            "--images",
            str(images),
            "--device",
            "cpu",
            "--compile",
            "off",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    scan = ScanResult.load(tmp_path / "run")
    assert [layer.path for layer in scan.layers] == [model.layer(layer).path for layer in layers]
    assert min(float(scan.activations(layer.path).min()) for layer in scan.layers) < 0  # pre-ReLU
    assert main(["scan", "--images", str(images), "--out", str(tmp_path / "lite")]) == 2
    assert "names no layers of model 'efficientnet-lite0'" in capsys.readouterr().err


def test_weights_of_another_model_are_refused(googlenet_weights):
    with pytest.raises(VizprobeError, match="do not fit this architecture"):
        load_model("resnet18", weights=googlenet_weights, device="cpu")


def test_any_torchvision_classifier_by_name(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    model = load_model("resnet18", weights=path, device="cpu")
    assert model.preprocessing.crop == 224 and model.preprocessing.resize == 256
    assert model.layer("layer3").shape == (256, 14, 14)
    with pytest.raises(VizprobeError, match="--weights PATH"):
        load_model("resnet18", device="cpu")


def test_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(VizprobeError, match="cannot read weights"):
        load_model("googlenet", weights=path, device="cpu")


def test_inference_copy_keeps_outputs_and_input_gradients(lite0, photo_files):
    """Folded batch norms and merged paddings change no layer output and, up to rounding at ReLU6
    kinks, not the gradient with respect to the image, which feature visualization follows."""
    from vizprobe.models.optimize import inference_copy

    images = torch.stack(
        [lite0.preprocessing.pil_transform()(load_rgb(f)) for f in photo_files[:: len(photo_files) // 4][:4]]
    )
    keep = ["_blocks.3", "_blocks.12"]
    fast = inference_copy(lite0.net, set(keep), images[:1])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    results = []
    for net in (lite0.net, fast):
        x = images.clone().requires_grad_(True)
        outputs = LayerTap(net, keep)(x)
        (outputs["_blocks.3"][:, 5].mean() + outputs["_blocks.12"][:, 7].mean()).backward()
        results.append((outputs, x.grad))
    (expected, expected_grad), (got, got_grad) = results
    for path in keep:
        torch.testing.assert_close(got[path], expected[path], rtol=1e-4, atol=1e-4 * expected[path].abs().max().item())
    # Folding moves rounding, so a few activations cross a ReLU6 kink (float32 against float64 of
    # the original network does the same to ~0.01 % of the pixels); the gradient stays the same.
    assert (got_grad - expected_grad).norm() / expected_grad.norm() < 0.02
    assert ((got_grad - expected_grad).abs() > 1e-3 * expected_grad.abs().max()).float().mean() < 0.005


def test_a_cpu_run_never_moves_the_callers_model(monkeypatch, tmp_path, subset_dir):
    """Scan, render and occlusion use the model's device and never call `.to` on the caller's network
    (a spy on every `nn.Module.to`); `LoadedModel.to` gives a new object."""
    from vizprobe.occlusion import Occluder
    from vizprobe.scan import scan
    from vizprobe.synthesis import preset, render_units

    model = load_model("efficientnet-lite0", device="cpu")
    mine = {id(m) for m in model.net.modules()}
    moved = []
    original = torch.nn.Module.to

    def spy(self, *args, **kwargs):
        if id(self) in mine:
            moved.append((type(self).__name__, args, kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    render_units(model, ["_blocks.4:1"], preset("quick", steps=2, per_unit=2, size=64), progress=False)
    scan(model, subset_dir(5), ["_blocks.4"], tmp_path / "run", device="cpu", compile="off", progress=False)
    scan(model, subset_dir(4, "other"), ["_blocks.4"], tmp_path / "run2", optimize=False, progress=False)
    Occluder(model, "_blocks.4").sweep(torch.rand(3, 224, 224), [1], stride=56)
    copy = model.to("cpu")
    assert copy is not model and copy.device == model.device
    assert moved == []
    assert all(p.is_contiguous() for p in model.net.parameters())


def test_googlenet_pre_relu_aliases_tap_the_branch_before_its_relu(googlenet_weights, photo_files):
    """`mixed4a/3x3_pre_relu` is the branch's last batch norm output: ReLU of it is the branch output, and
    its unit activation is the spatial mean of that map (independent hooks on the network)."""
    model = load_model("googlenet", weights=googlenet_weights, device="cpu")
    assert model.layer("mixed4a/3x3_pre_relu").path == "inception4a.branch2.1.bn"
    assert model.resolve_unit("mixed4a/pool_pre_relu:7").layer == "inception4a.branch4.1.bn"
    image = model.preprocessing(load_rgb(pick(photo_files, 3)))[None]
    modules = dict(model.net.named_modules())
    captured = {}
    handles = [
        modules[p].register_forward_hook(lambda m, i, o, p=p: captured.setdefault(p, o))
        for p in ("inception4a.branch2.1.bn", "inception4a.branch2")
    ]
    with torch.inference_mode():
        model.net(image)
        acts = model.unit_activations(image, ["mixed4a/3x3_pre_relu:12", "mixed4a/3x3:12"])
    for handle in handles:
        handle.remove()
    pre, post = captured["inception4a.branch2.1.bn"], captured["inception4a.branch2"]
    torch.testing.assert_close(torch.relu(pre), post)
    assert (pre < 0).any()  # the pre-ReLU map really holds negative values
    torch.testing.assert_close(acts[0], torch.stack([pre[0, 12].mean(), post[0, 12].mean()]))
