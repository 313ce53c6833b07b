"""What the verbs share: help that shows the API's defaults, the options several verbs take, small parsers.

Options that are settings leave their value None when not given, so the API's default applies; their
help shows that default, read from where it is defined (a settings dataclass or a function's signature)
only when help is printed, so `--help` cannot disagree with the code and the CLI starts without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from importlib import import_module

from vizprobe import DEFAULT_MODEL
from vizprobe.device import DEVICE_CHOICES
from vizprobe.protocol import list_protocols


def default_of(where: str) -> object:
    """The default of `module:Owner.name`: a dataclass field's default or a function parameter's."""
    module, _, path = where.partition(":")
    owner_name, _, name = path.rpartition(".")
    owner = getattr(import_module(module), owner_name)
    if dataclasses.is_dataclass(owner):
        return next(f.default for f in dataclasses.fields(owner) if f.name == name)
    return inspect.signature(owner).parameters[name].default


class _Help(argparse.HelpFormatter):
    """Appends each option's default, read from its source (`action.default_from`), to its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        where = getattr(action, "default_from", None)
        if where is None:
            return action.help or ""
        return f"{action.help} (default {_as_typed(default_of(where))})"


def _as_typed(value) -> str:
    """A default as a user types it: `21-200` for a range of two numbers, `a,b,c` for a list."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple | list):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{value[0]}-{value[1]}"
        return ",".join(map(str, value))
    return str(value)


def _setting(parser: argparse.ArgumentParser, flag: str, where: str, help: str, **kwargs) -> None:
    """An option whose default lives in the API (`where`): None here, shown in --help."""
    action = parser.add_argument(flag, default=None, help=help, **kwargs)
    action.default_from = where


def _mturk_settings(args: argparse.Namespace, **more):
    """The protocol's MTurk settings with the HIT options the user gave (`mturk-hit`, `crowd`)."""
    from vizprobe.experiment.mturk import with_overrides
    from vizprobe.protocol import get_protocol

    countries = tuple(c.strip().upper() for c in args.countries.split(",")) if args.countries else None
    return with_overrides(
        get_protocol(args.protocol).mturk,
        reward_usd=args.reward,
        reward_none_usd=args.reward,
        assignment_duration_s=args.assignment_duration,
        min_hits_approved=args.min_hits_approved,
        min_percent_approved=args.min_percent_approved,
        countries=countries,
        **more,
    ).checked()


def _given(args: argparse.Namespace, *names: str, rename: dict[str, str] | None = None) -> dict:
    """The named options the user gave (None ones left out, so the API's defaults apply)."""
    rename = rename or {}
    return {rename.get(n, n): getattr(args, n) for n in names if getattr(args, n) is not None}


def _protocol_arg(parser: argparse.ArgumentParser) -> None:
    text = f"study protocol whose defaults apply: {', '.join(list_protocols())} (default zimmermann2021; see docs)"
    parser.add_argument("--protocol", default=None, help=text)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model name (see `vizprobe models`; default {DEFAULT_MODEL}), or module.path:factory for your own",
    )
    parser.add_argument("--weights", default=None, help="local state dict (.pth) for models without embedded weights")
    text = "with --model module.path:factory: a JSON of resize, crop, interpolation, mean, std (default ImageNet's)"
    parser.add_argument("--preprocessing", default=None, help=text)
    _device_arg(parser)


def _device_arg(parser: argparse.ArgumentParser) -> None:
    """`--device auto|cpu|cuda`, the same on every compute verb."""
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto: the GPU when present")


def _directions_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--directions",
        default=None,
        help="NAME=FILE[,NAME=FILE]: directions as units LAYER:NAME:K (.npy (K, C) projections, or .npz with a "
        "sparse autoencoder's W (K, C) and b (K))",
    )


def _embedder_args(parser: argparse.ArgumentParser) -> None:
    from vizprobe.observers.embedding import DEFAULT_EMBEDDER, FALLBACK_EMBEDDER

    text = (
        f"MODEL[:LAYER,...] the similarity observer embeds images with (default {DEFAULT_EMBEDDER}; "
        f"{FALLBACK_EMBEDDER} when the studied network is {DEFAULT_EMBEDDER})"
    )
    parser.add_argument("--embedder", default=None, help=text)
    parser.add_argument("--embedder-weights", default=None, help="local state dict (.pth) for the --embedder model")
    text = "allow embedding with the studied network (its answers then read the unit; marked so)"
    parser.add_argument("--embedder-same-as-model", action="store_true", help=text)
    parser.add_argument("--rule", default=None, help="a decision rule fitted with vizprobe observe --fit (JSON)")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]
