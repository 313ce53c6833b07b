"""Units (`LAYER:CHANNEL`), the one definition of a unit's activation, and taps on layers.

A unit's activation on an image is the spatial mean of one channel of one layer's output
(`channel_mean`). Scan, synthesis, occlusion and observers all go through this module.

A unit's canonical form names its layer by module path (`_blocks.8:12`, never the alias `block8:12`);
`LoadedModel.resolve_unit` turns any spelling into it once, and seeds, file names, index and manifest
keys all use `str(unit)` of the canonical form. What the user typed stays as `label`, for display.
"""

from __future__ import annotations

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


def channel_mean(feature_map: torch.Tensor) -> torch.Tensor:
    """The activation of every channel: spatial mean of an (N, C, H, W) map, giving (N, C)."""
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
        if len(outputs) != len(self.paths):
            silent = [p for p in self.paths if p not in outputs]
            raise VizprobeError(f"layer {silent[0]!r} produced no output in a forward pass; pick another layer")
        return outputs


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is a (N, C, H, W) feature map, as listed by `vizprobe layers`."""

    path: str
    kind: str
    shape: tuple[int, int, int]
    aliases: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return self.shape[0]


def discover_layers(model: nn.Module, input_size: int, device: torch.device) -> list[LayerInfo]:
    """Every module that is called once per forward pass and outputs a 4-d map, in execution order.

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
    layers = []
    for path, shapes in calls.items():
        if len(shapes) == 1 and shapes[0] is not None and len(shapes[0]) == 4:
            layers.append(LayerInfo(path, kinds[path], tuple(shapes[0][1:])))
    return layers
