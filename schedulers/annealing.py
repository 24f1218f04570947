"""timm's annealing schedules with restarts: cosine cycles with k-decay, and tanh decay.

Origin: timm (``timm/scheduler/cosine_lr.py``, ``timm/scheduler/tanh_lr.py``), whose argument
names are kept. Both share timm's cycle layout: cycle ``i`` lasts ``t_initial * cycle_mul**i``
steps, its peak is ``base_lr * cycle_decay**i``, and after ``cycle_limit`` cycles the value is
``lr_min`` forever (timm's default ``cycle_limit=1``: one decay, then ``lr_min``). Within a cycle
``t_curr`` counts the steps made and ``t_i`` is the cycle's length. The cycle index is computed
with :class:`schedulers.cosine.RestartCycles`: exactly, ``cycle_mul`` read as the decimal it
prints as (``t_initial=7, cycle_mul=1.3``: cycle 1 starts at ``t = 7``, as in timm). timm takes
the index from a float logarithm, which at a few cycle starts rounds down, so its value there is
the previous cycle's end (``lr_min``) instead of the new peak (e.g. ``t_initial=1, cycle_mul=3,
t=121``; ``t_initial=50, cycle_mul=1.2, t=182``); here such a step starts the new cycle. At
others its float start rounds above ``t``, so its ``t_curr`` is a tiny negative number, which
with a non-integer ``k_decay`` makes ``t_curr ** k_decay`` complex and timm raise a
``TypeError`` (``t_initial=10, cycle_mul=1.3, cycle_limit=10, k_decay=0.5, t=23``); here it
is the new peak.

timm's warmup and noise are compositions here. timm's warmup ramps linearly from
``warmup_lr_init`` over ``warmup_t`` steps to an end value ``end``, up or down; write it as
``ramp = polynomial_decay(warmup_lr_init, warmup_t, end_learning_rate=end, power=1.0)``, which
takes any ``end >= 0`` (a ``linear`` ramp's factors cannot go above 1 or start from an end of 0):

* ``warmup_prefix=True``: ``join([ramp, s], [warmup_t])`` with ``end = base_lr``;
* ``warmup_prefix=False`` (timm's default: the schedule's clock includes the warmup):
  ``join([ramp, s.shift(-warmup_t)], [warmup_t])``; the cosine's ramp ends at ``base_lr``, the
  tanh's at ``s(warmup_t)``, which can be below ``warmup_lr_init`` or 0 (timm then ramps down);
* noise: :class:`schedulers.noise.noisy`.
"""

from __future__ import annotations

import numpy as np

from schedulers.base import ARRAY, Ops, Schedule, check_float, check_int, register
from schedulers.cosine import RestartCycles


class _TimmCycles(Schedule):
    """The cycle layout shared by :class:`CosineCycles` and :class:`TanhDecay`."""

    def _init_cycles(self, base_lr, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit):
        self.base_lr = check_float("base_lr", base_lr)
        self.t_initial = check_int("t_initial", t_initial)
        self.lr_min = check_float("lr_min", lr_min, 0.0, self.base_lr)
        self.cycle_mul = check_float("cycle_mul", cycle_mul, 1.0)
        self.cycle_decay = check_float("cycle_decay", cycle_decay, 0.0, 1.0, low_open=True)
        self.cycle_limit = check_int("cycle_limit", cycle_limit, minimum=0)
        self._cycles = RestartCycles(self.t_initial, self.cycle_mul)

    def _shape(self, t_curr, t_i, xp: Ops):  # pragma: no cover - abstract
        """The decay within a cycle, from 1 (``t_curr = 0``) towards 0 (``t_curr = t_i``)."""
        raise NotImplementedError

    def _value(self, t, xp):
        i, t_curr, t_i = self._cycles.locate(t, xp)
        lr_max = self.base_lr * xp.power(self.cycle_decay, i)
        value = self.lr_min + (lr_max - self.lr_min) * self._shape(t_curr, t_i, xp)
        return xp.where(i < self.cycle_limit, value, self.lr_min)

    def bounds(self) -> tuple[float, float]:
        if not self.cycle_limit:
            return (self.lr_min, self.lr_min)
        # a cycle whose decayed peak is below lr_min rises from it towards lr_min (as in timm);
        # each peak is reached as lr_min + (peak - lr_min) * 1, which can round an ulp past it
        lr_min, base = self.lr_min, self.base_lr
        exponent = np.array([self.cycle_limit - 1.0])
        lowest_peak = base * float(ARRAY.power(self.cycle_decay, exponent)[0])
        low = min(lr_min, lowest_peak, lr_min + (lowest_peak - lr_min))
        return (low, max(base, lr_min + (base - lr_min)))


@register
class CosineCycles(_TimmCycles):
    """``lr_min + (lr_max_i - lr_min) * (1 + cos(pi * t_curr**k / t_i**k)) / 2`` (k = k_decay).

    Origin: timm's ``CosineLRScheduler`` (SGDR, Loshchilov & Hutter 2017) with its ``k_decay``
    (Zhang & Li, "k-decay: A New Method For Learning Rate Schedule", arXiv:2004.05909):
    ``k > 1`` holds the rate high longer, ``k < 1`` drops it sooner. Cycles as in the module
    docstring; after ``cycle_limit`` cycles: ``lr_min``. timm's bits at every step but a cycle
    start its logarithm misplaces: the angle is rounded in timm's order, ``pi * t_curr**k /
    t_i**k``, with the C library's ``cos`` that timm's ``math.cos`` calls (measured against
    timm 1.0.22 over 1200 random configurations of 1500 steps, warmup excluded), and its
    ``**``, the C library's ``pow`` (see :class:`schedulers.base.CLibrary`). Where that order
    overflows float64 (``t_i**k`` or ``pi * t_curr**k`` above ``1.8e308``, e.g. at every step
    of ``t_initial=1000, k_decay=103``, where timm raises ``OverflowError``) the angle is
    ``pi * (t_curr / t_i)**k``, the same number rounded otherwise (relative error about ``k``
    ulps).

    Args:
        base_lr: peak of the first cycle (>= 0; timm takes the optimizer's lr).
        t_initial: length of the first cycle (int >= 1).
        lr_min: floor, in [0, base_lr].
        cycle_mul: growth of the cycle length (>= 1).
        cycle_decay: peak multiplier per cycle, in (0, 1].
        cycle_limit: number of cycles (int >= 0).
        k_decay: exponent of the step within the cycle (> 0).

    >>> s = cosine_cycles(1.0, t_initial=4, k_decay=2.0)
    >>> [round(s(t), 6) for t in range(6)]
    [1.0, 0.990393, 0.853553, 0.402455, 0.0, 0.0]
    """

    name = "cosine_cycles"

    def __init__(
        self,
        base_lr: float,
        t_initial: int,
        lr_min: float = 0.0,
        cycle_mul: float = 1.0,
        cycle_decay: float = 1.0,
        cycle_limit: int = 1,
        k_decay: float = 1.0,
    ) -> None:
        self._init_cycles(base_lr, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit)
        self.k_decay = check_float("k_decay", k_decay, low_open=True)

    def _shape(self, t_curr, t_i, xp):
        # timm's order, pi * t_curr**k / t_i**k (not pi * (t_curr / t_i)): near a cycle's end,
        # where 1 + cos cancels, the other rounding of the angle moved values by up to 1e-12
        k = self.k_decay
        if k == 1.0:
            angle = xp.pi * t_curr / t_i
        else:
            denominator = xp.power(t_i, k)
            with np.errstate(over="ignore", invalid="ignore"):
                angle = xp.pi * xp.power(t_curr, k) / denominator
            overflowed = ~(np.isfinite(angle) & np.isfinite(denominator))
            if np.any(overflowed):
                # timm's order overflows (t_i**k, or pi * t_curr**k, beyond float64: timm
                # raises OverflowError or ValueError there): the angle from the ratio instead,
                # pi * (t_curr / t_i)**k, whose powers of a number in [0, 1) cannot overflow
                ratio = xp.power(t_curr / t_i, k)
                angle = xp.where(overflowed, xp.pi * ratio, angle)
        return 0.5 * (1.0 + xp.cos(angle))


@register
class TanhDecay(_TimmCycles):
    """``lr_min + (lr_max_i - lr_min) * (1 - tanh(lb * (1 - r) + ub * r)) / 2``.

    ``r = t_curr / t_i``, the fraction of the cycle made.

    Origin: timm's ``TanhLRScheduler`` (Hsueh et al., "Stochastic Gradient Descent with
    Hyperbolic-Tangent Decay on Classification", WACV 2019, arXiv:1806.01593). The value starts
    just below the peak (``(1 - tanh(lb)) / 2``, 0.9999992 for ``lb = -7``) and ends each cycle
    just above ``lr_min`` (``(1 - tanh(ub)) / 2``, 0.0025 for ``ub = 3``); after ``cycle_limit``
    cycles it is ``lr_min``.

    Args:
        base_lr, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit: as
            :class:`CosineCycles`.
        lb: the tanh argument at the start of a cycle (timm's default -7).
        ub: the tanh argument at the end of a cycle (> lb; timm's default 3).

    >>> s = tanh_decay(1.0, t_initial=100)
    >>> round(s(0), 6), round(s(70), 6), round(s(99), 6), s(100)
    (0.999999, 0.5, 0.003018, 0.0)
    """

    name = "tanh_decay"

    def __init__(
        self,
        base_lr: float,
        t_initial: int,
        lb: float = -7.0,
        ub: float = 3.0,
        lr_min: float = 0.0,
        cycle_mul: float = 1.0,
        cycle_decay: float = 1.0,
        cycle_limit: int = 1,
    ) -> None:
        self._init_cycles(base_lr, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit)
        self.lb = check_float("lb", lb, -1e3, 1e3, high_open=True)
        self.ub = check_float("ub", ub, self.lb, 1e3, low_open=True)

    def _shape(self, t_curr, t_i, xp):
        r = t_curr / t_i
        return 0.5 * (1.0 - xp.tanh(self.lb * (1.0 - r) + self.ub * r))


cosine_cycles = CosineCycles
tanh_decay = TanhDecay
