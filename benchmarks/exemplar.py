"""The exemplar task's costs where a user waits: building a package, and validating a score against people.

    python benchmarks/exemplar.py [--images DIR] [--units 40] [--repeats 3]

Build: `vizprobe scan` of lite0's `_blocks.12` over the photos (untimed), then `vizprobe build --task exemplar` of
`--units` units (10 image sets each, natural and none, 3 catch and 10 practice units) as a whole process (Python
start, imports, model loading, every photo written), repeated; goal: under a minute.
Validate: `vizprobe.score.validate.validate` on 1000 units' scores and 30 simulated participants x 10 answers per
unit (300,000 rows), 2000 bootstrap resamples and 200 split halves, timed in-process; goal: under a second for the
statistics (reading the responses CSV is timed apart).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
VIZPROBE = [sys.executable, "-m", "vizprobe.cli"]


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([*VIZPROBE, "-q", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def build(images: Path, units: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scan = f"{tmp}/scan"
        run(["scan", "--images", str(images), "--layers", "_blocks.12", "--device", "cpu", "--out", scan])
        chosen = ",".join(f"_blocks.12:{c}" for c in range(0, 4 * units, 4))
        times = []
        for k in range(repeats):
            arguments = ["build", "--task", "exemplar", "--scan", scan, "--units", chosen, "--device", "cpu"]
            times.append(run([*arguments, "--out", f"{tmp}/pkg{k}"]))
            print(f"repeat {k + 1}: build {times[-1]:.1f} s", flush=True)
        print(
            f"exemplar package of {units} units: median {statistics.median(times):.1f} s "
            f"(min {min(times):.1f}, max {max(times):.1f}, {repeats} whole processes)"
        )


def validation(repeats: int) -> None:
    from vizprobe.score.validate import validate

    rng = np.random.default_rng(0)
    units = [f"L:{k}" for k in range(1000)]
    truth = rng.uniform(0.5, 1.0, len(units))
    scores = pd.DataFrame(
        {
            "unit": units,
            "score": truth + rng.normal(0, 0.1, len(units)),
            "colour_score": rng.uniform(0.5, 1, len(units)),
        }
    )
    people, tasks = 30, 10
    correct = rng.random((people, len(units), tasks)) < truth[None, :, None]
    responses = pd.DataFrame(
        {
            "participant_id": np.repeat([f"p{p}" for p in range(people)], len(units) * tasks),
            "condition": "natural",
            "trial_id": [f"t{i}" for i in range(correct.size)],
            "unit": np.tile(np.repeat(units, tasks), people),
            "correct": correct.ravel().astype(int),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.csv"
        responses.to_csv(path, index=False)
        folder = Path(tmp) / "scores"
        folder.mkdir()
        scores.to_csv(folder / "scores.csv", index=False)
        (folder / "scores.json").write_text("{}")
        from vizprobe.responses import read_responses

        started = time.perf_counter()
        frame = read_responses(path)
        read_s = time.perf_counter() - started
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            found = validate(frame, folder)
            times.append(time.perf_counter() - started)
    median, low, high = statistics.median(times), min(times), max(times)
    machine, ceiling = found["machine"]["spearman"], found["noise_ceiling"]["spearman_brown"]
    print(
        f"validate, 1000 units, {len(responses)} answers: median {median:.2f} s (min {low:.2f}, max {high:.2f}, "
        f"{repeats} runs; reading the CSV {read_s:.1f} s); Spearman {machine:.3f}, noise ceiling {ceiling:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    build(args.images, args.units, args.repeats)
    validation(args.repeats)


if __name__ == "__main__":
    main()
