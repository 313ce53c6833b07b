"""What a participant judges, as plugins of one pipeline: the occlusion task (the paper's) and the exemplar task
(Borowski et al. 2021, IMI, MIS).

A task names what the rest of the pipeline needs to know of it: the jsPsych plugin that shows its trials, the
question, and what a trial shows (references on one or on both sides, the two options). The builder of each task
writes the same stimulus package format (`vizprobe.stimuli.manifest`, field `task`); the server, the export,
the analysis and the observers read the task from the package and stay otherwise task-agnostic. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from vizprobe.errors import VizprobeError


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name, the page's plugin and question, and the conditions its builder knows."""

    name: str
    plugin: str  # the jsPsych plugin's name (frontend/src/plugin-*.js)
    question: str
    both_sides: bool  # references of the unit's weakest images too (min references), beside its strongest
    conditions: tuple[str, ...]  # built-in conditions the builder makes (user conditions come on top)
    builder: str  # `module:function` writing its stimulus package (scan, units, out, visualizations, settings, ...)
    description: str = ""

    def build_function(self):
        """The task's package builder (imported on first use: it needs torch)."""
        from importlib import import_module

        module, _, name = self.builder.partition(":")
        return getattr(import_module(module), name)


TASKS: dict[str, TaskSpec] = {
    "occlusion": TaskSpec(
        "occlusion",
        "occlusion-trial",
        "Which image elicits higher activation?",
        False,
        ("none", "natural", "synthetic", "mixed", "blur"),
        "vizprobe.stimuli.build:build_stimuli",
        "the paper's causal task: which of two occlusions of a query leaves the unit more active "
        "(Zimmermann et al., NeurIPS 2021)",
    ),
    "exemplar": TaskSpec(
        "exemplar",
        "exemplar-trial",
        "Which image at the center matches the Right Examples better?",
        True,
        ("none", "natural", "synthetic"),
        "vizprobe.tasks.exemplar:build_exemplar_stimuli",
        "which of two query images belongs with the unit's strongly activating references rather than its weakly "
        "activating ones (Borowski et al., ICLR 2021; IMI, Zimmermann et al. NeurIPS 2023)",
    ),
}
DEFAULT_TASK = "occlusion"


def get_task(name: str | None) -> TaskSpec:
    """The task of that name (None: the occlusion task, which packages without a `task` field hold)."""
    name = name or DEFAULT_TASK
    if name not in TASKS:
        raise VizprobeError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
