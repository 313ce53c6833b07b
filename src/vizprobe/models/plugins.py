"""Models from outside vizprobe: other packages' entry points, and a user's own factory named on the command line.

* Entry points: a package that declares `[project.entry-points."vizprobe.models"]` (a `ModelSpec`, or a function
  returning one or a list of them) adds its models to the registry without touching vizprobe; the same holds for
  `vizprobe.observers` (name = observer name, value = its factory).
* `--model module.path:factory`: `factory()` returns the `nn.Module` (the `--weights` state dict is loaded into it
  when given); `--model module.path:factory@PRE.json` adds its preprocessing (the fields of `Preprocessing`; the
  CLI's `--preprocessing PRE.json` writes it so). The name carries everything, so every later stage that reads
  it from a scan rebuilds the same model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vizprobe.errors import VizprobeError
from vizprobe.models.preprocessing import Preprocessing
from vizprobe.models.spec import ModelSpec
from vizprobe.plugins import MODEL_GROUP, import_factory, plugin_entries

FACTORY = re.compile(r"(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_]\w*)(?:@(?P<pre>.+))?")


def plugin_model_specs() -> list[ModelSpec]:
    """Every ModelSpec the installed `vizprobe.models` entry points give; a broken plugin is a one-line error."""
    specs = []
    for ep in plugin_entries(MODEL_GROUP):
        try:
            found = ep.load()
            found = found() if callable(found) and not isinstance(found, ModelSpec) else found
        except Exception as error:  # a plugin's own failure, reported with its name
            raise VizprobeError(f"model plugin {ep.name!r} ({ep.value}) failed to load: {error}") from None
        found = [found] if isinstance(found, ModelSpec) else list(found if isinstance(found, Iterable) else [found])
        bad = [f for f in found if not isinstance(f, ModelSpec)]
        if bad:
            raise VizprobeError(f"model plugin {ep.name!r} ({ep.value}) gave {type(bad[0]).__name__}, not a ModelSpec")
        specs += found
    return specs


def is_factory_name(name: str) -> bool:
    return FACTORY.fullmatch(name) is not None


def factory_name(model: str, preprocessing: str | Path | None) -> str:
    """The model name to record for `--model module:factory [--preprocessing FILE]`."""
    if preprocessing is None:
        return model
    if not is_factory_name(model):
        raise VizprobeError(f"--preprocessing goes with --model module.path:factory, not with {model!r}")
    path = Path(preprocessing).expanduser().resolve()
    _read_preprocessing(path)  # fail now, not in a later stage
    return f"{model.split('@')[0]}@{path}"


def _read_preprocessing(path: Path) -> Preprocessing:
    try:
        fields = json.loads(path.read_text())
        for key in ("mean", "std"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return Preprocessing(**fields)
    except FileNotFoundError:
        raise VizprobeError(f"--preprocessing {path}: no such file") from None
    except (json.JSONDecodeError, TypeError) as error:
        known = "resize, crop, interpolation, mean, std"
        raise VizprobeError(f"--preprocessing {path}: not a JSON object of {known} ({error})") from None


def factory_spec(name: str) -> ModelSpec:
    """A ModelSpec for `module.path:factory[@PRE.json]`, or a one-line error naming what is wrong."""
    match = FACTORY.fullmatch(name)
    module_name, attr, pre = match["module"], match["attr"], match["pre"]
    factory = import_factory(module_name, attr, f"--model {name}")

    def build(weights: Path | None) -> nn.Module:
        net = factory()
        if not isinstance(net, nn.Module):
            raise VizprobeError(
                f"--model {name}: {module_name}.{attr}() returned {type(net).__name__}, not a torch.nn.Module"
            )
        if weights is not None:
            net.load_state_dict(_state_dict(weights))
        return net

    return ModelSpec(
        name=name,
        builder=build,
        preprocessing=_read_preprocessing(Path(pre)) if pre else Preprocessing(),
        weights_source=f"{module_name}.{attr}() (or --weights, a state dict)",
        description=f"{module_name}.{attr}(): a user's own network",
    )


def _state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)
