"""The dataset scan: every image's activation for every channel of the chosen layers.

Batched, channels-last, cut after the deepest chosen layer, with decoding overlapped with compute
(in a thread pool on the CPU; on a GPU in DataLoader processes, into pinned memory). Work is committed
every `chunk_size` images, so a killed scan resumes where it stopped without recomputing committed images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vizprobe.device import default_batch_size
from vizprobe.errors import VizprobeError
from vizprobe.files import atomic_write_bytes, atomic_write_json, atomic_write_text, safe_name
from vizprobe.images import UnreadableImage, find_images, load_rgb
from vizprobe.models import LoadedModel, Preprocessing, load_model, onnx_runtime
from vizprobe.scan import format as fmt
from vizprobe.scan.extremes import LayerSummary, save_npz
from vizprobe.scan.forward import forward_pass
from vizprobe.scan.result import ScanResult
from vizprobe.scan.settings import (
    BACKEND_CHOICES,
    COMPILE_CHOICES,
    ENGINE_CHOICES,
    ONNX_BATCH_SIZE,
    PRECISION_CHOICES,
    ScanSettings,
)
from vizprobe.units import Directions, split_layer

log = logging.getLogger(__name__)

LOOKAHEAD = 1  # batches decoded ahead of the one computing


@dataclass(frozen=True)
class ScanStats:
    """What one call of `scan` did: images computed now, images already committed before."""

    computed: int
    resumed_from: int
    skipped: int
    seconds: float
    backend: str = ""  # what ran the network: onnxruntime, torch, torch (compiled)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")


def _load_item(path: Path, preprocessing: Preprocessing) -> torch.Tensor | str:
    """The resized, cropped uint8 (H, W, 3) pixels of an image, or the reason it could not be read."""
    try:
        return preprocessing.to_pixels(load_rgb(path))
    except UnreadableImage as exc:
        return str(exc)


def _batches(
    paths: Sequence[Path],
    start: int,
    batch_size: int,
    preprocessing: Preprocessing,
    workers: int,
    lookahead: int | None = None,
) -> Iterator[tuple[int, list[torch.Tensor | str]]]:
    """Yield (first index, decoded items) per batch, decoding the next batches while this one computes."""
    lookahead = LOOKAHEAD if lookahead is None else lookahead
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque[tuple[int, list[Future]]] = deque()
        next_start = start

        def submit() -> None:
            nonlocal next_start
            if next_start < len(paths):
                stop = min(next_start + batch_size, len(paths))
                futures = [pool.submit(_load_item, paths[i], preprocessing) for i in range(next_start, stop)]
                pending.append((next_start, futures))
                next_start = stop

        for _ in range(lookahead + 1):
            submit()
        while pending:
            first, futures = pending.popleft()
            submit()
            yield first, [f.result() for f in futures]


class _DecodedImages(torch.utils.data.Dataset):
    """Image i of `paths` decoded and preprocessed (uint8 pixels), or the reason it could not be read."""

    def __init__(self, paths: Sequence[Path], preprocessing: Preprocessing):
        self.paths, self.preprocessing = paths, preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor | str:
        return _load_item(self.paths[i], self.preprocessing)


def _collate(items: list[torch.Tensor | str]) -> tuple[torch.Tensor | None, list[int], list[tuple[int, str]]]:
    """(the readable images' pixels stacked, their offsets, (offset, reason) of the others)."""
    good = [i for i, item in enumerate(items) if torch.is_tensor(item)]
    pixels = torch.stack([items[i] for i in good]) if good else None
    return pixels, good, [(i, item) for i, item in enumerate(items) if not torch.is_tensor(item)]


def _loader_batches(
    paths: Sequence[Path], start: int, batch_size: int, preprocessing: Preprocessing, workers: int, pin: bool
) -> Iterator[tuple[int, int, torch.Tensor | None, list[int], list[tuple[int, str]]]]:
    """Per batch (first index, count, pixels, good offsets, bad): decoded in `workers` DataLoader processes
    (0: in line), in page-locked memory with `pin` (a GPU copies from it asynchronously)."""
    order = [list(range(a, min(a + batch_size, len(paths)))) for a in range(start, len(paths), batch_size)]
    loader = torch.utils.data.DataLoader(
        _DecodedImages(paths, preprocessing),
        batch_sampler=order,
        collate_fn=_collate,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
    )
    for rows, (pixels, good, bad) in zip(order, loader, strict=True):
        yield rows[0], len(rows), pixels, good, bad


def _thread_batches(
    paths: Sequence[Path], start: int, batch_size: int, preprocessing: Preprocessing, workers: int
) -> Iterator[tuple[int, int, torch.Tensor | None, list[int], list[tuple[int, str]]]]:
    """`_loader_batches`, decoded in threads (on the CPU, where the network needs the cores)."""
    for first, items in _batches(paths, start, batch_size, preprocessing, workers):
        yield first, len(items), *_collate(items)


def _fingerprint(images: list[str]) -> str:
    return hashlib.sha1("\n".join(images).encode()).hexdigest()


class _RunDir:
    """Creates or reopens a run directory and commits progress to it.

    With `keep_activations` every image's activations go into the memory-mapped matrices; without, only each
    layer's running top/bottom-k and moments (`LayerSummary`), saved at every commit in topk/running.npz."""

    def __init__(self, out: Path, meta: dict, images: list[str], directions: dict[str, Directions]):
        self.out, self.meta, self.images, self.directions = out, meta, images, directions
        self.acts: dict[str, np.ndarray] = {}
        self.summaries: dict[str, LayerSummary] = {}
        self.pending: list[tuple[np.ndarray, list[np.ndarray]]] = []  # rows not yet merged into the summaries
        self.done = 0

    @property
    def keep(self) -> bool:
        return bool(self.meta.get("keep_activations", True))

    def open(self) -> _RunDir:
        meta_path = self.out / fmt.SCAN_JSON
        if meta_path.is_file():
            on_disk = json.loads(meta_path.read_text())
            self._check_same_scan(on_disk)  # against the meta this call would write
            self.meta = on_disk
            self.done = int(json.loads((self.out / fmt.PROGRESS_JSON).read_text())["done"])
        else:
            known = {
                fmt.IMAGES_TXT,
                fmt.ACTS_DIR,
                fmt.STATUS_NPY,
                fmt.PROGRESS_JSON,
                fmt.SKIPPED_TSV,
                fmt.TOPK_DIR,
                fmt.DIRECTIONS_DIR,
            }
            if self.out.exists() and any(
                p.name not in known and not p.name.startswith(".") for p in self.out.iterdir()
            ):
                raise VizprobeError(f"--out {self.out} exists and is not a scan run dir; choose a new folder")
            self._create()
        self.status = np.lib.format.open_memmap(self.out / fmt.STATUS_NPY, mode="r+")
        if self.keep:
            self._open_matrices()
        else:
            self._open_summaries()
        return self

    def _open_matrices(self) -> None:
        n = len(self.images)
        for layer in self.meta["layers"]:
            self.acts[layer["file"]] = np.lib.format.open_memmap(self.out / fmt.ACTS_DIR / layer["file"], mode="r+")
            if self.acts[layer["file"]].shape != (n, layer["channels"]):
                raise VizprobeError(
                    f"{self.out / fmt.ACTS_DIR / layer['file']} has shape {self.acts[layer['file']].shape}, "
                    f"expected {(n, layer['channels'])}: the run dir is damaged; scan into a new --out"
                )

    def _open_summaries(self) -> None:
        """The running state of the last commit (written before progress.json, so it may be one commit ahead)."""
        path = self.out / fmt.RUNNING_NPZ
        state = dict(np.load(path)) if path.is_file() else {}
        self.done = int(state.get("done", 0))
        for layer in self.meta["layers"]:
            prefix = layer["file"] + "/"
            arrays = {key.removeprefix(prefix): v for key, v in state.items() if key.startswith(prefix)}
            self.summaries[layer["file"]] = (
                LayerSummary.from_arrays(arrays) if arrays else LayerSummary(layer["channels"])
            )

    def _create(self) -> None:
        n = len(self.images)
        (self.out / fmt.TOPK_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / fmt.IMAGES_TXT, "".join(p + "\n" for p in self.images))
        if self.keep:
            (self.out / fmt.ACTS_DIR).mkdir(exist_ok=True)
            for layer in self.meta["layers"]:
                shape = (n, layer["channels"])
                np.lib.format.open_memmap(self.out / fmt.ACTS_DIR / layer["file"], "w+", np.float32, shape).flush()
        np.lib.format.open_memmap(self.out / fmt.STATUS_NPY, "w+", np.uint8, (n,)).flush()
        (self.out / fmt.SKIPPED_TSV).write_text("")
        for name, record in self.meta.get("directions", {}).items():
            atomic_write_bytes(self.out / record["file"], Path(self.directions[name].source).read_bytes())
        atomic_write_json(self.out / fmt.PROGRESS_JSON, {"done": 0})
        atomic_write_json(self.out / fmt.SCAN_JSON, self.meta)  # last: its presence marks a valid run dir

    def _check_same_scan(self, old: dict) -> None:
        if old.get("format") != fmt.FORMAT or old.get("version") not in fmt.READABLE_VERSIONS:
            raise VizprobeError(f"{self.out} holds a scan of another format; choose a new --out")
        for key, label in [
            ("model", "model"),
            ("weights", "weights"),
            ("preprocessing", "preprocessing"),
            ("directions", "directions"),
        ]:
            if (old.get(key) or None) != (self.meta[key] or None):  # a scan from before `directions` has none
                raise VizprobeError(
                    f"{self.out} holds a scan with another {label} ({old.get(key)}); choose a new --out or delete it"
                )
        if old.get("keep_activations", True) != self.keep:
            flag = "--keep-activations" if old.get("keep_activations", True) else "--no-keep-activations"
            raise VizprobeError(f"{self.out} holds a scan made with {flag}; resume it with the same flag")
        if old.get("precision", "fp32") != self.meta["precision"]:
            raise VizprobeError(
                f"{self.out} holds a scan in precision {old.get('precision', 'fp32')}; resume it with the same "
                "--precision"
            )
        if not self.keep and old.get("top_k") != self.meta.get("top_k"):
            raise VizprobeError(f"{self.out} holds a scan with --top-k {old.get('top_k')}; resume it with the same")
        if [layer["path"] for layer in old["layers"]] != [layer["path"] for layer in self.meta["layers"]]:
            names = ",".join(layer["name"] for layer in old["layers"])
            raise VizprobeError(f"{self.out} holds a scan of layers {names}; choose a new --out or delete it")
        if old.get("images_fingerprint") != self.meta["images_fingerprint"]:
            raise VizprobeError(
                f"the images under {self.meta['images_root']} changed since the scan in {self.out} began "
                f"({old.get('n_images')} then, {len(self.images)} now); choose a new --out"
            )

    def write(self, rows: np.ndarray, means: list[np.ndarray]) -> None:
        """Record the channel means (one (B, C) array per layer) of images `rows`, ascending."""
        if self.keep:
            for layer, values in zip(self.meta["layers"], means, strict=True):
                self.acts[layer["file"]][rows] = values
        else:
            self.pending.append((rows, means))
        self.status[rows] = fmt.SCANNED

    def skip(self, row: int) -> None:
        self.status[row] = fmt.SKIPPED
        for array in self.acts.values():
            array[row] = np.nan

    def commit(self, done: int, skipped: list[tuple[str, str]], top_k: int) -> None:
        """Make rows [0, done) durable, then advance the progress marker (the order matters)."""
        for array in self.acts.values():
            array.flush()
        self.status.flush()
        if skipped:
            with open(self.out / fmt.SKIPPED_TSV, "a") as handle:
                handle.writelines(f"{path}\t{reason}\n" for path, reason in skipped)
        if not self.keep:
            self._merge_pending(top_k)
            state = {"done": np.asarray(done)}
            for name, summary in self.summaries.items():
                state.update({f"{name}/{key}": value for key, value in summary.arrays().items()})
            save_npz(self.out / fmt.RUNNING_NPZ, state)
        atomic_write_json(self.out / fmt.PROGRESS_JSON, {"done": done})
        self.done = done

    def _merge_pending(self, top_k: int) -> None:
        if not self.pending:
            return
        rows = np.concatenate([rows for rows, _ in self.pending])
        for i, layer in enumerate(self.meta["layers"]):
            values = np.concatenate([means[i] for _, means in self.pending])
            self.summaries[layer["file"]].add(rows, values, top_k)
        self.pending = []

    def finish(self, top_k: int, stats: ScanStats) -> None:
        valid = np.flatnonzero(self.status[:] == fmt.SCANNED)
        for layer in self.meta["layers"]:
            if self.keep:
                summary = LayerSummary.of_matrix(self.acts[layer["file"]], valid, top_k)
            else:
                summary = self.summaries[layer["file"]]
            save_npz(self.out / fmt.TOPK_DIR / layer["file"].replace(".npy", ".npz"), summary.arrays())
        self.meta.update(
            status="complete",
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            n_scanned=int(len(valid)),
            n_skipped=int((self.status[:] == fmt.SKIPPED).sum()),
            top_k=top_k,
            last_run={"computed": stats.computed, "seconds": round(stats.seconds, 2), "backend": stats.backend},
        )
        atomic_write_json(self.out / fmt.SCAN_JSON, self.meta)
        (self.out / fmt.RUNNING_NPZ).unlink(missing_ok=True)


def _local_results(
    model: LoadedModel, forward: Callable, compiled: bool, files: list[Path], start: int, batch_size: int, workers: int
) -> Iterator[tuple[int, int, list[int], list[np.ndarray], list[tuple[int, str]]]]:
    """Per batch: (first image, image count, offsets of the images read, their channel means per layer,
    (offset, reason) of the images that could not be read), decoding ahead: in threads on the CPU, in
    `workers` DataLoader processes into pinned memory on a GPU."""
    if model.device.type == "cuda":
        batches = _loader_batches(files, start, batch_size, model.preprocessing, workers, pin=True)
    else:
        batches = _thread_batches(files, start, batch_size, model.preprocessing, workers)
    for first, count, pixels, good, bad in batches:
        means: list[np.ndarray] = []
        if good:
            pixels = pixels.to(model.device, non_blocking=True)
            if compiled and len(good) < batch_size:  # keep one static shape: no recompilation
                pixels = torch.cat([pixels, pixels.new_zeros((batch_size - len(good), *pixels.shape[1:]))])
            outputs = forward(model.preprocessing.normalize_uint8(pixels))
            means = [values[: len(good)].float().cpu().numpy() for values in outputs]
        yield first, count, good, means, bad


def scan(
    model: LoadedModel | str,
    images: str | Path,
    layers: Sequence[str],
    out: str | Path,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    chunk_size: int | None = None,
    workers: int | None = None,
    top_k: int | None = None,
    progress: bool = True,
    optimize: bool = True,
    compile: str | None = None,
    backend: str | None = None,
    engine: str = "local",
    ray: dict | None = None,
    directions: Mapping[str, str | Path | Directions] | str | None = None,
    keep_activations: bool | None = None,
    precision: str | None = None,
) -> tuple[ScanResult, ScanStats]:
    """Scan `images` with `model`, recording every channel of `layers`; resumes an unfinished `out`.

    A model given by name is loaded with `weights` on `device`; a `LoadedModel` runs on its own device
    (`device` and `weights` are then unused: the caller's model is never moved). `directions` adds direction
    layers (`LAYER:NAME`, see `vizprobe.units.Directions`); the run dir keeps a copy of each set it uses.

    The network runs as an inference copy (batch norms folded, paddings merged; see `vizprobe.models.optimize`)
    whose activations equal the original's up to float rounding: `backend` (`auto|onnx|torch`) auto runs it
    in ONNX Runtime on the CPU and in PyTorch on a GPU; `compile` (`auto|on|off`) uses `torch.compile` for the
    PyTorch backend, `auto` from COMPILE_MIN_IMAGES images on. `engine="ray"` runs the scan on Ray Data
    (`vizprobe.scan.ray_engine`; `ray` holds its options: address, workers, gpus_per_worker) into the same
    run dir. `keep_activations=False` writes no (images x channels) matrices, only each unit's top/bottom
    `top_k` images and its mean and standard deviation (for collections where only exemplars matter).
    `precision` (`fp32|tf32|bf16`, see `PRECISION_CHOICES`) is recorded in scan.json: fp32 gives the same
    activations on every device; tf32 (GPU) and bf16 (autocast) are faster and round them.

    Settings left None take `ScanSettings`' defaults; `batch_size` None suits the device.
    Returns the result (read back from disk) and what this call computed.
    """
    defaults = ScanSettings()
    chunk_size = chunk_size or defaults.chunk_size
    top_k = top_k or defaults.top_k
    compile = compile or defaults.compile
    backend = backend or defaults.backend
    keep_activations = defaults.keep_activations if keep_activations is None else keep_activations
    precision = precision or defaults.precision
    if precision not in PRECISION_CHOICES:
        raise VizprobeError(f"precision={precision!r}: use one of {', '.join(PRECISION_CHOICES)}")
    if backend not in BACKEND_CHOICES:
        raise VizprobeError(f"backend={backend!r}: use one of {', '.join(BACKEND_CHOICES)}")
    if engine not in ENGINE_CHOICES:
        raise VizprobeError(f"engine={engine!r}: use one of {', '.join(ENGINE_CHOICES)}")
    if engine == "ray":
        from vizprobe.scan import ray_engine

        ray_engine.connect(**(ray or {}))  # an unreachable cluster fails before anything is written
    if isinstance(model, str):
        model = load_model(model, weights=weights, device=device, directions=directions)
    elif directions:
        model = model.with_directions(directions)
    dev = model.device
    workers = workers or (defaults.workers if dev.type == "cpu" else os.cpu_count() or 1)
    if precision == "tf32" and dev.type != "cuda" and engine == "local":
        raise VizprobeError("--precision tf32 is a GPU's; on the CPU use fp32 (default) or bf16")
    if backend == "onnx" and precision != "fp32":
        raise VizprobeError(f"--backend onnx runs in fp32 only; drop --precision {precision} or use --backend torch")
    if backend == "onnx" and (dev.type != "cpu" or not onnx_runtime.available()):  # before anything is written
        why = "onnxruntime not installed" if dev.type == "cpu" else f"ONNX Runtime runs on the CPU, the model on {dev}"
        raise VizprobeError(f"--backend onnx: {why}; pip install onnx onnxruntime, or use --backend torch")
    if compile not in COMPILE_CHOICES:
        raise VizprobeError(f"compile={compile!r}: use one of {', '.join(COMPILE_CHOICES)}")
    root = Path(images).expanduser().resolve()
    image_list = find_images(root)
    named = {}  # module path -> (name as given, layer); a layer named twice is scanned once
    for name in layers:
        info = model.layer(name)
        named.setdefault(info.path, (name, info))
    if not named:
        raise VizprobeError("no layers given: pass --layers L1,L2 (see `vizprobe layers`)")
    infos = [info for _, info in named.values()]
    used = {name: model.directions[name] for info in infos if (name := split_layer(info.path)[1])}
    import vizprobe

    meta = {
        "format": fmt.FORMAT,
        "version": fmt.VERSION,
        "vizprobe_version": vizprobe.__version__,
        "model": model.name,
        "weights": model.weights,
        "preprocessing": model.preprocessing.to_dict(),
        "layers": [
            {
                "name": named[info.path][0],
                "path": info.path,
                "aliases": list(info.aliases),
                "channels": info.channels,
                "shape": list(info.shape),
                "file": safe_name(info.path) + ".npy",
            }
            for info in infos
        ],
        "directions": {name: d.record(f"{fmt.DIRECTIONS_DIR}/{name}{d.suffix}") for name, d in used.items()},
        "images_root": str(root),
        "n_images": len(image_list),
        "images_fingerprint": _fingerprint(image_list),
        "keep_activations": bool(keep_activations),
        "precision": precision,
        **({} if keep_activations else {"top_k": top_k}),  # the running ranking's k: fixed for the whole scan
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "running",
    }
    meta = json.loads(json.dumps(meta))  # the form it takes on disk, so a resume compares like with like
    run = _RunDir(Path(out), meta, image_list, used).open()
    start = run.done
    if run.meta.get("status") == "complete":
        log.info("scan in %s is already complete; nothing to do", out)
        return ScanResult.load(out), ScanStats(0, start, int(run.meta.get("n_skipped", 0)), 0.0)
    if start:
        log.info("resuming scan in %s at image %d of %d", out, start, len(image_list))

    paths = [info.path for info in infos]
    remaining = len(image_list) - start
    files = [root / p for p in image_list]
    if engine == "ray":
        from vizprobe.scan import ray_engine

        batch_size = batch_size or (ONNX_BATCH_SIZE if dev.type == "cpu" else default_batch_size(dev))
        results = ray_engine.results(
            model, paths, files, start, batch_size, backend=backend, precision=precision, **(ray or {})
        )
        used_backend = "ray"
    else:
        torch_batch = batch_size or default_batch_size(dev)
        forward, compiled, used_backend = forward_pass(
            model, paths, torch_batch, backend, compile, remaining, optimize, precision
        )
        batch_size = batch_size or (ONNX_BATCH_SIZE if used_backend == "onnxruntime" else torch_batch)
        results = _local_results(model, forward, compiled, files, start, batch_size, workers)
    chunk_size = max(batch_size, chunk_size - chunk_size % batch_size)
    skipped_total = int((run.status[:start] == fmt.SKIPPED).sum())
    pending_skips: list[tuple[str, str]] = []
    began = time.perf_counter()
    bar = tqdm(total=len(files), initial=start, unit="img", desc="scan", disable=not progress, smoothing=0.1)
    try:
        with torch.inference_mode():
            for first, count, good, means, bad in results:
                for offset, reason in bad:
                    log.warning("skipping %s: %s", image_list[first + offset], reason)
                    pending_skips.append((image_list[first + offset], reason))
                    run.skip(first + offset)
                if len(good):
                    run.write(first + np.asarray(good), means)
                end = first + count
                bar.update(count)
                if end - run.done >= chunk_size or end == len(files):
                    run.commit(end, pending_skips, top_k)
                    skipped_total += len(pending_skips)
                    pending_skips = []
    except KeyboardInterrupt:
        raise VizprobeError(f"scan interrupted at image {run.done}; rerun the same command to resume") from None
    finally:
        bar.close()
    stats = ScanStats(len(files) - start, start, skipped_total, time.perf_counter() - began, used_backend)
    run.finish(top_k, stats)
    return ScanResult.load(out), stats
