"""Finding and decoding images robustly, and the embedded demo collection."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vizprobe.errors import VizprobeError
from vizprobe.files import cache_root

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})


class UnreadableImage(Exception):
    """An image file that cannot be decoded; callers log it and skip the file."""


def find_images(root: str | Path) -> list[str]:
    """Paths (relative to `root`, POSIX, sorted) of every jpg/jpeg/png/webp below `root`, any case."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise VizprobeError(f"image folder {root} does not exist; pass --images DIR with your photos")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
    if not found:
        raise VizprobeError(f"no images (jpg, jpeg, png, webp) under {root}; point --images at a photo folder")
    return sorted(found)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: grey, CMYK, palette, 16-bit; alpha is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        high = pixels.max() if pixels.size else 1.0
        pixels = pixels / (65535.0 if high > 255 else 255.0) * 255.0
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode one image fully as RGB, or raise `UnreadableImage` with the reason. `draft`: a JPEG may be decoded
    at a reduced scale no smaller than this size (much faster, for statistics of a small view)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if draft is not None:
                    image.draft("RGB", draft)
                image = ImageOps.exif_transpose(image)
                image.load()
                return to_rgb(image)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        raise UnreadableImage(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def to_pil(image) -> Image.Image:
    """(3, H, W) float tensor in [0, 1] -> 8-bit RGB image (rounded, so 8-bit values survive a round trip)."""
    array = (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array)


# Photos bundled inside scikit-image's wheel (no download), used to build the demo collection.
_DEMO_PHOTOS = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "camera.png",
    "coins.png",
    "moon.png",
    "color.png",
    "logo.png",
    "page.png",
    "text.png",
    "clock_motion.png",
    "microaneurysms.png",
    "cell.png",
]
DEMO_VERSION = 1


def _demo_variants(image: Image.Image):
    """The whole photo, its mirror image, and five 60 % crops (corners and centre)."""
    yield "full", image
    yield "mirror", ImageOps.mirror(image)
    w, h = image.size
    cw, ch = int(w * 0.6), int(h * 0.6)
    corners = {"tl": (0, 0), "tr": (w - cw, 0), "bl": (0, h - ch), "br": (w - cw, h - ch)}
    corners["c"] = ((w - cw) // 2, (h - ch) // 2)
    for name, (x, y) in corners.items():
        yield f"crop-{name}", image.crop((x, y, x + cw, y + ch))


def demo_images_dir(cache: str | Path | None = None) -> Path:
    """A folder of ~150 images cut from scikit-image's bundled photos, written once and cached.

    It makes `make demo` work on a machine with no data; real studies point `--images` at a real
    collection such as ImageNet. Grey-scale and alpha photos are kept as they are on purpose.
    """
    import skimage.data

    base = Path(cache) / "vizprobe" if cache else cache_root()
    target = base / f"demo-images-v{DEMO_VERSION}"
    if target.is_dir():
        return target
    source = Path(skimage.data.__file__).parent
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-images-", dir=base))
    try:
        for name in _DEMO_PHOTOS:
            if not (source / name).is_file():
                continue
            with Image.open(source / name) as photo:
                photo.load()
                stem = Path(name).stem
                keep_png = photo.mode not in ("RGB", "L")
                for variant, image in _demo_variants(photo):
                    if keep_png:
                        image.save(staging / f"{stem}_{variant}.png")
                    else:
                        image.save(staging / f"{stem}_{variant}.jpg", quality=92)
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():
            raise
    return target
