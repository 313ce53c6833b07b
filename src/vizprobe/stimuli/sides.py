"""Which side each trial's maximal option is shown on: per participant, balanced, a function of a seed alone.

vizprobe balances left and right per participant. A package stores each trial's two options in some order
(`correct` names the more activating one); a participant's list of n trials gets `max_sides(seed, n)`, the side
(0 left, 1 right) of the maximal option per trial, left in half of them (one more or less when n is odd), and
trial i is shown mirrored where its stored order disagrees. The server seeds it with the session id, machine
observers and `simulate` with their own names. `task_coin_sides` is the authors' draw instead: a coin per trial
from a generator seeded by the task (`Math.seedrandom(task_name)` and `randomize_queries`, cuvv:mturk/cf/task.js),
the same for every participant of a task and not balanced.
"""

from __future__ import annotations

import hashlib

import numpy as np


def max_sides(seed: str, n: int) -> list[int]:
    """For n trials, the side of the maximal option: half 0 and half 1 (+-1 for odd n), shuffled by `seed`."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    values = np.array([1] * (n // 2) + [0] * (n - n // 2))
    if n % 2 and rng.random() < 0.5:
        values = 1 - values
    return [int(v) for v in rng.permutation(values)]


def task_coin_sides(task_id: str, n: int) -> list[int]:
    """The authors' sides: an independent fair coin per trial, seeded by the task alone."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"task:{task_id}".encode()).digest()[:8], "little"))
    return [int(v) for v in rng.integers(0, 2, size=n)]


def mirrored(correct: int, max_side: int) -> bool:
    """Whether a trial stored with its maximal option at `correct` is shown mirrored."""
    return correct != max_side


def as_shown(options: tuple, correct: int, max_side: int) -> tuple:
    """A trial's two options (or anything in option order) as shown."""
    return tuple(options[::-1]) if mirrored(correct, max_side) else tuple(options)
