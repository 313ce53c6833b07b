"""`vizprobe` verbs: visualize."""

from __future__ import annotations

import argparse

from vizprobe.cli.common import (
    _add_model_args,
    _directions_arg,
    _protocol_arg,
)
from vizprobe.protocol import get_protocol


def cmd_visualize(args: argparse.Namespace) -> int:
    from vizprobe.synthesis import preset
    from vizprobe.synthesis.stage import visualize

    settings = preset(
        args.preset or get_protocol(args.protocol).visualization_preset,
        per_unit=args.per_unit,
        steps=args.steps,
        size=args.size,
        param=args.param,
        seed=args.seed,
        negative=True if args.negative else None,
        mixed_extra=args.mixed_extra,
        closeness=args.closeness,
        accent_layer=args.accent_layer,
        accent_alpha=args.accent_alpha,
        crops=args.crops,
        colour=args.colour,
        coherence=args.coherence,
    )
    rendering, index = visualize(
        args.model,
        args.units,
        args.out,
        settings,
        scan=args.scan,
        weights=args.weights,
        device=args.device,
        directions=args.directions,
        start_rank=args.start_rank,
        spectrum_file=args.spectrum,
        until=args.until,
        precision=args.precision,
        progress=not args.quiet,
    )
    steps_per_s = settings.steps / rendering.seconds if rendering.seconds else float("nan")
    print(
        f"rendered {len(rendering.seeds)} images of {len(rendering.units)} units in {rendering.seconds:.1f} s "
        f"({steps_per_s:.2f} steps/s) -> {args.out}"
    )
    for entry in index["units"]:
        extra = f"  as cropped {entry['mean_crop_activation']:.3g}" if "mean_crop_activation" in entry else ""
        extra += f"  natural top-1 {entry['natural_top1']:.3g}" if "natural_top1" in entry else ""
        print(f"  {entry['unit']:20s} mean activation {entry['mean_activation']:.3g}{extra}")
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    from vizprobe.synthesis.settings import METHODS, PRECISIONS, PRESETS

    p = verb("visualize", "render feature visualizations (activation maximization)", cmd_visualize)
    _add_model_args(p)
    p.add_argument("--units", required=True, help="comma-separated LAYER:CHANNEL or LAYER:DIRECTIONS:K")
    _directions_arg(p)
    p.add_argument(
        "--preset",
        default=None,
        choices=tuple(PRESETS),
        help="default: the protocol's (zimmermann2021: paper, 9 images per unit); quick for a first look",
    )
    _protocol_arg(p)
    for flag, name, kind, text in [
        ("--per-unit", "per_unit", int, "images per unit"),
        ("--steps", "steps", int, "optimization steps"),
        ("--size", "size", int, "image side in pixels"),
        ("--seed", "seed", int, "base seed of the images"),
    ]:
        p.add_argument(
            flag,
            type=kind,
            default=None,
            help=f"{text} (default: the preset's; paper "
            f"{getattr(PRESETS['paper'], name)}, quick {getattr(PRESETS['quick'], name)})",
        )
    p.add_argument(
        "--method",
        "--param",
        dest="param",
        default=None,
        choices=METHODS,
        help="fourier (lucid's, default), pixel, maco (Fel et al. 2023: natural Fourier magnitude, "
        "phase optimized), accentuation (Hamblin et al. 2024: from each unit's top scan images, kept "
        "close to them in an early layer; needs --scan); maco and accentuation run their authors' "
        "recipe (a canvas seen through random crops; scaled down in quick and fast)",
    )
    p.add_argument(
        "--accent-layer",
        default=None,
        help="accentuation: the layer whose activations stay close to the start image's (default: the "
        "model's, e.g. inceptionv1 mixed3a, else the first block at 1/8 of the input side); 'pixels': "
        "the pixel distance weighted by --closeness instead",
    )
    p.add_argument(
        "--accent-alpha",
        type=float,
        default=None,
        help="accentuation: the regularizer's weight, relative to the objective's gradient at the start "
        f"(default {PRESETS['quick'].accent_alpha:g}, faccent's)",
    )
    p.add_argument(
        "--closeness",
        type=float,
        default=None,
        help=f"accentuation with --accent-layer pixels: weight of the pixel distance to the start image "
        f"(default {PRESETS['quick'].closeness:g})",
    )
    p.add_argument(
        "--crops",
        type=int,
        default=None,
        help="random crops of the canvas per step (default: the method's recipe, maco 6 and "
        "accentuation 16 in the paper preset; 0: the whole image through lucid's transforms)",
    )
    p.add_argument(
        "--coherence",
        type=float,
        default=None,
        help="weight of a centre-bias prior (low-frequency energy away from the centre; default 0: off)",
    )
    p.add_argument(
        "--start-rank",
        type=int,
        default=1,
        help="accentuation and the colour prior use the unit's scan images from this rank on (default 1, "
        "the top exemplar; for a study, start past the query ranks, e.g. 21)",
    )
    p.add_argument(
        "--colour",
        type=float,
        default=None,
        help="weight of the patch colour prior toward the unit's top scan images (default 0: off; needs --scan)",
    )
    p.add_argument(
        "--until",
        default=None,
        help="stop each image once its activation reaches X (12.5), or X times the unit's natural "
        "top-1 (2x, needs --scan); --steps stays the budget",
    )
    p.add_argument("--negative", action="store_true", help="minimize instead: images the unit dislikes")
    p.add_argument(
        "--mixed-extra",
        type=int,
        default=None,
        help="a separate batch of N per unit for mixed (default: the preset's; paper 4)",
    )
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto: bf16 where native")
    p.add_argument(
        "--scan",
        default=None,
        help="scan run dir: record natural top-1 activations beside (and take its directions); the "
        "natural images of accentuation, the colour prior and maco's spectrum",
    )
    text = (
        "maco: a published Fourier magnitude .npy (3, S, S // 2 + 1), e.g. xplique's spectrum_decorrelated.npy "
        "(default: measured on --scan's images, else the demo photos)"
    )
    p.add_argument("--spectrum", default=None, help=text)
    p.add_argument("--out", required=True, help="visualizations dir")
