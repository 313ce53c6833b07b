"""`vizprobe` verbs: directions, layers, models."""

from __future__ import annotations

import argparse
import json

from vizprobe.cli.common import (
    _add_model_args,
    _directions_arg,
)


def cmd_models(args: argparse.Namespace) -> int:
    from vizprobe.models import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:20s} {spec.description}  [weights: {spec.weights_source}]")
    print("(any other torchvision classifier loads by name with --weights PATH)")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from vizprobe.models import load_model

    model = load_model(args.model, weights=args.weights, device=args.device, directions=args.directions)
    layers = model.layers + model.direction_layers
    if args.json:
        rows = [
            {
                "path": li.path,
                "kind": li.kind,
                "layout": li.layout,
                "shape": list(li.shape),
                "aliases": list(li.aliases),
            }
            for li in layers
        ]
        print(json.dumps({"model": model.name, "layers": rows}, indent=2))
        return 0
    width = max(len(li.path) for li in layers)
    for li in layers:
        alias = f"  ({', '.join(li.aliases)})" if li.aliases else ""
        kind = f"{li.kind} (tokens)" if li.layout == "tokens" else li.kind
        print(f"{li.path:{width}s}  {kind:40s} {'x'.join(map(str, li.shape)):>14s}{alias}")
    return 0


def cmd_directions(args: argparse.Namespace) -> int:
    from vizprobe.units import Directions, import_saelens

    path = import_saelens(args.folder, args.out, args.reduce)
    found = Directions.load("imported", path)
    print(
        f"{found.count} {found.encoder} SAE features of {found.channels} channels, each the {found.reduce} over "
        f"positions -> {path} (use: --directions NAME={path})"
    )
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    verb("models", "list the model zoo", cmd_models)

    p = verb("layers", "list a model's layers with output shapes", cmd_layers)
    _add_model_args(p)
    _directions_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = verb("directions", "bring directions in from other tools", cmd_directions)
    p.add_argument("action", choices=("import-saelens",), help="import-saelens: a SAELens SAE folder -> .npz")
    p.add_argument("folder", help="the SAE's folder (cfg.json and sae_weights.safetensors)")
    p.add_argument("--out", required=True, help="the .npz to write (then --directions NAME=FILE)")
    p.add_argument(
        "--reduce",
        default="max",
        choices=("mean", "max"),
        help="an image's activation of a feature: its maximum over positions (default, for sparse "
        "features) or the mean (as the paper's channels)",
    )
