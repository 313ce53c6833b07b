"""The model zoo: a name maps to a spec that knows its builder, weights, preprocessing and aliases."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from vizprobe import DEFAULT_MODEL
from vizprobe.device import exact_convolutions, resolve_device
from vizprobe.errors import VizprobeError
from vizprobe.models.preprocessing import Preprocessing
from vizprobe.models.spec import Builder, ModelSpec  # noqa: F401  (re-exported)
from vizprobe.units import (
    Directions,
    LayerInfo,
    LayerTap,
    Unit,
    channel_mean,
    discover_layers,
    load_directions,
    parse_units,
    split_layer,
)

_REGISTRY: dict[str, ModelSpec] = {}
_FALLBACKS: list[Callable[[str], ModelSpec | None]] = []


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the zoo (later registrations replace earlier ones of the same name)."""
    _REGISTRY[spec.name] = spec
    return spec


def register_fallback(resolver: Callable[[str], ModelSpec | None]) -> None:
    """Resolve names not in the registry (e.g. any torchvision classifier)."""
    _FALLBACKS.append(resolver)


_PLUGINS_LOADED = False


def _load_plugins() -> None:
    """Register the models of installed `vizprobe.models` entry points, once (built-in names are kept)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from vizprobe.models.plugins import plugin_model_specs

    for spec in plugin_model_specs():
        _REGISTRY.setdefault(spec.name, spec)


def list_models() -> list[str]:
    """Names of the registered models, plugins' included (torchvision classifiers also load by name with weights)."""
    _load_plugins()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered name, a plugin's model, `module.path:factory[@PRE.json]`, or a fallback's."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    _load_plugins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    from vizprobe.models.plugins import factory_spec, is_factory_name

    if is_factory_name(name):
        return factory_spec(name)
    for resolver in _FALLBACKS:
        spec = resolver(name)
        if spec is not None:
            return spec
    close = difflib.get_close_matches(name, list_models(), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"registered: {', '.join(list_models())}"
    raise VizprobeError(f"unknown model {name!r}; {hint} (any torchvision classifier also works with --weights)")


def load_model(
    name: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    device: str | torch.device = "auto",
    directions: Mapping[str, str | Path | Directions] | str | None = None,
) -> LoadedModel:
    """Build a model from the zoo in eval mode on `device`, with its weights loaded from local disk.

    `directions` (`NAME=FILE,...` or a mapping) adds direction units `LAYER:NAME:K` (see `Directions`)."""
    found = load_directions(directions)  # a bad file fails before the model is built
    spec = get_spec(name)
    if spec.needs_weights and weights is None:
        raise VizprobeError(
            f"model {name!r} has no embedded weights; pass --weights PATH to a local {spec.weights_source}"
        )
    net = spec.builder(Path(weights) if weights is not None else None)
    net.eval().requires_grad_(False)
    dev = resolve_device(device)
    source = str(weights) if weights is not None else spec.weights_source
    return LoadedModel(spec, net.to(dev), dev, source, found)


@dataclass
class LoadedModel:
    """A ready model: the network, its preprocessing, and unit/layer addressing."""

    spec: ModelSpec
    net: nn.Module
    device: torch.device
    weights: str
    directions: dict[str, Directions] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def preprocessing(self) -> Preprocessing:
        return self.spec.preprocessing

    @cached_property
    def layers(self) -> list[LayerInfo]:
        """Layers with (C, H, W) output shapes (token layers: their patch-token grid) at the model's input size,
        aliases attached."""
        found = discover_layers(self.net, self.preprocessing.crop, self.device)
        by_path: dict[str, list[str]] = {}
        for alias, path in self.spec.aliases.items():
            by_path.setdefault(path, []).append(alias)
        return [replace(li, aliases=tuple(by_path.get(li.path, ()))) for li in found]

    def layer(self, name: str) -> LayerInfo:
        """Look a layer up by module path or alias (`LAYER:NAME`: through directions NAME); a bad name lists
        close matches."""
        base, directions = split_layer(name)
        if directions is not None:
            return self._direction_layer(self.layer(base), directions)
        path = self.spec.aliases.get(name, name)
        for info in self.layers:
            if info.path == path:
                return info
        modules = dict(self.net.named_modules())
        if path in modules:
            raise VizprobeError(
                f"module {name!r} has no single (N, C, H, W) or (N, T, C) output per forward pass; "
                "run `vizprobe layers` for the layers that do"
            )
        candidates = [li.path for li in self.layers] + list(self.spec.aliases)
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else "run `vizprobe layers` to list them"
        raise VizprobeError(f"model {self.name!r} has no layer {name!r}; {hint}")

    def _direction_layer(self, base: LayerInfo, name: str) -> LayerInfo:
        if name not in self.directions:
            given = ", ".join(self.directions) or "none"
            raise VizprobeError(f"unknown directions {name!r} (given: {given}); pass --directions {name}=FILE")
        found = self.directions[name]
        found.check_layer(base.path, base.channels)
        return LayerInfo(
            f"{base.path}:{name}",
            f"{'SparseAutoencoder' if found.kind == 'sae' else 'Directions'}({Path(found.source).name})",
            (found.count, 1, 1) if found.reduce == "max" else (found.count, *base.shape[1:]),
            tuple(f"{alias}:{name}" for alias in base.aliases),
            base.layout,
        )

    @property
    def direction_layers(self) -> list[LayerInfo]:
        """Every (layer, directions) pair whose channel counts agree, as layers `LAYER:NAME`."""
        return [
            self._direction_layer(info, name)
            for name, found in self.directions.items()
            for info in self.layers
            if info.channels == found.channels
        ]

    def with_directions(self, directions: Mapping[str, str | Path | Directions] | str | None) -> LoadedModel:
        """The same network with more directions sets; a name already given with other contents is an error."""
        added = load_directions(directions)
        for name, found in added.items():
            if name in self.directions and self.directions[name].sha256 != found.sha256:
                raise VizprobeError(
                    f"directions {name!r} differ between {self.directions[name].source} and {found.source}; "
                    "use one file or another name"
                )
        return replace(self, directions={**added, **self.directions})

    def resolve_unit(self, unit: Unit | str) -> Unit:
        """The canonical unit (layer as module path), checked against the layer's channel count.

        The spelling given (an alias, say) is kept as the unit's `label`, for display only.
        """
        given = Unit.parse(unit)
        if given.layer in self.spec.concatenations:
            return self._concatenated_unit(given)
        info = self.layer(given.layer)
        if not 0 <= given.channel < info.channels:
            raise VizprobeError(
                f"unit {given}: layer {given.layer!r} has channels 0..{info.channels - 1}; pick one of those"
            )
        label = given.label or (str(given) if given.layer != info.path else None)
        return Unit(info.path, given.channel, label)

    def _concatenated_unit(self, given: Unit) -> Unit:
        """A unit numbered across a concatenation's parts: that channel of the part it falls in."""
        offset = 0
        for part in self.spec.concatenations[given.layer]:
            info = self.layer(part)
            if given.channel < offset + info.channels:
                return Unit(info.path, given.channel - offset, given.label or str(given))
            offset += info.channels
        raise VizprobeError(
            f"unit {given}: {given.layer!r} ({', '.join(self.spec.concatenations[given.layer])} side by side) has "
            f"channels 0..{offset - 1}; pick one of those"
        )

    def resolve_units(self, units: str | Iterable[Unit | str]) -> list[Unit]:
        """Canonical units of a comma-separated string or a list, each checked; a unit named twice is an error."""
        resolved = [self.resolve_unit(u) for u in parse_units(units)]
        seen: dict[Unit, Unit] = {}
        for unit in resolved:
            if unit in seen:
                raise VizprobeError(f"unit {unit.display} is named twice (also as {seen[unit].display}); name it once")
            seen[unit] = unit
        return resolved

    def to(self, device: str | torch.device) -> LoadedModel:
        """The same model on `device`, as a new object: the caller's network stays where it is."""
        dev = resolve_device(device)
        if dev == self.device:
            return replace(self)
        return replace(self, net=copy.deepcopy(self.net).to(dev), device=dev)

    def tap(self, layer_names: list[str]) -> LayerTap:
        """A tap on the named layers (paths or aliases), cutting the forward pass after the last."""
        return LayerTap(self.net, [self.layer(n).path for n in layer_names], self.directions)

    @exact_convolutions()
    def unit_activations(self, images: torch.Tensor, units: list[Unit | str]) -> torch.Tensor:
        """(N, U) activations of `units` on preprocessed `images` (gradients flow if enabled)."""
        resolved = [self.resolve_unit(u) for u in units]
        outputs = LayerTap(self.net, [u.layer for u in resolved], self.directions)(images.to(self.device))
        columns = [channel_mean(outputs[u.layer][:, u.channel : u.channel + 1])[:, 0] for u in resolved]
        return torch.stack(columns, dim=1)
