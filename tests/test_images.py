"""Image discovery and decoding: odd files become RGB or a clear reason, never a crash."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import pick
from PIL import Image

from vizprobe.errors import VizprobeError
from vizprobe.images import UnreadableImage, demo_images_dir, find_images, load_rgb


def test_find_images_recursive_any_case(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.JPG", format="JPEG")
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "y.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "b" / "z.WebP", format="WEBP")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".hidden.jpg").write_text("x")
    assert find_images(tmp_path) == ["a/b/z.WebP", "a/y.png", "x.JPG"]


def test_find_images_errors(tmp_path):
    with pytest.raises(VizprobeError, match="does not exist"):
        find_images(tmp_path / "missing")
    with pytest.raises(VizprobeError, match="no images"):
        find_images(tmp_path)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "LA", "I;16", "1"])
def test_odd_modes_become_rgb(tmp_path, photo_files, mode):
    photo = Image.open(pick(photo_files, 1)).convert("RGB").resize((64, 48))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
    elif mode == "LA":
        image = photo.convert("LA")
    else:
        image = photo.convert(mode)
    path = tmp_path / ("img.tiff" if mode in ("CMYK", "I;16") else "img.png")
    image.save(path)
    rgb = load_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (64, 48)
    if mode == "L":
        pixels = np.asarray(rgb)
        assert (pixels[..., 0] == pixels[..., 1]).all()
    if mode == "I;16":  # 16-bit grey keeps its full range instead of saturating to white
        assert 20 < np.asarray(rgb).mean() < 235


def test_transparent_pixels_become_white(tmp_path):
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    image.save(tmp_path / "clear.png")
    assert np.asarray(load_rgb(tmp_path / "clear.png")).min() == 255


def test_truncated_and_fake_images_raise_unreadable(tmp_path, photo_files):
    data = pick(photo_files, 0).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "fake.jpg").write_text("this is not an image")
    for name in ("truncated.jpg", "fake.jpg"):
        with pytest.raises(UnreadableImage):
            load_rgb(tmp_path / name)


def test_demo_collection_from_bundled_photos(tmp_path):
    folder = demo_images_dir(cache=tmp_path)
    files = find_images(folder)
    assert len(files) >= 100
    assert demo_images_dir(cache=tmp_path) == folder  # cached, not rebuilt
    modes = {Image.open(folder / f).mode for f in files[:: max(1, len(files) // 40)]}
    assert "RGB" in modes
    shutil.rmtree(folder)
