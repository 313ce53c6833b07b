"""lucid's InceptionV1, the paper's network, in PyTorch: the "inception5h" graph as lucent ports it.

Unlike torchvision's GoogLeNet (`googlenet`), it has no batch normalization, local response normalization after
the first two convolutions, 5x5 kernels in the "5x5" branches, 508 channels in mixed4a and 1008 classes, and
takes pixel values 0..255 minus 117. Module names are lucent's, so lucent's `inception5h.pth` state dict loads
as it is (`--weights PATH`; nothing is downloaded): `mixed4a_3x3_pre_relu_conv` is the 3x3 branch before its ReLU
(alias `mixed4a_3x3_pre_relu`, lucid's name, and `mixed4a/3x3_pre_relu` as for `googlenet`), `mixed4a_3x3` after
it, `mixed4a` the concatenated layer. The forward pass equals lucent's (tests/test_inceptionv1.py); its ReLUs pass
plain gradients, where lucent's default redirects some of them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vizprobe.models.preprocessing import Preprocessing
from vizprobe.models.registry import ModelSpec, register_model
from vizprobe.models.weights import load_weights, read_state_dict

LRN = {"size": 9, "alpha": 9.99999974738e-05, "beta": 0.5, "k": 1.0}
# name: (input channels, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool reduce)
MIXED = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 204, 16, 48, 64),
    "4b": (508, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 48, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}
POOL_BEFORE = {"4a": "maxpool4", "5a": "maxpool10"}  # stride-2 pools between the stages
BRANCHES = {"1x1": "1x1", "3x3": "3x3", "5x5": "5x5", "pool": "pool_reduce"}  # googlenet-style name -> lucid's


class Concat(nn.Module):
    """The channels of a mixed layer's branches, side by side (a module, so the layer can be tapped)."""

    def forward(self, *branches: torch.Tensor) -> torch.Tensor:
        return torch.cat(branches, dim=1)


class MaxPool(nn.Module):
    """TF's SAME max pooling as the graph pads it: -inf on the right and bottom (stride 2) or all sides (1)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride, self.pad = stride, (0, 1, 0, 1) if stride == 2 else (1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, self.pad, value=float("-inf")), 3, stride=self.stride)


class InceptionV1(nn.Module):
    """lucid's InceptionV1 (see the module doc); `forward` returns the 1008 class probabilities, as lucent's."""

    def __init__(self):
        super().__init__()
        self._conv("conv2d0", 3, 64, 7, stride=2)
        self._conv("conv2d1", 64, 64, 1)
        self._conv("conv2d2", 64, 192, 3)
        self.maxpool0, self.maxpool1 = MaxPool(2), MaxPool(2)
        self.maxpool4, self.maxpool10 = MaxPool(2), MaxPool(2)
        for name, (c_in, c1, c3r, c3, c5r, c5, cp) in MIXED.items():
            block = f"mixed{name}"
            self._conv(f"{block}_1x1", c_in, c1, 1)
            self._conv(f"{block}_3x3_bottleneck", c_in, c3r, 1)
            self._conv(f"{block}_5x5_bottleneck", c_in, c5r, 1)
            self._conv(f"{block}_pool_reduce", c_in, cp, 1)
            self._conv(f"{block}_3x3", c3r, c3, 3)
            self._conv(f"{block}_5x5", c5r, c5, 5)
            setattr(self, f"{block}_pool", MaxPool(1))
            setattr(self, block, Concat())
        self.softmax2_pre_activation_matmul = nn.Linear(1024, 1008)

    def _conv(self, name: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        """Convolution `NAME_pre_relu_conv` and its ReLU `NAME` (a module each, so both can be tapped)."""
        setattr(self, f"{name}_pre_relu_conv", nn.Conv2d(c_in, c_out, kernel, stride=stride))
        setattr(self, name, nn.ReLU())

    def _unit(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Conv and ReLU `name`, padded as TF's SAME (7x7 stride 2: 2 before, 3 after)."""
        conv = getattr(self, f"{name}_pre_relu_conv")
        k = conv.kernel_size[0]
        pad = (2, 3, 2, 3) if conv.stride[0] == 2 else (k // 2,) * 4
        return getattr(self, name)(conv(F.pad(x, pad) if k > 1 else x))

    def _mixed(self, name: str, x: torch.Tensor) -> torch.Tensor:
        block = f"mixed{name}"
        one = self._unit(f"{block}_1x1", x)
        three = self._unit(f"{block}_3x3", self._unit(f"{block}_3x3_bottleneck", x))
        five = self._unit(f"{block}_5x5", self._unit(f"{block}_5x5_bottleneck", x))
        pool = self._unit(f"{block}_pool_reduce", getattr(self, f"{block}_pool")(x))
        return getattr(self, block)(one, three, five, pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.local_response_norm(self.maxpool0(self._unit("conv2d0", x)), **LRN)
        x = self._unit("conv2d2", self._unit("conv2d1", x))
        x = self.maxpool1(F.local_response_norm(x, **LRN))
        for name in MIXED:
            if name in POOL_BEFORE:
                x = getattr(self, POOL_BEFORE[name])(x)
            x = self._mixed(name, x)
        pooled = F.avg_pool2d(x, kernel_size=7, stride=1).reshape(-1, 1024)
        return F.softmax(self.softmax2_pre_activation_matmul(pooled), dim=1)


def build_inceptionv1(weights: Path | None) -> nn.Module:
    net = InceptionV1()
    if weights is not None:
        hint = "pass --weights PATH to lucent's inception5h.pth (the file lucent's inceptionv1(pretrained=True) loads)"
        load_weights(net, read_state_dict(weights, hint=hint), str(weights))
    return net


def _aliases() -> dict[str, str]:
    """lucid's names (`mixed4a_3x3_pre_relu`) and googlenet's (`mixed4a/3x3_pre_relu`, `mixed4a/3x3`)."""
    parts = ("1x1", "3x3_bottleneck", "5x5_bottleneck", "pool_reduce", "3x3", "5x5")
    convs = ["conv2d0", "conv2d1", "conv2d2"] + [f"mixed{m}_{part}" for m in MIXED for part in parts]
    aliases = {f"{name}_pre_relu": f"{name}_pre_relu_conv" for name in convs}
    for m in MIXED:
        for branch, lucid in BRANCHES.items():
            aliases[f"mixed{m}/{branch}"] = f"mixed{m}_{lucid}"
            aliases[f"mixed{m}/{branch}_pre_relu"] = f"mixed{m}_{lucid}_pre_relu_conv"
    return aliases


register_model(
    ModelSpec(
        name="inceptionv1",
        builder=build_inceptionv1,
        # lucid's input: pixel values 0..255 minus 117, i.e. (x - 117/255) / (1/255) on [0, 1] pixels
        preprocessing=Preprocessing(256, 224, "bilinear", (117 / 255,) * 3, (1 / 255,) * 3),
        weights_source="lucent's inception5h.pth state dict (--weights PATH; lucent's inceptionv1(pretrained=True) "
        "downloads it)",
        aliases=_aliases(),
        needs_weights=True,
        description="InceptionV1 as lucid (the paper's network: inception5h, LRN, 5x5 branches, 1008 classes)",
        accent_layer="mixed3a",  # faccent's examples
        # The paper numbers units across a mixed layer's pre-ReLU branches (feature_map_number in the authors'
        # layer_folder_mapping_*.csv, branch offsets in their activation_utils.py): mixed3a_pre_relu:189.
        concatenations={
            f"mixed{m}_pre_relu": tuple(f"mixed{m}_{b}_pre_relu" for b in BRANCHES.values()) for m in MIXED
        },
    )
)
