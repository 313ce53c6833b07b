"""The scan on Ray Data, for collections beyond one machine (`vizprobe scan --engine ray`).

The images are listed once on the driver and become a Ray dataset of (index, path) rows; Ray tasks decode
and preprocess them (`map_batches` with `_decode`), and a pool of actors, one per worker, each holding the
model (`_Activations`: ONNX Runtime on a CPU worker, PyTorch on a GPU one), computes the channel means. The
driver consumes the results in order and writes them into the same run dir as the local engine, committing
as it goes, so `ScanResult.load` cannot tell the engines apart and a killed scan resumes where it stopped.
An image a worker cannot read is listed in skipped.tsv; an actor that dies is restarted by Ray Data and its
batch retried (its defaults: max_restarts=-1, max_task_retries=-1), and since only the driver writes, in
order, no row is written twice.

Every worker needs the model (by name; a `--weights` file at the same path on every node) and the images
at the same path (shared storage); see docs/scaling.md.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vizprobe.errors import VizprobeError

log = logging.getLogger(__name__)


def _require_ray():
    try:
        import ray
    except ImportError:
        raise VizprobeError("--engine ray needs Ray: pip install 'vizprobe[ray]'") from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A one-line error within seconds when nothing listens at HOST:PORT (Ray's own connect waits minutes)."""
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise VizprobeError(f"--address {address!r}: write HOST:PORT (e.g. 10.0.0.5:6379), or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise VizprobeError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with `ray start --head` "
            "or check --address"
        ) from None


def connect(address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0.0) -> None:
    """Join the Ray cluster at `address` (`auto`: the one `ray start` made here), or start Ray on this machine
    when there is none and no address is given; a Ray session already started in this process is used."""
    ray = _require_ray()
    if workers is not None and workers < 1:
        raise VizprobeError(f"--workers {workers}: give at least 1")
    if address and address != "auto":
        _reachable(address)
    if ray.is_initialized():
        return
    try:
        ray.init(address=address or None, logging_level=logging.WARNING, log_to_driver=False)
    except ConnectionError as exc:
        raise VizprobeError(f"cannot join a Ray cluster at {address}: {str(exc).splitlines()[0][:150]}") from None


def _decode(batch: dict[str, np.ndarray], preprocessing) -> dict[str, np.ndarray]:
    """Ray task: each (index, path) row read and preprocessed to uint8 pixels, or the reason it could not be."""
    from vizprobe.images import load_rgb

    side = preprocessing.crop
    pixels = np.zeros((len(batch["path"]), side, side, 3), np.uint8)
    errors = []
    for k, path in enumerate(batch["path"]):
        try:
            pixels[k] = preprocessing.to_pixels(load_rgb(Path(path))).numpy()
            errors.append("")
        except Exception as exc:  # any failure on one image skips that image, not the run
            errors.append(str(exc) or type(exc).__name__)
    return {"index": batch["index"], "pixels": pixels, "error": np.asarray(errors, dtype=object)}


class _Activations:
    """Ray actor: the model, loaded once per worker; a batch of pixels -> channel means per layer."""

    def __init__(
        self, name: str, weights: str | None, directions: dict, paths: list[str], channels: list[int], backend: str
    ):
        import torch

        from vizprobe.models import load_model
        from vizprobe.scan.run import forward_pass

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_model(name, weights=weights, device=device, directions=directions)
        self.forward, _, self.backend = forward_pass(self.model, paths, 32, backend, "off", 0, True)
        self.channels = channels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ok = np.asarray([not e for e in batch["error"]])
        out = {"index": batch["index"], "error": batch["error"]}
        means = None
        if ok.any():
            with torch.inference_mode():
                pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok])).to(self.model.device)
                means = [
                    m.float().cpu().numpy() for m in self.forward(self.model.preprocessing.normalize_uint8(pixels))
                ]
        for k, width in enumerate(self.channels):
            column = np.full((len(ok), width), np.nan, np.float32)
            if means is not None:
                column[ok] = means[k]
            out[f"means{k}"] = column
        return out


def results(
    model,
    paths: list[str],
    files: list[Path],
    start: int,
    batch_size: int,
    *,
    backend: str = "auto",
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
) -> Iterator[tuple[int, int, list[int], list[np.ndarray], list[tuple[int, str]]]]:
    """The local engine's per-batch results (see `vizprobe.scan.run._local_results`), computed on Ray Data."""
    ray = _require_ray()
    connect(address, workers, gpus_per_worker)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the driver commits a prefix of the image list
    context.enable_progress_bars = False
    workers = workers or max(1, int(ray.cluster_resources().get("GPU" if gpus_per_worker else "CPU", 1) // 2))
    directions = {name: d for name, d in model.directions.items() if any(p.endswith(f":{name}") for p in paths)}
    weights = model.weights if Path(model.weights).is_file() else None
    rows = [{"index": i, "path": str(files[i])} for i in range(start, len(files))]
    channels = [model.layer(p).channels for p in paths]
    actor = {"name": model.name, "weights": weights, "directions": directions, "paths": paths, "channels": channels,
             "backend": backend}  # fmt: skip
    dataset = (
        ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // (batch_size * 8)))
        .map_batches(_decode, batch_size=batch_size, fn_kwargs={"preprocessing": model.preprocessing})
        .map_batches(
            _Activations,
            batch_size=batch_size,
            fn_constructor_kwargs=actor,
            concurrency=workers,
            num_gpus=gpus_per_worker or None,
        )
    )
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        index, errors = batch["index"], batch["error"]
        first = int(index[0])
        if not np.array_equal(index, np.arange(first, first + len(index))):
            raise VizprobeError("Ray returned the images out of order; rerun the same command to resume")
        good = [k for k, e in enumerate(errors) if not e]
        bad = [(k, str(e)) for k, e in enumerate(errors) if e]
        yield first, len(index), good, [batch[f"means{k}"][good] for k in range(len(paths))], bad
