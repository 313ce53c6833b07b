"""Feature visualization throughput: one unit at a time (as lucent does) against vizprobe's batched render.

All sides render the same 16 units of efficientnet-lite0 with the same parameterization (Fourier,
decorrelated colour), transforms (lucid's standard set), objective (channel + diversity), steps,
image size, network input size and images per unit:
- "lucent 0.1.8": the peer library itself (`pip install -e '.[bench]'`), `render_vis` once per unit,
  its own transforms, resized to vizprobe's network input size (`fixed_image_size`), frozen weights;
- "one unit at a time": lucent's loop built from vizprobe's parts (the whole network forward with a
  hook on the unit's layer, each transform its own resampling, as lucent does);
- "vizprobe batched" (float32) and "vizprobe (auto)" (bfloat16 autocast where the hardware has it):
  all units in one optimization, each forward pass stopped at its chunk's deepest layer, batch norms
  folded, channels-last memory, the affine transforms merged into one resampling.
Sides rotate; medians are printed with the mean final activation of each (float32, original net,
measured after the timed rendering).

    python benchmarks/visualize.py [--steps 48] [--size 128] [--per-unit 4] [--repeats 2] [--device cpu]

`--time-to-quality` measures what a user waits for instead: lucent renders TTQ_UNITS (one image per unit,
its defaults: Fourier, decorrelated, standard transforms, Adam 0.05, no diversity) for `--lucent-steps`
steps at 224 px; each vizprobe variant renders the same units, 4 images each, with `until` set to lucent's
final activation of each unit (every image must reach it; 8-step checks) within a budget of `--budget`
steps. Printed: wall time per image of both, their ratio, whether every image reached its target, the
high-frequency share (spectral power above a quarter of the Nyquist frequency) of both sides' images, and
the robust activation (the mean under 16 fixed draws of lucid's transforms) against lucent's, lowest unit.

    python benchmarks/visualize.py --time-to-quality [--lucent-steps 512] [--budget 512] [--repeats 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from vizprobe.models import load_model
from vizprobe.synthesis import objectives as obj
from vizprobe.synthesis import preset, render_units
from vizprobe.synthesis import transforms as tf
from vizprobe.synthesis.param import FourierParam
from vizprobe.synthesis.rendering import resolve_precision
from vizprobe.synthesis.rng import ImageRNG, image_seeds

UNITS = [f"_blocks.{b}:{c}" for b in (3, 6, 9, 12) for c in (1, 5, 9, 13)]


def sequential(transforms):
    """Each transform resamples on its own, as in lucid and lucent (vizprobe merges the affine ones)."""

    def apply(images, rng, step):
        for k, transform in enumerate(transforms):
            images = transform(images, rng.fork(k + 1), step)
        return images

    return apply


def final_activations(model, units, images_per_unit) -> torch.Tensor:
    """Each unit's activation on its finished images, float32, on the original network (not timed)."""
    with torch.no_grad():
        return torch.cat(
            [
                model.unit_activations(model.preprocessing.normalize(images), [unit])[:, 0].cpu()
                for unit, images in zip(units, images_per_unit, strict=True)
            ]
        )


def lucent_library(model, units, settings, device) -> tuple[float, list[torch.Tensor]]:
    """lucent's own `render_vis`, one call per unit, at vizprobe's network input size."""
    from lucent.optvis import objectives as lo
    from lucent.optvis import param as lp
    from lucent.optvis import render as lr
    from lucent.optvis import transform as lt

    size_in = tf.compose(tf.standard())(torch.zeros(1, 3, settings.size, settings.size), ImageRNG([0]), 0).shape[-1]
    # lucent leaves a hook on every module after each call: each unit gets a fresh copy of the net.
    nets = [copy.deepcopy(model.net) for _ in units]
    start = time.perf_counter()
    rendered = []
    for unit, net in zip(units, nets, strict=True):
        unit = model.resolve_unit(unit)
        layer, channel = unit.layer.replace(".", "_"), unit.channel  # lucent's names for nested modules
        objective = lo.channel(layer, channel)
        if settings.diversity and settings.per_unit > 1:
            objective = objective - settings.diversity * lo.diversity(layer)
        (images,) = lr.render_vis(
            net,
            objective,
            lambda: lp.image(settings.size, batch=settings.per_unit),
            optimizer=lambda params: torch.optim.Adam(params, lr=settings.lr),
            transforms=[*lt.standard_transforms, model.preprocessing.normalize],
            thresholds=(settings.steps,),
            preprocess=False,
            progress=False,
            show_image=False,
            fixed_image_size=size_in,
        )
        rendered.append(torch.from_numpy(images).permute(0, 3, 1, 2))
    return time.perf_counter() - start, rendered


def lucent_style(model, units, settings, device) -> tuple[float, list[torch.Tensor]]:
    """One `render_vis`-like call per unit: full forward pass, a hook on the layer, one objective."""
    start = time.perf_counter()
    rendered = []
    modules = dict(model.net.named_modules())
    for unit in units:
        unit = model.resolve_unit(unit)
        path, channel = unit.layer, unit.channel
        seeds = image_seeds(model.name, [unit], settings.per_unit, settings.seed)
        param = FourierParam(seeds, settings.size).to(device)
        transform = sequential(tf.standard())
        optimizer = torch.optim.Adam(param.parameters(), lr=settings.lr)
        rng = ImageRNG(seeds)
        captured = {}
        handle = modules[path].register_forward_hook(lambda m, i, o, c=captured: c.__setitem__("layer", o))
        objective = obj.channel(path, channel, settings.per_unit)
        objective = objective + settings.diversity * obj.diversity([path] * settings.per_unit, [0] * len(seeds))
        for step in range(settings.steps):
            optimizer.zero_grad()
            images = param()
            inputs = transform(images, rng, step)
            model.net(model.preprocessing.normalize(inputs))
            loss = -objective(obj.RenderState({path: captured["layer"]}, images, inputs)).sum()
            loss.backward()
            optimizer.step()
        handle.remove()
        with torch.no_grad():
            rendered.append(param())
    return time.perf_counter() - start, rendered


def batched(model, units, settings, device, precision="fp32") -> tuple[float, list[torch.Tensor]]:
    start = time.perf_counter()
    rendering = render_units(model, units, settings, precision=precision, progress=False)
    return time.perf_counter() - start, [rendering.unit_images(k) for k in range(len(units))]


TTQ_UNITS = ["_blocks.3:1", "_blocks.6:5", "_blocks.9:9", "_blocks.12:13"]
# (name, preset, overrides): the candidates for reaching lucent's activation soonest
TTQ_VARIANTS = [
    ("quick settings at 224 px", "quick", {}),
    ("no diversity, lr 0.1", "quick", {"diversity": 0.0, "lr": 0.1}),
    ("no diversity, coarse 64", "quick", {"diversity": 0.0, "lr": 0.1, "coarse_steps": 64}),
    ("maco, no diversity", "quick", {"param": "maco", "diversity": 0.0}),
    ("fast with Adam defaults", "fast", {"lr": 0.05, "betas": (0.9, 0.999)}),
    ("fast preset", "fast", {}),
    # Reaches the activation in a few dozen steps and keeps a low high-frequency share, but only on the
    # exact image: under lucid's transforms it falls to about half (the robust column shows the trap).
    ("fast without transforms", "fast", {"transforms": "none"}),
]


def high_frequency_share(images: torch.Tensor) -> float:
    """Share of the spectral power (grey, mean removed) above a quarter of the Nyquist frequency (0.125/px)."""
    grey = images.float().mean(dim=1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().pow(2)
    fy, fx = torch.fft.fftfreq(grey.shape[1])[:, None], torch.fft.fftfreq(grey.shape[2])[None, :]
    return float(power[:, (fx.pow(2) + fy.pow(2)).sqrt() > 0.125].sum() / power.sum())


def robust_activations(model, units, images_per_unit, draws: int = 16) -> list[float]:
    """Each unit's mean activation over `draws` fixed draws of lucid's standard transforms of its images:
    an image that reaches its activation only as it is (an adversarial pattern) scores low here."""
    transform = tf.compose(tf.standard())
    out = []
    with torch.no_grad():
        for unit, images in zip(units, images_per_unit, strict=True):
            acts = [
                model.unit_activations(
                    model.preprocessing.normalize(
                        transform(images, ImageRNG([1000 + 97 * d + i for i in range(len(images))]), 0)
                    ),
                    [unit],
                )[:, 0]
                for d in range(draws)
            ]
            out.append(float(torch.stack(acts).mean()))
    return out


def time_to_quality(args, model) -> None:
    """lucent's activation after `--lucent-steps` steps, and how soon each vizprobe variant reaches it."""
    from vizprobe.synthesis.settings import PRESETS

    variants = [v for v in TTQ_VARIANTS if v[1] in PRESETS and (not args.variants or v[0] in args.variants.split(","))]
    lucent_settings = preset(
        "quick", steps=args.lucent_steps, size=224, per_unit=1, transforms="standard", diversity=0.0, lr=0.05
    )
    lucent_time, lucent_act, lucent_hf = [], None, []
    results: dict[str, list[tuple[float, bool, float, int, float]]] = {name: [] for name, _, _ in variants}
    for rep in range(args.repeats):
        seconds, rendered = lucent_library(model, TTQ_UNITS, lucent_settings, model.device)
        lucent_time.append(seconds / len(TTQ_UNITS))
        lucent_act = final_activations(model, TTQ_UNITS, rendered)
        lucent_hf.append(high_frequency_share(torch.cat(rendered)))
        robust = robust_activations(model, TTQ_UNITS, rendered)
        print(f"  run {rep + 1} lucent 0.1.8: {seconds:.1f} s, activations {[round(float(a), 2) for a in lucent_act]}")
        targets = dict(zip(TTQ_UNITS, lucent_act.tolist(), strict=True))
        for name, base, overrides in variants:
            settings = preset(base, size=224, per_unit=4, steps=args.budget, **overrides)
            start = time.perf_counter()
            rendering = render_units(model, TTQ_UNITS, settings, until=targets, progress=False)
            seconds = time.perf_counter() - start
            reached = all(float(rendering.unit_activations(k).min()) >= targets[u] for k, u in enumerate(TTQ_UNITS))
            hf = high_frequency_share(rendering.images)
            mine = robust_activations(model, TTQ_UNITS, [rendering.unit_images(k) for k in range(len(TTQ_UNITS))])
            kept = min(a / b for a, b in zip(mine, robust, strict=True))
            results[name].append((seconds / len(rendering.seeds), reached, hf, max(rendering.steps), kept))
            share = [float(rendering.unit_activations(k).mean()) / targets[u] for k, u in enumerate(TTQ_UNITS)]
            print(
                f"  run {rep + 1} {name:26s} {seconds:7.1f} s  steps {max(rendering.steps):4d}  "
                f"reached {reached}  mean activation / lucent's {[round(x, 2) for x in share]}  "
                f"high-frequency share {hf:.4f}  robust / lucent's (lowest unit) {kept:.2f}"
            )
    per_image = statistics.median(lucent_time)
    hf_lucent = statistics.median(lucent_hf)
    print(
        f"{len(TTQ_UNITS)} units, 224 px, lucent {args.lucent_steps} steps x 1 image per unit; vizprobe 4 images "
        f"per unit until lucent's activation, budget {args.budget} steps; medians of {args.repeats}"
    )
    print(f"lucent 0.1.8                 {per_image:7.2f} s per image  1.00x  high-frequency share {hf_lucent:.4f}")
    for name, runs in results.items():
        t = statistics.median(r[0] for r in runs)
        hf = statistics.median(r[2] for r in runs)
        kept = statistics.median(r[4] for r in runs)
        print(
            f"vizprobe {name:26s} {t:7.2f} s per image  {per_image / t:5.1f}x less  reached "
            f"{all(r[1] for r in runs)}  steps {max(r[3] for r in runs)}  high-frequency share {hf:.4f} "
            f"({hf / hf_lucent:.2f}x lucent's)  robust activation {kept:.2f}x lucent's"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-to-quality", action="store_true", help="time until lucent's activation")
    parser.add_argument("--lucent-steps", type=int, default=512)
    parser.add_argument("--budget", type=int, default=512, help="with --time-to-quality: vizprobe's step budget")
    parser.add_argument("--variants", default=None, help="with --time-to-quality: some of TTQ_VARIANTS, by name")
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--per-unit", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = load_model("efficientnet-lite0", device=args.device)
    if args.time_to_quality:
        return time_to_quality(args, model)
    settings = preset("quick", steps=args.steps, size=args.size, per_unit=args.per_unit)
    n_images = len(UNITS) * settings.per_unit
    sides = ["one unit at a time", "vizprobe batched", "vizprobe (auto)"]
    if resolve_precision("auto", model.device) == "fp32":
        sides.remove("vizprobe (auto)")  # the same as float32 on hardware without native bfloat16
        print("vizprobe (auto) is float32 here (no native bfloat16): measured once as 'vizprobe batched'")
    try:
        import lucent.optvis.render  # noqa: F401

        sides.insert(0, "lucent 0.1.8")
    except ImportError as exc:
        print(f"lucent not measured ({exc}); pip install -e '.[bench]' adds it")
    times: dict[str, list[float]] = {side: [] for side in sides}
    finals = {}
    for rep in range(args.repeats):
        for side in sides[rep % len(sides) :] + sides[: rep % len(sides)]:  # rotate the order every repeat
            if side == "lucent 0.1.8":
                seconds, rendered = lucent_library(model, UNITS, settings, model.device)
            elif side == "one unit at a time":
                seconds, rendered = lucent_style(model, UNITS, settings, model.device)
            else:
                precision = "fp32" if side == "vizprobe batched" else "auto"
                seconds, rendered = batched(model, UNITS, settings, model.device, precision)
            finals[side] = final_activations(model, UNITS, rendered)
            times[side].append(seconds)
            print(f"  run {rep + 1} {side:18s} {n_images / seconds:6.2f} img/s ({seconds:.1f} s)")
    print(
        f"16 units x {settings.per_unit} images, {settings.steps} steps, {settings.size} px, "
        f"device {model.device}, torch threads {torch.get_num_threads()}"
    )
    rates = {side: statistics.median(n_images / t for t in ts) for side, ts in times.items()}
    base = rates["one unit at a time"]
    lucent = rates.get("lucent 0.1.8")
    for side in times:
        versus_lucent = f"  vs lucent {rates[side] / lucent:.2f}x" if lucent else ""
        print(
            f"{side:18s} {rates[side]:6.2f} img/s  ratio {rates[side] / base:.2f}x{versus_lucent}  "
            f"mean final activation {finals[side].mean():.3f}"
        )
    print(f"(auto precision here: {resolve_precision('auto', model.device)}; final activations in float32)")


if __name__ == "__main__":
    main()
