"""How many participants per condition detect an accuracy difference: by simulation, and in closed form.

The simulation draws, per participant, an accuracy p_i = baseline (+ effect in the second condition) plus a
normal between-participant deviation (sd `between_sd`, clipped to [0, 1]) and a Binomial(trials, p_i) count
of correct main trials; each simulated study compares the two conditions' participant accuracies with a
two-sided Welch t-test (a fast stand-in for the permutation test `analyze` runs on participant means; the
two agree closely at these sample sizes). The smallest N whose power reaches the target is found by
doubling, then bisection, with common random numbers (one seed for every N) so power rises smoothly in N.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from vizprobe.errors import VizprobeError


@dataclass(frozen=True)
class PowerResult:
    """Participants per condition from the simulation, with the closed-form two-proportion number beside it."""

    participants_per_condition: int
    achieved_power: float
    closed_form_participants: int
    effect: float
    baseline_accuracy: float
    trials: int
    alpha: float
    power: float
    between_sd: float
    simulations: int
    test: str = "two-sided Welch t-test on participant accuracies"

    def to_dict(self) -> dict:
        return asdict(self)


def two_proportion_n(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Observations per group for a two-sided two-proportion z-test (pooled variance under H0; Fleiss)."""
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    p_bar = (p1 + p2) / 2
    root = z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return root**2 / (p2 - p1) ** 2


def closed_form_participants(
    effect: float, baseline_accuracy: float = 0.6, trials: int = 18, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Participants per condition from the two-proportion formula, pooling all trials (no between-participant sd)."""
    return math.ceil(two_proportion_n(baseline_accuracy, baseline_accuracy + effect, alpha, power) / trials)


def simulated_power(
    n: int,
    effect: float,
    baseline_accuracy: float,
    trials: int,
    alpha: float,
    between_sd: float,
    simulations: int,
    seed: int,
) -> float:
    """Fraction of `simulations` studies with `n` participants per condition whose test gives p < alpha."""
    rng = np.random.default_rng(seed)
    accuracies = []
    for shift in (0.0, effect):
        p = baseline_accuracy + shift + between_sd * rng.standard_normal((simulations, n))
        accuracies.append(rng.binomial(trials, np.clip(p, 0, 1)) / trials)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical samples (e.g. all correct): p = nan -> 1
        pvalues = stats.ttest_ind(accuracies[0], accuracies[1], axis=1, equal_var=False).pvalue
    return float(np.mean(np.nan_to_num(pvalues, nan=1.0) < alpha))


def power_analysis(
    effect: float,
    baseline_accuracy: float = 0.6,
    trials: int = 18,
    alpha: float = 0.05,
    power: float = 0.8,
    between_sd: float = 0.0,
    simulations: int = 2000,
    seed: int = 0,
    max_participants: int = 100_000,
) -> PowerResult:
    """Participants per condition to detect `effect` (an accuracy difference) with the wanted power."""
    if effect == 0 or not 0 < baseline_accuracy < 1 or not 0 <= baseline_accuracy + effect <= 1:
        raise VizprobeError("need effect != 0 with baseline accuracy and baseline + effect inside (0, 1)")
    if trials < 1 or not 0 < alpha < 1 or not 0 < power < 1 or between_sd < 0 or simulations < 10:
        raise VizprobeError("need trials >= 1, alpha and power in (0, 1), between_sd >= 0, simulations >= 10")

    def reached(n: int) -> float:
        return simulated_power(n, effect, baseline_accuracy, trials, alpha, between_sd, simulations, seed)

    low, high = 1, 2
    while reached(high) < power:
        low, high = high, high * 2
        if high > max_participants:
            raise VizprobeError(f"more than {max_participants} participants per condition would be needed")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if reached(middle) >= power else (middle, high)
    return PowerResult(
        participants_per_condition=high,
        achieved_power=reached(high),
        closed_form_participants=closed_form_participants(effect, baseline_accuracy, trials, alpha, power),
        effect=effect,
        baseline_accuracy=baseline_accuracy,
        trials=trials,
        alpha=alpha,
        power=power,
        between_sd=between_sd,
        simulations=simulations,
    )
