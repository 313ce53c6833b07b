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
        return torch.cat([
            model.unit_activations(model.preprocessing.normalize(images), [unit])[:, 0].cpu()
            for unit, images in zip(units, images_per_unit, strict=True)
        ])  # fmt: skip


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
        objective = lo.channel(layer, channel) - settings.diversity * lo.diversity(layer)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--per-unit", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = load_model("efficientnet-lite0", device=args.device)
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
