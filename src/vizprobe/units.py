"""Units (`LAYER:CHANNEL`, `LAYER:DIRECTIONS:K`), the one definition of a unit's activation, and taps on layers.

A unit's activation on an image is the spatial mean of one channel of one layer's output
(`channel_mean`); for a transformer's token layer, (N, T, C), the mean over its patch tokens (class and
register tokens excluded; `token_map`). A direction unit `LAYER:NAME:K` is channel K of the layer's output
seen through a set of directions (`Directions`: a projection, or a sparse autoencoder's ReLU(W a + b)), applied
at every position before the mean. Scan, synthesis, occlusion and observers all go through this module.

A unit's canonical form names its layer by module path (`_blocks.8:12`, never the alias `block8:12`);
`LoadedModel.resolve_unit` turns any spelling into it once, and seeds, file names, index and manifest
keys all use `str(unit)` of the canonical form. What the user typed stays as `label`, for display.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so readers of units (analysis, server) stay light
    import torch
    from torch import nn

from vizprobe.errors import VizprobeError
from vizprobe.files import safe_name

DIRECTIONS_NAME = r"[A-Za-z][A-Za-z0-9_-]*"  # a directions set's name: a letter first, so never a channel
_UNIT_RE = re.compile(rf"^\s*(?P<layer>[^:\s]+(?::{DIRECTIONS_NAME})?)\s*:\s*(?P<channel>\d+)\s*$")


@dataclass(frozen=True, order=True)
class Unit:
    """One channel of one layer; `layer` is a module path (canonical) or, before resolution, an alias.

    A direction unit's layer is `LAYER:NAME` (`_blocks.8:sae`), its channel the direction's index K.

    `label` is how the user wrote the unit; it is for display only and takes no part in equality.
    """

    layer: str
    channel: int
    label: str | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str | Unit) -> Unit:
        """Parse `LAYER:CHANNEL` (e.g. `_blocks.8:12`, `mixed4a/3x3:12`)."""
        if isinstance(text, Unit):
            return text
        match = _UNIT_RE.match(text)
        if not match:
            raise VizprobeError(
                f"bad unit {text!r}: write LAYER:CHANNEL or LAYER:DIRECTIONS:K, e.g. _blocks.8:12 or _blocks.8:sae:3"
            )
        return cls(match["layer"], int(match["channel"]))

    def __str__(self) -> str:
        return f"{self.layer}:{self.channel}"

    @property
    def display(self) -> str:
        """The spelling the user chose (an alias, say), else the canonical one."""
        return self.label or str(self)

    @property
    def directions(self) -> str | None:
        """The name of the directions set of a direction unit, else None."""
        return split_layer(self.layer)[1]

    @property
    def folder(self) -> str:
        """A file-system-safe name (`_blocks.8_0012`), used for the unit's folders in every output."""
        return f"{safe_name(self.layer)}_{self.channel:04d}"


def split_layer(layer: str) -> tuple[str, str | None]:
    """(module path or alias, directions name or None) of a unit's layer (`_blocks.8:sae` -> `_blocks.8`, `sae`)."""
    base, _, name = layer.partition(":")
    return base, name or None


def unit_layer(unit: str | Unit) -> str:
    """The layer part of a unit (`mixed4a/3x3:12` -> `mixed4a/3x3`), for tables without a manifest; a name
    that is not LAYER:CHANNEL (another study's unit ids) is its own layer."""
    if isinstance(unit, Unit):
        return unit.layer
    match = _UNIT_RE.match(unit)
    return match["layer"] if match else unit.strip()


def parse_units(text: str | Iterable[str | Unit]) -> list[Unit]:
    """Parse a comma-separated list of units (or an iterable of strings/units)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    units = [Unit.parse(item) for item in items if str(item).strip()]
    if not units:
        raise VizprobeError("no units given: pass LAYER:CHANNEL[,LAYER:CHANNEL...]")
    return units


MAX_PREFIX_TOKENS = 8  # class + register tokens tried when a model does not say how many it has


def patch_grid(tokens: int, prefix_hint: int = 0) -> tuple[int, int, int] | None:
    """(prefix tokens, h, w) of a token sequence whose patch tokens form a square grid, else None.

    `prefix_hint` is the model's own count (timm's `num_prefix_tokens`); layers before the class token is
    added (a patch embedding) have none, and other models are tried with 0..8 leading tokens."""
    for prefix in dict.fromkeys([prefix_hint, *range(MAX_PREFIX_TOKENS + 1)]):
        side = math.isqrt(max(tokens - prefix, 0))
        if side >= 2 and side * side == tokens - prefix:
            return prefix, side, side
    return None


def token_map(output: torch.Tensor, prefix_hint: int = 0) -> torch.Tensor:
    """A transformer layer's (N, T, C) output as the (N, C, h, w) map of its patch tokens (class and register
    tokens dropped), so that a token layer's unit is a channel and its activation the mean over patch tokens,
    exactly like a convolutional layer's. Other outputs are returned as they are."""
    if output.ndim != 3:
        return output
    grid = patch_grid(output.shape[1], prefix_hint)
    if grid is None:
        raise VizprobeError(
            f"a token layer with {output.shape[1]} tokens has no square grid of patch tokens; pick another layer"
        )
    prefix, h, w = grid
    return output[:, prefix:, :].transpose(1, 2).reshape(output.shape[0], output.shape[2], h, w)


def channel_mean(feature_map: torch.Tensor) -> torch.Tensor:
    """The activation of every channel: spatial mean of an (N, C, H, W) map, giving (N, C). Token layers
    reach here as maps of their patch tokens (`token_map`), so this is the one definition for both."""
    if feature_map.ndim != 4:
        raise VizprobeError(f"expected a (N, C, H, W) feature map, got shape {tuple(feature_map.shape)}")
    return feature_map.mean(dim=(2, 3))


@dataclass(frozen=True, eq=False)
class Directions:
    """K directions in a layer's channel space, each a unit: `LAYER:NAME:K`.

    `weight` (K, C) alone is a projection (the activation is the mean over positions of w_k . a), as in lucid's
    `direction` objective; with `bias` (K,) it is a sparse autoencoder's encoder applied at every position, of
    one of SAELens's kinds (`encoder`), with pre = W (a - b_dec) + b:
    relu: ReLU(pre); jumprelu: ReLU(pre) where pre > threshold (K,), else 0; topk: ReLU of the k largest
    pre per position, the others 0; gated: [W (a - b_dec) + b_gate > 0] * ReLU(W exp(r_mag) (a - b_dec) + b_mag).
    Loaded from a `.npy` (K, C), an `.npz` with only `W` (K, C) (a projection), or an `.npz` with `W` and, by
    `kind` (default relu): `b` (K) (relu,
    jumprelu, topk), `threshold` (K) (jumprelu), `k` (topk), `b_gate`, `r_mag`, `b_mag` (K each; gated), and
    optionally `b_dec` (C), subtracted from the activations before encoding (folded into the biases).

    `reduce` (an `.npz`'s `reduce`, default mean) is how a direction's map becomes an image's activation: the mean
    over positions, as the paper's channels, or the maximum, better for sparse features (an SAE feature fires at
    a few positions). With max, `apply` returns (N, K, 1, 1) maxima, so every stage that averages positions (the
    one definition, `channel_mean`) reads the maximum.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray | None
    source: str
    sha256: str
    encoder: str = "relu"  # the SAE's kind (SAE_KINDS), when `bias` is given
    extra: dict = field(default_factory=dict)  # threshold (jumprelu), k (topk), gate_bias and magnitude (gated)
    reduce: str = "mean"  # over positions: mean or max (REDUCTIONS)

    def __post_init__(self) -> None:
        import torch  # tensors made once here: `apply` changes no state, so torch.compile can trace it

        object.__setattr__(self, "_weight", torch.from_numpy(self.weight)[:, :, None, None])
        object.__setattr__(self, "_bias", None if self.bias is None else torch.from_numpy(self.bias))
        object.__setattr__(
            self, "_extra", {k: torch.from_numpy(np.asarray(v)) for k, v in self.extra.items() if k != "k"}
        )

    @classmethod
    def load(cls, name: str, path: str | Path) -> Directions:
        path = Path(path)
        if not re.fullmatch(DIRECTIONS_NAME, name):
            raise VizprobeError(f"bad directions name {name!r}: use letters, digits, - and _, starting with a letter")
        if not path.is_file():
            raise VizprobeError(f"directions {name}: no file {path}; pass --directions {name}=PATH to a .npy or .npz")
        weight, bias, encoder, extra, reduce = _read_directions(name, path)
        if weight.ndim != 2 or not np.issubdtype(weight.dtype, np.number):
            raise VizprobeError(f"directions {name}: {path} holds shape {weight.shape}; expected a (K, C) matrix")
        if bias is not None and bias.shape != (weight.shape[0],):
            raise VizprobeError(f"directions {name}: b has shape {bias.shape}, expected ({weight.shape[0]},) for K")
        if not np.isfinite(weight).all() or (bias is not None and not np.isfinite(bias).all()):
            raise VizprobeError(f"directions {name}: {path} holds NaN or infinite values")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        as32 = None if bias is None else np.asarray(bias, np.float32)
        return cls(name, np.asarray(weight, np.float32), as32, str(path), digest, encoder, extra, reduce)

    @property
    def count(self) -> int:
        """K, the number of directions (units)."""
        return self.weight.shape[0]

    @property
    def channels(self) -> int:
        """C, the channel count of the layers they apply to."""
        return self.weight.shape[1]

    @property
    def kind(self) -> str:
        return "sae" if self.bias is not None else "projection"

    @property
    def suffix(self) -> str:
        """The file's extension, kept where the set is copied (an .npz may hold a projection with its reduce)."""
        own = Path(self.source).suffix
        return own if own in (".npy", ".npz") else ".npz" if self.bias is not None else ".npy"

    def check_layer(self, layer: str, channels: int) -> None:
        if channels != self.channels:
            raise VizprobeError(
                f"directions {self.name} ({Path(self.source).name}) are {self.count}x{self.channels} but layer "
                f"{layer!r} has {channels} channels; use a layer with {self.channels} channels or other directions"
            )

    def apply(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, K, H, W): every position's activations projected (and encoded) by the directions;
        with `reduce` max, (N, K, 1, 1): each direction's maximum over positions."""
        encoded = self._encode(feature_map)
        return encoded.amax(dim=(2, 3), keepdim=True) if self.reduce == "max" else encoded

    def _encode(self, feature_map: torch.Tensor) -> torch.Tensor:
        import torch

        if feature_map.shape[1] != self._weight.shape[1]:
            self.check_layer("tapped", feature_map.shape[1])

        def here(tensor):
            return tensor.to(feature_map.device, feature_map.dtype)

        weight = here(self._weight)
        bias = None if self._bias is None else here(self._bias)
        if bias is not None and self.encoder == "gated":
            gate = torch.nn.functional.conv2d(feature_map, weight, here(self._extra["gate_bias"])) > 0
            magnitude = torch.nn.functional.conv2d(feature_map, here(self._extra["magnitude"]), bias)
            return torch.relu(magnitude) * gate.to(magnitude.dtype)
        out = torch.nn.functional.conv2d(feature_map, weight, bias)
        if bias is None:
            return out
        if self.encoder == "jumprelu":
            return torch.relu(out) * (out > here(self._extra["threshold"])[None, :, None, None]).to(out.dtype)
        if self.encoder == "topk":
            values, indices = out.topk(min(int(self.extra["k"]), out.shape[1]), dim=1)
            return torch.zeros_like(out).scatter(1, indices, torch.relu(values))
        return torch.relu(out)

    def record(self, file: str) -> dict:
        """How a stage's output describes the set it copied to `file`."""
        record = {
            "file": file,
            "sha256": self.sha256,
            "kind": self.kind,
            "count": self.count,
            "channels": self.channels,
        }
        record |= {"reduce": self.reduce} if self.reduce != "mean" else {}
        return record | ({"encoder": self.encoder} if self.bias is not None else {})


REDUCTIONS = ("mean", "max")
SAE_KINDS = {  # the arrays each kind of sparse autoencoder needs beside W (K, C), as SAELens names its kinds
    "relu": ("b",),
    "jumprelu": ("b", "threshold"),
    "topk": ("b", "k"),
    "gated": ("b_gate", "r_mag", "b_mag"),
}


def _read_directions(name: str, path: Path) -> tuple[np.ndarray, np.ndarray | None, str, dict, str]:
    """(W, the encoder's bias or None, its kind, its other arrays, the reduction) from a `.npy` (K, C) or an
    `.npz` (see `Directions`); b_dec is folded into the biases."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise VizprobeError(f"directions {name}: {path} is not a .npy or .npz file ({exc})") from None
    if isinstance(data, np.ndarray):
        return data, None, "relu", {}, "mean"
    with data:
        arrays = {key: data[key] for key in data.files}
    reduce = str(arrays.pop("reduce", np.array("mean")))
    if reduce not in REDUCTIONS:
        raise VizprobeError(f"directions {name}: {path} has reduce {reduce!r}; use one of {', '.join(REDUCTIONS)}")
    if set(arrays) == {"W"}:
        return arrays["W"], None, "relu", {}, reduce  # a projection (with its reduction)
    kind = str(arrays.pop("kind", np.array("relu")))
    if kind not in SAE_KINDS:
        raise VizprobeError(f"directions {name}: {path} has kind {kind!r}; use one of {', '.join(SAE_KINDS)}")
    missing = [key for key in ("W", *SAE_KINDS[kind]) if key not in arrays]
    if missing:
        raise VizprobeError(
            f"directions {name}: {path} ({kind}) lacks {', '.join(missing)}: an .npz needs W (K, C) and, for kind "
            f"{kind}, {', '.join(SAE_KINDS[kind])}; it has {', '.join(arrays) or 'nothing'}"
        )
    weight, b_dec = arrays["W"], arrays.get("b_dec")
    if weight.ndim != 2:
        raise VizprobeError(f"directions {name}: W has shape {weight.shape}; expected a (K, C) matrix")
    if b_dec is not None and b_dec.shape != (weight.shape[1],):
        raise VizprobeError(f"directions {name}: b_dec has shape {b_dec.shape}; expected (C,) for W of {weight.shape}")
    for key in ("b", "threshold", "b_gate", "r_mag", "b_mag"):
        if key in arrays and arrays[key].shape != (weight.shape[0],):
            raise VizprobeError(
                f"directions {name}: {key} has shape {arrays[key].shape}, expected ({weight.shape[0]},)"
            )

    def folded(w: np.ndarray, b: np.ndarray) -> np.ndarray:  # W (a - b_dec) + b == W a + (b - W b_dec)
        return np.asarray(b if b_dec is None else b - w @ b_dec, np.float32)

    if kind == "gated":
        magnitude = weight * np.exp(arrays["r_mag"])[:, None]
        extra = {"gate_bias": folded(weight, arrays["b_gate"]), "magnitude": magnitude[:, :, None, None]}
        extra = {k: np.asarray(v, np.float32) for k, v in extra.items()}
        return weight, folded(magnitude, arrays["b_mag"]), kind, extra, reduce
    extra = {}
    if kind == "jumprelu":
        extra["threshold"] = np.asarray(arrays["threshold"], np.float32)
    if kind == "topk":
        k = np.asarray(arrays["k"])
        if k.size != 1 or int(k) < 1:
            raise VizprobeError(f"directions {name}: k must be one whole number >= 1, got {k}")
        extra["k"] = int(k)
    return weight, folded(weight, arrays["b"]), kind, extra, reduce


SAELENS_KINDS = {"standard": "relu", "relu": "relu", "jumprelu": "jumprelu", "topk": "topk", "gated": "gated"}


def import_saelens(folder: str | Path, out: str | Path, reduce: str = "max") -> Path:
    """Write a SAELens SAE saved on disk (`cfg.json` + `sae_weights.safetensors`: W_enc (C, K), b_enc, b_dec,
    threshold, b_gate, r_mag, b_mag) as a directions `.npz` of its kind (see `Directions`), its features read as
    their maximum over positions (`reduce` max, for sparse features; mean as the paper's channels)."""
    import io
    import json

    from safetensors.numpy import load_file

    from vizprobe.files import atomic_write_bytes

    folder = Path(folder)
    cfg_path, weights_path = folder / "cfg.json", folder / "sae_weights.safetensors"
    if not cfg_path.is_file() or not weights_path.is_file():
        raise VizprobeError(f"{folder} is not a SAELens SAE folder: it needs cfg.json and sae_weights.safetensors")
    cfg = json.loads(cfg_path.read_text())
    architecture = cfg.get("architecture") or cfg.get("activation_fn_str") or "standard"
    if architecture == "standard" and cfg.get("activation_fn_str") == "topk":
        architecture = "topk"
    if architecture not in SAELENS_KINDS:
        raise VizprobeError(f"{cfg_path}: architecture {architecture!r}; vizprobe reads {', '.join(SAELENS_KINDS)}")
    if cfg.get("normalize_activations") not in (None, "none"):
        raise VizprobeError(
            f"{cfg_path}: normalize_activations {cfg['normalize_activations']!r} rescales the inputs by statistics "
            "the folder does not hold; only SAEs without input normalization are read"
        )
    weights = load_file(str(weights_path))
    kind = SAELENS_KINDS[architecture]
    if reduce not in REDUCTIONS:
        raise VizprobeError(f"--reduce {reduce!r}: use one of {', '.join(REDUCTIONS)}")
    arrays = {
        "kind": np.array(kind),
        "reduce": np.array(reduce),
        "W": np.ascontiguousarray(weights["W_enc"].T, np.float32),
    }
    if cfg.get("apply_b_dec_to_input", True) and "b_dec" in weights:
        arrays["b_dec"] = weights["b_dec"]
    renamed = {"b_enc": "b", "threshold": "threshold", "b_gate": "b_gate", "r_mag": "r_mag", "b_mag": "b_mag"}
    arrays |= {ours: weights[theirs] for theirs, ours in renamed.items() if theirs in weights}
    if kind == "topk":
        k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
        if k is None:
            raise VizprobeError(f"{cfg_path}: a topk SAE without k (neither cfg k nor activation_fn_kwargs.k)")
        arrays["k"] = np.array(int(k))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(out, buffer.getvalue())
    Directions.load("imported", out)  # the file reads back as a valid set of its kind
    return Path(out)


def load_directions(given: Mapping[str, str | Path | Directions] | str | None) -> dict[str, Directions]:
    """Directions sets by name, from `NAME=FILE[,NAME=FILE]` or a mapping of names to files (or loaded sets)."""
    if not given:
        return {}
    if isinstance(given, str):
        pairs = {}
        for item in filter(None, (part.strip() for part in given.split(","))):
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise VizprobeError(f"bad --directions {item!r}: write NAME=FILE, e.g. sae=features.npz")
            pairs[name.strip()] = path.strip()
        given = pairs
    return {
        name: value if isinstance(value, Directions) else Directions.load(name, value) for name, value in given.items()
    }


class _StopForward(Exception):
    """Raised by a hook once every tapped layer has produced its output: the rest is not needed."""


class LayerTap:
    """Run a model only as far as the deepest of `paths` and return those layers' outputs.

    Forward hooks record the output of each named module; once all have fired the forward pass is
    cut short, so a scan of early layers never pays for the head of the network. A path `LAYER:NAME`
    is LAYER's output through the `directions` set NAME.
    """

    def __init__(
        self,
        model: nn.Module,
        paths: Sequence[str],
        directions: Mapping[str, Directions] | None = None,
        *,
        stop_early: bool = True,
    ):
        self.paths = list(dict.fromkeys(paths))
        self.views = {path: split_layer(path) for path in self.paths}  # path -> (module path, directions name)
        directions = directions or {}
        for path, (_, name) in self.views.items():
            if name is not None and name not in directions:
                raise VizprobeError(f"layer {path!r} needs directions {name!r}; pass --directions {name}=FILE")
        self.directions = {name: directions[name] for _, name in self.views.values() if name is not None}
        self.bases = list(dict.fromkeys(base for base, _ in self.views.values()))
        modules = dict(model.named_modules())
        missing = [p for p in self.bases if p not in modules]
        if missing:
            raise VizprobeError(f"model has no module {missing[0]!r}; run `vizprobe layers` to see its layers")
        self.model = model
        self.stop_early = stop_early
        self.prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self._modules = [modules[p] for p in self.bases]
        self._outputs: dict[str, torch.Tensor] = {}

    def _hook(self, path: str):
        def record(_module, _inputs, output):
            self._outputs[path] = output
            if self.stop_early and len(self._outputs) == len(self.bases):
                raise _StopForward

        return record

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs of the tapped layers for a batch of preprocessed images."""
        self._outputs = {}
        handles = [m.register_forward_hook(self._hook(p)) for p, m in zip(self.bases, self._modules, strict=True)]
        try:
            self.model(images)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        outputs, self._outputs = self._outputs, {}
        if len(outputs) != len(self.bases):
            silent = [p for p in self.bases if p not in outputs]
            raise VizprobeError(f"layer {silent[0]!r} produced no output in a forward pass; pick another layer")
        maps = {path: token_map(out, self.prefix_tokens) for path, out in outputs.items()}
        return {
            path: maps[base] if name is None else self.directions[name].apply(maps[base])
            for path, (base, name) in self.views.items()
        }


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is a (N, C, H, W) feature map, or (N, T, C) tokens (`layout` "tokens": `shape` is
    then (C, h, w) of the patch-token grid), as listed by `vizprobe layers`."""

    path: str
    kind: str
    shape: tuple[int, int, int]
    aliases: tuple[str, ...] = ()
    layout: str = "map"

    @property
    def channels(self) -> int:
        return self.shape[0]


def discover_layers(model: nn.Module, input_size: int, device: torch.device) -> list[LayerInfo]:
    """Every module that is called once per forward pass and outputs a square 4-d map (the input is square) or
    (N, T, C) tokens whose patch tokens form a square grid, in execution order.

    Modules reused within one pass (a shared activation function, say) have no single output and
    are left out.
    """
    import torch

    calls: dict[str, list[torch.Size]] = {}
    kinds = {}
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue
        kinds[path] = type(module).__name__

        def record(_m, _i, output, path=path):
            calls.setdefault(path, []).append(output.shape if torch.is_tensor(output) else None)

        handles.append(module.register_forward_hook(record))
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    prefix_hint = int(getattr(model, "num_prefix_tokens", 0) or 0)
    layers = []
    for path, shapes in calls.items():
        if len(shapes) != 1 or shapes[0] is None:
            continue
        if len(shapes[0]) == 4 and shapes[0][2] == shapes[0][3]:  # (N, heads, T, d) of attention is no map
            layers.append(LayerInfo(path, kinds[path], tuple(shapes[0][1:])))
        elif len(shapes[0]) == 3 and (grid := patch_grid(shapes[0][1], prefix_hint)) is not None:
            layers.append(LayerInfo(path, kinds[path], (shapes[0][2], grid[1], grid[2]), layout="tokens"))
    return layers
