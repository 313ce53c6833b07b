"""Feature visualization by activation maximization, batched over units (lucid's optvis cut).

`param` maps free variables to images, `transforms` randomly perturb them each step, `objectives`
score images, and `render` is the loop that knows none of their internals; `render_units` builds
those pieces for units and presets and calls it; `visualize` is the whole stage (a scan's references in, a
visualizations dir out). The loop (which needs torch) is imported on first use.
"""

from importlib import import_module

from vizprobe.synthesis.settings import PRESETS, RenderSettings, preset

_LAZY = {
    "RenderResult": "rendering",
    "Rendering": "rendering",
    "render": "rendering",
    "render_units": "rendering",
    "visualize": "stage",
}

__all__ = ["PRESETS", "RenderSettings", "preset", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"vizprobe.synthesis.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vizprobe.synthesis' has no attribute {name!r}")
