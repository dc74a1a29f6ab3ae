"""Confidence intervals for comparing two cohorts of probe devices.

Delivery rate and late share are proportions (on time of sent, late of sent): each cohort's gets a
Wilson score interval, and their difference (experiment - control) Newcombe's hybrid score interval
(Newcombe 1998, method 10), which stays inside [-1, 1] and keeps its coverage near 0 and 1, where a
healthy platform lives (99.9 %), unlike the Wald interval. The p99 latency difference has no
closed form: a percentile bootstrap over each cohort's latencies, resampled with a fixed seed so a
report reads the same twice.

    lo, hi = newcombe_diff(9990, 10000, 9950, 10000)      # control 99.9 %, experiment 99.5 %
    # (-0.0056, -0.0025): the experiment cohort lost 0.25 to 0.56 points
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from statistics import NormalDist

BOOTSTRAP_ROUNDS = 400
BOOTSTRAP_MAX_SAMPLE = 5_000  # latencies per cohort a resample draws (a subsample beyond, for speed)


def z_of(confidence: float) -> float:
    """The two-sided normal quantile of `confidence` (0.95 -> 1.96)."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when nothing was observed."""
    if not 0 <= successes <= n:
        raise ValueError("need 0 <= successes <= n")
    if n == 0:
        return 0.0, 1.0
    z = z_of(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff(
    control_successes: int, control_n: int, experiment_successes: int, experiment_n: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p_experiment - p_control (proportions, not points)."""
    p1 = experiment_successes / experiment_n if experiment_n else 0.0
    p2 = control_successes / control_n if control_n else 0.0
    l1, u1 = wilson(experiment_successes, experiment_n, confidence)
    l2, u2 = wilson(control_successes, control_n, confidence)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lower), min(1.0, upper)


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(0.99 * len(ordered) - 1e-9))
    return ordered[rank - 1]


def bootstrap_p99_diff(
    control: Sequence[float],
    experiment: Sequence[float],
    confidence: float = 0.95,
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of p99(experiment) - p99(control), in the values' unit.

    None when a cohort has no latency at all. Each resample draws as many values as the cohort has
    (at most BOOTSTRAP_MAX_SAMPLE, a random subsample beyond: the interval is then slightly wider).
    """
    if not control or not experiment:
        return None
    rng = random.Random(seed)  # noqa: S311 - resampling, not security
    c, e = (
        list(v) if len(v) <= BOOTSTRAP_MAX_SAMPLE else rng.sample(list(v), BOOTSTRAP_MAX_SAMPLE)
        for v in (control, experiment)
    )
    diffs = sorted(_p99(rng.choices(e, k=len(e))) - _p99(rng.choices(c, k=len(c))) for _ in range(rounds))
    alpha = (1 - confidence) / 2
    lo = diffs[max(0, math.floor(alpha * rounds))]
    hi = diffs[min(rounds - 1, math.ceil((1 - alpha) * rounds) - 1)]
    return lo, hi
