"""The arithmetic of AlgoPerf-style scoring: times to target, performance ratios, performance
profiles and the benchmark score. Pure functions of numbers; no training, no files.

Source: Dahl et al., "Benchmarking Neural Network Training Algorithms" (2023, arXiv:2306.07179),
section 4 (time-to-result, performance profiles, the score), and the MLCommons
``algorithmic-efficiency`` repository's ``scoring/performance_profile.py``
(``compute_performance_profiles``, ``compute_leaderboard_score``). Performance profiles
themselves are Dolan & Moré, "Benchmarking optimization software with performance profiles",
Math. Programming 91 (2002).

Notation: ``t[s][w]`` is the time submission ``s`` needs to reach workload ``w``'s target
(``math.inf`` when it does not reach it within the budget); times are positive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

TAU_MAX = 4.0  # AlgoPerf's r_max: the profile is integrated over [1, 4]


def study_time(trial_times: Iterable[float]) -> float:
    """The time of one external-tuning study: its fastest trial that reaches the target,
    ``min_j t_j`` (``inf`` when no trial reaches it, or there is no trial).

    >>> study_time([math.inf, 300, 250, math.inf])
    250
    >>> study_time([math.inf, math.inf])
    inf
    """
    return min(trial_times, default=math.inf)


def median_time(study_times: Sequence[float]) -> float:
    """A workload's time to target for one submission: the median over repeated studies of each
    study's time (AlgoPerf: 5 studies). A study that misses the target counts as ``inf``, so the
    median is finite only when more than half of the studies reach the target (for an even
    count, the mean of the two middle values, ``inf`` when one of them is).

    >>> median_time([250, math.inf, 300])
    300
    >>> median_time([250, math.inf, math.inf])
    inf
    >>> median_time([100, 200, 300, 400])
    250.0
    """
    if not study_times:
        raise ValueError("study_times must hold at least one study's time, got []")
    return statistics.median(study_times)


def performance_ratios(
    times: Mapping[str, Mapping[str, float]],
) -> dict[str, dict[str, float]]:
    """``r[s][w] = t[s][w] / min_s' t[s'][w]``: each time over the best time on its workload.

    A submission that misses the target has ``r = inf``; on a workload no submission reaches,
    every ratio is ``inf``. Every submission must give a time for the same workloads.

    >>> r = performance_ratios({"a": {"w1": 100, "w2": math.inf}, "b": {"w1": 300, "w2": 50}})
    >>> r["a"], r["b"]
    ({'w1': 1.0, 'w2': inf}, {'w1': 3.0, 'w2': 1.0})
    """
    names = list(times)
    if not names:
        return {}
    workloads = list(times[names[0]])
    for name in names:
        if sorted(times[name]) != sorted(workloads):
            raise ValueError(
                f"times[{name!r}] covers workloads {sorted(times[name])}, but "
                f"times[{names[0]!r}] covers {sorted(workloads)}; each submission needs a time "
                "for every workload"
            )
        for workload, value in times[name].items():
            if not (value > 0):  # also refuses NaN
                raise ValueError(
                    f"times[{name!r}][{workload!r}] = {value!r}; a time to target must be "
                    "positive or inf (not reached)"
                )
    ratios: dict[str, dict[str, float]] = {name: {} for name in names}
    for workload in workloads:
        best = min(times[name][workload] for name in names)
        for name in names:
            value = times[name][workload]
            ratios[name][workload] = value / best if math.isfinite(value) else math.inf
    return ratios


def rho(ratios: Iterable[float], tau: float) -> float:
    """The performance profile ``rho_s(tau) = |{w : r[s][w] <= tau}| / |W|``: the fraction of
    workloads that submission ``s`` reaches within ``tau`` times the best time.

    >>> rho([1.0, 2.0, math.inf], 1.0), rho([1.0, 2.0, math.inf], 2.5)
    (0.3333333333333333, 0.6666666666666666)
    """
    values = list(ratios)
    if not values:
        raise ValueError("ratios must hold at least one workload's ratio, got []")
    return sum(r <= tau for r in values) / len(values)


def profile_score(ratios: Iterable[float], tau_max: float = TAU_MAX) -> float:
    """AlgoPerf's benchmark score: the normalised area under the performance profile,
    ``B_s = 1 / (tau_max - 1) * integral_1^tau_max rho_s(tau) d tau`` (Dahl et al. 2023, eq. in
    section 4.5; ``tau_max = 4``).

    ``rho_s`` is a step function, so the integral is exact: each workload with ``r <= tau_max``
    adds ``(tau_max - r) / |W|`` (and ``r >= 1`` always), i.e.
    ``B_s = sum_w max(0, tau_max - r_w) / (|W| (tau_max - 1))``. (AlgoPerf's code integrates the
    same curve by the trapezoidal rule on ``linspace(1, 4, 100)``: each workload's jump then
    moves by up to half a grid interval, so its score differs from this one by at most
    ``(3 / 99) / 2 / 3 = 1/198``, about 0.005, e.g. for a ratio of exactly 4.) The score
    is 1 for a submission that is fastest on every workload and 0 for one that never comes
    within ``tau_max`` of the best.

    >>> profile_score([1.0, 2.0, math.inf])  # (3 + 2 + 0) / (3 * 3)
    0.5555555555555556
    >>> profile_score([1.0, 1.0]), profile_score([math.inf, 5.0])
    (1.0, 0.0)
    """
    values = list(ratios)
    if not values:
        raise ValueError("ratios must hold at least one workload's ratio, got []")
    if not tau_max > 1:
        raise ValueError(f"tau_max must be > 1, got tau_max={tau_max!r}")
    for r in values:
        if not r >= 1:
            raise ValueError(f"a performance ratio is >= 1 by definition, got {r!r}")
    return sum(max(0.0, tau_max - r) for r in values) / (len(values) * (tau_max - 1))


def profile_curve(ratios: Iterable[float], taus: Iterable[float]) -> list[float]:
    """``rho_s(tau)`` at each ``tau`` (for drawing the profile).

    >>> profile_curve([1.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    [0.5, 0.5, 1.0, 1.0]
    """
    values = list(ratios)
    return [rho(values, tau) for tau in taus]
