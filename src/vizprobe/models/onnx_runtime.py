"""The scan's CPU path: the network cut after the scanned layers, exported to ONNX and run by ONNX Runtime.

ONNX Runtime is built for CPU inference (fused, vectorized depthwise convolutions, no Python per layer) and
needs no compiler at run time; the export costs seconds once and is kept in a persistent cache
(`onnx/` under `vizprobe.files.cache_root`), keyed by everything that changes the graph, so later scans
of the same model and layers start warm. Every exported graph is checked against the PyTorch network on a
probe batch before use; anything that fails (no onnxruntime, an operator the exporter lacks, a mismatch)
falls back to PyTorch with a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vizprobe.files import atomic_write_bytes, cache_root

log = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = 1e-4  # largest relative difference to PyTorch accepted on the probe batch


def available() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    """Where exported graphs are kept between runs."""
    return cache_root() / "onnx"


def _weights_id(weights: str) -> str:
    """A weights file by path, size and modification time (hashing gigabytes would cost more than the export)."""
    path = Path(weights)
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return weights


def graph_key(model, paths: list[str], crop: int) -> str:
    """Everything that changes the exported graph: the model and its weights, the layers, the directions,
    the input size, and the versions of the exporter and of vizprobe."""
    import vizprobe

    parts = {
        "model": model.name,
        "weights": _weights_id(model.weights),
        "paths": paths,
        "directions": {name: d.sha256 for name, d in sorted(model.directions.items())},
        "crop": crop,
        "torch": torch.__version__,
        "vizprobe": vizprobe.__version__,
        "opset": OPSET,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _export(module: torch.nn.Module, paths: list[str], crop: int, target: Path) -> None:
    """Trace `module` (images -> per-layer channel means) into an ONNX file with a dynamic batch size."""
    import io

    example = torch.zeros(2, 3, crop, crop)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=["images"],
            output_names=[f"means{k}" for k in range(len(paths))],
            dynamic_axes={"images": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    module.eval()  # the exporter restores the training flag it found; make sure nothing is left in training
    atomic_write_bytes(target, buffer.getvalue())


class OnnxChannelMeans:
    """Normalized images (N, 3, H, W) -> the channel means of each layer, as `ChannelMeans` returns them."""

    def __init__(self, session):
        self.session = session

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return tuple(torch.from_numpy(out) for out in self.session.run(None, {"images": batch}))


def onnx_channel_means(
    model, module: torch.nn.Module, paths: list[str], crop: int, *, cache: Path | None = None
) -> tuple[Callable[[torch.Tensor], tuple[torch.Tensor, ...]] | None, str]:
    """(the ONNX Runtime forward pass, "warm"/"exported") for `module` (a `ChannelMeans` of `model`'s network
    on the CPU), or (None, why not)."""
    if not available():
        return None, "onnxruntime not installed"
    target = (cache or cache_dir()) / f"{graph_key(model, paths, crop)}.onnx"
    state = "warm"
    try:
        if target.is_file():
            try:
                session = _session(target)
            except Exception:  # a damaged cache entry (a full disk, say): export it again
                target.unlink(missing_ok=True)
        if not target.is_file():
            _export(module, paths, crop, target)
            state = "exported"
            session = _session(target)
    except Exception as exc:  # the exporter and the runtime fail in many ways; PyTorch always works
        target.unlink(missing_ok=True)
        return None, f"no ONNX graph ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
    forward = OnnxChannelMeans(session)
    if not _agrees(module, forward, crop):
        target.unlink(missing_ok=True)
        return None, "the ONNX graph's activations differ from PyTorch's"
    return forward, state


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning, leaving the cores to the decoding threads (benchmarks/README.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _agrees(module: torch.nn.Module, forward: OnnxChannelMeans, crop: int) -> bool:
    probe = torch.randn(3, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = module(probe)
    got = forward(probe)
    for a, b in zip(expected, got, strict=True):
        if a.shape != b.shape or not ((a - b).abs().max() / a.abs().max().clamp_min(1e-6)) < TOLERANCE:
            return False
    return True
