"""`vizprobe` verbs: explore."""

from __future__ import annotations

import argparse

from vizprobe.cli.common import _csv, _device_arg, _given, _setting


def cmd_explore(args: argparse.Namespace) -> int:
    from vizprobe.explore import ExploreSettings, explore

    record = explore(
        args.scan,
        args.out,
        args.scores,
        visualizations=args.visualizations or (),
        stimuli=args.stimuli,
        layers=_csv(args.layers) if args.layers else None,
        settings=ExploreSettings(**_given(args, "exemplars", "occlusion", "stride")),
        force=args.force,
        device=args.device,
        progress=not args.quiet,
    )
    print(
        f"explorer site: {record['units']} unit pages, {record['images']} images -> {args.out}/index.html "
        "(opens from the file system)"
    )
    if record["missing"]:
        print(f"  {len(record['missing'])} image files could not be read (placeholders shown):")
        for path in record["missing"]:
            print(f"    {path}")
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    settings = "vizprobe.explore.site:ExploreSettings"
    p = verb("explore", "a static site of a scan's units: scores, exemplars, visualizations, occlusion", cmd_explore)
    p.add_argument("scan", help="scan run dir")
    p.add_argument("scores", nargs="?", default=None, help="scores folder of this scan (vizprobe score)")
    text = "visualizations dir (vizprobe visualize); repeat it for several methods"
    p.add_argument("--visualizations", action="append", default=None, help=text)
    p.add_argument("--stimuli", default=None, help="stimulus package: heatmaps of its exact occlusion sweeps")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: every scanned layer)")
    _setting(p, "--exemplars", f"{settings}.exemplars", "top and bottom images per unit", type=int)
    text = "top images per unit to sweep here for occlusion heatmaps (0: only --stimuli's)"
    _setting(p, "--occlusion", f"{settings}.occlusion", text, type=int)
    _setting(p, "--stride", f"{settings}.stride", "of those sweeps, in pixels", type=int)
    _device_arg(p)
    p.add_argument("--force", action="store_true", help="replace an --out that is not an explorer site")
    p.add_argument("--out", required=True, help="site folder to write (index.html, units/, img/)")
