"""The stimulus package manifest: one JSON file, validated against the schema shipped beside it."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources
from pathlib import Path

from vizprobe.errors import VizprobeError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
CONDITIONS = ("synthetic", "natural", "mixed", "blur", "none")


@cache
def schema() -> dict:
    return json.loads(resources.files("vizprobe.stimuli").joinpath("manifest.schema.json").read_text())


def validate(manifest: dict) -> None:
    """Raise a one-line VizprobeError naming the first place where `manifest` breaks the schema."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema()).iter_errors(manifest))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise VizprobeError(f"manifest fails its schema at {where}: {error.message[:150]}")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dumps(manifest: dict) -> str:
    """Canonical text: the same manifest always gives the same bytes."""
    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def load_manifest(package: str | Path, *, check_images: bool = False) -> dict:
    """Read and validate a package's manifest; optionally verify every image's sha256."""
    path = Path(package) / MANIFEST
    if not path.is_file():
        raise VizprobeError(f"{package} is not a stimulus package (no {MANIFEST}); run `vizprobe build` first")
    manifest = json.loads(path.read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise VizprobeError(f"{path} has schema_version {manifest.get('schema_version')}; this vizprobe reads 1")
    validate(manifest)
    if check_images:
        for rel, digest in manifest["images"].items():
            if sha256(Path(package) / rel) != digest:
                raise VizprobeError(f"image {rel} in {package} does not match its sha256; rebuild the package")
    return manifest
