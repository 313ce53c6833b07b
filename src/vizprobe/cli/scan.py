"""`vizprobe` verbs: scan."""

from __future__ import annotations

import argparse
from pathlib import Path

from vizprobe.cli.common import (
    _add_model_args,
    _csv,
    _directions_arg,
    _given,
    _protocol_arg,
    _setting,
)
from vizprobe.device import BATCH_SIZES
from vizprobe.protocol import get_protocol


def cmd_scan(args: argparse.Namespace) -> int:
    from vizprobe.images import demo_images_dir
    from vizprobe.scan import scan
    from vizprobe.scan.sheet import write_contact_sheets

    images = args.images or demo_images_dir()
    layers = _csv(args.layers) if args.layers else get_protocol(args.protocol).layers_for(args.model)
    result, stats = scan(
        args.model,
        images,
        layers,
        args.out,
        weights=args.weights,
        device=args.device,
        progress=not args.quiet,
        engine=args.engine,
        ray={"address": args.address, "workers": args.workers, "gpus_per_worker": args.gpus_per_worker}
        if args.engine == "ray"
        else None,
        **_given(args, "batch_size", "top_k", "compile", "backend", "directions", "keep_activations", "precision"),
        **(_given(args, "workers") if args.engine == "local" else {}),
    )
    print(
        f"scanned {stats.computed} images ({stats.images_per_second:.1f} img/s, {stats.backend or 'nothing to do'}), "
        f"{stats.resumed_from} already done, {stats.skipped} skipped -> {args.out}"
    )
    if args.sheet:
        sheets = write_contact_sheets(result, Path(args.out) / "sheets", progress=not args.quiet)
        print(f"wrote {len(sheets)} contact sheets to {Path(args.out) / 'sheets'}")
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    from vizprobe.scan.settings import (
        BACKEND_CHOICES,
        COMPILE_CHOICES,
        COMPILE_MIN_IMAGES,
        ENGINE_CHOICES,
        ONNX_BATCH_SIZE,
        PRECISION_CHOICES,
    )

    scan = "vizprobe.scan.settings:ScanSettings"
    p = verb("scan", "record every image's activation for every channel of some layers", cmd_scan)
    _add_model_args(p)
    p.add_argument("--images", default=None, help="image folder, searched recursively (default: embedded demo)")
    text = "comma-separated layer paths or aliases (default: the layers --protocol names for the model)"
    p.add_argument("--layers", default=None, help=text + "; LAYER:NAME scans directions NAME")
    _directions_arg(p)
    _protocol_arg(p)
    _setting(p, "--top-k", f"{scan}.top_k", "top/bottom images to index per unit", type=int)
    text = "write every image's activations (--no-keep-activations: only each unit's top/bottom-k, mean and std)"
    _setting(p, "--keep-activations", f"{scan}.keep_activations", text, action=argparse.BooleanOptionalAction)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"default {ONNX_BATCH_SIZE} with ONNX Runtime, {BATCH_SIZES['cpu']} with PyTorch on the CPU, "
        f"{BATCH_SIZES['cuda']} on a GPU",
    )
    _setting(
        p,
        "--workers",
        f"{scan}.workers",
        "decoding threads (on a GPU: processes, default one per CPU core); "
        "with --engine ray: model workers (default: half the cluster's CPUs, or its GPUs / --gpus-per-worker)",
        type=int,
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=ENGINE_CHOICES,
        help="local (default), or ray: Ray Data on a cluster or this machine (pip install 'vizprobe[ray]')",
    )
    p.add_argument(
        "--address",
        default=None,
        help="with --engine ray: the cluster (HOST:PORT or auto; default: start Ray on this machine)",
    )
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="with --engine ray: GPUs per model worker")
    _setting(
        p,
        "--backend",
        f"{scan}.backend",
        "what runs the network (auto: ONNX Runtime on the CPU, PyTorch on a GPU)",
        choices=BACKEND_CHOICES,
    )
    _setting(
        p,
        "--precision",
        f"{scan}.precision",
        "the network's arithmetic: fp32 (the same activations on every "
        "device), tf32 (a GPU's cuDNN default), bf16 (autocast; PyTorch backend)",
        choices=PRECISION_CHOICES,
    )
    _setting(
        p,
        "--compile",
        f"{scan}.compile",
        f"torch.compile for --backend torch (auto: from {COMPILE_MIN_IMAGES} images)",
        choices=COMPILE_CHOICES,
    )
    p.add_argument("--sheet", action="store_true", help="also write a contact sheet PNG per unit")
    p.add_argument("--out", required=True, help="run directory (an unfinished one is resumed)")
