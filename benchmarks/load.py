"""Load test of `vizprobe serve`: concurrent simulated participants while the app or the database is SIGKILLed.

Each participant runs a whole session as the page does (session, consent, instructions, practice rounds
until perfect, every main and catch trial, complete), retrying with exponential back-off on network errors
and 5xx. With `--kill app` the server process, with `--kill db` the PostgreSQL server (postmaster and every
backend: a database crash), gets SIGKILL `--kills` times, evenly over the run, and is started again on the
same data. At the end the database is read back with `export_frame` and every acknowledged answer is looked up:
lost = acknowledged but not stored, duplicated = stored more often than acknowledged.

    python benchmarks/load.py [--stimuli PKG] [--participants 200] [--db sqlite|postgres|URL]
                              [--kill app|db|none] [--kills 1] [--platform prolific|mturk]

`--platform mturk` runs `vizprobe crowd watch` beside the server against a local MTurk stand-in: each
participant accepts a place there before starting and submits the assignment after the completion code; the
watch process is killed with the app and restarted. At the end every submission must be approved exactly once
and the places open on MTurk must equal the server's free tasks.

`--db postgres` starts a throwaway PostgreSQL cluster (the server binaries of the `postgresql` Debian
package; default fsync) in a temp dir, which `--kill db` needs; SQLite runs inside the app process, so for
it `--kill app` is the database crash too.

Without --stimuli a package with enough tasks is built first (scan of the ImageNet samples in
$VIZPROBE_IMAGES or ../shared/data/imagenet-samples, quick visualizations, like the test fixture).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from vizprobe.experiment.export import export_frame

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
UNITS = ["_blocks.5:10", "block8:12", "_blocks.12:7"]


def build_package(out: Path, tasks_per_condition: int) -> Path:
    """A real five-condition package like the test fixture's, with enough tasks for every participant."""
    from vizprobe.models import load_model
    from vizprobe.scan import scan
    from vizprobe.stimuli import BuildSettings, build_stimuli
    from vizprobe.stimuli.build import protocol_units
    from vizprobe.synthesis import preset, render_units
    from vizprobe.synthesis.store import save_visualizations

    images = Path(os.environ.get("VIZPROBE_IMAGES", DEFAULT_IMAGES))
    model = load_model("efficientnet-lite0", device="cpu")
    result, _ = scan(model, images, ["_blocks.5", "block8", "_blocks.12"], out / "scan", progress=False)
    settings = BuildSettings(image_sets=2, tasks_per_condition=tasks_per_condition, stride=16)
    protocol = protocol_units(result, UNITS, settings, model=model)
    units = [*UNITS, *(str(c.unit) for c in protocol.catch + protocol.practice)]
    rendering = render_units(model, units, preset("quick", per_unit=9, steps=6, size=64), progress=False)
    save_visualizations(rendering, out / "vis", model)
    build_stimuli(result, UNITS, out / "pkg", out / "vis", settings, model=model, progress=False, protocol=protocol)
    return out / "pkg"


@dataclass
class Stats:
    """What the clients saw: latencies of answered requests, retries, acknowledged answers."""

    latencies: list[float] = field(default_factory=list)
    by_route: dict[str, list[float]] = field(default_factory=dict)
    retries: int = 0
    acked: Counter = field(default_factory=Counter)  # (task_id, is_practice, trial_id) -> times acknowledged
    answers: int = 0
    submitted: list[str] = field(default_factory=list)  # MTurk assignments submitted (platform mturk)


class Server:
    """`vizprobe serve` as a subprocess that can be killed and restarted on the same database."""

    def __init__(self, stimuli: Path, db: str, workdir: Path, platform: str = "prolific") -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "vizprobe.cli",
            "serve",
            "--stimuli",
            str(stimuli),
            "--db",
            db,
            "--port",
            str(self.port),
            "--platform",
            platform,
            "--task-timeout",
            "120",
            "--admin-token-file",
            str(workdir / "admin-token"),
        ]
        self.workdir, self.proc = workdir, None

    def start(self) -> float:
        """Start and wait until it answers; returns the seconds that took."""
        t0 = time.perf_counter()
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.workdir / 'server.log'}")
            try:
                if httpx.get(self.base + "/api/config", timeout=1).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


class Watcher:
    """`vizprobe crowd watch` against the MTurk stand-in, as a subprocess that can be killed and restarted."""

    def __init__(self, db: str, workdir: Path, endpoint: str) -> None:
        self.db, self.workdir, self.proc = db, workdir, None
        self.env = os.environ | {
            "AWS_ACCESS_KEY_ID": "AKIDSTANDIN",
            "AWS_SECRET_ACCESS_KEY": "standin",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        }

    def crowd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "vizprobe.cli", "crowd", *args, "--platform", "mturk", "--db", self.db]

    def post(self) -> None:
        url = ["--url", "https://study.example.org", "--auto-approve", "3600"]
        subprocess.run([*self.crowd("post"), *url, "--sandbox", "--yes"], env=self.env, cwd=self.workdir, check=True)

    def start(self) -> None:
        log = open(self.workdir / "watch.log", "ab")  # noqa: SIM115 (the child keeps it)
        command = [*self.crowd("watch"), "--interval", "0.3"]
        self.proc = subprocess.Popen(command, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def finish(self) -> None:
        """Stop the running watch and run one more round, which must decide every submission."""
        self.kill()
        subprocess.run([*self.crowd("watch"), "--rounds", "1"], env=self.env, cwd=self.workdir, check=True)


class Postgres:
    """A throwaway PostgreSQL cluster (run as user `postgres` when we are root: it refuses root)."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not binaries:
            raise SystemExit("--db postgres needs the PostgreSQL server binaries: apt-get install postgresql")
        # Its own temp dir: the user postgres cannot enter the benchmark's (mode 0700, owned by us).
        self.bindir, self.home = Path(binaries[-1]).parent, Path(tempfile.mkdtemp(prefix="vizprobe-load-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run("initdb", "-D", f"{self.home}/data", "-A", "trust", "-U", "postgres")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "load")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/load"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=300)

    def start(self) -> float:
        t0 = time.perf_counter()
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", f"{self.home}/data", "-l", f"{self.home}/log", "-o", options, "-w", "start")
        return time.perf_counter() - t0

    def kill(self) -> None:
        """SIGKILL the postmaster and all its backends at once (a crash: the restart runs WAL recovery).

        pg_ctl starts the postmaster in its own process group, so the group is the whole server. A container's
        init may never reap the dead, and PostgreSQL would take a zombie postmaster for a live one: its stale
        lock files (postmaster.pid, the socket's .lock) are removed, as after a real crash of the machine."""
        pid_file = self.home / "data" / "postmaster.pid"
        group = int(pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _group_alive(group):
            if time.monotonic() > deadline:
                raise SystemExit("PostgreSQL processes survived SIGKILL")
            time.sleep(0.05)
        for stale in [pid_file, *self.home.glob(".s.PGSQL.*.lock")]:
            stale.unlink(missing_ok=True)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", f"{self.home}/data", "-m", "immediate", "stop")


def _group_alive(group: int) -> bool:
    """Whether any process of the process group runs (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


THINK_S = 0.0  # mean pause before each request (a participant looking at the trial); set by --think-ms


async def call(client: httpx.AsyncClient, stats: Stats, method: str, url: str, body: dict | None = None) -> dict:
    """One request as the page sends it: retried with exponential back-off (50 ms .. 2 s) on network errors/5xx."""
    if THINK_S:
        await asyncio.sleep(random.uniform(0, 2 * THINK_S))
    delay = 0.05
    while True:
        t0 = time.perf_counter()
        try:
            r = await client.request(method, url, json=body)
            if r.status_code < 500:
                stats.latencies.append(time.perf_counter() - t0)
                stats.by_route.setdefault(url.rsplit("/", 1)[-1], []).append(stats.latencies[-1])
                if r.status_code != 200:
                    raise RuntimeError(f"{method} {url} -> {r.status_code} {r.text}")
                return r.json()
        except httpx.TransportError:
            pass
        stats.retries += 1
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


async def accept_place(standin, worker: str) -> dict:
    """An MTurk worker accepts a place on the stand-in (waiting until `crowd watch` has one open)."""
    while True:
        for hit in standin.open_hits():
            with contextlib.suppress(Exception):
                aid = standin.accept(hit.id, worker)
                return {"workerId": worker, "assignmentId": aid, "hitId": hit.id}
        await asyncio.sleep(0.1)


async def participant(client: httpx.AsyncClient, number: int, stats: Stats, rng: random.Random, standin=None) -> None:
    """A whole session; every acknowledged answer is counted under its export key. On MTurk (a stand-in) the
    worker accepts a place first and submits the assignment at the end."""
    ids = await accept_place(standin, f"BENCH{number}") if standin else {"PROLIFIC_PID": f"bench-{number}"}
    state = await call(client, stats, "POST", "/api/sessions", {"platform_ids": ids})
    sid, task = state["session_id"], state["task_id"]
    await call(client, stats, "POST", f"/api/sessions/{sid}/events", {"event": "consent"})
    await call(client, stats, "POST", f"/api/sessions/{sid}/events", {"event": "instructions", "duration_s": 30.0})
    # Each round its own draw (the server's), until a perfect round or all rounds used (then main trials start).
    for attempt, drawn in enumerate(state["practice_rounds"], start=1):
        perfect = True
        for trial in drawn:
            choice = trial["correct"] if rng.random() < 0.9 else 1 - trial["correct"]
            body = {
                "phase": "practice",
                "trial_index": trial["index"],
                "attempt": attempt,
                "choice": choice,
                "confidence": 3,
                "rt_ms": rng.uniform(400, 3000),
            }
            result = await call(client, stats, "POST", f"/api/sessions/{sid}/responses", body)
            stats.acked[(task, 1, trial["trial_id"])] += 1
            perfect &= result["correct"] == 1
        if perfect:
            break
    for trial in state["trials"]:
        body = {
            "phase": "main",
            "trial_index": trial["index"],
            "attempt": 0,
            "choice": rng.randint(0, 1),
            "confidence": rng.randint(1, 3),
            "rt_ms": rng.uniform(400, 3000),
        }
        await call(client, stats, "POST", f"/api/sessions/{sid}/responses", body)
        stats.acked[(task, 0, trial["trial_id"])] += 1
    done = await call(client, stats, "POST", f"/api/sessions/{sid}/complete", {"total_time_s": 600.0})
    assert done["completion_code"]
    if standin:
        standin.submit(ids["assignmentId"])
        stats.submitted.append(ids["assignmentId"])


async def run_clients(
    server: Server,
    n: int,
    seed: int,
    victim: Server | Postgres | None,
    kill_at: list[float],
    standin=None,
    watcher: Watcher | None = None,
) -> tuple[Stats, list[float]]:
    """Run n participants at once; SIGKILL and restart `victim` (and the watch process) whenever the next of
    `kill_at` answers are acknowledged. Returns the statistics and the seconds each restart took."""
    stats = Stats()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    pending, gaps = list(kill_at), []
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=30) as client:
        tasks = [asyncio.create_task(participant(client, i, stats, random.Random(seed + i), standin)) for i in range(n)]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(0.02)
            if victim is not None and pending and sum(stats.acked.values()) >= pending[0]:
                pending.pop(0)
                t0 = time.perf_counter()
                victim.kill()
                if watcher is not None:
                    watcher.kill()
                await asyncio.to_thread(victim.start)
                if watcher is not None:
                    watcher.start()
                gaps.append(time.perf_counter() - t0)
        for t in tasks:
            t.result()
    return stats, gaps


def run(
    stimuli: Path,
    participants: int,
    db: str = "sqlite",
    kill: str = "app",
    kills: int = 1,
    seed: int = 0,
    platform: str = "prolific",
    workdir: Path | None = None,
) -> dict:
    """One load run; prints its figures and returns them (lost and duplicated answers, MTurk's decisions)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="vizprobe-load-"))
    manifest = json.loads((stimuli / "manifest.json").read_text())
    n_tasks = len(manifest["tasks"])
    per_participant = len(manifest.get("practice_trial_ids", [])) + len(manifest["tasks"][0]["trial_ids"])
    if n_tasks < participants:
        raise SystemExit(f"{stimuli} has {n_tasks} tasks; build one with --tasks-per-condition >= participants/5")
    postgres = Postgres() if db == "postgres" else None
    if kill == "db" and postgres is None:
        raise SystemExit("--kill db needs --db postgres (SQLite lives in the app process: use --kill app)")
    db = postgres.url if postgres else str(workdir / "load.db") if db == "sqlite" else db
    server = Server(stimuli, db, workdir, platform)
    server.start()
    standin = watcher = None
    if platform == "mturk":
        from vizprobe.crowd.standin import MTurkStandIn

        standin = MTurkStandIn()
        watcher = Watcher(db, workdir, standin.serve())
        watcher.post()
        watcher.start()
    victim = {"app": server, "db": postgres, "none": None}[kill]
    total = participants * per_participant
    kill_at = [total * (k + 1) / (kills + 1) for k in range(kills)]
    t0 = time.perf_counter()
    try:
        stats, gaps = asyncio.run(
            run_clients(server, participants, seed, victim, kill_at, standin, watcher if kill == "app" else None)
        )
        if watcher is not None:
            watcher.finish()
    finally:
        wall = time.perf_counter() - t0
        server.stop()
        if standin is not None:
            standin.close()
    frame = export_frame(db)
    figures = _mturk_figures(standin, stats, db) if standin is not None else {}
    if postgres:
        postgres.stop()
    stored = Counter(zip(frame["task_id"], frame["is_practice"].astype(int), frame["trial_id"], strict=True))
    lost = sum(max(0, k - stored[key]) for key, k in stats.acked.items())
    duplicated = sum(max(0, k - stats.acked[key]) for key, k in stored.items())
    lat = sorted(stats.latencies)
    kind = "postgresql" if db.startswith("postgres") else "sqlite"
    print(f"participants {participants}, database {kind}, think time {THINK_S * 1000:g} ms, kill {kill}")
    print(f"requests answered {len(lat)} in {wall:.1f} s: {len(lat) / wall:.0f} req/s; retries {stats.retries}")
    print(f"latency p50 {1000 * statistics.median(lat):.1f} ms, p99 {1000 * lat[int(0.99 * (len(lat) - 1))]:.1f} ms")
    for route, values in sorted(stats.by_route.items()):
        print(
            f"  {route:10s} n={len(values):5d} p50 {1000 * statistics.median(values):7.1f} ms  "
            f"p99 {1000 * sorted(values)[int(0.99 * (len(values) - 1))]:7.1f} ms"
        )
    if gaps:
        what = "server" if kill == "app" else "PostgreSQL server"
        listed = ", ".join(f"{g:.2f}" for g in gaps)
        print(f"{what} killed (SIGKILL) {len(gaps)} time(s) and restarted; seconds without it: {listed}")
    print(
        f"responses sent (acknowledged) {sum(stats.acked.values())}, stored {len(frame)}, lost {lost}, "
        f"duplicated {duplicated}"
    )
    out = {"acked": sum(stats.acked.values()), "stored": len(frame), "lost": lost, "duplicated": duplicated}
    if standin is not None:
        out |= figures
        print(
            f"MTurk: {len(stats.submitted)} submitted, {out['approved_once']} approved once, "
            f"{out['approved_twice']} approved twice, {out['open_places']} places open for {out['free_tasks']} "
            "free tasks"
        )
    return out


def _mturk_figures(standin, stats: Stats, db: str) -> dict:
    """Decisions per submitted assignment, and the places open on the stand-in against the free tasks."""
    from sqlalchemy import func, select

    from vizprobe.experiment.db import Database, Task, TaskState

    approvals = Counter(params["AssignmentId"] for op, params in standin.calls if op == "ApproveAssignment")
    database = Database(db, create=False)
    try:
        with database.tx() as s:
            free = s.scalar(select(func.count()).select_from(Task).where(Task.state == TaskState.FREE))
    finally:
        database.dispose()
    return {
        "approved_once": sum(approvals[a] == 1 for a in stats.submitted),
        "approved_twice": sum(n > 1 for n in approvals.values()),
        "open_places": sum(h.counts()[0] for h in standin.open_hits()),
        "free_tasks": free,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stimuli", type=Path, default=None, help="stimulus package with >= participants tasks")
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--db", default="sqlite", help="sqlite (a new file), postgres (a throwaway cluster) or a URL")
    parser.add_argument("--kill", choices=("app", "db", "none"), default="app", help="what gets SIGKILL (default app)")
    parser.add_argument("--kills", type=int, default=1, help="how many times, evenly over the run (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause before each request (default 0)")
    parser.add_argument("--platform", choices=("prolific", "mturk"), default="prolific")
    args = parser.parse_args()
    global THINK_S
    THINK_S = args.think_ms / 1000
    workdir = Path(tempfile.mkdtemp(prefix="vizprobe-load-"))
    stimuli = args.stimuli
    if stimuli is None:
        stimuli = build_package(workdir, math.ceil(args.participants / 5))
        print(f"built {stimuli} (pass it as --stimuli next time)", flush=True)
    out = run(stimuli, args.participants, args.db, args.kill, args.kills, args.seed, args.platform, workdir)
    if out["lost"] or out["duplicated"]:
        raise SystemExit("FAIL: responses were lost or duplicated")
    if args.platform == "mturk" and (
        out["approved_once"] != args.participants or out["approved_twice"] or out["open_places"] != out["free_tasks"]
    ):
        raise SystemExit("FAIL: MTurk submissions not approved exactly once, or places out of step with the tasks")


if __name__ == "__main__":
    main()
