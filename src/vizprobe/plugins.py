"""Entry-point groups through which other packages extend vizprobe without touching it (no torch imported here).

`vizprobe.models`: a `ModelSpec`, or a function returning one or a list (`vizprobe.models.plugins`).
`vizprobe.observers`: name = the observer's name, value = its factory (`vizprobe.observers.registry`).
`vizprobe.conditions`: name = a kind of reference source, value = a function (argument, unit, n) -> up to n image
files of that unit, used as `--conditions NAME=KIND:ARGUMENT` (`vizprobe.stimuli.conditions`).
`vizprobe.embedders`: name = an embedder's name, value = a factory (device) -> `EmbeddingFunction`, used as
`--embedder NAME` (`vizprobe.observers.embedding`).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

MODEL_GROUP = "vizprobe.models"
OBSERVER_GROUP = "vizprobe.observers"
CONDITION_GROUP = "vizprobe.conditions"
EMBEDDER_GROUP = "vizprobe.embedders"


def plugin_entries(group: str) -> list[EntryPoint]:
    """The installed entry points of `group`, sorted by name (so that loading order is stable)."""
    return sorted(entry_points(group=group), key=lambda ep: ep.name)
