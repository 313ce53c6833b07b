"""Reference conditions as data: a name and where each unit's reference images come from.

Built in are the paper's five (`natural`, `synthetic`, `mixed`, `blur`, `none`). A study adds its own with
`NAME=images:DIR` (the user's explanation images: one folder per unit, named like the unit with ':' replaced by
'_', the first `references` image files in name order) or `NAME=visualizations:DIR` (another visualizations dir,
e.g. another method, used as `synthetic` uses the main one). Installed packages add kinds of their own through
the `vizprobe.conditions` entry point group: `NAME=KIND:ARGUMENT` calls the plugin's function with (ARGUMENT,
the unit as text, n) for each unit's image files, which are then shown as `images:` ones are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from vizprobe.condition_names import CONDITION_NAME, CONDITIONS
from vizprobe.errors import VizprobeError
from vizprobe.plugins import CONDITION_GROUP, plugin_entries
from vizprobe.units import Unit

USER_KINDS = ("images", "visualizations")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class ConditionSpec:
    """One condition of a build: built in (`kind` == `name`) or the user's (`images` / `visualizations` + a folder,
    or a plugin's kind + its argument)."""

    name: str
    kind: str
    source: Path | str | None = None

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
    plugins = plugin_kinds()
    if kind in plugins and source:
        return ConditionSpec(name, kind, source)
    if kind not in USER_KINDS or not source:
        more = "".join(f" or NAME={k}:ARGUMENT" for k in plugins)
        raise VizprobeError(f"condition {text!r}: write NAME=images:DIR or NAME=visualizations:DIR{more}")
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


@cache
def plugin_kinds() -> dict[str, object]:
    """Kinds of reference sources that installed packages add (`vizprobe.conditions` entry points), by name."""
    return {ep.name: ep for ep in plugin_entries(CONDITION_GROUP) if ep.name not in USER_KINDS}


def _plugin_function(kind: str) -> Callable[[str, str, int], list]:
    entry = plugin_kinds()[kind]
    try:
        return entry.load()
    except Exception as error:  # the plugin's own failure, with its name
        raise VizprobeError(f"condition plugin {kind!r} ({entry.value}) failed to load: {error}") from None


def unit_images(spec: ConditionSpec, unit: Unit, n: int) -> list[Path]:
    """The unit's first `n` image files: of its folder (name order) for `images:`, as the plugin gives them for a
    plugin's kind; a one-line error when there are none."""
    if spec.kind != "images":
        return _plugin_images(spec, unit, n)
    folder = unit_image_folder(spec.source, unit)
    expected = spec.source / str(unit).replace(":", "_")
    if folder is None:
        raise VizprobeError(f"condition {spec.name}: unit {unit} has no folder {expected}; add its images there")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VizprobeError(f"condition {spec.name}: {folder} holds no image files for unit {unit}")
    return files[:n]


def _plugin_images(spec: ConditionSpec, unit: Unit, n: int) -> list[Path]:
    try:
        given = _plugin_function(spec.kind)(str(spec.source), str(unit), n)
        files = [Path(p) for p in given]
    except VizprobeError:
        raise
    except Exception as error:
        raise VizprobeError(f"condition {spec.name}: plugin {spec.kind!r} failed for unit {unit}: {error}") from None
    missing = [str(p) for p in files if not p.is_file()]
    if missing or not files:
        why = f"gave {missing[0]}, which is not a file" if missing else "gave no images"
        raise VizprobeError(f"condition {spec.name}: plugin {spec.kind!r} {why} for unit {unit}")
    return files[:n]


def file_hashes(spec: ConditionSpec, files: list[Path]) -> dict[str, str]:
    """The sha256 of each file a user condition used, by its path inside the condition's source folder (a
    plugin's files: by their absolute path), for the manifest."""
    names = [str(p.relative_to(spec.source)) if spec.kind == "images" else str(p.resolve()) for p in files]
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in zip(names, files, strict=True)}
