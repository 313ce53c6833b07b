"""Named study protocols: every default of a study design in one place, chosen with `--protocol NAME`.

A protocol bundles the builder's settings, the server's settings, the exclusion criteria, the synthesis
preset and, per model, the layers the study measured. `zimmermann2021` (the default) is the NeurIPS 2021
study; docs/protocol.md gives the source of each of its values. Explicit flags override a protocol's values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from vizprobe.errors import VizprobeError

DEFAULT_PROTOCOL = "zimmermann2021"

# The paper's InceptionV1 units: the pre-ReLU output of two of the four branches (`-k 1 3`, kernel-size indices
# 1 and 3 of 1x1, 3x3, 5x5, pool) of each of the nine mixed layers, one random channel each: 18 units
# (co:create_mturk_data.sh, co:create_task_structure_json.py).
_MIXED = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
PAPER_GOOGLENET_LAYERS = tuple(f"mixed{m}/{branch}_pre_relu" for m in _MIXED for branch in ("3x3", "pool"))


@dataclass(frozen=True)
class Protocol:
    """A study design: what each stage does by default."""

    name: str
    reference: str
    build: object  # vizprobe.stimuli.BuildSettings
    experiment: object  # vizprobe.experiment.settings.Settings
    exclusion: object  # vizprobe.analysis.ExclusionCriteria
    visualization_preset: str
    mturk: object = None  # vizprobe.experiment.mturk.MTurkSettings: what `vizprobe mturk-hit` asks for and pays
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def layers_for(self, model: str) -> list[str]:
        """The layers this protocol measures in `model`, or a one-line error."""
        if model not in self.layers:
            raise VizprobeError(
                f"protocol {self.name} names no layers of model {model!r} (it has: {', '.join(self.layers)}); "
                "pass --layers"
            )
        return list(self.layers[model])


_PROTOCOLS: dict[str, Callable[[], Protocol]] = {}


def register_protocol(name: str, make: Callable[[], Protocol]) -> None:
    """Add a protocol; `make` builds it on first use (so the CLI starts without the analysis's imports)."""
    _PROTOCOLS[name] = make


def list_protocols() -> list[str]:
    return sorted(_PROTOCOLS)


@cache
def get_protocol(name: str | None = None) -> Protocol:
    """The named protocol (the default when None), or a one-line error listing the known ones."""
    name = name or DEFAULT_PROTOCOL
    if name not in _PROTOCOLS:
        raise VizprobeError(f"unknown protocol {name!r}; known: {', '.join(list_protocols())}")
    return _PROTOCOLS[name]()


def _zimmermann2021() -> Protocol:
    """The settings dataclasses' defaults are this study's values (docs/protocol.md cites each)."""
    from vizprobe.exclusion import ExclusionCriteria
    from vizprobe.experiment.mturk import MTurkSettings
    from vizprobe.experiment.settings import Settings
    from vizprobe.stimuli.settings import BuildSettings

    return Protocol(
        name="zimmermann2021",
        reference="Zimmermann, Borowski, Geirhos, Bethge, Wallis & Brendel, NeurIPS 2021",
        build=BuildSettings(),
        experiment=Settings(),
        exclusion=ExclusionCriteria(),
        visualization_preset="paper",
        mturk=MTurkSettings(),
        layers={"inceptionv1": PAPER_GOOGLENET_LAYERS, "googlenet": PAPER_GOOGLENET_LAYERS},
    )


register_protocol("zimmermann2021", _zimmermann2021)


def _borowski2021() -> Protocol:
    """The lab study before it (ICLR 2021): the exemplar task (9 + 9 references, queries right after them, 20 image
    sets per unit as IMI's replication of it), and its raw data (bethgelab/testing_visualizations) reanalysed as the
    authors did, keeping every participant: lab participants were not screened like crowd workers."""
    from dataclasses import replace

    from vizprobe.exclusion import ExclusionCriteria

    base = _zimmermann2021()
    keep_all = ExclusionCriteria(
        min_catch_accuracy=0.0,
        min_instruction_time_s=0.0,
        min_total_time_s=0.0,
        max_total_time_s=1e9,
        max_practice_attempts=1_000_000,
        require_both_sides=False,
        per_condition={},
    )
    return Protocol(
        name="borowski2021",
        reference="Borowski, Zimmermann, Schepers, Geirhos, Wallis, Bethge & Brendel, ICLR 2021",
        build=replace(base.build, task="exemplar", conditions=("natural", "synthetic", "none"), image_sets=20),
        experiment=base.experiment,
        exclusion=keep_all,
        visualization_preset="paper",
        mturk=base.mturk,
        layers=base.layers,
    )


register_protocol("borowski2021", _borowski2021)


def _imi() -> Protocol:
    """IMI (Zimmermann, Klindt & Brendel, NeurIPS 2023): the exemplar task on MTurk with natural and synthetic
    references, 20 image sets per unit (brendel-group/imi, stimuli_generation/parallel/collect_exemplars.sh); its
    crowd settings and exclusion are this package's defaults (docs/protocol.md lists what differs)."""
    from dataclasses import replace

    base = _zimmermann2021()
    return Protocol(
        name="imi",
        reference="Zimmermann, Klindt & Brendel, NeurIPS 2023 (IMI)",
        build=replace(base.build, task="exemplar", conditions=("natural", "synthetic"), image_sets=20),
        experiment=base.experiment,
        exclusion=base.exclusion,
        visualization_preset="paper",
        mturk=base.mturk,
        layers=base.layers,
    )


register_protocol("imi", _imi)
