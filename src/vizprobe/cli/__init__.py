"""`vizprobe <verb>`: parse arguments, call the Python API, print. Nothing else lives here.

One module per group of verbs (`models`, `scan`, `visualize`, `stimuli`, `experiment`, `crowd`, `analysis`, `observers`,
`score`, `explore`, `demo`), each adding its verbs with `add_verbs`; `common` holds what they share. Options that are
settings leave their value None when not given, so the API's default applies; their help shows that default,
read from where it is defined (a settings dataclass or a function's signature) only when help is printed, so
`--help` cannot disagree with the code and the CLI starts without torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from vizprobe.cli import (
    analysis,
    crowd,
    demo,
    experiment,
    explore,
    models,
    observers,
    scan,
    score,
    stimuli,
    visualize,
)
from vizprobe.cli.common import _Help, default_of
from vizprobe.errors import VizprobeError

__all__ = ["build_parser", "default_of", "main"]
DESCRIPTION = (
    "Do explanations of a unit help people predict it? One verb per stage of a study; "
    "`vizprobe VERB --help` lists its options, with the defaults of the protocol (docs/protocol.md)."
)
GROUPS = (models, scan, visualize, stimuli, experiment, crowd, analysis, observers, score, explore, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vizprobe", description=DESCRIPTION, formatter_class=_Help)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
        p.set_defaults(func=func)
        return p

    for group in GROUPS:
        group.add_verbs(verb)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if getattr(args, "preprocessing", None) is not None:
            from vizprobe.models.plugins import factory_name

            args.model = factory_name(args.model, args.preprocessing)
        return args.func(args)
    except VizprobeError as exc:
        print(f"vizprobe {args.verb}: error: {exc}", file=sys.stderr)
        return 2
