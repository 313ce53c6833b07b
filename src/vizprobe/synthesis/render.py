"""The optimization loop: many units at once, each image driven only by its own unit.

One batch holds `per_unit` images for each of m units. Images are independent (eval-mode network,
per-image objectives, element-wise Adam), so the batch can be cut into chunks of whole units to fit
memory without changing the result; the parameterization runs once per step for the whole batch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import torch
from tqdm.auto import tqdm

from vizprobe.device import resolve_device
from vizprobe.errors import VizprobeError
from vizprobe.models import LoadedModel
from vizprobe.models.optimize import checked_inference_copy
from vizprobe.synthesis import objectives as obj
from vizprobe.synthesis import transforms as tf
from vizprobe.synthesis.param import PARAMS, GeneratorParam
from vizprobe.synthesis.rng import ImageRNG, image_seeds
from vizprobe.units import LayerTap, Unit


@dataclass(frozen=True)
class RenderSettings:
    """Everything that determines a rendering; defaults are the paper's (Zimmermann et al. 2021)."""

    steps: int = 2560
    size: int = 224
    per_unit: int = 9
    lr: float = 0.05
    param: str = "fourier"
    decay: float = 1.0
    transforms: str = "paper"
    diversity: float = 1e2
    l1: float = 0.0
    l2: float = 0.0
    tv: float = 0.0
    blur: float = 0.0
    negative: bool = False
    objective: str = "channel"
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    # Adam(0.05), 2560 steps, 9 images per unit, Gram diversity 1e2, pad 16 + jitter/scale/rotate.
    "paper": RenderSettings(),
    # Minutes on a CPU: fewer steps, smaller images, lucid's standard transforms.
    "quick": RenderSettings(steps=96, size=128, per_unit=4, transforms="standard", diversity=1.0),
}


def preset(name: str, **overrides) -> RenderSettings:
    if name not in PRESETS:
        raise VizprobeError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bfloat16 autocast where the hardware has it natively (1.8x faster forward + backward
    on this project's AVX512-BF16 CPU), else float32. Final activations are always measured in float32."""
    if precision not in PRECISIONS:
        raise VizprobeError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"


class _Float32Convs:
    """Inside: strided depthwise convolutions run in float32 even under bfloat16 autocast.

    oneDNN's bfloat16 backward for them was 10-20x slower than float32 on this project's CPU
    (measured: 25 ms against 1.4 ms for a 5x5 stride-2 depthwise conv on 16 x 144 x 38 x 38).
    """

    def __init__(self, net: torch.nn.Module, enabled: bool):
        self.modules = [
            m
            for m in net.modules()
            if enabled and isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1 and max(m.stride) > 1
        ]

    def __enter__(self) -> None:
        for module in self.modules:
            original = module.forward

            def forward(x, original=original, device=module.weight.device.type):
                with torch.autocast(device, enabled=False):
                    return original(x.float())

            module.forward = forward

    def __exit__(self, *exc) -> None:
        for module in self.modules:
            del module.forward  # back to the class's forward


@dataclass
class Rendering:
    """The images (B, 3, S, S) in [0, 1], grouped by unit, with each image's final activation."""

    units: list[Unit]
    images: torch.Tensor
    unit_index: list[int]
    seeds: list[int]
    activations: torch.Tensor
    settings: RenderSettings
    seconds: float
    history: list[float] = field(default_factory=list)  # mean objective per step
    precision: str = "fp32"

    def unit_images(self, k: int) -> torch.Tensor:
        return self.images[[i for i, u in enumerate(self.unit_index) if u == k]]

    def unit_activations(self, k: int) -> torch.Tensor:
        return self.activations[[i for i, u in enumerate(self.unit_index) if u == k]]


def _objective(settings: RenderSettings, paths: list[str], chans: list[int], groups: list[int]) -> obj.Objective:
    if settings.objective not in ("channel", "neuron"):
        raise VizprobeError(f"unknown objective {settings.objective!r}; use channel or neuron")
    main = obj.neurons(paths, chans) if settings.objective == "neuron" else obj.channels(paths, chans)
    total = -main if settings.negative else main
    if settings.diversity:
        total = total + settings.diversity * obj.diversity(paths, groups)
    for weight, penalty in [(settings.l1, obj.L1), (settings.l2, obj.L2), (settings.tv, obj.total_variation)]:
        if weight:
            total = total - weight * penalty()
    if settings.blur:
        total = total - settings.blur * obj.blur_input_each_step()
    return total


def _chunks(batch: int, per_unit: int, chunk_units: int) -> list[slice]:
    step = per_unit * max(1, chunk_units)
    return [slice(start, min(start + step, batch)) for start in range(0, batch, step)]


def render(
    model: LoadedModel,
    units: list[Unit | str],
    settings: RenderSettings | None = None,
    *,
    device: str | torch.device = "auto",
    chunk_images: int | None = None,
    generator: torch.nn.Module | None = None,
    latent_shape: tuple[int, ...] | None = None,
    precision: str = "auto",
    progress: bool = True,
) -> Rendering:
    """Render `settings.per_unit` feature visualizations for every unit, all in one optimization.

    `chunk_images` bounds how many images go through the network at once, rounded to whole units
    (default: 256 on a GPU, 16 on the CPU, where larger batches were slower). With `generator` (and
    its `latent_shape`), images come from a generator's latent codes. `precision` is that of the
    network during optimization (see `resolve_precision`).
    """
    settings = settings or PRESETS["quick"]
    dev = resolve_device(device)
    if dev != model.device:
        model.net.to(dev)
        model.device = dev
    units = [Unit.parse(u) for u in units]
    resolved = [model.resolve_unit(u) for u in units]
    n = settings.per_unit
    # Units of the same layer go through the network together, shallow layers first, so that each
    # chunk's forward pass stops as early as its units allow.
    depth = {info.path: rank for rank, info in enumerate(model.layers)}
    order = sorted(range(len(units)), key=lambda k: depth[resolved[k][0].path])
    paths = [resolved[k][0].path for k in order for _ in range(n)]
    chans = [resolved[k][1] for k in order for _ in range(n)]
    groups = [k for k in order for _ in range(n)]
    seeds = [seed for k in order for seed in image_seeds(settings.seed, [str(units[k])], n)]
    batch = len(seeds)

    if generator is not None:
        if latent_shape is None:
            raise VizprobeError("a generator parameterization needs latent_shape=(...) of its input")
        param: torch.nn.Module = GeneratorParam(generator, seeds, latent_shape, settings.size)
    elif settings.param in PARAMS:
        kwargs = {"decay": settings.decay} if settings.param == "fourier" else {}
        param = PARAMS[settings.param](seeds, settings.size, **kwargs)
    else:
        raise VizprobeError(f"unknown parameterization {settings.param!r}; use one of {', '.join(PARAMS)}")
    param = param.to(dev)
    if settings.transforms not in tf.PRESETS:
        raise VizprobeError(f"unknown transforms {settings.transforms!r}; use one of {', '.join(tf.PRESETS)}")
    transform = tf.compose(tf.PRESETS[settings.transforms]())
    optimizer = torch.optim.Adam([p for p in param.parameters() if p.requires_grad], lr=settings.lr)
    rng = ImageRNG(seeds)
    chunk_images = chunk_images or (256 if dev.type == "cuda" else 16)
    chunks = _chunks(batch, n, max(1, chunk_images // n))
    # Built once: each chunk's objective, and a tap that stops the forward pass at the chunk's own
    # deepest layer (not the deepest layer of all units).
    objectives = {(c.start, c.stop): _objective(settings, paths[c], chans[c], groups[c]) for c in chunks}
    # Batch norms folded into the convolutions, symmetric paddings merged into them (the same layer
    # outputs, checked before use): 1.4x faster steps on the CPU.
    net = checked_inference_copy(model.net, sorted(set(paths)), settings.size, dev)
    taps = {key: LayerTap(net, sorted(o.layers)) for key, o in objectives.items()}
    memory_format = torch.channels_last if dev.type == "cpu" else torch.contiguous_format

    def normalize(images: torch.Tensor) -> torch.Tensor:
        return model.preprocessing.normalize(images).contiguous(memory_format=memory_format)

    precision = resolve_precision(precision, dev)

    def chunk_objective(images: torch.Tensor, inputs: torch.Tensor, part: slice) -> torch.Tensor:
        key = (part.start, part.stop)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            acts = taps[key](normalize(inputs))
        acts = {path: value.float() for path, value in acts.items()}
        return objectives[key](obj.RenderState(acts, images, inputs))

    history = []
    started = time.perf_counter()
    bar = tqdm(range(settings.steps), desc="render", unit="step", disable=not progress)
    net.to(memory_format=memory_format)  # channels-last: 1.5x faster forward + backward on the CPU
    try:
        with _Float32Convs(net, precision == "bf16" and dev.type == "cpu"):
            images = _optimize(bar, param, optimizer, transform, rng, chunks, chunk_objective, history, batch)
        with torch.no_grad():
            final = torch.cat([
                obj.channels(paths[part], chans[part])(
                    obj.RenderState(taps[(part.start, part.stop)](normalize(images[part])), images[part], images[part])
                )
                for part in chunks
            ])  # fmt: skip
    finally:
        net.to(memory_format=torch.contiguous_format)
        bar.close()
    seconds = time.perf_counter() - started
    return Rendering(units, images.cpu(), groups, seeds, final.cpu(), settings, seconds, history, precision)


def _optimize(bar, param, optimizer, transform, rng, chunks, chunk_objective, history, batch) -> torch.Tensor:
    """The steps: the parameterization once for the whole batch, the network chunk by chunk."""
    for step in bar:
        optimizer.zero_grad(set_to_none=True)
        images = param()
        leaf = images.detach().requires_grad_(True)
        total = 0.0
        for part in chunks:
            inputs = transform(leaf[part], rng[part], step)
            score = chunk_objective(leaf[part], inputs, part)
            (-score.sum()).backward()
            total += float(score.detach().sum())
        images.backward(leaf.grad)
        optimizer.step()
        history.append(total / batch)
        bar.set_postfix(objective=f"{history[-1]:.3g}", refresh=False)
    with torch.no_grad():
        return param().detach()
