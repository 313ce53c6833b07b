"""Feature visualization throughput: one unit at a time (as lucent does) against vizprobe's batched render.

Both sides render the same 16 units of efficientnet-lite0 with the same parameterization (Fourier,
decorrelated colour), transforms (lucid's standard set), objective (channel + diversity), steps,
image size and images per unit. The reference is lucent's `render_vis` loop: one unit per call, the
whole network run forward on every step with a hook on the unit's layer. vizprobe puts all units in
one optimization, stops each forward pass at the deepest layer its chunk needs, groups units of a
layer together and uses channels-last memory ("vizprobe batched", float32); by default it also
runs the network under bfloat16 autocast where the hardware supports it ("vizprobe (auto)"). Sides
alternate; medians are printed with the mean final activation (float32) of each.

    python benchmarks/visualize.py [--steps 48] [--size 128] [--per-unit 4] [--repeats 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vizprobe.models import load_model
from vizprobe.synthesis import objectives as obj
from vizprobe.synthesis import preset, render
from vizprobe.synthesis import transforms as tf
from vizprobe.synthesis.param import FourierParam
from vizprobe.synthesis.render import resolve_precision
from vizprobe.synthesis.rng import ImageRNG, image_seeds
from vizprobe.units import channel_mean

UNITS = [f"_blocks.{b}:{c}" for b in (3, 6, 9, 12) for c in (1, 5, 9, 13)]


def lucent_style(model, units, settings, device) -> tuple[float, torch.Tensor]:
    """One `render_vis`-like call per unit: full forward pass, a hook on the layer, one objective."""
    start = time.perf_counter()
    finals = []
    modules = dict(model.net.named_modules())
    for unit in units:
        info, channel = model.resolve_unit(unit)
        seeds = image_seeds(settings.seed, [unit], settings.per_unit)
        param = FourierParam(seeds, settings.size).to(device)
        transform = tf.compose(tf.standard())
        optimizer = torch.optim.Adam(param.parameters(), lr=settings.lr)
        rng = ImageRNG(seeds)
        captured = {}
        handle = modules[info.path].register_forward_hook(lambda m, i, o, c=captured: c.__setitem__("layer", o))
        objective = obj.channel(info.path, channel, settings.per_unit)
        objective = objective + settings.diversity * obj.diversity([info.path] * settings.per_unit, [0] * len(seeds))
        for step in range(settings.steps):
            optimizer.zero_grad()
            images = param()
            inputs = transform(images, rng, step)
            model.net(model.preprocessing.normalize(inputs))
            loss = -objective(obj.RenderState({info.path: captured["layer"]}, images, inputs)).sum()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            images = param()
            model.net(model.preprocessing.normalize(images))
            finals.append(channel_mean(captured["layer"])[:, channel])
        handle.remove()
    return time.perf_counter() - start, torch.cat(finals)


def batched(model, units, settings, device, precision="fp32") -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    rendering = render(model, units, settings, device=device, precision=precision, progress=False)
    finals = torch.cat([rendering.unit_activations(k) for k in range(len(units))])
    return time.perf_counter() - start, finals


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
    times: dict[str, list[float]] = {side: [] for side in sides}
    finals = {}
    for rep in range(args.repeats):
        for side in sides[rep % 3 :] + sides[: rep % 3]:  # rotate the order every repeat
            if side == "one unit at a time":
                seconds, finals[side] = lucent_style(model, UNITS, settings, model.device)
            else:
                precision = "fp32" if side == "vizprobe batched" else "auto"
                seconds, finals[side] = batched(model, UNITS, settings, model.device, precision)
            times[side].append(seconds)
            print(f"  run {rep + 1} {side:18s} {n_images / seconds:6.2f} img/s ({seconds:.1f} s)")
    print(
        f"16 units x {settings.per_unit} images, {settings.steps} steps, {settings.size} px, "
        f"device {model.device}, torch threads {torch.get_num_threads()}"
    )
    rates = {side: statistics.median(n_images / t for t in ts) for side, ts in times.items()}
    base = rates["one unit at a time"]
    for side in times:
        print(
            f"{side:18s} {rates[side]:6.2f} img/s  ratio {rates[side] / base:.2f}x  "
            f"mean final activation {finals[side].mean():.3f}"
        )
    print(f"(auto precision here: {resolve_precision('auto', model.device)}; final activations in float32)")


if __name__ == "__main__":
    main()
