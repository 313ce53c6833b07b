"""Feature visualization by activation maximization, batched over units (lucid's optvis cut).

`param` maps free variables to images, `transforms` randomly perturb them each step, `objectives`
score images, and `render` is the loop that knows none of their internals.
"""

from vizprobe.synthesis.render import PRESETS, Rendering, RenderSettings, preset, render

__all__ = ["PRESETS", "RenderSettings", "Rendering", "preset", "render"]
