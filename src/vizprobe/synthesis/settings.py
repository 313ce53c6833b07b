"""Rendering settings and presets (no torch here: the CLI reads its defaults and choices from this module)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from vizprobe.errors import VizprobeError

PRECISIONS = ("auto", "fp32", "bf16")
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
    closeness: float = 500.0  # accentuation: weight of the squared pixel distance to the seed image
    colour: float = 0.0  # weight of the patch colour statistics prior (needs natural references)
    coherence: float = 0.0  # weight of the centre-bias prior (low-frequency energy away from the centre)
    coarse_steps: int = 0  # steps at the start that show the network the image at half size (coarse to fine)
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


def preset(name: str, **overrides) -> RenderSettings:
    """A preset with some fields replaced; None leaves a field at the preset's value."""
    if name not in PRESETS:
        raise VizprobeError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
