"""The scan on Ray Data, for collections beyond one machine (`vizprobe scan --engine ray`).

The images are listed once on the driver and become a Ray dataset of (index, path) rows; `map_batches`
sends them to a pool of actors, one per worker, each holding the model (`_Activations`: ONNX Runtime on a
CPU worker, PyTorch on a GPU one), which decode and preprocess their batch in threads and compute the
channel means (a separate decoding stage, pixels through the object store, was slower: benchmarks/README.md).
The driver consumes the results in order and writes them into the same run dir as the local engine, committing
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


def _decode(path: str, preprocessing) -> np.ndarray | str:
    """One image read and preprocessed to uint8 pixels (H, W, 3), or the reason it could not be."""
    from vizprobe.images import load_rgb

    try:
        return preprocessing.to_pixels(load_rgb(Path(path))).numpy()
    except Exception as exc:  # any failure on one image skips that image, not the run
        return str(exc) or type(exc).__name__


class _Activations:
    """Ray actor, one per worker: the model, loaded once; a batch of (index, path) rows -> channel means per
    layer. Like the local engine, it decodes in `threads` threads while the network (with as many threads)
    computes, so a worker with several cores uses them all."""

    def __init__(
        self,
        name: str,
        weights: str | None,
        directions: dict,
        paths: list[str],
        channels: list[int],
        backend: str,
        threads: int,
        precision: str = "fp32",
    ):
        from concurrent.futures import ThreadPoolExecutor

        import torch

        from vizprobe.models import load_model
        from vizprobe.scan.forward import forward_pass

        torch.set_num_threads(threads)  # Ray sets one thread per reserved CPU; ONNX Runtime follows torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_model(name, weights=weights, device=device, directions=directions)
        self.forward, _, self.backend = forward_pass(self.model, paths, 32, backend, "off", 0, True, precision)
        self.channels = channels
        self.pool = ThreadPoolExecutor(max_workers=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        items = list(self.pool.map(lambda path: _decode(path, self.model.preprocessing), batch["path"]))
        ok = np.asarray([not isinstance(item, str) for item in items])
        errors = np.asarray(["" if good else item for good, item in zip(ok, items, strict=True)], dtype=object)
        means = None
        if ok.any():
            with torch.inference_mode():
                pixels = torch.from_numpy(np.stack([item for item in items if not isinstance(item, str)]))
                outputs = self.forward(self.model.preprocessing.normalize_uint8(pixels.to(self.model.device)))
                means = [m.float().cpu().numpy() for m in outputs]
        out = {"index": batch["index"], "error": errors}
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
    precision: str = "fp32",
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
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = workers or max(
        1, int(ray.cluster_resources().get("GPU", 0) // gpus_per_worker) if gpus_per_worker else cpus // 2
    )
    threads = max(1, cpus // workers)
    directions = {name: d for name, d in model.directions.items() if any(p.endswith(f":{name}") for p in paths)}
    weights = model.weights if Path(model.weights).is_file() else None
    rows = [{"index": i, "path": str(files[i])} for i in range(start, len(files))]
    actor = {
        "name": model.name,
        "weights": weights,
        "directions": directions,
        "paths": paths,
        "channels": [model.layer(p).channels for p in paths],
        "backend": backend,
        "threads": threads,
        "precision": precision,
    }
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // (batch_size * 8))).map_batches(
        _Activations,
        batch_size=batch_size,
        fn_constructor_kwargs=actor,
        concurrency=workers,
        num_cpus=None if gpus_per_worker else threads,
        num_gpus=gpus_per_worker or None,
    )
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        index, errors = batch["index"], batch["error"]
        first = int(index[0])
        if not np.array_equal(index, np.arange(first, first + len(index))):
            raise VizprobeError("Ray returned the images out of order; rerun the same command to resume")
        good = [k for k, e in enumerate(errors) if not e]
        bad = [(k, str(e)) for k, e in enumerate(errors) if e]
        yield first, len(index), good, [batch[f"means{k}"][good] for k in range(len(paths))], bad
