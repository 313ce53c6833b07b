"""Device choice (`auto|cpu|cuda`) and batch sizes that suit it. torch is imported on use (the CLI stays light)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from vizprobe.errors import VizprobeError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn `auto|cpu|cuda[:N]` into a torch device; `auto` takes the GPU when one is present. Nothing
    else changes: the precision of GPU convolutions is set where activations are computed
    (`exact_convolutions`)."""
    import torch

    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if gpu_present() else "cpu")
    if spec.startswith("cuda"):
        if not gpu_present():
            raise VizprobeError(f"--device {spec} asked for a GPU but torch sees none; use --device cpu or auto")
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise VizprobeError(f"unknown device {spec!r}; use one of auto, cpu, cuda")


def gpu_present() -> bool:
    """Whether torch sees a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def set_convolution_precision(precision: str) -> str:
    """cuDNN's float32 convolutions, process-wide: "ieee" (float32) or "tf32" (PyTorch's default, inputs
    rounded to 10-bit mantissas: a unit's activation would differ from the CPU's in the third digit).
    Returns the setting it replaced."""
    import torch

    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        before, conv.fp32_precision = conv.fp32_precision, precision
        return before
    before = "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return before


# Inference batch sizes by device type: small on the CPU (fits the caches: 4 was fastest, benchmarks/README.md).
BATCH_SIZES = {"cpu": 4, "cuda": 128}


def default_batch_size(device: torch.device | str) -> int:
    """Batch size for inference on `device` (a torch device or its type)."""
    kind = device if isinstance(device, str) else device.type
    return BATCH_SIZES.get(kind, BATCH_SIZES["cpu"])


@contextmanager
def exact_convolutions() -> Iterator[None]:
    """Inside (a `with` block or, called, a decorator): cuDNN's float32 convolutions in float32 on a GPU,
    the setting before restored after. Every computation of a unit's activation (scan, occlusion, synthesis,
    embeddings) runs under it, so a GPU measures what the CPU does; PyTorch's default TF32 would not."""
    import torch

    with convolution_precision(torch.device("cuda" if gpu_present() else "cpu"), "ieee"):
        yield


@contextmanager
def convolution_precision(device: torch.device, precision: str) -> Iterator[None]:
    """Inside, on a GPU: float32 convolutions in `precision` ("ieee" or "tf32"); the setting before after."""
    if device.type != "cuda":
        yield
        return
    before = set_convolution_precision(precision)
    try:
        yield
    finally:
        set_convolution_precision(before)
