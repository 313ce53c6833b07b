"""The visualize stage in one call: a model's units rendered with what a scan tells about them, written as a
visualizations dir. `vizprobe visualize` is this function; a notebook calls it the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vizprobe.errors import VizprobeError
from vizprobe.synthesis.settings import RenderSettings
from vizprobe.units import Directions, Unit


def until_targets(until: float | str | None, units: Sequence[Unit], scan=None) -> float | dict[Unit, float] | None:
    """An activation to stop at (12.5) or a multiple of each unit's natural top-1 ("2x", from `scan`)."""
    if until is None or isinstance(until, int | float):
        return until
    text = until.strip().lower()
    try:
        value = float(text.removesuffix("x"))
    except ValueError:
        raise VizprobeError(
            f"--until {until!r}: give an activation (12.5) or a multiple of the natural top-1 (2x)"
        ) from None
    if not text.endswith("x"):
        return value
    if scan is None:
        raise VizprobeError(f"--until {until}: a multiple of the natural top-1 needs --scan RUN_DIR")
    return {unit: value * scan.top(unit, 1)[0].activation for unit in units}


def visualize(
    model,
    units: str | Sequence[Unit | str],
    out: str | Path,
    settings: RenderSettings,
    *,
    scan: str | Path | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
    directions: Mapping[str, str | Path | Directions] | str | None = None,
    start_rank: int = 1,
    spectrum_file: str | Path | None = None,
    until: float | str | None = None,
    precision: str = "auto",
    progress: bool = True,
):
    """Render `units` of `model` (a name, loaded with `weights` on `device`, or a `LoadedModel`) and write them
    to `out`. With `scan` (a run dir) the scan's directions sets load too, and accentuation and the colour
    prior start from each unit's top exemplars (from `start_rank`), maco takes the scan's spectrum, the index
    records each unit's natural top-1 and `until="2x"` means twice it. `spectrum_file`: a published MACO
    spectrum (`load_spectrum`). Returns (the rendering, the index written)."""
    from vizprobe.models import LoadedModel, load_model
    from vizprobe.scan import ScanResult
    from vizprobe.synthesis.natural import load_spectrum, scan_inputs
    from vizprobe.synthesis.rendering import render_units
    from vizprobe.synthesis.store import save_visualizations

    if spectrum_file and settings.param != "maco":
        raise VizprobeError("--spectrum is MACO's Fourier magnitude: use it with --method maco")
    run = ScanResult.load(scan) if scan else None
    if not isinstance(model, LoadedModel):
        model = load_model(model, weights=weights, device=device, directions=directions)
    elif directions:
        model = model.with_directions(directions)
    if run is not None:  # the scan's directions sets, unless given again
        model = model.with_directions({k: v for k, v in run.directions.items() if k not in model.directions})
    units = model.resolve_units(units)  # a bad unit fails before any work
    references, paths, spectrum = None, None, None
    if run is not None:
        references, paths, spectrum = scan_inputs(run, units, model.preprocessing, settings, start_rank)
    if spectrum_file:
        spectrum = load_spectrum(spectrum_file, settings.size)
    rendering = render_units(
        model,
        units,
        settings,
        precision=precision,
        progress=progress,
        references=references,
        spectrum=spectrum,
        until=until_targets(until, units, run),
    )
    return rendering, save_visualizations(rendering, out, model, run, reference_paths=paths)
