"""The scan's settings and their defaults (no torch here: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass

COMPILE_CHOICES = ("auto", "on", "off")
# auto: ONNX Runtime on the CPU (an exported graph, cached between runs), PyTorch on a GPU
BACKEND_CHOICES = ("auto", "onnx", "torch")
ENGINE_CHOICES = ("local", "ray")  # ray: Ray Data, on a cluster or this machine (pip install 'vizprobe[ray]')
ONNX_BATCH_SIZE = 32  # images per ONNX Runtime call on the CPU (benchmarks/README.md)
COMPILE_MIN_IMAGES = 500  # `compile="auto"` compiles from this many images on (below, it costs more than it saves)


@dataclass(frozen=True)
class ScanSettings:
    """How a scan runs; none of these change its results."""

    top_k: int = 200  # top and bottom images indexed per unit
    workers: int = 2  # decoding threads
    chunk_size: int = 256  # images per commit (a killed scan resumes from the last one)
    compile: str = "auto"  # torch.compile, for the PyTorch backend
    backend: str = "auto"
    keep_activations: bool = True  # write every image's activations (off: only each unit's top/bottom-k)
