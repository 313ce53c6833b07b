"""InceptionV1 (the paper's model) and any other torchvision classifier, with weights from a local file."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import torch
import torchvision
from torch import nn

from vizprobe.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vizprobe.models.registry import ModelSpec, register_fallback, register_model
from vizprobe.models.weights import load_weights, read_state_dict

_STATE_DICT_HINT = "pass --weights PATH to a torchvision state dict, saved with torch.save(model.state_dict(), PATH)"

# The paper's (lucid's) names for InceptionV1 layers, and the four branches inside each mixed layer.
_MIXED = ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
_BRANCHES = {"1x1": "branch1", "3x3": "branch2", "5x5": "branch3", "pool": "branch4"}
# The paper measured pre-ReLU activations: a branch's last batch norm, before torchvision's functional ReLU.
_PRE_RELU = {"1x1": "branch1.bn", "3x3": "branch2.1.bn", "5x5": "branch3.1.bn", "pool": "branch4.1.bn"}
GOOGLENET_ALIASES = {
    "conv2d0": "conv1",
    "conv2d1": "conv2",
    "conv2d2": "conv3",
    **{f"conv2d{k}_pre_relu": f"conv{k + 1}.bn" for k in range(3)},
    **{f"mixed{m}": f"inception{m}" for m in _MIXED},
    **{f"mixed{m}/{b}": f"inception{m}.{path}" for m in _MIXED for b, path in _BRANCHES.items()},
    **{f"mixed{m}/{b}_pre_relu": f"inception{m}.{path}" for m in _MIXED for b, path in _PRE_RELU.items()},
}


_TorchvisionBasicConv2d = import_module("torchvision.models.googlenet").BasicConv2d  # the name is also a function


class _BasicConv2d(_TorchvisionBasicConv2d):
    """torchvision's conv + batch norm + ReLU, with the ReLU not in place: torchvision's in-place ReLU would
    overwrite the batch norm's output, the pre-ReLU activation a tap has recorded."""

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def build_googlenet(weights: Path | None) -> nn.Module:
    # transform_input=True matches torchvision's ImageNet weights (trained on [-1, 1] inputs).
    net = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)
    for module in net.modules():
        if type(module) is _TorchvisionBasicConv2d:
            module.__class__ = _BasicConv2d
    if weights is not None:
        state = read_state_dict(weights, hint=_STATE_DICT_HINT)
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
        load_weights(net, state, str(weights))
    return net


register_model(
    ModelSpec(
        name="googlenet",
        builder=build_googlenet,
        preprocessing=Preprocessing(256, 224, "bilinear", IMAGENET_MEAN, IMAGENET_STD),
        weights_source="torchvision googlenet state dict (--weights PATH)",
        aliases=GOOGLENET_ALIASES,
        needs_weights=True,
        description="InceptionV1 (torchvision), the paper's model; layers also named mixed3a..mixed5b",
    )
)


def torchvision_spec(name: str) -> ModelSpec | None:
    """A spec for any torchvision classifier, with its weights' documented preprocessing."""
    if name not in torchvision.models.list_models(module=torchvision.models):
        return None
    try:
        preset = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        prep = Preprocessing(
            resize=int(preset.resize_size[0]),
            crop=int(preset.crop_size[0]),
            interpolation=preset.interpolation.value,
            mean=tuple(preset.mean),
            std=tuple(preset.std),
        )
    except (ValueError, AttributeError, TypeError):
        prep = Preprocessing()

    def build(weights: Path | None) -> nn.Module:
        net = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            load_weights(net, read_state_dict(weights, hint=_STATE_DICT_HINT), str(weights))
        return net

    return ModelSpec(
        name=name,
        builder=build,
        preprocessing=prep,
        weights_source=f"torchvision {name} state dict (--weights PATH)",
        needs_weights=True,
        description=f"torchvision {name}",
    )


register_fallback(torchvision_spec)
