"""Rendering settings and presets (no torch here: the CLI reads its defaults and choices from this module)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from vizprobe.errors import VizprobeError

PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("adam", "nadam")
PLACEMENTS = ("centred", "uniform")  # where random crops sit: centres ~ N(0.5, 0.15) (Horama), or anywhere inside
# How images are made: fourier (lucid's), pixel, maco (Fel et al. 2023: natural Fourier magnitude, phase
# optimized), accentuation (Hamblin et al. 2024: start from natural images and stay close to them).
METHODS = ("fourier", "pixel", "maco", "accentuation")


@dataclass(frozen=True)
class RenderSettings:
    """Everything that determines a rendering; defaults are the paper's (Zimmermann et al. 2021)."""

    steps: int = 2560
    size: int = 224
    per_unit: int = 9
    lr: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's (and lucid's) momentum and second-moment decay
    param: str = "fourier"
    decay: float = 1.0
    transforms: str = "paper"
    diversity: float = 1e2
    l1: float = 0.0
    l2: float = 0.0
    tv: float = 0.0
    blur: float = 0.0
    closeness: float = 500.0  # accentuation with accent_layer "pixels": weight of the squared pixel distance
    # accentuation (faccent): the layer whose activations stay close to the seed's ("": the model's default early
    # layer; "pixels": the pixel distance weighted by `closeness` instead) and the regularizer's weight relative to
    # the objective, balanced by their gradient sizes at the start
    accent_layer: str = ""
    accent_alpha: float = 1.0
    colour: float = 0.0  # weight of the patch colour statistics prior (needs natural references)
    coherence: float = 0.0  # weight of the centre-bias prior (low-frequency energy away from the centre)
    coarse_steps: int = 0  # steps at the start that show the network the image at half size (coarse to fine)
    optimizer: str = "adam"
    # The authors' recipe of maco and accentuation: a canvas of `size` px seen through `crops` random square boxes
    # per step (side a fraction of the canvas, uniform in `box`), each resized to `crop_input` px (0: the model's
    # input size) with Gaussian plus uniform noise of std `noise` (in [0, 1] pixel units). crops 0: the whole image
    # through the `transforms`.
    crops: int = 0
    box: tuple[float, float] = (0.25, 0.30)
    placement: str = "centred"
    noise: float = 0.0
    crop_input: int = 0
    negative: bool = False
    objective: str = "channel"
    seed: int = 0
    # Images per unit rendered as a separate batch (own diversity term) for the `mixed` condition: the paper
    # showed 5 natural + 4 synthetic images from such a batch of 4.
    mixed_extra: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    # Adam(0.05), 2560 steps, 9 images per unit, Gram diversity 1e2, pad 16 + jitter/scale/rotate, and the
    # separate batch of 4 the mixed condition showed.
    "paper": RenderSettings(mixed_extra=4),
    # Minutes on a CPU: fewer steps, smaller images, lucid's standard transforms.
    "quick": RenderSettings(steps=96, size=128, per_unit=4, transforms="standard", diversity=1.0),
    # Full size, soonest to lucent's activation (benchmarks/README.md, time to quality): lucid's standard
    # transforms without the diversity term, and Adam with less memory (betas 0.3, 0.8: the gradient of each
    # step's random transform counts for more) at lr 0.08: 40 % fewer steps to the same activation.
    "fast": RenderSettings(
        steps=256, size=224, per_unit=4, lr=0.08, betas=(0.3, 0.8), transforms="standard", diversity=0.0
    ),
}


# The methods as their authors run them, applied by `preset` when `param` names one (the caller's values win).
RECIPES = {
    # serre-lab/Horama's `maco()` (Fel et al. 2023): a 1280 px canvas, 1000 steps of NAdam at lr 1.0 on the phase,
    # 6 crops per step with sides 0.25-0.30 of the canvas (its box_size (0.20, 0.25) as its code draws it) centred
    # ~ N(0.5, 0.15), noise 0.05 of its 5-wide input range (0.01 of [0, 1]); no diversity term.
    "maco": dict(
        size=1280,
        steps=1000,
        lr=1.0,
        betas=(0.9, 0.999),
        optimizer="nadam",
        crops=6,
        box=(0.25, 0.30),
        placement="centred",
        noise=0.01,
        transforms="none",
        diversity=0.0,
        decay=1.0,
    ),
    # faccent's `render_vis` with `accent_reg_layer` (Hamblin et al. 2024): a 512 px canvas started from the seed
    # image, 100 steps of Adam at lr 0.05, 16 crops per step with sides U(0.05, 0.99) of the canvas placed anywhere
    # inside, noise 0.02, Fourier decay 1, alpha 1 (its default).
    "accentuation": dict(
        size=512,
        steps=100,
        lr=0.05,
        betas=(0.9, 0.999),
        optimizer="adam",
        crops=16,
        box=(0.05, 0.99),
        placement="uniform",
        noise=0.02,
        transforms="none",
        diversity=0.0,
        decay=1.0,
    ),
}
# The quick and fast presets scale the recipes down to minutes on a CPU: smaller canvas, fewer crops and steps.
SCALED_RECIPES = {
    "quick": {
        "maco": dict(size=256, steps=128, crops=4, crop_input=128),
        "accentuation": dict(size=224, steps=48, crops=4, crop_input=128),
    },
    "fast": {"maco": dict(size=512, steps=256, crops=4), "accentuation": dict(size=224, steps=100, crops=8)},
}


def preset(name: str, **overrides) -> RenderSettings:
    """A preset with some fields replaced; None leaves a field at the preset's value. A `param` with a recipe
    (maco, accentuation) takes its authors' settings (scaled down in quick and fast) before the overrides."""
    if name not in PRESETS:
        raise VizprobeError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    method = given.get("param", PRESETS[name].param)
    recipe = {**RECIPES.get(method, {}), **SCALED_RECIPES.get(name, {}).get(method, {})}
    return check(replace(PRESETS[name], **{**recipe, **given}))


def check(settings: RenderSettings) -> RenderSettings:
    """The settings, or a one-line error naming the bad field and its allowed values."""
    if settings.optimizer not in OPTIMIZERS:
        raise VizprobeError(f"unknown optimizer {settings.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if settings.placement not in PLACEMENTS:
        raise VizprobeError(f"unknown crop placement {settings.placement!r}; use one of {', '.join(PLACEMENTS)}")
    low, high = settings.box
    if settings.crops < 0 or not 0 < low <= high <= 1:
        raise VizprobeError(
            f"crops {settings.crops}, box {settings.box}: need crops >= 0 and 0 < box[0] <= box[1] <= 1"
        )
    if settings.crops and settings.diversity:
        raise VizprobeError(
            "the diversity term compares whole images: use it without crops (--crops 0), or set diversity 0"
        )
    return settings
