"""`vizprobe` verbs: demo."""

from __future__ import annotations

import argparse

from vizprobe import DEFAULT_MODEL
from vizprobe.cli.common import (
    _csv,
    _device_arg,
    _given,
    _setting,
)


def cmd_demo(args: argparse.Namespace) -> int:
    from vizprobe.demo import run_demo

    run_demo(
        out=args.out,
        images=args.images,
        model=args.model,
        device=args.device,
        progress=not args.quiet,
        methods=_csv(args.methods) if args.methods else None,
        **_given(args, "steps", "image_sets", "stride", "participants"),
    )
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    from vizprobe.synthesis.settings import METHODS

    demo = "vizprobe.demo:run_demo"
    p = verb("demo", "run the pipeline on the embedded defaults", cmd_demo)
    p.add_argument("--out", default="demo-output")
    p.add_argument("--images", default=None, help="image folder (default: embedded demo photos)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    _device_arg(p)
    p.add_argument("--steps", type=int, default=None, help="visualization steps (default: the quick preset's)")
    _setting(p, "--image-sets", f"{demo}.image_sets", "image sets per unit in the stimulus package", type=int)
    _setting(p, "--stride", f"{demo}.stride", "occlusion stride in pixels", type=int)
    _setting(p, "--participants", f"{demo}.participants", "simulated participants per condition", type=int)
    p.add_argument(
        "--methods",
        default=None,
        help=f"also compare synthesis methods as conditions, e.g. fourier,maco,accentuation (of "
        f"{', '.join(METHODS)}; fourier is the `synthetic` condition)",
    )
