"""`vizprobe` verbs: approvals, export, mturk-hit, serve."""

from __future__ import annotations

import argparse
import dataclasses

from vizprobe.cli.common import (
    _given,
    _mturk_settings,
    _protocol_arg,
    _setting,
    default_of,
)
from vizprobe.protocol import get_protocol


def cmd_serve(args: argparse.Namespace) -> int:
    from vizprobe.experiment.server import serve
    from vizprobe.experiment.settings import load_texts

    options = _given(args, "platform", "completion_code", "practice", "practice_attempts", "max_assignments", "sides")
    if args.task_timeout is not None:
        options["task_timeout_s"] = args.task_timeout * 60.0
    if args.continue_ms is not None:
        options["continue_ms"] = None if args.continue_ms == "off" else _milliseconds(args.continue_ms)
    options["expert"] = args.expert
    if args.texts:
        options["texts"] = load_texts(args.texts)
    settings = dataclasses.replace(get_protocol(args.protocol).experiment, **options)
    serve(
        args.stimuli,
        args.db,
        settings,
        host=args.host,
        port=args.port,
        admin_token_file=args.admin_token_file,
        secret_file=args.secret_file,
        debug=args.debug,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        change_settings=args.change_settings,
    )
    return 0


def _milliseconds(text: str) -> int:
    from vizprobe.errors import VizprobeError

    try:
        return int(text)
    except ValueError:
        raise VizprobeError(f"--continue-ms {text!r}: milliseconds (e.g. 350) or off") from None


def cmd_export(args: argparse.Namespace) -> int:
    from vizprobe.experiment.export import export_responses

    path = export_responses(args.db, args.out)
    print(f"wrote {path}")
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    from vizprobe.experiment.approvals import decide, write_decisions

    decisions = decide(args.db, args.submissions, args.platform, args.secret_file)
    write_decisions(decisions, args.out)
    counts = decisions["decision"].value_counts()
    summary = ", ".join(f"{counts.get(d, 0)} {d}" for d in ("approve", "reject", "returned", "unknown"))
    print(f"{len(decisions)} submissions: {summary} -> {args.out}")
    return 0


def cmd_mturk_hit(args: argparse.Namespace) -> int:
    from vizprobe.experiment.mturk import write_hit

    settings = _mturk_settings(args)
    request = write_hit(args.stimuli, args.url, args.out, settings, args.assignments)
    print(
        f"wrote {args.out}: {request['MaxAssignments']} assignments at {request['Reward']} USD, "
        f"{request['AssignmentDurationInSeconds']} s each; post it with "
        f"`aws mturk create-hit --cli-input-json file://{args.out}` (sandbox first: --endpoint-url "
        "https://mturk-requester-sandbox.us-east-1.amazonaws.com)"
    )
    return 0


def add_verbs(verb) -> None:
    """Add this module's verbs to the parser (`verb(name, help, func)` makes one)."""
    from vizprobe.experiment.settings import PLATFORMS

    serve = "vizprobe.experiment.settings:Settings"
    p = verb("serve", "run the experiment server for participants", cmd_serve)
    p.add_argument("--stimuli", required=True, help="stimulus package dir")
    _protocol_arg(p)
    p.add_argument("--db", default=None, help="SQLite path/URL or postgresql://... (default ./vizprobe-experiment.db)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    _setting(p, "--platform", f"{serve}.platform", "crowd platform", choices=tuple(PLATFORMS))
    p.add_argument("--completion-code", default=None, help="code shown at the end (default: generated once)")
    p.add_argument(
        "--practice",
        type=int,
        default=None,
        help="practice trials per round, drawn anew from the package's pool each round (default 4: "
        "one obvious + 3, as the authors; 0 skips)",
    )
    _setting(p, "--practice-attempts", f"{serve}.practice_attempts", "practice rounds allowed", type=int)
    _setting(
        p,
        "--max-assignments",
        f"{serve}.max_assignments",
        "sessions a task may have before a failed one is no longer re-posted (the authors': 3)",
        type=int,
    )
    _setting(
        p,
        "--continue-ms",
        f"{serve}.continue_ms",
        "ms after each main answer until a Continue button ends the trial, and a last page before sending, as the "
        "authors; off: the answer ends the trial",
    )
    _setting(
        p,
        "--sides",
        f"{serve}.sides",
        "left/right of the main trials: balanced per session, or authors (a coin per trial seeded by the task)",
        choices=("balanced", "authors"),
    )
    p.add_argument("--expert", action="store_true", help="mark sessions as expert")
    p.add_argument("--texts", default=None, help="JSON file of page texts to replace (keys: see docs)")
    p.add_argument(
        "--admin-token-file",
        default=None,
        help="file holding the admin token (default: beside the secret file; made and shown once on the "
        "first start); $VIZPROBE_ADMIN_TOKEN overrides it",
    )
    p.add_argument(
        "--task-timeout",
        type=float,
        default=None,
        help=f"minutes of silence before a task is reassigned (default {default_of(f'{serve}.task_timeout_s') / 60:g})",
    )
    text = "HMAC key file (default: beside the SQLite file; ~/.vizprobe/secrets/ for PostgreSQL)"
    p.add_argument("--secret-file", default=None, help=text)
    p.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM; with --ssl-keyfile)")
    p.add_argument("--ssl-keyfile", default=None, help="the certificate's private key (PEM)")
    p.add_argument("--debug", action="store_true", help="log the traceback of unexpected errors")
    text = "accept platform, practice, expert or completion-code changes once participants exist (recorded)"
    p.add_argument("--change-settings", action="store_true", help=text)

    p = verb("export", "write the experiment's responses CSV", cmd_export)
    p.add_argument("--db", required=True, help="the database `vizprobe serve` used")
    p.add_argument("--out", required=True, help="responses CSV to write")

    p = verb("approvals", "which platform submissions to approve (from the platform's export)", cmd_approvals)
    p.add_argument("--db", required=True, help="the database `vizprobe serve` used")
    p.add_argument("--platform", required=True, choices=("prolific", "mturk"))
    p.add_argument("--submissions", required=True, help="the platform's CSV export of the study's submissions")
    p.add_argument("--secret-file", default=None, help="the study's secret (default: where `vizprobe serve` keeps it)")
    p.add_argument("--out", required=True, help="CSV to write: the submissions with decision, reason, session_status")

    hit = "vizprobe.experiment.mturk:MTurkSettings"
    p = verb(
        "mturk-hit",
        "write the MTurk HIT request (CreateHIT JSON) for a study served with --platform mturk",
        cmd_mturk_hit,
    )
    p.add_argument("--stimuli", required=True, help="the stimulus package being served")
    p.add_argument("--url", required=True, help="the study's public https:// address")
    p.add_argument("--out", required=True, help="JSON file to write (for `aws mturk create-hit --cli-input-json`)")
    p.add_argument("--assignments", type=int, default=None, help="places (default: one per task of the package)")
    _protocol_arg(p)
    _setting(
        p, "--reward", f"{hit}.reward_usd", "USD per assignment (default: the protocol's; 0.70 in none)", type=float
    )
    _setting(p, "--assignment-duration", f"{hit}.assignment_duration_s", "seconds a worker may hold it", type=int)
    _setting(p, "--min-hits-approved", f"{hit}.min_hits_approved", "workers' approved HITs at least", type=int)
    _setting(p, "--min-percent-approved", f"{hit}.min_percent_approved", "workers' approval rate at least", type=int)
    _setting(p, "--countries", f"{hit}.countries", "comma-separated ISO country codes workers must be in")
