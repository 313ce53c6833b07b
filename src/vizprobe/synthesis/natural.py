"""Natural images for the synthesis methods that use them: each unit's top scan exemplars (accentuation's
start images, the colour prior's statistics) and the natural Fourier magnitude MACO fixes (measured on a
scan's images or the demo photos, or a published spectrum file; never downloaded)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vizprobe.errors import VizprobeError
from vizprobe.synthesis.param import natural_spectrum, resize_spectrum
from vizprobe.units import Unit

REFERENCE_IMAGES = 9  # natural images per unit (the paper's number of reference images)
SPECTRUM_IMAGES = 256  # images of a scan MACO's spectrum is measured on


def sized(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 3, size, size): resized so the short side is `size`, centre-cropped."""
    images = images.float()
    h, w = images.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        images = torch.nn.functional.interpolate(images, size=new, mode="bilinear", antialias=True, align_corners=False)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        images = images[..., top : top + size, left : left + size]
    return images.clamp(0, 1)


def spectrum_of(paths: Sequence[Path], preprocessing, size: int) -> torch.Tensor:
    """The mean Fourier magnitude (`natural_spectrum`) of the images at `paths`, preprocessed as the model
    sees them and sized to `size`; read a few at a time."""
    from vizprobe.images import load_rgb

    total = torch.zeros(3, size, size // 2 + 1)
    for begin in range(0, len(paths), 32):
        batch = torch.stack([preprocessing.pixels(load_rgb(p)) for p in paths[begin : begin + 32]])
        total += natural_spectrum(sized(batch, size)) * len(batch)
    return total / len(paths)


def demo_spectrum(preprocessing, size: int) -> tuple[torch.Tensor, str]:
    """MACO's spectrum measured on the embedded demo photos (nothing is downloaded), and that source."""
    from vizprobe.images import demo_images_dir, find_images

    root = demo_images_dir()
    paths = [root / p for p in find_images(root)]
    return spectrum_of(paths, preprocessing, size), f"the embedded demo photos ({len(paths)} images)"


def scan_spectrum(scan, preprocessing, size: int, n: int = SPECTRUM_IMAGES) -> tuple[torch.Tensor, str]:
    """MACO's spectrum measured on `n` images spread evenly over a scan's collection, and that source: the
    same for every unit, so a unit renders the same alone or with others."""
    import numpy as np

    from vizprobe.scan import format as fmt

    scanned = np.flatnonzero(np.asarray(scan.status) == fmt.SCANNED)
    chosen = scanned[np.linspace(0, len(scanned) - 1, min(n, len(scanned))).round().astype(int)]
    paths = [scan.image_path(int(i)) for i in chosen]
    return spectrum_of(paths, preprocessing, size), f"{len(paths)} images of the scan in {scan.run_dir}"


def load_spectrum(path: str | Path, size: int | None = None) -> tuple[torch.Tensor, str]:
    """A published MACO spectrum (e.g. the (3, 512, 257) `spectrum_decorrelated.npy` of xplique, faccent and
    dreamlens): a non-negative (3, S, S // 2 + 1) Fourier magnitude in the decorrelated colour space, and its
    source with the file's sha256, resized to image side `size` if given. Its scale does not matter (MACO
    standardizes every image)."""
    import hashlib

    path = Path(path)
    if not path.is_file():
        raise VizprobeError(f"--spectrum {path}: no such file; pass a .npy of shape (3, S, S // 2 + 1)")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise VizprobeError(f"--spectrum {path} is not a .npy file ({exc})") from None
    if array.ndim != 3 or array.shape[0] != 3 or array.shape[2] != array.shape[1] // 2 + 1:
        raise VizprobeError(
            f"--spectrum {path} has shape {array.shape}; expected (3, S, S // 2 + 1), e.g. (3, 512, 257)"
        )
    if not np.isfinite(array).all() or (array < 0).any():
        raise VizprobeError(f"--spectrum {path} holds negative or non-finite values; a magnitude spectrum has neither")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spectrum = torch.from_numpy(array.astype(np.float32))
    return (resize_spectrum(spectrum, size) if size else spectrum), f"{path} (sha256 {digest})"


def scan_references(
    scan, units: Sequence[Unit], preprocessing, k: int = REFERENCE_IMAGES, first_rank: int = 1
) -> tuple[dict[Unit, torch.Tensor], dict[Unit, list[Path]]]:
    """Each unit's scan images of ranks `first_rank`.. `first_rank + k - 1`, strongest first, as
    (k, 3, crop, crop) in [0, 1], and their paths. For a study, start past the query ranks (the paper's
    references begin at rank 21), so that no explanation is made from a query image."""
    from vizprobe.images import load_rgb

    images, paths = {}, {}
    for unit in units:
        top = scan.top(unit, first_rank - 1 + k)[first_rank - 1 :]
        paths[unit] = [e.path for e in top]
        images[unit] = torch.stack([preprocessing.pixels(load_rgb(e.path)) for e in top])
    return images, paths


def scan_inputs(scan, units: Sequence[Unit], preprocessing, settings, start_rank: int = 1):
    """What `render_units` needs from a scan for `settings`: (references, their paths, maco's spectrum), each
    None where the method does not use it. References start at `start_rank` (see `scan_references`)."""
    references, paths, spectrum = None, None, None
    if settings.param == "accentuation" or settings.colour:
        k = max(settings.per_unit, REFERENCE_IMAGES)
        references, paths = scan_references(scan, units, preprocessing, k, start_rank)
    if settings.param == "maco":
        spectrum = scan_spectrum(scan, preprocessing, settings.size)
    return references, paths, spectrum
