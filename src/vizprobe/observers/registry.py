"""The observer registry: built-in observers, those of plugins, and any a caller registers, by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vizprobe.errors import VizprobeError
from vizprobe.observers.base import Observer
from vizprobe.stimuli.manifest import Manifest


@dataclass(frozen=True)
class ObserverEntry:
    """A registered observer: how to make it, and what it needs from the caller.

    `uses_device`: its factory takes `device=` (it runs a network). `privileged`: its factory takes
    `manifest=` and reads the correct answers (the oracle), so it bounds what an observer can reach.
    `embeds`: its factory takes `studied_model=` (the package's network, which it must not embed with).
    """

    name: str
    factory: Callable[..., Observer]
    description: str = ""
    uses_device: bool = False
    privileged: bool = False
    embeds: bool = False


_REGISTRY: dict[str, ObserverEntry] = {}


def register_observer(
    name: str,
    factory: Callable[..., Observer],
    description: str = "",
    *,
    uses_device: bool = False,
    privileged: bool = False,
    embeds: bool = False,
) -> Callable[..., Observer]:
    """Make an observer available by name to `vizprobe observe`, `simulate`, `analyze` and the demo."""
    _REGISTRY[name] = ObserverEntry(name, factory, description, uses_device, privileged, embeds)
    return factory


def _saliency_centre(**options) -> Observer:
    from vizprobe.observers.baselines import SaliencyObserver

    return SaliencyObserver(centre_bias=0.3, **options)


def _similarity(**options) -> Observer:
    from vizprobe.observers.similarity import SimilarityObserver  # needs torch: imported when asked for

    return SimilarityObserver(**options)


def _load_builtin() -> None:
    """Register the built-in observers (the baselines, and the similarity observer whose torch loads on use),
    then those of installed plugins; once."""
    if "similarity" in _REGISTRY:
        return
    from vizprobe.observers.baselines import (  # scipy: imported when an observer is first asked for
        CenterObserver,
        OracleObserver,
        RandomObserver,
        SaliencyObserver,
        VarianceObserver,
    )

    register_observer("center", CenterObserver, "the option occluded farther from the image centre")
    register_observer("variance", VarianceObserver, "the option whose occluded patch had lower pixel variance")
    register_observer("saliency", SaliencyObserver, "the option whose occluded patch is less salient")
    register_observer("saliency-centre", _saliency_centre, "saliency times a centre bias")
    register_observer("random", RandomObserver, "a seeded fair coin per trial")
    register_observer("oracle", OracleObserver, "the correct answer (privileged)", privileged=True)
    similarity = "perceptual similarity to the references"
    register_observer("similarity", _similarity, similarity, uses_device=True, embeds=True)
    _load_plugins()


def _load_plugins() -> None:
    """Observers of installed `vizprobe.observers` entry points (name: the observer's, value: its factory)."""
    from vizprobe.plugins import OBSERVER_GROUP, plugin_entries

    for ep in plugin_entries(OBSERVER_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:
            factory = ep.load()
        except Exception as error:
            raise VizprobeError(f"observer plugin {ep.name!r} ({ep.value}) failed to load: {error}") from None
        register_observer(ep.name, factory, (factory.__doc__ or "").strip().split("\n")[0])


def list_observers() -> list[str]:
    """Names of the registered observers, built-in ones included."""
    _load_builtin()
    return sorted(_REGISTRY)


def observer_entry(name: str) -> ObserverEntry:
    _load_builtin()
    if name not in _REGISTRY:
        raise VizprobeError(f"unknown observer {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_observer(
    observer: str | Observer, *, device: str | None = None, manifest: Manifest | None = None, **options
) -> Observer:
    """An observer by registered name (or the instance itself). `device` reaches observers that run a
    network, `manifest` the privileged ones (which need it) and, as the studied network, those that embed
    images; `options` go to the factory (e.g. `embedder`, `same_as_model`, `rule` for the similarity observer)."""
    if isinstance(observer, Observer):
        return observer
    entry = observer_entry(observer)
    if entry.uses_device and device is not None:
        options["device"] = device
    if entry.privileged:
        if manifest is None:
            raise VizprobeError(f"observer {observer!r} reads the correct answers: it needs the stimulus package")
        options["manifest"] = manifest
    if entry.embeds and manifest is not None:
        options.setdefault("studied_model", manifest.model)
    if not entry.embeds:
        options = {k: v for k, v in options.items() if k not in ("embedder", "same_as_model", "rule")}
    return entry.factory(**options)
