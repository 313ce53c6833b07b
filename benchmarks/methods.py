"""MACO and feature accentuation beside their authors' code, on the same units, inputs and settings.

- `maco`: vizprobe's `--method maco` against serre-lab/Horama 0.3.0's `maco()` (Fel et al. 2023). Both optimize a
  CANVAS px canvas for STEPS steps with NAdam at lr 1.0 through 6 random crops per step (sides 0.25-0.30 of the
  canvas, centres ~ N(0.5, 0.15), 224 px network input, noise 0.01 of [0, 1]) from the same Fourier magnitude,
  the (3, 512, 257) `spectrum_decorrelated.npy` that xplique and faccent ship (Horama's download URL is not
  reachable offline; it reads the same file from its working directory). Horama's images come out in
  `values_range` (0, 1) and go through the model's own normalization, as vizprobe's do.
- `accentuation`: vizprobe's `--method accentuation` against faccent 1.0.3's `render_vis` with
  `accent_reg_layer` (Hamblin et al. 2024; installed without its pins), both from each unit's top-1 photo of a scan
  of the photos resized to the canvas, regularized at `_blocks.3` with alpha 1, 16 crops per step, Adam at 0.05.

Measured on each side's images, with the same code for both: the activation as the crops show it (the mean over
16 fixed random boxes drawn as the optimization draws them, at 224 px), the activation of the whole image at
224 px, the log-log slope of the images' radially averaged magnitude spectrum (maco; the natural images' slope
printed beside), the largest deviation of a channel mean from grey (maco's mean colour is free), the distance to
the seed at the regularization layer and in pixels, and the gain over the seed's activation (accentuation), and
seconds per image. Sides alternate; medians over repeats.

    pip install --no-deps horama==0.3.0 faccent==1.0.3 && pip install kornia einops decorator imageio ipywidgets
    python benchmarks/methods.py maco [--canvas 512] [--steps 128] [--repeats 2]
    python benchmarks/methods.py accentuation [--canvas 512] [--steps 100] [--repeats 2]

`picture OUT.jpg` draws README's methods picture instead: the demo's four units on the embedded demo photos, 3
images each by fourier, maco and accentuation (preset quick, accentuation from the demo's first reference rank,
6), beside the units' top natural images (`vizprobe demo --methods fourier,maco,accentuation` draws the same
sheet for its units as `demo-output/methods.png`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from gpu_scan import photos as default_images_dir  # $VIZPROBE_IMAGES, ../shared, else the demo photos

from vizprobe.models import load_model
from vizprobe.synthesis import preset, render_units
from vizprobe.synthesis.natural import load_spectrum, scan_references
from vizprobe.synthesis.rng import ImageRNG
from vizprobe.synthesis.transforms import BoxCrops

UNITS = ["_blocks.5:10", "_blocks.8:12", "_blocks.10:20", "_blocks.12:7"]
ACCENT_LAYER = "_blocks.3"


def spectrum_file() -> Path:
    """The published MACO spectrum, from the faccent package (identical to xplique's)."""
    import faccent

    return Path(faccent.__file__).parent / "clean_decorrelated.npy"


def unit_of(model, images: torch.Tensor, unit) -> torch.Tensor:
    """(N,) the unit's activation on [0, 1] images (the model's normalization), gradients flowing."""
    return model.unit_activations(model.preprocessing.normalize(images), [unit])[:, 0]


def as_cropped(model, images: torch.Tensor, units, box: tuple[float, float], placement: str) -> list[float]:
    """Each image's mean activation over 16 fixed boxes drawn as the optimization draws them, at 224 px."""
    crops = BoxCrops(16, 224, box, placement)
    out = []
    with torch.no_grad():
        for image, unit in zip(images, units, strict=True):
            seen = crops(image[None], ImageRNG([12345]), step=0)
            out.append(float(unit_of(model, seen, unit).mean()))
    return out


def whole(model, images: torch.Tensor, units) -> list[float]:
    with torch.no_grad():
        small = F.interpolate(images, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        return [float(unit_of(model, small[i : i + 1], u)[0]) for i, u in enumerate(units)]


def radial_slope(images: np.ndarray) -> float:
    """Log-log slope of the mean radially averaged FFT magnitude of (N, 3, S, S) images (means removed)."""
    size = images.shape[-1]
    magnitude = np.abs(np.fft.fft2(images - images.mean(axis=(2, 3), keepdims=True), axes=(2, 3))).mean(axis=(0, 1))
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2)
    rings = np.arange(2, size // 2) / size
    profile = [magnitude[np.abs(radius - r) < 0.5 / size].mean() for r in rings]
    return float(np.polyfit(np.log(rings), np.log(profile), 1)[0])


@contextlib.contextmanager
def working_directory(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def horama_maco(model, units, canvas: int, steps: int) -> tuple[torch.Tensor, float]:
    """Horama's `maco()` once per unit (it renders one image), its spectrum file in its working directory."""
    from horama import maco

    images, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, working_directory(Path(tmp)):
        os.symlink(spectrum_file(), "spectrum_decorrelated.npy")
        for unit in units:

            def objective(crops, unit=unit):
                return unit_of(model, crops, unit).mean()

            image, _alpha = maco(
                objective,
                total_steps=steps,
                learning_rate=1.0,
                image_size=canvas,
                model_input_size=224,
                noise=0.01,
                values_range=(0, 1),
                crops_per_iteration=6,
                box_size=(0.20, 0.25),
                device=str(model.device),
            )
            images.append(image.detach().cpu())
    return torch.stack(images), time.perf_counter() - started


def vizprobe_maco(model, units, canvas: int, steps: int) -> tuple[torch.Tensor, float]:
    settings = preset("paper", param="maco", per_unit=1, size=canvas, steps=steps, mixed_extra=0)
    spectrum = load_spectrum(spectrum_file(), canvas)
    rendering = render_units(model, units, settings, spectrum=spectrum, progress=False)
    order = [rendering.unit_index.index(k) for k in range(len(units))]
    return rendering.images[order], rendering.seconds


def faccent_accentuation(model, units, seeds: torch.Tensor, canvas: int, steps: int) -> tuple[torch.Tensor, float]:
    """faccent's `render_vis` once per unit, on a copy of the network that normalizes its [0, 1] input itself."""
    from faccent import objectives, param
    from faccent.render import render_vis

    net = copy.deepcopy(model.net)
    net.register_forward_pre_hook(lambda _m, args: (model.preprocessing.normalize(args[0]),))
    images, started = [], time.perf_counter()
    for unit, seed in zip(units, seeds, strict=True):
        parameterizer = param.fourier(init_img=seed[None].clone(), img_size=(canvas, canvas), device=model.device)
        objective = objectives.channel(unit.layer.replace(".", "_"), unit.channel)
        result = render_vis(
            net,
            objective,
            parameterizer=parameterizer,
            out_thresholds=range(steps),
            inline_thresholds=[],
            nb_transforms=16,
            model_input_size=(224, 224),
            model_input_range=(0, 1),
            img_size=(canvas, canvas),
            accent_reg_layer=ACCENT_LAYER.replace(".", "_"),
            accent_reg_alpha=1.0,
            progress=False,
        )
        images.append(result[0][-1][0])
    return torch.stack(images), time.perf_counter() - started


def vizprobe_accentuation(model, units, seeds: torch.Tensor, canvas: int, steps: int) -> tuple[torch.Tensor, float]:
    settings = preset(
        "paper", param="accentuation", per_unit=1, size=canvas, steps=steps, mixed_extra=0, accent_layer=ACCENT_LAYER
    )
    rendering = render_units(
        model, units, settings, references={u: s[None] for u, s in zip(units, seeds, strict=True)}, progress=False
    )
    order = [rendering.unit_index.index(k) for k in range(len(units))]
    return rendering.images[order], rendering.seconds


def layer_distance(model, images: torch.Tensor, seeds: torch.Tensor) -> list[float]:
    """faccent's regularizer at ACCENT_LAYER on the whole images at 224 px: mean over positions of the L2 distance
    over channels between each image's activations and its seed's."""
    seen = []
    module = dict(model.net.named_modules())[ACCENT_LAYER]
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        for batch in (images, seeds):
            model.net(
                model.preprocessing.normalize(F.interpolate(batch, size=(224, 224), mode="bilinear", antialias=True))
            )
    handle.remove()
    return (seen[0] - seen[1]).norm(dim=1).mean(dim=(1, 2)).tolist()


def top_photos(model, units, canvas: int) -> torch.Tensor:
    """Each unit's top-1 photo of a scan of the photos, resized to the canvas."""
    from vizprobe.scan import scan

    with tempfile.TemporaryDirectory() as tmp:
        layers = sorted({u.layer for u in units})
        result, _ = scan(model, default_images_dir(), layers, Path(tmp) / "run", progress=False)
        references, _ = scan_references(result, units, model.preprocessing, 1)
    return torch.cat(
        [F.interpolate(references[u], size=(canvas, canvas), mode="bilinear", antialias=True) for u in units]
    ).clamp(0, 1)


def picture(out: Path, device: str) -> None:
    """README's methods picture: the demo's units by each method (the demo's own rendering, `render_method`)."""
    from vizprobe.demo import DEMO_LAYERS, DEMO_UNITS, render_method
    from vizprobe.images import demo_images_dir
    from vizprobe.scan import scan
    from vizprobe.synthesis.store import comparison_sheet

    model = load_model("efficientnet-lite0", device=device)
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = scan(model, demo_images_dir(), DEMO_LAYERS, Path(tmp) / "scan", progress=False)
        dirs = {}
        for method in ("fourier", "maco", "accentuation"):
            dirs[method] = Path(tmp) / method
            render_method(model, result, DEMO_UNITS, preset("quick", per_unit=9, param=method), 6, dirs[method], True)
        sheet = comparison_sheet(dirs, result, units=[str(u) for u in model.resolve_units(DEMO_UNITS)])
        sheet.convert("RGB").save(out, quality=88)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=("maco", "accentuation", "picture"))
    parser.add_argument("out", nargs="?", default="docs/img/methods.jpg", help="picture: where to write it")
    parser.add_argument("--canvas", type=int, default=512)
    parser.add_argument("--steps", type=int, default=None, help="default: maco 128, accentuation 100")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.method == "picture":
        return picture(Path(args.out), args.device)
    model = load_model("efficientnet-lite0", device=args.device)
    units = model.resolve_units(UNITS)
    steps = args.steps or (128 if args.method == "maco" else 100)
    if args.method == "maco":
        sides = {
            "Horama 0.3.0": lambda: horama_maco(model, units, args.canvas, steps),
            "vizprobe": lambda: vizprobe_maco(model, units, args.canvas, steps),
        }
        box, placement = (0.25, 0.30), "centred"
    else:
        seeds = top_photos(model, units, args.canvas)
        sides = {
            "faccent 1.0.3": lambda: faccent_accentuation(model, units, seeds, args.canvas, steps),
            "vizprobe": lambda: vizprobe_accentuation(model, units, seeds, args.canvas, steps),
        }
        box, placement = (0.05, 0.99), "uniform"
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    images: dict[str, torch.Tensor] = {}
    names = list(sides)
    for rep in range(args.repeats):
        for side in names[rep % 2 :] + names[: rep % 2]:
            images[side], took = sides[side]()
            seconds[side].append(took / len(units))
            print(f"  run {rep + 1} {side:14s} {took / len(units):6.1f} s per image")
    print(
        f"{args.method}: {len(units)} units of efficientnet-lite0, canvas {args.canvas} px, {steps} steps, "
        f"device {model.device}, torch threads {torch.get_num_threads()}"
    )
    for side, made in images.items():
        cropped = as_cropped(model, made, units, box, placement)
        entire = whole(model, made, units)
        line = (
            f"{side:14s} {statistics.median(seconds[side]):6.1f} s/image  as cropped "
            f"{' '.join(f'{a:6.2f}' for a in cropped)}  whole {' '.join(f'{a:6.2f}' for a in entire)}"
        )
        if args.method == "maco":
            deviation = float((made.mean(dim=(2, 3)) - 0.5).abs().max())
            line += f"  slope {radial_slope(made.numpy()):.2f}  mean colour off grey {deviation:.3f}"
        else:
            gain = np.array(entire) / np.array(whole(model, seeds, units))
            line += (
                f"  gain {' '.join(f'{g:.2f}' for g in gain)}  layer distance "
                f"{' '.join(f'{d:.1f}' for d in layer_distance(model, made, seeds))}  pixel distance "
                f"{' '.join(f'{d:.3f}' for d in (made - seeds).abs().mean(dim=(1, 2, 3)).tolist())}"
            )
        print(line)
    if args.method == "maco":
        from vizprobe.images import find_images, load_rgb

        root = default_images_dir()
        paths = [root / p for p in find_images(root)][::20]
        photos = np.stack(
            [np.asarray(load_rgb(p).resize((args.canvas, args.canvas)), np.float32) / 255 for p in paths]
        ).transpose(0, 3, 1, 2)
        print(f"natural photos' slope {radial_slope(photos):.2f} ({len(paths)} photos at {args.canvas} px)")


if __name__ == "__main__":
    main()
