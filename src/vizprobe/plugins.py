"""Entry-point groups through which other packages extend vizprobe without touching it (no torch imported here).

`vizprobe.models`: a `ModelSpec`, or a function returning one or a list (`vizprobe.models.plugins`).
`vizprobe.observers`: name = the observer's name, value = its factory (`vizprobe.observers.registry`).
`vizprobe.conditions`: name = a kind of reference source, value = a function (argument, unit, n) -> up to n image
files of that unit, used as `--conditions NAME=KIND:ARGUMENT` (`vizprobe.stimuli.conditions`).
`vizprobe.embedders`: name = an embedder's name, value = a factory (device) -> `EmbeddingFunction`, used as
`--embedder NAME` (`vizprobe.observers.embedding`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from vizprobe.errors import VizprobeError

MODEL_GROUP = "vizprobe.models"
OBSERVER_GROUP = "vizprobe.observers"
CONDITION_GROUP = "vizprobe.conditions"
EMBEDDER_GROUP = "vizprobe.embedders"


def plugin_entries(group: str) -> list[EntryPoint]:
    """The installed entry points of `group`, sorted by name (so that loading order is stable)."""
    return sorted(entry_points(group=group), key=lambda ep: ep.name)


def import_factory(module_name: str, attr: str, flag: str) -> Callable:
    """The function `module_name.attr` that a `flag` such as `--model a.b:make` names; a one-line error when the
    module cannot be imported or has no such function."""
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module's own failure, reported with its name
        raise VizprobeError(
            f"{flag}: cannot import {module_name!r} ({error}); install it or put it on PYTHONPATH"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise VizprobeError(f"{flag}: {module_name} has no function {attr!r}")
    return factory
