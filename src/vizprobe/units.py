"""Units (`LAYER:CHANNEL`), the one definition of a unit's activation, and taps on layers.

A unit's activation on an image is the spatial mean of one channel of one layer's output
(`channel_mean`); for a transformer's token layer, (N, T, C), the mean over its patch tokens (class and
register tokens excluded; `token_map`). Scan, synthesis, occlusion and observers all go through this module.

A unit's canonical form names its layer by module path (`_blocks.8:12`, never the alias `block8:12`);
`LoadedModel.resolve_unit` turns any spelling into it once, and seeds, file names, index and manifest
keys all use `str(unit)` of the canonical form. What the user typed stays as `label`, for display.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so readers of units (analysis, server) stay light
    import torch
    from torch import nn

from vizprobe.errors import VizprobeError
from vizprobe.files import safe_name

_UNIT_RE = re.compile(r"^\s*(?P<layer>[^:\s]+)\s*:\s*(?P<channel>\d+)\s*$")


@dataclass(frozen=True, order=True)
class Unit:
    """One channel of one layer; `layer` is a module path (canonical) or, before resolution, an alias.

    `label` is how the user wrote the unit; it is for display only and takes no part in equality.
    """

    layer: str
    channel: int
    label: str | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str | Unit) -> Unit:
        """Parse `LAYER:CHANNEL` (e.g. `_blocks.8:12`, `mixed4a/3x3:12`)."""
        if isinstance(text, Unit):
            return text
        match = _UNIT_RE.match(text)
        if not match:
            raise VizprobeError(f"bad unit {text!r}: write LAYER:CHANNEL, e.g. _blocks.8:12 or mixed4a/3x3:12")
        return cls(match["layer"], int(match["channel"]))

    def __str__(self) -> str:
        return f"{self.layer}:{self.channel}"

    @property
    def display(self) -> str:
        """The spelling the user chose (an alias, say), else the canonical one."""
        return self.label or str(self)

    @property
    def folder(self) -> str:
        """A file-system-safe name (`_blocks.8_0012`), used for the unit's folders in every output."""
        return f"{safe_name(self.layer)}_{self.channel:04d}"


def unit_layer(unit: str | Unit) -> str:
    """The layer part of a unit (`mixed4a/3x3:12` -> `mixed4a/3x3`), for tables without a manifest; a name
    that is not LAYER:CHANNEL (another study's unit ids) is its own layer."""
    if isinstance(unit, Unit):
        return unit.layer
    match = _UNIT_RE.match(unit)
    return match["layer"] if match else unit.strip()


def parse_units(text: str | Iterable[str | Unit]) -> list[Unit]:
    """Parse a comma-separated list of units (or an iterable of strings/units)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    units = [Unit.parse(item) for item in items if str(item).strip()]
    if not units:
        raise VizprobeError("no units given: pass LAYER:CHANNEL[,LAYER:CHANNEL...]")
    return units


MAX_PREFIX_TOKENS = 8  # class + register tokens tried when a model does not say how many it has


def patch_grid(tokens: int, prefix_hint: int = 0) -> tuple[int, int, int] | None:
    """(prefix tokens, h, w) of a token sequence whose patch tokens form a square grid, else None.

    `prefix_hint` is the model's own count (timm's `num_prefix_tokens`); layers before the class token is
    added (a patch embedding) have none, and other models are tried with 0..8 leading tokens."""
    for prefix in dict.fromkeys([prefix_hint, *range(MAX_PREFIX_TOKENS + 1)]):
        side = math.isqrt(max(tokens - prefix, 0))
        if side >= 2 and side * side == tokens - prefix:
            return prefix, side, side
    return None


def token_map(output: torch.Tensor, prefix_hint: int = 0) -> torch.Tensor:
    """A transformer layer's (N, T, C) output as the (N, C, h, w) map of its patch tokens (class and register
    tokens dropped), so that a token layer's unit is a channel and its activation the mean over patch tokens,
    exactly like a convolutional layer's. Other outputs are returned as they are."""
    if output.ndim != 3:
        return output
    grid = patch_grid(output.shape[1], prefix_hint)
    if grid is None:
        raise VizprobeError(
            f"a token layer with {output.shape[1]} tokens has no square grid of patch tokens; pick another layer"
        )
    prefix, h, w = grid
    return output[:, prefix:, :].transpose(1, 2).reshape(output.shape[0], output.shape[2], h, w)


def channel_mean(feature_map: torch.Tensor) -> torch.Tensor:
    """The activation of every channel: spatial mean of an (N, C, H, W) map, giving (N, C). Token layers
    reach here as maps of their patch tokens (`token_map`), so this is the one definition for both."""
    if feature_map.ndim != 4:
        raise VizprobeError(f"expected a (N, C, H, W) feature map, got shape {tuple(feature_map.shape)}")
    return feature_map.mean(dim=(2, 3))


class _StopForward(Exception):
    """Raised by a hook once every tapped layer has produced its output: the rest is not needed."""


class LayerTap:
    """Run a model only as far as the deepest of `paths` and return those layers' outputs.

    Forward hooks record the output of each named module; once all have fired the forward pass is
    cut short, so a scan of early layers never pays for the head of the network.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str], *, stop_early: bool = True):
        modules = dict(model.named_modules())
        missing = [p for p in paths if p not in modules]
        if missing:
            raise VizprobeError(f"model has no module {missing[0]!r}; run `vizprobe layers` to see its layers")
        self.model = model
        self.paths = list(dict.fromkeys(paths))
        self.stop_early = stop_early
        self.prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self._modules = [modules[p] for p in self.paths]
        self._outputs: dict[str, torch.Tensor] = {}

    def _hook(self, path: str):
        def record(_module, _inputs, output):
            self._outputs[path] = output
            if self.stop_early and len(self._outputs) == len(self.paths):
                raise _StopForward

        return record

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of the tapped layers for a batch of preprocessed images."""
        self._outputs = {}
        handles = [m.register_forward_hook(self._hook(p)) for p, m in zip(self.paths, self._modules, strict=True)]
        try:
            self.model(images)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        outputs, self._outputs = self._outputs, {}
        outputs = {path: token_map(out, self.prefix_tokens) for path, out in outputs.items()}
        if len(outputs) != len(self.paths):
            silent = [p for p in self.paths if p not in outputs]
            raise VizprobeError(f"layer {silent[0]!r} produced no output in a forward pass; pick another layer")
        return outputs


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is a (N, C, H, W) feature map, or (N, T, C) tokens (`layout` "tokens": `shape` is
    then (C, h, w) of the patch-token grid), as listed by `vizprobe layers`."""

    path: str
    kind: str
    shape: tuple[int, int, int]
    aliases: tuple[str, ...] = ()
    layout: str = "map"

    @property
    def channels(self) -> int:
        return self.shape[0]


def discover_layers(model: nn.Module, input_size: int, device: torch.device) -> list[LayerInfo]:
    """Every module that is called once per forward pass and outputs a 4-d map or (N, T, C) tokens whose patch
    tokens form a square grid, in execution order.

    Modules reused within one pass (a shared activation function, say) have no single output and
    are left out.
    """
    import torch

    calls: dict[str, list[torch.Size]] = {}
    kinds = {}
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue
        kinds[path] = type(module).__name__

        def record(_m, _i, output, path=path):
            calls.setdefault(path, []).append(output.shape if torch.is_tensor(output) else None)

        handles.append(module.register_forward_hook(record))
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    prefix_hint = int(getattr(model, "num_prefix_tokens", 0) or 0)
    layers = []
    for path, shapes in calls.items():
        if len(shapes) != 1 or shapes[0] is None:
            continue
        if len(shapes[0]) == 4:
            layers.append(LayerInfo(path, kinds[path], tuple(shapes[0][1:])))
        elif len(shapes[0]) == 3 and (grid := patch_grid(shapes[0][1], prefix_hint)) is not None:
            layers.append(LayerInfo(path, kinds[path], (shapes[0][2], grid[1], grid[2]), layout="tokens"))
    return layers
