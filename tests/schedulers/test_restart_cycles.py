"""Warm-restart cycles (``RestartCycles``) against exact rational cycle starts.

Cycle ``i`` of timm's ``CosineLRScheduler``/``TanhLRScheduler`` and TF's
``cosine_decay_restarts`` lasts ``first * mult**i`` steps, so it starts at
``S_i = first * (mult**i - 1) / (mult - 1)``. The references below compute ``S_i`` with
``fractions.Fraction`` (``mult`` read as the decimal written: ``Fraction("1.3") == 13/10``), so
they have no rounding in the cycle location; the values inside a cycle are then the closed forms
of timm (timm/scheduler/cosine_lr.py and tanh_lr.py, ``_get_lr``, timm 1.0.x) and TF
(tensorflow/python/keras/optimizer_v2/learning_rate_schedule.py, ``CosineDecayRestarts``).
"""

import bisect
import functools
import math
from fractions import Fraction

import numpy as np
import pytest

import schedulers as S
from schedulers.base import ARRAY
from schedulers.cosine import RestartCycles

# steps where float64's start first * (mult**i - 1) / (mult - 1) rounds just above the true
# start (7 * 0.3 / 0.3 == 7.000000000000001): before the fix they were put at the end of the
# previous cycle (value lr_min) instead of the start of the next (the peak; timm and TF: 0.1)
ROUNDED_UP_STARTS = [(7, 1.3, 7), (13, 1.2, 13), (10, 1.3, 23), (20, 1.3, 46), (100, 1.1, 331)]
# steps where timm's and TF's own logarithm rounds a start down into the previous cycle
# (log(243) / log(3) == 4.999999999999999): the exact start is a restart here
LOG_ROUNDED_DOWN_STARTS = [(1, 3.0, 121), (50, 1.2, 182), (20, 1.05, 41), (100, 1.01, 201)]


@functools.cache
def _exact_starts(first: int, mult: float, last: int) -> tuple[Fraction, ...]:
    """The exact cycle starts ``S_0 < S_1 < ...`` up to the first one above ``last``."""
    m, starts = Fraction(repr(mult)), [Fraction(0)]
    while starts[-1] <= last:
        starts.append(first * (m ** len(starts) - 1) / (m - 1))
    return tuple(starts)


def exact_cycle(t: float, first: int, mult: float) -> tuple[int, Fraction, Fraction]:
    """``(i, t - S_i, first * mult**i)`` in exact arithmetic (``mult`` as its decimal)."""
    m, step = Fraction(repr(mult)), Fraction(t)
    if m == 1:
        i = math.floor(step / first)
        return i, step - first * i, Fraction(first)
    starts = _exact_starts(first, mult, 1 << math.ceil(t).bit_length())
    i = bisect.bisect_right(starts, step) - 1
    return i, step - starts[i], first * m**i


def timm_cosine(t, base, first, mult, lr_min=0.0, cycle_decay=1.0, cycle_limit=100):
    i, t_curr, t_i = exact_cycle(t, first, mult)
    if i >= cycle_limit:
        return lr_min
    lr_max = base * cycle_decay**i
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * float(t_curr / t_i)))


def timm_tanh(t, base, first, mult, lb=-7.0, ub=3.0, lr_min=0.0, cycle_limit=100):
    i, t_curr, t_i = exact_cycle(t, first, mult)
    if i >= cycle_limit:
        return lr_min
    tr = float(t_curr / t_i)
    return lr_min + 0.5 * (base - lr_min) * (1 - math.tanh(lb * (1.0 - tr) + ub * tr))


def tf_cosine_decay_restarts(t, lr, first, t_mul, m_mul=1.0, alpha=0.0):
    i, into, length = exact_cycle(t, first, t_mul)
    cosine_decayed = 0.5 * m_mul**i * (1.0 + math.cos(math.pi * float(into / length)))
    return lr * ((1 - alpha) * cosine_decayed + alpha)


@pytest.mark.parametrize(("first", "mult", "t"), ROUNDED_UP_STARTS + LOG_ROUNDED_DOWN_STARTS)
def test_a_cycle_start_is_the_peak_of_the_new_cycle(first, mult, t):
    i, into, _ = exact_cycle(t, first, mult)
    assert into == 0  # the reference: t is exactly the start of cycle i >= 1
    assert i >= 1
    index, t_curr, _ = RestartCycles(first, mult).locate(np.array([float(t)]), ARRAY)
    assert (index[0], t_curr[0]) == (i, 0.0)
    assert S.cosine_cycles(0.1, first, cycle_mul=mult, cycle_limit=100)(t) == 0.1
    assert S.tanh_decay(0.1, first, cycle_mul=mult, cycle_limit=100)(t) == timm_tanh(
        t, 0.1, first, mult
    )
    assert S.cosine_decay_restarts(0.1, first, t_mul=mult)(t) == 0.1
    assert S.cosine_decay_restarts(0.1, first, t_mul=mult, m_mul=0.5)(t) == 0.1 * 0.5**i
    # the step before is the end of the previous cycle: just above the floor
    assert S.cosine_cycles(0.1, first, cycle_mul=mult, cycle_limit=100)(t - 1) < 0.1 * 0.5


@pytest.mark.parametrize(
    ("first", "mult"),
    [
        (7, 1.3),
        (13, 1.2),
        (10, 1.3),
        (20, 1.3),
        (100, 1.1),
        (1, 3.0),
        (50, 1.2),
        (20, 1.05),
        (3, 1.01),
        (5, 2.5),
        (11, 1.0),
        (7, 1.7),
    ],
)
def test_every_step_is_in_its_exact_cycle(first, mult):
    steps = np.concatenate([np.arange(3000.0), np.arange(3000.0) + 0.25, np.arange(3000.0) - 1e-9])
    steps = steps[steps >= 0]
    index, t_curr, length = RestartCycles(first, mult).locate(steps, ARRAY)
    for t, i, into, t_i in zip(steps.tolist(), index, t_curr, length):
        exact_i, exact_into, exact_length = exact_cycle(t, first, mult)
        assert i == exact_i, (t, i, exact_i)
        assert 0.0 <= into < t_i
        assert into == pytest.approx(float(exact_into), rel=1e-12, abs=1e-9)
        assert t_i == pytest.approx(float(exact_length), rel=1e-13)


@pytest.mark.parametrize(("first", "mult"), [(7, 1.3), (10, 1.3), (100, 1.1), (1, 3.0)])
def test_restart_schedules_match_the_exact_closed_forms(first, mult):
    t = np.arange(2000)
    cosine = S.cosine_cycles(0.1, first, cycle_mul=mult, cycle_limit=100, lr_min=1e-3)(t)
    tanh = S.tanh_decay(0.1, first, cycle_mul=mult, cycle_limit=100)(t)
    tf = S.cosine_decay_restarts(0.1, first, t_mul=mult, m_mul=0.9, alpha=0.01)(t)
    for step in t.tolist():
        assert cosine[step] == pytest.approx(
            timm_cosine(step, 0.1, first, mult, lr_min=1e-3), abs=1e-15
        )
        # tanh's slope (up to (ub - lb) / 2 = 5) scales the last-digit rounding of t_curr / t_i
        assert tanh[step] == pytest.approx(timm_tanh(step, 0.1, first, mult), abs=1e-14)
        assert tf[step] == pytest.approx(
            tf_cosine_decay_restarts(step, 0.1, first, mult, 0.9, 0.01), abs=1e-15
        )


def test_scalar_and_array_agree_at_the_corrected_starts():
    s = S.cosine_cycles(0.1, 10, cycle_mul=1.3, cycle_limit=100)
    t = np.array([22.0, 23.0, 24.0, 6.0, 23.0])
    assert s(t).tolist() == [s(22), s(23), s(24), s(6), s(23)]
    assert s(np.array([[23.0, 7.5], [46.0, 0.0]])).tolist() == [[s(23), s(7.5)], [s(46), s(0)]]
