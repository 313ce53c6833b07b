"""Reference conditions as data: a name and where each unit's reference images come from.

Built in are the paper's five (`natural`, `synthetic`, `mixed`, `blur`, `none`). A study adds its own with
`NAME=images:DIR` (the user's explanation images: one folder per unit, named like the unit with ':' replaced by
'_', the first `references` image files in name order) or `NAME=visualizations:DIR` (another visualizations dir,
e.g. another method, used as `synthetic` uses the main one).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from vizprobe.errors import VizprobeError
from vizprobe.stimuli.manifest import CONDITION_NAME, CONDITIONS
from vizprobe.units import Unit

USER_KINDS = ("images", "visualizations")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class ConditionSpec:
    """One condition of a build: built in (`kind` == `name`) or the user's (`images` / `visualizations` + source)."""

    name: str
    kind: str
    source: Path | None = None

    @property
    def builtin(self) -> bool:
        return self.source is None


def parse_condition(text: str) -> ConditionSpec:
    """`natural` (a built-in name) or `NAME=images:DIR` / `NAME=visualizations:DIR`; one-line error otherwise."""
    text = text.strip()
    if "=" not in text:
        if text not in CONDITIONS:
            raise VizprobeError(
                f"unknown condition {text!r}; use some of {', '.join(CONDITIONS)}, or bring your own as "
                "NAME=images:DIR or NAME=visualizations:DIR"
            )
        return ConditionSpec(text, text)
    name, _, rest = text.partition("=")
    kind, _, source = rest.partition(":")
    if not re.fullmatch(CONDITION_NAME, name) or name in CONDITIONS:
        raise VizprobeError(
            f"condition name {name!r}: use letters, digits, - _ / and not a built-in name ({', '.join(CONDITIONS)})"
        )
    if kind not in USER_KINDS or not source:
        raise VizprobeError(f"condition {text!r}: write NAME=images:DIR or NAME=visualizations:DIR")
    path = Path(source).expanduser()
    if not path.is_dir():
        raise VizprobeError(f"condition {name}: {path} is not a folder")
    return ConditionSpec(name, kind, path.resolve())


def parse_conditions(texts: tuple[str, ...] | list[str]) -> list[ConditionSpec]:
    specs = [parse_condition(t) for t in texts]
    names = [c.name for c in specs]
    if len(set(names)) != len(names):
        raise VizprobeError(f"a condition is named twice in --conditions ({', '.join(names)}); name each once")
    return specs


def unit_image_folder(root: Path, unit: Unit) -> Path | None:
    """A unit's folder in an `images:` source: `LAYER_CHANNEL` (':' replaced by '_'), or the unit's folder name."""
    for name in (str(unit).replace(":", "_"), unit.folder):
        if (root / name).is_dir():
            return root / name
    return None


def unit_images(spec: ConditionSpec, unit: Unit, n: int) -> list[Path]:
    """The first `n` image files (name order) of the unit's folder; a one-line error when it is missing or empty."""
    folder = unit_image_folder(spec.source, unit)
    expected = spec.source / str(unit).replace(":", "_")
    if folder is None:
        raise VizprobeError(f"condition {spec.name}: unit {unit} has no folder {expected}; add its images there")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VizprobeError(f"condition {spec.name}: {folder} holds no image files for unit {unit}")
    return files[:n]


def file_hashes(spec: ConditionSpec, files: list[Path]) -> dict[str, str]:
    """The sha256 of each file a user condition used, by its path inside the condition's source (for the manifest)."""
    return {str(p.relative_to(spec.source)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
