"""An inference copy of a network with the same layer outputs and less work.

Batch norms are folded into the convolution before them, and zero-padding modules are merged into
the convolution after them when the padding is symmetric. Pairs are found by watching a forward
pass (a module whose input is another module's output), so this works for any model; layers that
are tapped keep their exact outputs, and the copy is checked against the original before use.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from vizprobe.device import exact_convolutions

if TYPE_CHECKING:
    from vizprobe.units import Directions

log = logging.getLogger(__name__)


def _producer_consumer_pairs(net: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(producer, consumer) module paths where the consumer's first input is the producer's output."""
    produced: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    calls: dict[str, int] = {}
    handles = []
    for path, module in net.named_modules():
        if not path or list(module.children()) and not isinstance(module, nn.Conv2d):
            continue

        def pre(_m, inputs, path=path):
            if inputs and torch.is_tensor(inputs[0]) and id(inputs[0]) in produced:
                pairs.append((produced[id(inputs[0])], path))

        def post(_m, _inputs, output, path=path):
            calls[path] = calls.get(path, 0) + 1
            if torch.is_tensor(output):
                produced[id(output)] = path

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with torch.inference_mode():
            net(example)
    finally:
        for handle in handles:
            handle.remove()
    # Modules called more than once per pass are shared: leave them alone.
    return [(a, b) for a, b in pairs if calls.get(a) == 1 and calls.get(b) == 1]


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.data = conv.weight.data * scale.reshape(-1, 1, 1, 1)
    bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


def _set(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, name, module)


def inference_copy(net: nn.Module, keep: set[str], example: torch.Tensor) -> nn.Module:
    """A copy of `net` for inference in which the outputs of the `keep` layers are unchanged."""
    fast = copy.deepcopy(net).eval()
    modules = dict(fast.named_modules())
    folded = merged = 0
    for producer, consumer in _producer_consumer_pairs(fast, example):
        a, b = modules[producer], modules[consumer]
        if (
            type(a) is not nn.BatchNorm2d  # noqa: E721 (exact type: no subclasses with other maths)
            and isinstance(a, nn.Conv2d)
            and type(b) is nn.BatchNorm2d
            and producer not in keep
            and b.track_running_stats
            and b.affine
        ):
            _fold_bn(a, b)
            _set(fast, consumer, nn.Identity())
            folded += 1
        elif (
            isinstance(a, nn.ZeroPad2d)
            and isinstance(b, nn.Conv2d)
            and producer not in keep
            and b.padding_mode == "zeros"
            and tuple(b.padding) == (0, 0)
        ):
            left, right, top, bottom = a.padding
            if left == right and top == bottom:
                b.padding = (top, left)
                _set(fast, producer, nn.Identity())
                merged += 1
    for path, module in list(fast.named_modules()):
        # Convolutions that pad inside their own forward (TF "same" padding, as in EfficientNet-Lite).
        pad = getattr(module, "static_padding", None)
        if isinstance(module, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d) and path not in keep:
            left, right, top, bottom = pad.padding
            if left == right and top == bottom and tuple(module.padding) == (0, 0):
                module.padding = (top, left)
                module.static_padding = nn.Identity()
                merged += 1
    log.debug("inference copy: folded %d batch norms, merged %d paddings", folded, merged)
    return fast


@exact_convolutions()  # the check compares activations: in float32 on a GPU too
def checked_inference_copy(net: nn.Module, keep: list[str], size: int, device: torch.device) -> nn.Module:
    """`inference_copy`, used only if the kept layers agree with the original on a test batch (a direction
    layer `LAYER:NAME` keeps LAYER)."""
    from vizprobe.units import LayerTap, split_layer

    keep = list(dict.fromkeys(split_layer(path)[0] for path in keep))
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(2, 3, size, size, generator=generator).to(device)
    try:
        fast = inference_copy(net, set(keep), probe[:1])
    except RuntimeError as exc:  # e.g. a user's hook holds non-leaf tensors, which deepcopy refuses
        log.info("no inference copy (%s); using the original network", str(exc).splitlines()[0][:100])
        return net
    with torch.inference_mode():
        expected, got = LayerTap(net, keep)(probe), LayerTap(fast, keep)(probe)
    for path in keep:
        scale = expected[path].abs().max().clamp_min(1e-6)
        if not ((expected[path] - got[path]).abs().max() / scale) < 1e-4:
            log.info("inference copy changes layer %s; using the original network", path)
            return net
    return fast


class ChannelMeans(nn.Module):
    """Images -> the spatial-mean activation (N, C) of each tapped layer, in `paths` order."""

    def __init__(self, net: nn.Module, paths: list[str], directions: Mapping[str, Directions] | None = None):
        super().__init__()
        from vizprobe.units import LayerTap

        self.net = net
        self.paths = list(paths)
        self.tap = LayerTap(net, self.paths, directions)
        self.train(False)  # an exporter that restores the mode it found must not put the network in training

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from vizprobe.units import channel_mean

        outputs = self.tap(images)
        return tuple(channel_mean(outputs[p]) for p in self.paths)


def compile_or_eager(module: Callable, *example) -> tuple[Callable, bool]:
    """`torch.compile(module)` if it compiles and agrees with eager on the `example` arguments; else `module`.

    Compilation needs a C++ compiler and costs seconds (cached on disk by inductor across runs),
    and pays off from a few hundred images on; any failure falls back to eager mode.
    """
    import torch._dynamo

    # Every compiled tap (a layer, a batch size) is one more specialization of the same code.
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 64))
    try:
        compiled = torch.compile(module, dynamic=False)
        with torch.inference_mode():
            got = compiled(*example)
            expected = module(*example)
    except Exception as exc:  # compilation can fail in many ways; eager mode always works
        log.info("torch.compile unavailable (%s); running eagerly", str(exc).splitlines()[0][:100] if str(exc) else exc)
        return module, False
    if torch.is_tensor(expected):
        expected, got = (expected,), (got,)
    for a, b in zip(expected, got, strict=True):
        if not ((a - b).abs().max() / a.abs().max().clamp_min(1e-6)) < 1e-4:
            log.info("torch.compile changed the activations; running eagerly")
            return module, False
    return compiled, True
