"""lucid's InceptionV1 (`inceptionv1`) against lucent's port: the same state dict, the same activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import module_output

from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb
from vizprobe.models import load_model

TAPS = [
    "conv2d0_pre_relu_conv",
    "conv2d2",
    "mixed3a",
    "mixed3b_5x5_pre_relu_conv",
    "mixed4a_3x3_pre_relu_conv",
    "mixed4b_pool_reduce_pre_relu_conv",
    "mixed4e",
    "mixed5b_3x3_pre_relu_conv",
]


@pytest.fixture(scope="module")
def lucent_weights(tmp_path_factory):
    """lucent's InceptionV1 with random weights (lucent 0.1.8, installed without its pinned dependencies), saved
    as its state dict: the file a user passes with --weights has the same keys."""
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1

    torch.manual_seed(0)
    net = InceptionV1(pretrained=False).eval()
    path = tmp_path_factory.mktemp("inception") / "inception5h.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_inceptionv1_equals_lucents_at_every_kind_of_layer(lucent_weights, photo_files):
    lucent, path = lucent_weights
    model = load_model("inceptionv1", weights=path, device="cpu")
    images = torch.stack([model.preprocessing(load_rgb(f)) for f in photo_files[:4]])
    assert float(images.max()) > 100 and float(images.min()) < -100  # 0..255 minus 117, not [0, 1]
    taps = model.tap(TAPS)(images)
    for path_ in TAPS:
        expected = module_output(lucent, path_, images)
        np.testing.assert_allclose(
            taps[path_].numpy(), expected.numpy(), rtol=1e-4, atol=1e-4 * float(expected.abs().max())
        )
    with torch.no_grad():
        np.testing.assert_allclose(model.net(images).numpy(), lucent(images).numpy(), rtol=1e-4, atol=1e-6)


def test_inceptionv1_names_its_layers_as_lucid_and_the_paper(lucent_weights):
    model = load_model("inceptionv1", weights=lucent_weights[1], device="cpu")
    assert model.layer("mixed4a").channels == 508  # torchvision's googlenet has 512 there
    assert model.layer("mixed4a_3x3_pre_relu").path == "mixed4a_3x3_pre_relu_conv"
    assert model.layer("mixed4a/3x3_pre_relu").path == "mixed4a_3x3_pre_relu_conv"
    assert model.layer("mixed4b/pool_pre_relu").path == "mixed4b_pool_reduce_pre_relu_conv"
    assert model.layer("mixed3a_5x5_pre_relu").shape == (32, 28, 28)
    assert dict(model.net.named_modules())["mixed3a_5x5_pre_relu_conv"].kernel_size == (5, 5)
    from vizprobe.protocol import get_protocol

    for layer in get_protocol().layers_for("inceptionv1"):
        model.layer(layer)  # the paper's layers resolve


def test_inceptionv1_needs_its_weights_and_refuses_others(tmp_path):
    with pytest.raises(VizprobeError, match="inception5h.pth"):
        load_model("inceptionv1", device="cpu")
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), other)
    with pytest.raises(VizprobeError, match="do not fit this architecture .*missing"):
        load_model("inceptionv1", weights=other, device="cpu")


# The authors' units (tools/data-generation/causal-occlusion/layer_folder_mapping_*.csv: layer, branch,
# feature_map_number) and the end of each branch in a mixed layer's channels (their activation_utils.py,
# lucid 0.3.8's InceptionV1; mixed4a's pool branch ends at 508).
PAPER_UNITS = [
    ("mixed3a", "3x3", 189),
    ("mixed3b", "3x3", 178),
    ("mixed4a", "3x3", 257),
    ("mixed4b", "3x3", 339),
    ("mixed4c", "3x3", 247),
    ("mixed4d", "3x3", 342),
    ("mixed4e", "3x3", 524),
    ("mixed5a", "3x3", 278),
    ("mixed5b", "3x3", 684),
    ("mixed5a", "pool", 720),
    ("mixed4e", "pool", 783),
    ("mixed4c", "pool", 484),
    ("mixed5a", "3x3", 557),
    ("mixed4e", "1x1", 6),
    ("mixed4a", "pool", 505),
    ("mixed4e", "pool", 809),
    ("mixed4c", "pool", 449),
    ("mixed4b", "pool", 465),
    ("mixed4c", "1x1", 59),
    ("mixed4e", "1x1", 83),
    ("mixed3a", "1x1", 43),
    ("mixed3b", "pool", 472),
    ("mixed4b", "1x1", 5),
]
BRANCH_ENDS = {
    "mixed3a": (64, 192, 224, 256),
    "mixed3b": (128, 320, 416, 480),
    "mixed4a": (192, 396, 444, 508),
    "mixed4b": (160, 384, 448, 512),
    "mixed4c": (128, 384, 448, 512),
    "mixed4d": (112, 400, 464, 528),
    "mixed4e": (256, 576, 704, 832),
    "mixed5a": (256, 576, 704, 832),
    "mixed5b": (384, 768, 896, 1024),
}


def test_the_papers_units_resolve_as_numbered_across_the_branches(lucent_weights, photo_files):
    """`mixed4a_pre_relu:257` is the authors' feature map 257 of mixed4a: the branch their offsets put it in and the
    channel within it; its activation equals that channel of lucent's pre-ReLU branches concatenated."""
    lucent, path = lucent_weights
    model = load_model("inceptionv1", weights=path, device="cpu")
    branches = ("1x1", "3x3", "5x5", "pool")
    for layer, branch, number in PAPER_UNITS:
        ends = BRANCH_ENDS[layer]
        k = next(i for i, end in enumerate(ends) if number < end)
        assert branches[k] == branch, (layer, number)
        unit = model.resolve_unit(f"{layer}_pre_relu:{number}")
        lucid = "pool_reduce" if branch == "pool" else branch
        assert (unit.layer, unit.channel) == (f"{layer}_{lucid}_pre_relu_conv", number - (ends[k - 1] if k else 0))
        assert unit.display == f"{layer}_pre_relu:{number}"
    images = torch.stack([model.preprocessing(load_rgb(f)) for f in photo_files[:2]])
    parts = [f"mixed4e_{b}_pre_relu_conv" for b in ("1x1", "3x3", "5x5", "pool_reduce")]
    together = torch.cat([module_output(lucent, p, images) for p in parts], dim=1)
    ours = model.unit_activations(images, ["mixed4e_pre_relu:783", "mixed4e_pre_relu:6"])
    np.testing.assert_allclose(ours.numpy(), together[:, [783, 6]].mean(dim=(2, 3)).numpy(), rtol=1e-4)
    with pytest.raises(VizprobeError, match="has channels 0..507"):
        model.resolve_unit("mixed4a_pre_relu:508")
