"""The scan's settings and their defaults (no torch here: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass

COMPILE_CHOICES = ("auto", "on", "off")
# auto: ONNX Runtime on the CPU (an exported graph, cached between runs), PyTorch on a GPU
BACKEND_CHOICES = ("auto", "onnx", "torch")
ENGINE_CHOICES = ("local", "ray")  # ray: Ray Data, on a cluster or this machine (pip install 'vizprobe[ray]')
# fp32: float32 throughout (on a GPU with cuDNN's TF32 convolutions off, as vizprobe computes every activation: see
# `vizprobe.device.exact_convolutions`); tf32: PyTorch's default on a GPU (10-bit mantissas inside
# convolutions); bf16: bfloat16 autocast (PyTorch backend)
PRECISION_CHOICES = ("fp32", "tf32", "bf16")
ONNX_BATCH_SIZE = 32  # images per ONNX Runtime call on the CPU (benchmarks/README.md)
COMPILE_MIN_IMAGES = 500  # `compile="auto"` compiles from this many images on (below, it costs more than it saves)


@dataclass(frozen=True)
class ScanSettings:
    """How a scan runs; none of these change its results except `precision` (off its fp32 default)."""

    top_k: int = 200  # top and bottom images indexed per unit
    workers: int = 2  # decoding threads on the CPU (on a GPU: DataLoader processes, one per CPU core)
    chunk_size: int = 256  # images per commit (a killed scan resumes from the last one)
    compile: str = "auto"  # torch.compile, for the PyTorch backend
    backend: str = "auto"
    precision: str = "fp32"  # of the network's arithmetic; the activations are stored as float32 either way
    keep_activations: bool = True  # write every image's activations (off: only each unit's top/bottom-k)
