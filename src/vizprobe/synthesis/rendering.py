"""The optimization loop (`render`) and feature visualizations of many units at once (`render_units`).

`render` is lucid's loop: a parameterization, transforms, an objective and an optimizer, stepped on a
model; it knows nothing of units or presets. `render_units` builds those pieces for `per_unit` images of
each of m units and calls it. Images are independent (eval-mode network, per-image objectives,
element-wise Adam), so the batch can be cut into chunks of whole units, each with its own objective, to
fit memory without changing the result; the parameterization runs once per step for the whole batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from vizprobe.device import exact_convolutions
from vizprobe.errors import VizprobeError
from vizprobe.models import LoadedModel
from vizprobe.models.optimize import checked_inference_copy
from vizprobe.synthesis import objectives as obj
from vizprobe.synthesis import transforms as tf
from vizprobe.synthesis.natural import demo_spectrum, sized
from vizprobe.synthesis.param import ACCENTUATION_GAIN, PARAMS, FourierParam, GeneratorParam
from vizprobe.synthesis.rng import ImageRNG, image_seeds
from vizprobe.synthesis.settings import (  # noqa: F401  (preset re-exported)
    METHODS,
    PRECISIONS,
    PRESETS,
    RenderSettings,
    preset,
)
from vizprobe.units import LayerTap, Unit, split_layer

OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


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


def _to_bfloat16(net: torch.nn.Module, keep: Sequence[torch.nn.Module]) -> None:
    """Store the convolutions' weights in bfloat16 once (autocast would round them the same way at every
    step: it caches only casts of weights that require grad); `keep` stay float32."""
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear) and module not in keep:
            module.to(torch.bfloat16)


@dataclass
class RenderResult:
    """What `render` returns: the images (B, 3, S, S) in [0, 1] on the CPU and the mean objective per step."""

    images: torch.Tensor
    history: list[float]
    seconds: float
    precision: str
    steps: list[int] = field(default_factory=list)  # per image: the steps it was optimized for
    transparency: torch.Tensor | None = None  # (B, S, S): summed |objective gradient| on each image, channel mean


@dataclass
class Rendering:
    """Feature visualizations of units: images grouped by unit, with each image's seed and final activation."""

    units: list[Unit]
    images: torch.Tensor
    unit_index: list[int]
    seeds: list[int]
    activations: torch.Tensor
    settings: RenderSettings
    seconds: float
    history: list[float] = field(default_factory=list)  # mean objective per step
    precision: str = "fp32"
    extra: list[bool] = field(default_factory=list)  # True for the separate `mixed` batch (settings.mixed_extra)
    seed_images: list[int] = field(default_factory=list)  # accentuation: each image's start, an index into
    # its unit's references
    spectrum: torch.Tensor | None = None  # maco: the Fourier magnitude the images were given
    spectrum_source: str = ""
    steps: list[int] = field(default_factory=list)  # per image: steps optimized (fewer when it met its target)
    targets: dict[Unit, float] = field(default_factory=dict)  # the activations images stopped at, per unit
    transparency: torch.Tensor | None = None  # crops: (B, S, S) where the objective's gradient fell (MACO's map)
    crop_activations: torch.Tensor | None = None  # crops: each image's activation as optimized (`centre_crop`)
    accent_layer: str = ""  # accentuation: the layer its regularizer compared ("pixels": the pixel distance)

    def _rows(self, k: int, extra: bool) -> list[int]:
        flags = self.extra or [False] * len(self.unit_index)
        return [i for i, (u, e) in enumerate(zip(self.unit_index, flags, strict=True)) if u == k and e == extra]

    def unit_images(self, k: int, extra: bool = False) -> torch.Tensor:
        """Unit k's images (of the separate `mixed` batch with `extra=True`)."""
        return self.images[self._rows(k, extra)]

    def unit_activations(self, k: int, extra: bool = False) -> torch.Tensor:
        return self.activations[self._rows(k, extra)]


@exact_convolutions()
def render(
    model: LoadedModel,
    objective: obj.Objective | Sequence[tuple[slice, obj.Objective]],
    param: torch.nn.Module,
    transform: tf.Transform | None = None,
    optimizer: OptimizerFactory | None = None,
    steps: int = 512,
    *,
    rng: ImageRNG | None = None,
    precision: str = "auto",
    progress: bool = True,
    finished: Callable[[torch.Tensor], torch.Tensor] | None = None,
    check_every: int = 8,
    companions: torch.Tensor | None = None,
    transparency: bool = False,
) -> RenderResult:
    """Maximize `objective` over the images of `param` for `steps` steps, on the model's device.

    `objective` scores the whole batch, or is a list of (slice of the batch, objective of that slice)
    chunks that go through the network one after the other (to bound memory). `transform` perturbs the
    images each step with `rng` (default: one seed per image, 0..B-1); `optimizer` makes the optimizer
    from the parameters (default Adam, lr 0.05, the paper's). The model is never moved or changed.

    `finished` (images -> (B,) bool), asked every `check_every` steps, stops images early: a finished
    image is frozen (its parameters no longer change), a chunk whose images all finished is no longer
    computed, and the loop ends when every image has finished. Parameters must be batch-first.

    `companions` (B, 3, S, S) are fixed images transformed exactly as the batch's (stacked on the channels, so
    the same crops and noise) and run through the network after them: objectives see their activations in
    rows B' .. 2 B' of each layer (B' the transformed batch size; feature accentuation's seeds). Objectives with a
    `calibrate` method (`objectives.Balanced`) are weighed by their terms' parameter gradients at step 0, in
    float32. `transparency` sums |d objective / d image| over the steps (MACO's transparency map).
    """
    dev = model.device
    param = param.to(dev)
    with torch.no_grad():
        first = param()
    batch, size = first.shape[0], first.shape[-1]
    parts = [(slice(0, batch), objective)] if isinstance(objective, obj.Objective) else list(objective)
    rng = rng or ImageRNG(list(range(batch)))
    transform = transform or (lambda images, _rng, _step: images)
    params = [p for p in param.parameters() if p.requires_grad]
    opt = optimizer(params) if optimizer else torch.optim.Adam(params, lr=0.05)
    layers = sorted(set().union(*(o.layers for _, o in parts)))
    # Batch norms folded into the convolutions, symmetric paddings merged into them (the same layer
    # outputs, checked before use); each chunk's tap stops the forward pass at its own deepest layer.
    net = checked_inference_copy(model.net, layers, size, dev) if layers else model.net
    own_copy = net is not model.net
    taps = [LayerTap(net, sorted(o.layers), model.directions) for _, o in parts]
    memory_format = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    precision = resolve_precision(precision, dev)

    fixed = model.spec.fixed_input_size and model.preprocessing.crop

    def score(
        k: int,
        images: torch.Tensor,
        inputs: torch.Tensor,
        objective: obj.Objective | None = None,
        bf16: bool | None = None,
    ) -> torch.Tensor:
        objective = objective or parts[k][1]
        if fixed and inputs.shape[-2:] != (fixed, fixed):  # e.g. a ViT's position embeddings fix its input size
            inputs = torch.nn.functional.interpolate(inputs, size=(fixed, fixed), mode="bilinear", align_corners=False)
        normalized = model.preprocessing.normalize(inputs).contiguous(memory_format=memory_format)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16" if bf16 is None else bf16):
            acts = taps[k](normalized) if objective.layers else {}
        acts = {path: value.float() for path, value in acts.items()}
        return objective(obj.RenderState(acts, images, inputs))

    if companions is not None:
        companions = companions.to(dev)
        transform = _WithCompanions(transform, companions)

    history: list[float] = []
    started = time.perf_counter()
    bar = tqdm(range(steps), desc="render", unit="step", disable=not progress)
    if own_copy:
        net.to(memory_format=memory_format)  # channels-last is faster on the CPU (benchmarks/README.md)
    done = _Frozen(params, batch)
    float32_convs = _Float32Convs(net, precision == "bf16" and dev.type == "cpu")
    for k, (part, objective) in enumerate(parts):  # in float32, before the network's weights are rounded
        if hasattr(objective, "calibrate"):
            objective.calibrate(lambda term, k=k, c=part: _gradient_size(param, transform, rng, c, score, k, term))
    if own_copy and precision == "bf16":
        _to_bfloat16(net, keep=float32_convs.modules)
    summed = torch.zeros(batch, size, size, device=dev) if transparency else None
    try:
        with float32_convs:
            for step in bar:
                active = [k for k, (part, _) in enumerate(parts) if not done.mask[part].all()]
                history.append(_step(param, opt, transform, rng, parts, score, step, active, summed) / batch)
                done.restore()
                bar.set_postfix(objective=f"{history[-1]:.3g}", refresh=False)
                if finished is not None and (step + 1) % check_every == 0:
                    with torch.no_grad():
                        done.freeze(finished(param().detach()).cpu(), step + 1)
                    if done.mask.all():
                        break
        with torch.no_grad():
            images = param().detach()
    finally:
        bar.close()
    return RenderResult(
        images.cpu(),
        history,
        time.perf_counter() - started,
        precision,
        done.steps(len(history)),
        None if summed is None else summed.cpu(),
    )


class _WithCompanions:
    """A transform applied to images and their companions stacked on the channels (the same geometry and noise),
    returning one batch: the transformed images, then the transformed companions of the chunk `select`ed."""

    def __init__(self, transform: tf.Transform, companions: torch.Tensor):
        self.transform, self.companions, self.part = transform, companions, slice(None)

    def select(self, part: slice) -> None:
        self.part = part

    def __call__(self, images: torch.Tensor, rng: ImageRNG, step: int) -> torch.Tensor:
        both = self.transform(torch.cat([images, self.companions[self.part].to(images)], dim=1), rng, step)
        return torch.cat([both[:, :3], both[:, 3:]])


def _gradient_size(param, transform, rng, part: slice, score, k: int, objective: obj.Objective) -> torch.Tensor:
    """(rows of `part`,) each image's sum of |d objective / d parameters| at the current parameters, with the
    transforms of step 0, in float32 (what `objectives.Balanced` weighs its terms by)."""
    params = [p for p in param.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    images = param()
    leaf = images.detach().requires_grad_(True)
    if hasattr(transform, "select"):
        transform.select(part)
    score(k, leaf[part], transform(leaf[part], rng[part], 0), objective, bf16=False).sum().backward()
    images.backward(leaf.grad)
    size = sum(p.grad[part].abs().flatten(1).sum(dim=1) for p in params if p.grad is not None and p.dim() > 0)
    for p in params:
        p.grad = None
    return size.detach().cpu()


class _Frozen:
    """Images that have finished: their parameters are kept as they were when they finished."""

    def __init__(self, params: list[torch.nn.Parameter], batch: int):
        self.params = [p for p in params if p.shape[:1] == (batch,)]
        self.mask = torch.zeros(batch, dtype=torch.bool)
        self.at: list[int | None] = [None] * batch
        self.values: list[torch.Tensor] = []

    def freeze(self, now: torch.Tensor, step: int) -> None:
        new = now & ~self.mask
        if not new.any():
            return
        if not self.values:
            self.values = [p.detach().clone() for p in self.params]
        for p, kept in zip(self.params, self.values, strict=True):
            kept[new.to(p.device)] = p.detach()[new.to(p.device)]
        for i in new.nonzero()[:, 0].tolist():
            self.at[i] = step
        self.mask |= new

    def restore(self) -> None:
        if self.values:
            with torch.no_grad():
                for p, kept in zip(self.params, self.values, strict=True):
                    rows = self.mask.to(p.device)
                    p[rows] = kept[rows]

    def steps(self, total: int) -> list[int]:
        return [total if at is None else at for at in self.at]


def _step(
    param,
    optimizer,
    transform,
    rng,
    parts,
    score,
    step: int,
    active: Sequence[int] | None = None,
    transparency: torch.Tensor | None = None,
) -> float:
    """One step: the parameterization once for the whole batch, the network chunk by chunk (the `active`
    chunks only, by default all); adds |d objective / d image| to `transparency` when given."""
    optimizer.zero_grad(set_to_none=True)
    images = param()
    leaf = images.detach().requires_grad_(True)
    total = 0.0
    for k, (part, _) in enumerate(parts):
        if active is not None and k not in active:
            continue
        if hasattr(transform, "select"):
            transform.select(part)
        inputs = transform(leaf[part], rng[part], step)
        value = score(k, leaf[part], inputs)
        (-value.sum()).backward()
        total += float(value.detach().sum())
    if leaf.grad is None:  # every chunk finished
        return total
    if transparency is not None:
        transparency += leaf.grad.abs().mean(dim=1)
    images.backward(leaf.grad)
    optimizer.step()
    return total


def unit_objective(
    settings: RenderSettings, units: Sequence[Unit], groups: Sequence[int], copies: int = 1
) -> obj.Objective:
    """The objective of a batch whose image i belongs to `units[i]` (canonical) and group `groups[i]`; with
    `copies`, each image is seen as that many crops and its unit term averaged over them."""
    if settings.objective not in ("channel", "neuron"):
        raise VizprobeError(f"unknown objective {settings.objective!r}; use channel or neuron")
    paths = [u.layer for u in units for _ in range(copies)]
    chans = [u.channel for u in units for _ in range(copies)]
    main = obj.neurons(paths, chans) if settings.objective == "neuron" else obj.channels(paths, chans)
    main = obj.mean_over_copies(main, copies)
    total = -main if settings.negative else main
    if settings.diversity and settings.param != "accentuation":  # its images differ by their start images
        total = total + settings.diversity * obj.diversity([u.layer for u in units], groups)
    for weight, penalty in [
        (settings.l1, obj.L1),
        (settings.l2, obj.L2),
        (settings.tv, obj.total_variation),
        (settings.coherence, obj.centre_bias),
    ]:
        if weight:
            total = total - weight * penalty()
    if settings.blur:
        total = total - settings.blur * obj.blur_input_each_step()
    return total


def make_param(
    settings: RenderSettings,
    seeds: list[int],
    generator: torch.nn.Module | None = None,
    latent_shape: tuple[int, ...] | None = None,
    *,
    spectrum: torch.Tensor | None = None,
    start_images: torch.Tensor | None = None,
) -> torch.nn.Module:
    """The parameterization named by the settings, or a generator's latent codes when one is given; maco
    needs `spectrum`, accentuation its `start_images` (one per seed)."""
    if generator is not None:
        if latent_shape is None:
            raise VizprobeError("a generator parameterization needs latent_shape=(...) of its input")
        return GeneratorParam(generator, seeds, latent_shape, settings.size)
    if settings.param not in METHODS:
        raise VizprobeError(f"unknown method {settings.param!r}; use one of {', '.join(METHODS)}")
    if settings.param == "accentuation":
        return FourierParam.from_images(start_images, seeds, decay=settings.decay, gain=ACCENTUATION_GAIN)
    if settings.param == "maco":
        return PARAMS["maco"](seeds, settings.size, spectrum)
    kwargs = {"decay": settings.decay} if settings.param == "fourier" else {}
    return PARAMS[settings.param](seeds, settings.size, **kwargs)


def _chunks(layers: Sequence[str], per_unit: int, chunk_units: int, mix_layers: bool) -> list[slice]:
    """Slices of whole units (`layers`: each unit's layer, in batch order), at most `chunk_units` each; a new
    chunk starts at each change of layer unless `mix_layers` (a chunk's forward pass runs to its deepest layer)."""
    starts = [0]
    for k in range(1, len(layers)):
        if k - starts[-1] >= chunk_units or (not mix_layers and layers[k] != layers[k - 1]):
            starts.append(k)
    ends = [*starts[1:], len(layers)]
    return [slice(a * per_unit, b * per_unit) for a, b in zip(starts, ends, strict=True)]


def default_chunk_images(device: torch.device, size: int = 128) -> int:
    """Images per forward pass: 256 on a GPU; on the CPU as many as make 16 images of 128 px (4 at 224 px
    were 2x faster per image than 16, benchmarks/README.md), whole units of one layer at a time."""
    if device.type == "cuda":
        return 256
    return max(1, round(16 * (128 / size) ** 2))


def render_units(
    model: LoadedModel,
    units: Sequence[Unit | str],
    settings: RenderSettings | None = None,
    *,
    chunk_images: int | None = None,
    generator: torch.nn.Module | None = None,
    latent_shape: tuple[int, ...] | None = None,
    precision: str = "auto",
    progress: bool = True,
    references: Mapping[Unit | str, torch.Tensor] | None = None,
    spectrum: torch.Tensor | tuple[torch.Tensor, str] | None = None,
    until: float | Mapping[Unit | str, float] | None = None,
) -> Rendering:
    """Render `settings.per_unit` feature visualizations for every unit, all in one optimization.

    Units are resolved to their canonical form, which (with the model's name) fixes every image's seed,
    whatever the spelling. `chunk_images` bounds how many images go through the network at once, rounded
    to whole units (on the CPU, of one layer). With `generator` (and its `latent_shape`), images come from a
    generator's latent codes.
    `precision` is that of the network during optimization (see `resolve_precision`).

    `references` are each unit's natural images (N, 3, H, W) in [0, 1], strongest first (e.g. its top scan
    exemplars): accentuation starts image j of a unit from reference j (mod N) and drops the diversity term,
    the colour prior (`settings.colour`) pulls patch colours toward theirs. maco takes `spectrum` (or
    (spectrum, where it was measured); see `vizprobe.synthesis.natural`), by default the demo photos'.

    `until` (an activation, or one per unit) stops each image once its activation (the final definition,
    checked every 8 steps) reaches it (falls to it with `settings.negative`); `settings.steps` stays the
    budget. Each image's step count is in `Rendering.steps`.
    """
    settings = settings or PRESETS["quick"]
    if settings.transforms not in tf.PRESETS:
        raise VizprobeError(f"unknown transforms {settings.transforms!r}; use one of {', '.join(tf.PRESETS)}")
    units = model.resolve_units(units)
    refs = _references(model, units, references, settings)
    batch = _layout(model, units, settings)
    spectrum, source = _spectrum(model, settings, spectrum)
    starts, start_images = _starts(batch, refs, settings)
    param = make_param(settings, batch.seeds, generator, latent_shape, spectrum=spectrum, start_images=start_images)
    accent = accent_layer(model, settings) if settings.param == "accentuation" else ""
    companions = start_images if accent and accent != "pixels" else None
    network_side = (settings.crop_input or model.preprocessing.crop) if settings.crops else settings.size
    inputs_per_image = max(1, settings.crops) * (2 if companions is not None else 1)
    chunk_images = chunk_images or max(1, default_chunk_images(model.device, network_side) // inputs_per_image)
    layers = [split_layer(unit.layer)[0] for unit in batch.units]
    chunks = _chunks(layers, batch.n, max(1, chunk_images // batch.n), mix_layers=model.device.type == "cuda")
    parts = _objectives(settings, batch, chunks, refs, accent, start_images)
    targets = _targets(model, units, until)
    result = render(
        model,
        parts,
        param,
        _transform(settings, network_side),
        lambda params: _OPTIMIZERS[settings.optimizer](params, lr=settings.lr, betas=tuple(settings.betas)),
        settings.steps,
        rng=ImageRNG(batch.seeds),
        precision=precision,
        progress=progress,
        finished=_stopping(model, batch, chunks, targets, settings.negative),
        companions=companions,
        transparency=bool(settings.crops),
    )

    def activations(images: torch.Tensor) -> torch.Tensor:  # the one definition, float32, on the original network
        return torch.cat([_activations(model, images[c], batch.per_image[c]) for c in chunks]).cpu()

    with torch.no_grad():
        final = activations(result.images)
        seen = activations(centre_crop(result.images, settings, network_side)) if settings.crops else None
    return Rendering(
        units=units,
        images=result.images,
        unit_index=batch.unit_index,
        seeds=batch.seeds,
        activations=final,
        settings=settings,
        seconds=result.seconds,
        history=result.history,
        precision=result.precision,
        extra=batch.extra,
        seed_images=starts,
        spectrum=spectrum,
        spectrum_source=source,
        steps=result.steps,
        targets=targets,
        transparency=result.transparency,
        crop_activations=seen,
        accent_layer=accent,
    )


_OPTIMIZERS = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam}


@dataclass(frozen=True)
class _Layout:
    """Where a rendering's images sit in its batch: `n` per unit, units of shallow layers first (so that each
    chunk's forward pass stops as early as its units allow), each image's unit, seed and diversity group."""

    n: int  # images per unit: settings.per_unit, then settings.mixed_extra of the separate `mixed` batch
    units: list[Unit]  # in batch order, one per unit
    unit_index: list[int]  # per image: its unit's index in the caller's order
    per_image: list[Unit]
    extra: list[bool]  # per image: of the separate `mixed` batch
    groups: list[int]  # per image: its diversity group (the `mixed` batch is its own, as a separate rendering)
    seeds: list[int]


def _layout(model: LoadedModel, units: list[Unit], settings: RenderSettings) -> _Layout:
    n = settings.per_unit + settings.mixed_extra
    depth = {info.path: rank for rank, info in enumerate(model.layers)}
    order = sorted(range(len(units)), key=lambda k: depth[split_layer(units[k].layer)[0]])
    unit_index = [k for k in order for _ in range(n)]
    extra = [j >= settings.per_unit for _ in order for j in range(n)]
    groups = [k + len(units) * int(e) for k, e in zip(unit_index, extra, strict=True)]
    seeds = image_seeds(model.name, [units[k] for k in order], n, settings.seed)
    per_image = [units[k] for k in unit_index]
    return _Layout(n, [units[k] for k in order], unit_index, per_image, extra, groups, seeds)


def _spectrum(
    model: LoadedModel, settings: RenderSettings, spectrum: torch.Tensor | tuple[torch.Tensor, str] | None
) -> tuple[torch.Tensor | None, str]:
    """maco's Fourier magnitude and where it was measured (default: the demo photos'); nothing for the rest."""
    if settings.param != "maco":
        return spectrum if isinstance(spectrum, torch.Tensor) or spectrum is None else spectrum[0], ""
    if spectrum is None:
        return demo_spectrum(model.preprocessing, settings.size)
    return spectrum if isinstance(spectrum, tuple) else (spectrum, "given by the caller")


def _starts(
    batch: _Layout, refs: Mapping[Unit, torch.Tensor], settings: RenderSettings
) -> tuple[list[int], torch.Tensor | None]:
    """accentuation: each image's reference (index j mod N into its unit's) and those images; else none."""
    if settings.param != "accentuation":
        return [], None
    per_unit = [j for _ in batch.units for j in range(batch.n)]
    starts = [j % len(refs[u]) for u, j in zip(batch.per_image, per_unit, strict=True)]
    return starts, torch.stack([refs[u][j] for u, j in zip(batch.per_image, starts, strict=True)])


def _objectives(
    settings: RenderSettings,
    batch: _Layout,
    chunks: list[slice],
    refs: Mapping[Unit, torch.Tensor],
    accent: str,
    start_images: torch.Tensor | None,
) -> list[tuple[slice, obj.Objective]]:
    """Each chunk's objective: the units' activations, with the method's regularizers."""
    copies = max(1, settings.crops)
    colours = None
    if settings.colour:
        colours = torch.stack([obj.patch_colours(refs[u]).flatten(0, 1) for u in batch.per_image])
    parts = []
    for c in chunks:
        objective = unit_objective(settings, batch.per_image[c], batch.groups[c], copies)
        if accent == "pixels" and settings.closeness:
            objective = objective - settings.closeness * obj.closeness(start_images[c])
        if colours is not None:
            objective = objective - settings.colour * obj.colour_statistics(colours[c])
        if accent and accent != "pixels":
            objective = obj.Balanced(objective, obj.companion_distance(accent, copies), settings.accent_alpha)
        parts.append((c, objective))
    return parts


def _transform(settings: RenderSettings, network_side: int) -> tf.Transform:
    """The settings' augmentations, then coarse-to-fine and MACO's box crops where asked for."""
    transforms = tf.PRESETS[settings.transforms]()
    if settings.coarse_steps:
        transforms.append(tf.CoarseToFine(settings.coarse_steps))
    if settings.crops:
        transforms.append(tf.BoxCrops(settings.crops, network_side, settings.box, settings.placement, settings.noise))
    return tf.compose(transforms)


def _stopping(
    model: LoadedModel, batch: _Layout, chunks: list[slice], targets: Mapping[Unit, float], negative: bool
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """With targets: images -> which have reached their unit's target (frozen images stay so); else None."""
    if not targets:
        return None
    sign = -1.0 if negative else 1.0
    goal = sign * torch.tensor([targets[u] for u in batch.per_image])
    reached = torch.zeros(len(batch.per_image), dtype=torch.bool)

    def finished(images: torch.Tensor) -> torch.Tensor:
        for c in chunks:
            if not reached[c].all():
                reached[c] |= sign * _activations(model, images[c], batch.per_image[c]) >= goal[c]
        return reached.clone()

    return finished


def centre_crop(images: torch.Tensor, settings: RenderSettings, side: int) -> torch.Tensor:
    """The images as their crops showed them to the network: the central box of the mean crop side
    (`settings.box`), resized to `side` px (anti-aliased)."""
    size = images.shape[-1]
    box = max(1, round(size * sum(settings.box) / 2))
    start = (size - box) // 2
    crop = images[..., start : start + box, start : start + box]
    return torch.nn.functional.interpolate(
        crop, size=(side, side), mode="bilinear", antialias=True, align_corners=False
    )


def accent_layer(model: LoadedModel, settings: RenderSettings) -> str:
    """The module path whose activations feature accentuation keeps close to the seed's: the settings' layer
    ("pixels": the pixel distance instead), else the model's (`ModelSpec.accent_layer`, e.g. InceptionV1's
    mixed3a, as faccent's examples), else the first named block at 1/8 of the input side (where mixed3a is)."""
    if settings.accent_layer == "pixels":
        return "pixels"
    if settings.accent_layer or model.spec.accent_layer:
        info = model.layer(settings.accent_layer or model.spec.accent_layer)
        if split_layer(info.path)[1] is not None:
            raise VizprobeError(f"accent layer {settings.accent_layer}: give a layer of the network, not directions")
        return info.path
    eighth = model.preprocessing.crop / 8
    named = [li for li in model.layers if li.aliases] or model.layers
    return next((li.path for li in named if li.shape[-1] <= eighth), named[len(named) // 4].path)


def _targets(model: LoadedModel, units: list[Unit], until) -> dict[Unit, float]:
    """Each unit's target activation: one for all, or per unit (every unit needs one)."""
    if until is None:
        return {}
    if not isinstance(until, Mapping):
        return {u: float(until) for u in units}
    given = {model.resolve_units([u])[0]: float(v) for u, v in until.items()}
    missing = [u for u in units if u not in given]
    if missing:
        raise VizprobeError(f"until: no target activation for {missing[0].display}; give one per unit")
    return {u: given[u] for u in units}


def _references(
    model: LoadedModel, units: list[Unit], references: Mapping[Unit | str, torch.Tensor] | None, s: RenderSettings
) -> dict[Unit, torch.Tensor]:
    """Each unit's natural references at the rendering size; a one-line error where a method needs them."""
    refs = {model.resolve_units([u])[0]: sized(images, s.size) for u, images in (references or {}).items()}
    needs = "accentuation" if s.param == "accentuation" else "the colour prior" if s.colour else None
    missing = [u for u in units if u not in refs or not len(refs[u])]
    if needs and missing:
        raise VizprobeError(
            f"{needs} needs each unit's natural images; none for {missing[0].display}: pass --scan RUN_DIR "
            "(its top images are used)"
        )
    if s.colour and len({len(refs[u]) for u in units}) > 1:
        fewest = min(len(refs[u]) for u in units)
        refs = {u: images[:fewest] for u, images in refs.items()}
    return refs


def _activations(model: LoadedModel, images: torch.Tensor, units: Sequence[Unit]) -> torch.Tensor:
    """Image i's activation on unit i."""
    distinct = list(dict.fromkeys(units))
    table = model.unit_activations(model.preprocessing.normalize(images.to(model.device)), distinct).cpu()
    return table[torch.arange(len(units)), torch.tensor([distinct.index(u) for u in units])]
