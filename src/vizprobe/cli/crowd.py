"""`vizprobe crowd post|watch|status|pay`: the study on a crowd platform, from posting to payment."""

from __future__ import annotations

import argparse
import json

from vizprobe.cli.common import _mturk_settings, _protocol_arg, _setting

ACTIONS = ("post", "watch", "status", "pay")


def _posting(args: argparse.Namespace):
    from vizprobe.crowd.mturk import Posting

    settings = _mturk_settings(
        args,
        hit_places=args.hit_places,
        auto_approve_s=args.auto_approve,
        reject_unfinished=True if args.reject_unfinished else None,
    )
    return Posting(url=args.url, settings=settings, sandbox=args.sandbox, block=tuple(args.block), name=args.name)


def _prolific_posting(args: argparse.Namespace):
    from dataclasses import replace

    from vizprobe.crowd.prolific import ProlificPosting, ProlificSettings

    options = {"reward": args.reward, "estimated_minutes": args.estimated_minutes}
    settings = replace(ProlificSettings(), **{k: v for k, v in options.items() if v is not None})
    if args.reject_unfinished:
        settings = replace(settings, reject_unfinished=True)
    return ProlificPosting(url=args.url, settings=settings.checked(), name=args.name)


def _crowd(args: argparse.Namespace, db):
    from vizprobe.crowd.mturk import MTurkCrowd, connect
    from vizprobe.crowd.state import CrowdStudy
    from vizprobe.experiment.approvals import study_secret

    secret = study_secret(db, args.secret_file)
    if args.platform == "prolific":
        from vizprobe.crowd.prolific import ProlificApi, ProlificCrowd

        return ProlificCrowd(ProlificApi(), db, secret)
    sandbox = args.sandbox
    if args.action != "post":
        with db.tx() as s:
            study = s.get(CrowdStudy, 1)
            sandbox = bool(study and study.sandbox)
    return MTurkCrowd(connect(sandbox, args.profile, args.endpoint_url), db, secret)


def cmd_crowd(args: argparse.Namespace) -> int:
    import logging

    from vizprobe.crowd import open_crowd, watch
    from vizprobe.errors import VizprobeError

    logging.getLogger("botocore").setLevel(logging.WARNING)  # not "Found credentials in ..." at every start

    db = open_crowd(args.db)
    try:
        if args.action == "post":
            if not args.url:
                raise VizprobeError("crowd post needs --url: the study's public https:// address")
            return _post(args, db)
        crowd = _crowd(args, db)
        if args.action == "watch":
            watch(crowd, interval_s=args.interval, rounds=args.rounds)
        elif args.action == "pay":
            print(crowd.pay().line())
        else:
            status = crowd.status()
            print(json.dumps(status, indent=2) if args.json else _status_lines(status))
    finally:
        db.dispose()
    return 0


def _post(args: argparse.Namespace, db) -> int:
    from vizprobe.crowd.mturk import MTurkCrowd

    if args.platform == "prolific":
        return _post_prolific(args, db)
    posting = _posting(args)
    if not args.yes:
        requests, cost = MTurkCrowd(None, db, b"").planned_requests(posting)
        where = "the MTurk sandbox (no money)" if posting.sandbox else "the real MTurk: this spends money"
        print(json.dumps(requests[:1], indent=2))
        print(
            f"would post {cost['places']} place(s) in {cost['hits']} HIT(s) on {where}: "
            f"{cost['per_assignment_usd']:.2f} USD per approved assignment with MTurk's commission, "
            f"{cost['once_usd']:.2f} USD if each task is done once, at most {cost['at_most_usd']:.2f} USD with "
            "every re-posting; run again with --yes to post"
        )
        return 0
    crowd = _crowd(args, db)
    report = crowd.post(posting)
    print(f"posted: {report.line()}; keep it going with `vizprobe crowd watch --platform mturk --db {args.db}`")
    return 0


def _post_prolific(args: argparse.Namespace, db) -> int:
    from vizprobe.crowd.prolific import ProlificCrowd

    posting = _prolific_posting(args)
    if not args.yes:
        requests, cost = ProlificCrowd(None, db, b"").planned_requests(posting)
        print(json.dumps(requests, indent=2))
        print(
            f"would create and publish a Prolific study with {cost['places']} place(s): {cost['once']:.2f} in "
            f"rewards if each task is done once, at most {cost['at_most']:.2f} with every re-posting (the account's "
            "currency; Prolific's service fee comes on top); run again with --yes to post"
        )
        return 0
    report = _crowd(args, db).post(posting)
    print(f"posted: {report.line()}; keep it going with `vizprobe crowd watch --platform prolific --db {args.db}`")
    return 0


def _status_lines(status: dict) -> str:
    if "studies" in status:  # Prolific
        tasks = ", ".join(f"{n} {state}" for state, n in status["tasks"].items())
        return (
            f"tasks: {tasks}\nplaces posted {status['places_posted']}; submissions: {status['submitted']} "
            f"({status['approved']} approved, {status['rejected']} rejected, {status['held']} held); "
            f"rewards paid {status['rewards_paid']:.2f} (Prolific's fee on top)"
        )
    tasks = ", ".join(f"{n} {state}" for state, n in status["tasks"].items())
    return "\n".join(
        [
            f"tasks: {tasks}",
            f"HITs: {status['hits']} ({status['hits_open']} open), places posted {status['places_posted']}, "
            f"available {status['places_available']}, workers at it {status['working']}",
            f"submissions: {status['submitted']} ({status['approved']} approved, {status['rejected']} rejected, "
            f"{status['undecided']} undecided)",
            f"cost so far: {status['cost_usd']:.2f} USD with MTurk's commission; balance {status['balance_usd']} USD",
        ]
    )


def add_verbs(verb) -> None:
    hit = "vizprobe.experiment.mturk:MTurkSettings"
    p = verb("crowd", "post the study on MTurk or Prolific, keep it posted, approve and pay, report", cmd_crowd)
    p.add_argument("action", choices=ACTIONS, help="post | watch (re-post, add places, approve) | status | pay")
    p.add_argument("--platform", required=True, choices=("mturk", "prolific"))
    p.add_argument("--db", required=True, help="the database `vizprobe serve` uses")
    p.add_argument("--url", default=None, help="post: the study's public https:// address (its /start page is shown)")
    p.add_argument("--sandbox", action="store_true", help="post in the MTurk sandbox (no money; try this first)")
    p.add_argument("--yes", action="store_true", help="post: really post (without it, print requests and cost)")
    p.add_argument(
        "--block",
        nargs="*",
        default=[],
        metavar="STUDY",
        help="post: keep out the workers of these earlier studies (the names `crowd post` printed for them)",
    )
    p.add_argument("--name", default=None, help="post: the study's name on MTurk (default: date and package hash)")
    p.add_argument("--profile", default=None, help="AWS profile of ~/.aws/credentials (default: the usual lookup)")
    p.add_argument("--endpoint-url", default=None, help="another MTurk endpoint (a local stand-in)")
    p.add_argument("--secret-file", default=None, help="the study's secret (default: where `vizprobe serve` keeps it)")
    p.add_argument("--interval", type=float, default=60.0, help="watch: seconds between rounds")
    p.add_argument("--rounds", type=int, default=None, help="watch: stop after this many rounds (default: when done)")
    p.add_argument("--json", action="store_true", help="status: as JSON")
    _protocol_arg(p)
    _setting(p, "--reward", f"{hit}.reward_usd", "USD per assignment", type=float)
    _setting(p, "--hit-places", f"{hit}.hit_places", "places per HIT (below 10: 20 %% commission)", type=int)
    _setting(p, "--assignment-duration", f"{hit}.assignment_duration_s", "seconds a worker may hold it", type=int)
    _setting(p, "--auto-approve", f"{hit}.auto_approve_s", "seconds before MTurk approves by itself", type=int)
    _setting(p, "--min-hits-approved", f"{hit}.min_hits_approved", "workers' approved HITs at least", type=int)
    _setting(p, "--min-percent-approved", f"{hit}.min_percent_approved", "workers' approval rate at least", type=int)
    _setting(p, "--countries", f"{hit}.countries", "comma-separated ISO country codes workers must be in")
    p.add_argument("--reject-unfinished", action="store_true", help="reject submissions without a finished session")
    p.add_argument(
        "--estimated-minutes", type=int, default=None, help="Prolific: the study's estimated time (default 10)"
    )
