"""lucid's InceptionV1 (`inceptionv1`) against lucent's port: the same state dict, the same activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import module_output

from vizprobe.errors import VizprobeError
from vizprobe.images import load_rgb
from vizprobe.models import load_model

TAPS = ["conv2d0_pre_relu_conv", "conv2d2", "mixed3a", "mixed3b_5x5_pre_relu_conv", "mixed4a_3x3_pre_relu_conv",
        "mixed4b_pool_reduce_pre_relu_conv", "mixed4e", "mixed5b_3x3_pre_relu_conv"]  # fmt: skip


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
