"""The crowd platform around a running study: post it, keep it posted, decide and pay submissions, report.

`vizprobe crowd post|watch|status|pay --platform mturk|prolific`. The experiment server hands out tasks and keeps
every answer; this stage keeps the platform's places in step with the server's free tasks, decides each
submission by the rule of `vizprobe approvals` and records everything in the study's database (`state`), so a
killed `watch` resumes where it stopped. Credentials come from the platform's usual places and are never stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from .state import open_crowd

__all__ = ["open_crowd", "watch"]


def watch(
    crowd,
    interval_s: float = 60.0,
    rounds: int | None = None,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
):
    """Run `crowd.tick()` every `interval_s` until the study is done (or `rounds` rounds); a platform that does
    not answer (throttling, 5xx, network) after the client's own retries is reported and tried again next round."""
    done = 0
    report = None
    while rounds is None or done < rounds:
        stamp = f"{datetime.now():%H:%M:%S}"
        try:
            report = crowd.tick()
            echo(f"[{stamp}] {report.line()}")
            if report.done:
                return report
        except crowd.transient_errors as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            echo(f"[{stamp}] {crowd.platform} did not answer ({first}); trying again in {interval_s:g} s")
        done += 1
        if rounds is None or done < rounds:
            sleep(interval_s)
    return report
