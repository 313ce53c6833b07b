"""Any timm model as `timm/NAME`, built without a hub download, with weights from a local file.

The preprocessing comes from timm's pretrained config for the architecture (input size, crop fraction,
interpolation, mean and std), as `timm.data.resolve_data_config` gives it; vision transformers' token layers
are addressed like convolutional ones (`vizprobe.units.token_map`).
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn

from vizprobe.errors import VizprobeError
from vizprobe.models.preprocessing import Preprocessing
from vizprobe.models.registry import ModelSpec, register_fallback
from vizprobe.models.weights import load_weights, read_state_dict

PREFIX = "timm/"
_HINT = "pass --weights PATH to the model's state dict (.pth or .safetensors; torch.save(model.state_dict(), PATH))"


def timm_preprocessing(arch: str) -> Preprocessing:
    """Resize to crop / crop_pct, centre crop, timm's mean and std (the eval transform of the pretrained config)."""
    import timm

    cfg = timm.get_pretrained_cfg(arch)
    if cfg is None:
        return Preprocessing()
    crop, crop_pct = int(cfg.input_size[-1]), float(cfg.crop_pct or 0.875)
    interpolation = cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic") else "bilinear"
    return Preprocessing(math.floor(crop / crop_pct), crop, interpolation, tuple(cfg.mean), tuple(cfg.std))


def read_weights(path: Path) -> dict:
    """A state dict from `.safetensors` or a torch file."""
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise VizprobeError(f"weights file {path} does not exist; {_HINT}")
        from safetensors.torch import load_file

        return load_file(str(path))
    return read_state_dict(path, hint=_HINT)


def timm_spec(name: str) -> ModelSpec | None:
    """A spec for `timm/ARCH`; None for other names, a one-line error for an architecture timm does not know."""
    if not name.startswith(PREFIX):
        return None
    import timm

    arch = name[len(PREFIX) :]
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:5]
        hint = f"close: {', '.join(close)}" if close else "see timm.list_models()"
        raise VizprobeError(f"timm has no model {arch!r}; {hint}")

    def build(weights: Path | None) -> nn.Module:
        net = timm.create_model(arch, pretrained=False)
        if weights is not None:
            load_weights(net, read_weights(weights), str(weights))
        return net

    return ModelSpec(
        name=name,
        builder=build,
        preprocessing=timm_preprocessing(arch),
        weights_source=f"timm {arch} state dict (--weights PATH, .pth or .safetensors)",
        needs_weights=True,
        description=f"timm {arch}",
        fixed_input_size=True,
    )


register_fallback(timm_spec)
