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
    """Turn `auto|cpu|cuda[:N]` into a torch device; `auto` takes the GPU when one is present."""
    import torch

    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VizprobeError(f"--device {spec} asked for a GPU but torch sees none; use --device cpu or auto")
        return torch.device(spec)
    if spec == "cpu":
        return torch.device("cpu")
    raise VizprobeError(f"unknown device {spec!r}; use one of auto, cpu, cuda")


# Inference batch sizes by device type: small on the CPU (fits the caches: 4 was fastest, benchmarks/README.md).
BATCH_SIZES = {"cpu": 4, "cuda": 128}


def default_batch_size(device: torch.device | str) -> int:
    """Batch size for inference on `device` (a torch device or its type)."""
    kind = device if isinstance(device, str) else device.type
    return BATCH_SIZES.get(kind, BATCH_SIZES["cpu"])


@contextmanager
def float32_convolutions(device: torch.device) -> Iterator[None]:
    """Inside: a GPU's float32 convolutions are float32. cuDNN's default runs them in TF32 (inputs rounded to
    10-bit mantissas), so a GPU's activations would differ from the CPU's in the third digit."""
    import torch

    conv = getattr(torch.backends.cudnn, "conv", None)
    if device.type != "cuda":
        yield
    elif conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        before, conv.fp32_precision = conv.fp32_precision, "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = before
    else:
        before, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = before
