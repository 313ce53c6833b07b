"""The scan's forward pass: images -> each layer's channel means, as fast as the device allows.

Shared by the local engine, the Ray workers and the observers' embedder (which scan images the same way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from vizprobe.device import convolution_precision, exact_convolutions
from vizprobe.errors import VizprobeError
from vizprobe.models import LoadedModel, onnx_runtime
from vizprobe.models.optimize import ChannelMeans, checked_inference_copy, compile_or_eager
from vizprobe.scan.settings import COMPILE_MIN_IMAGES

log = logging.getLogger(__name__)


def _at_precision(forward: Callable, precision: str, device: torch.device) -> Callable:
    """`forward` run in the scan's precision (`PRECISION_CHOICES`): on a GPU, cuDNN's float32 convolutions
    are float32 for fp32 and bf16 (whose autocast leaves some operations in float32), TF32 for tf32, for
    the call only."""

    def run(images: torch.Tensor):
        with convolution_precision(device, "tf32") if precision == "tf32" else exact_convolutions():
            if precision == "bf16":
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    return forward(images)
            return forward(images)

    return run


def forward_pass(
    model: LoadedModel,
    paths: list[str],
    batch_size: int,
    backend: str,
    compile: str,
    remaining: int,
    optimize: bool,
    precision: str = "fp32",
) -> tuple[Callable, bool, str]:
    """(images -> channel means per layer, whether it is compiled, the backend's name), on the model's device.

    The network is an inference copy (batch norms folded) cut after the deepest layer; on the CPU, `backend`
    auto runs it in ONNX Runtime (`vizprobe.models.onnx_runtime`), else in PyTorch, channels-last, compiled
    where `compile` says so (auto: from COMPILE_MIN_IMAGES images on), in `precision` (ONNX Runtime: fp32 only)."""
    dev = model.device
    net = checked_inference_copy(model.net, paths, model.preprocessing.crop, dev) if optimize else model.net
    module = ChannelMeans(net, paths, model.directions)
    if backend == "onnx" or (backend == "auto" and dev.type == "cpu" and precision == "fp32"):
        forward, state = onnx_runtime.onnx_channel_means(model, module, paths, model.preprocessing.crop)
        if forward is not None:
            log.debug("ONNX Runtime graph (%s)", state)
            return forward, False, "onnxruntime"
        if backend == "onnx":
            raise VizprobeError(f"--backend onnx: {state}; pip install onnx onnxruntime, or use --backend torch")
        log.info("scanning with PyTorch: %s", state)
    if net is not model.net:  # only our own copy: never change the caller's network
        net = net.to(memory_format=torch.channels_last)
    if compile == "on" or (compile == "auto" and remaining >= COMPILE_MIN_IMAGES):
        crop = model.preprocessing.crop
        example = torch.zeros(batch_size, 3, crop, crop, device=dev).contiguous(memory_format=torch.channels_last)
        forward, compiled = compile_or_eager(module, example)
        return _at_precision(forward, precision, dev), compiled, "torch (compiled)" if compiled else "torch"
    return _at_precision(module, precision, dev), False, "torch"
