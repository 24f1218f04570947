"""Cosine schedules: PyTorch's CosineAnnealingLR and CosineAnnealingWarmRestarts (SGDR), and
TensorFlow's cosine_decay, cosine_decay_restarts, linear_cosine_decay and
noisy_linear_cosine_decay.

Origins: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017
(arXiv:1608.03983); Bello et al., "Neural Optimizer Search with Reinforcement Learning", ICML 2017
(linear cosine and noisy linear cosine decay).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from schedulers.base import Ops, Schedule, check_float, check_int, hull, register
from schedulers.noise import MAX_ABS_NORMAL, standard_normal

# ----------------------------------------------------------------------------------------------
# Helpers written once and shared.
# ----------------------------------------------------------------------------------------------


class RestartCycles:
    """Warm-restart cycles of lengths ``first * mult**i`` (``i = 0, 1, ...``).

    Definition: step ``t`` lies in cycle ``i`` when ``S_i <= t < S_(i+1)``, where
    ``S_i = first * (mult**i - 1) / (mult - 1)`` (``first * i`` when ``mult == 1``) is evaluated
    in exact rational arithmetic with ``mult`` read as the decimal it prints as (``repr``:
    ``1.3`` is ``13/10``, not its binary neighbour ``1.3000000000000000444``). So with
    ``first = 10, mult = 1.3`` the cycles are 10 and 13 steps long and ``t = 23`` is the first
    step of cycle 2, as timm and TensorFlow compute it, although float64's
    ``10 * (1.3**2 - 1) / 0.3`` is ``23.000000000000004``.

    Computation: the index comes from the logarithm
    ``floor(log1p(t (mult - 1) / first) / log(mult))``, is corrected by one cycle either way
    against the float64 starts, and every step within rounding distance of a start (a bound
    on the float64 error of ``S_i``) is then placed by comparing ``t`` with the exact rational
    starts; its ``t - S_i`` is the exact difference rounded once (``0.0`` at a start). Exact
    arithmetic is used while ``mult**i`` has at most ``2**20`` bits (every cycle for
    ``mult >= 1.001``, and up to ``t`` of about ``4.5e4 * first`` for ``mult = 1.0000001``);
    beyond, only reachable for ``mult`` within about ``1e-3`` of 1, the float64 index is kept.
    Memory and time do not depend on ``t`` or on the cycle index, except for those exact
    comparisons, made only at steps that fall on (or next to) a start.

    timm (``CosineLRScheduler``, ``TanhLRScheduler``) and TensorFlow (``cosine_decay_restarts``)
    take the index from the same logarithm without a correction, so at a few starts their
    rounding puts the start's step at the end of the previous cycle (``t_curr == t_i``: the
    cycle's floor instead of its peak), e.g. ``first = 1, mult = 3, t = 121`` (``log(243) /
    log(3) = 4.999999999999999``), ``first = 50, mult = 1.2, t = 182`` and
    ``first = 20, mult = 1.05, t = 41``; here such a step starts the new cycle (as torch's
    ``CosineAnnealingWarmRestarts`` does when stepped one step at a time).
    """

    #: the largest ``mult**i`` (in bits of numerator or denominator) compared exactly
    EXACT_BITS = 2**20

    def __init__(self, first: float, mult: float) -> None:
        self.first, self.mult = first, mult
        self._log_mult = math.log(mult)
        self._exact_mult = Fraction(repr(float(mult))) if mult != int(mult) else Fraction(mult)
        self._bits_per_cycle = max(
            self._exact_mult.numerator.bit_length(), self._exact_mult.denominator.bit_length()
        )
        # relative error bound of the float64 start S_i, per cycle index and in all: the power
        # (float64 mult differs from the decimal by <= 2**-53 relative, i times over), and the
        # cancellation in mult**i - 1 and mult - 1 near mult = 1; 16x margin
        eps = 2.0**-52
        self._error_per_cycle = 16 * eps
        self._error_base = 16 * eps * (2.0 + (1.0 / (mult - 1.0) if mult != 1 else 0.0))
        self._starts: dict[int, Fraction] = {}

    def exact_start(self, i: int) -> Fraction:
        """``S_i`` as an exact fraction (``mult`` read as its decimal)."""
        start = self._starts.get(i)
        if start is None:
            m = self._exact_mult
            start = Fraction(self.first) * i if m == 1 else self.first * (m**i - 1) / (m - 1)
            if len(self._starts) > 4096:
                self._starts.clear()
            self._starts[i] = start
        return start

    def locate(self, t: np.ndarray, xp: Ops) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i, t - S_i, length of cycle i)``: index, steps made in the cycle, cycle length."""
        first, mult = self.first, self.mult
        if mult == 1:
            i = xp.floor(t / first)
            # t / first rounds up to a whole number just below a start: step back (i * first is
            # exact for whole i below 2**53 / first)
            i = i - (i * first > t) + ((i + 1.0) * first <= t)
            return i, t - i * first, first + 0.0 * t
        i = xp.floor(self._log_growth(t, xp) / self._log_mult)
        # (a huge mult: a cycle's start or length past float64's range is inf, which places t
        # before it, or at its very beginning, as the exact lengths do at steps up to 2**53)
        with np.errstate(over="ignore"):
            power = xp.power(mult, i)
            start, length = (power - 1.0) / (mult - 1.0) * first, first * power
            i = i + (t >= start + length) - (t < start)  # the logarithm put t one cycle off
            power = xp.power(mult, i)
            # timm's order, (1 - mult**i) / (1 - mult) * first (the same bits: both negations
            # are exact), so that a step away from a start has timm's t - S_i bits (torch's
            # integer T_mult makes every order exact)
            start, length = (power - 1.0) / (mult - 1.0) * first, first * power
            into = t - start
            window = (self._error_base + self._error_per_cycle * i) * (start + length)
            near = (np.abs(into) <= window) | (np.abs(into - length) <= window)
            if np.any(near):
                i, into = self._exact(t, i, into, near)
                length = first * xp.power(mult, i)
        return i, into, length

    def _log_growth(self, t, xp: Ops):
        """``log1p(t (mult - 1) / first)``, also where ``t (mult - 1)`` overflows float64 (a
        huge ``mult``): there ``log t + log(mult - 1) - log first``, which it equals to within
        rounding (the ``1`` is below an ulp of a ratio above ``1.8e308``)."""
        with np.errstate(over="ignore"):
            ratio = t * (self.mult - 1.0) / self.first
        overflow = np.isinf(ratio)
        if not np.any(overflow):
            return xp.log1p(ratio)
        offset = math.log(self.mult - 1.0) - math.log(self.first)
        with np.errstate(divide="ignore"):  # (log 0 where t = 0, a step not taken from here)
            return xp.where(overflow, xp.log(t) + offset, xp.log1p(ratio))

    def _exact(self, t, i, into, near) -> tuple[np.ndarray, np.ndarray]:
        """``(i, t - S_i)`` with the steps in ``near`` placed against the exact starts."""
        t, i, into, near = np.broadcast_arrays(t, i, into, near)
        i, into = np.array(i, dtype=np.float64), np.array(into, dtype=np.float64)
        flat_t, flat_i, flat_into = t.reshape(-1), i.reshape(-1), into.reshape(-1)
        for k in np.flatnonzero(near):
            step, index = float(flat_t[k]), float(flat_i[k])
            if not (math.isfinite(step) and math.isfinite(index)) or index < 0:
                continue
            index = int(index)
            if (index + 1) * self._bits_per_cycle > self.EXACT_BITS:
                continue  # too large to compare exactly: the float64 index stays
            exact = Fraction(step)
            while index > 0 and self.exact_start(index) > exact:
                index -= 1
            while self.exact_start(index + 1) <= exact:
                index += 1
            flat_i[k], flat_into[k] = index, float(exact - self.exact_start(index))
        return i, into


def half_cosine(fraction: np.ndarray, xp: Ops) -> np.ndarray:
    """``(1 + cos(pi * fraction)) / 2``: 1 at fraction 0, 0 at fraction 1."""
    return 0.5 * (1.0 + xp.cos(xp.pi * fraction))


# ----------------------------------------------------------------------------------------------
# PyTorch family.
# ----------------------------------------------------------------------------------------------


@register
class CosineAnnealing(Schedule):
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    Origin: PyTorch ``CosineAnnealingLR`` (its closed form; SGDR without restarts). Like torch,
    the cosine is not stopped at ``T_max``: after reaching ``eta_min`` at ``t = T_max`` the value
    rises again, back to ``base_lr`` at ``2 T_max`` (period ``2 T_max``). Use
    :class:`CosineDecay` to hold the floor after the end.

    Args:
        base_lr: value at ``t = 0`` (>= 0).
        T_max: half period in steps (int >= 1).
        eta_min: value at ``t = T_max`` (>= 0).

    >>> s = cosine_annealing(1.0, T_max=4, eta_min=0.2)
    >>> [round(s(t), 6) for t in (0, 2, 4, 6, 8)]  # base_lr, the mean, eta_min, and back up
    [1.0, 0.6, 0.2, 0.6, 1.0]
    """

    name = "cosine_annealing"

    def __init__(self, base_lr: float, T_max: int, eta_min: float = 0.0) -> None:
        self.base_lr = check_float("base_lr", base_lr)
        self.T_max = check_int("T_max", T_max)
        self.eta_min = check_float("eta_min", eta_min)

    def _value(self, t, xp):
        eta_min = self.eta_min
        return eta_min + (self.base_lr - eta_min) * (1 + xp.cos(xp.pi * t / self.T_max)) / 2

    def bounds(self) -> tuple[float, float]:
        # the peak is eta_min + (base_lr - eta_min), which can round an ulp past base_lr
        eta_min = self.eta_min
        return hull(self.base_lr, eta_min, eta_min + (self.base_lr - eta_min))


@register
class CosineAnnealingWarmRestarts(Schedule):
    """SGDR: ``eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``.

    Origin: PyTorch ``CosineAnnealingWarmRestarts`` / Loshchilov & Hutter 2017. Cycle ``i`` lasts
    ``T_i = T_0 * T_mult**i`` steps and ``T_cur`` counts the steps made in it (see
    :class:`RestartCycles`); at every restart the value jumps back to ``base_lr``. Restarts go on
    forever.

    Args:
        base_lr: value at each restart (>= 0).
        T_0: length of the first cycle (int >= 1).
        T_mult: growth of the cycle length (int >= 1, as in torch).
        eta_min: floor approached at the end of each cycle (>= 0).

    >>> s = cosine_annealing_warm_restarts(1.0, T_0=2, T_mult=2)
    >>> [round(s(t), 6) for t in range(7)]  # cycles [0, 2), [2, 6), [6, 14)
    [1.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 1.0]
    """

    name = "cosine_annealing_warm_restarts"

    def __init__(self, base_lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> None:
        self.base_lr = check_float("base_lr", base_lr)
        self.T_0 = check_int("T_0", T_0)
        self.T_mult = check_int("T_mult", T_mult)
        self.eta_min = check_float("eta_min", eta_min)
        self._cycles = RestartCycles(self.T_0, self.T_mult)

    def _value(self, t, xp):
        _, T_cur, T_i = self._cycles.locate(t, xp)
        eta_min = self.eta_min
        return eta_min + (self.base_lr - eta_min) * (1 + xp.cos(xp.pi * T_cur / T_i)) / 2

    def bounds(self) -> tuple[float, float]:
        # the peak is eta_min + (base_lr - eta_min), which can round an ulp past base_lr
        eta_min = self.eta_min
        return hull(self.base_lr, eta_min, eta_min + (self.base_lr - eta_min))


# ----------------------------------------------------------------------------------------------
# TensorFlow family.
# ----------------------------------------------------------------------------------------------


@register
class CosineDecay(Schedule):
    """``learning_rate * ((1 - alpha) * c ** exponent + alpha)``, ``c`` the half cosine.

    ``c = (1 + cos(pi * t' / decay_steps)) / 2`` with ``t' = min(t, decay_steps)``.

    Origin: ``tf.compat.v1.train.cosine_decay`` (SGDR without restarts), with optax's
    ``exponent`` (``optax.cosine_decay_schedule(init_value, decay_steps, alpha, exponent)``
    is this schedule with ``learning_rate = init_value``; TF's is ``exponent = 1``). Reaches
    ``alpha * learning_rate`` at ``t = decay_steps`` and stays there.

    Args:
        learning_rate: value at ``t = 0`` (>= 0).
        decay_steps: length of the decay (int >= 1).
        alpha: final value as a fraction of ``learning_rate``, in [0, 1].
        exponent: power of the half cosine (> 0; > 1 decays sooner, < 1 later).

    >>> s = cosine_decay(1.0, decay_steps=4, exponent=2.0)
    >>> [round(s(t), 6) for t in range(6)]
    [1.0, 0.728553, 0.25, 0.021447, 0.0, 0.0]
    """

    name = "cosine_decay"

    def __init__(
        self, learning_rate: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
    ) -> None:
        self.learning_rate = check_float("learning_rate", learning_rate)
        self.decay_steps = check_int("decay_steps", decay_steps)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self.exponent = check_float("exponent", exponent, low_open=True)

    def _value(self, t, xp):
        fraction = xp.minimum(t, self.decay_steps) / self.decay_steps
        shape = half_cosine(fraction, xp)
        if self.exponent != 1.0:
            shape = xp.power(xp.maximum(shape, 0.0), self.exponent)
        return self.learning_rate * ((1.0 - self.alpha) * shape + self.alpha)

    def bounds(self) -> tuple[float, float]:
        return (self.alpha * self.learning_rate, self.learning_rate)


@register
class CosineDecayRestarts(Schedule):
    """SGDR, TF style: ``learning_rate * ((1 - alpha) * m_mul**i * (1 + cos(pi * f)) / 2 + alpha)``.

    Origin: ``tf.compat.v1.train.cosine_decay_restarts``. Cycle ``i`` lasts
    ``first_decay_steps * t_mul**i`` steps; ``f`` is the fraction of the current cycle already
    made; each restart multiplies the peak by ``m_mul``. Restarts go on forever; with
    ``m_mul < 1`` the value tends to ``alpha * learning_rate``. The cycle index is computed with
    :class:`RestartCycles`: exact, ``t_mul`` read as its decimal, where TF's float logarithm
    puts a few cycle starts at the end of the previous cycle (see there).

    Args:
        learning_rate: value at ``t = 0`` (>= 0).
        first_decay_steps: length of the first cycle (int >= 1).
        t_mul: growth of the cycle length (>= 1; TF's default 2.0).
        m_mul: peak multiplier per restart, in (0, 1] (TF's default 1.0).
        alpha: floor as a fraction of ``learning_rate``, in [0, 1].

    >>> s = cosine_decay_restarts(1.0, first_decay_steps=2, t_mul=2.0, m_mul=0.5)
    >>> [round(s(t), 6) for t in range(7)]  # restarts at t = 2 and 6, each peak halved
    [1.0, 0.5, 0.5, 0.426777, 0.25, 0.073223, 0.25]
    """

    name = "cosine_decay_restarts"

    def __init__(
        self,
        learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
    ) -> None:
        self.learning_rate = check_float("learning_rate", learning_rate)
        self.first_decay_steps = check_int("first_decay_steps", first_decay_steps)
        self.t_mul = check_float("t_mul", t_mul, 1.0)
        self.m_mul = check_float("m_mul", m_mul, 0.0, 1.0, low_open=True)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self._cycles = RestartCycles(self.first_decay_steps, self.t_mul)

    def _value(self, t, xp):
        i, into_cycle, length = self._cycles.locate(t, xp)
        cosine_decayed = xp.power(self.m_mul, i) * half_cosine(into_cycle / length, xp)
        return self.learning_rate * ((1.0 - self.alpha) * cosine_decayed + self.alpha)

    def bounds(self) -> tuple[float, float]:
        return (self.alpha * self.learning_rate, self.learning_rate)


def _linear_cosine_parts(t, decay_steps: int, num_periods: float, xp: Ops):
    """TF's ``(linear_decayed, cosine_decayed)`` with ``t`` capped at ``decay_steps``."""
    t = xp.minimum(t, decay_steps)
    linear_decayed = (decay_steps - t) / decay_steps
    cosine_decayed = half_cosine(2.0 * num_periods * t / decay_steps, xp)
    return t, linear_decayed, cosine_decayed


@register
class LinearCosineDecay(Schedule):
    """``learning_rate * ((alpha + linear) * cosine + beta)``.

    With ``t' = min(t, decay_steps)``: ``linear = (decay_steps - t') / decay_steps`` and
    ``cosine = (1 + cos(2 pi num_periods t' / decay_steps)) / 2``.

    Origin: ``tf.compat.v1.train.linear_cosine_decay`` (Bello et al. 2017). From
    ``t = decay_steps`` on the value stays at
    ``learning_rate * (alpha * cosine(decay_steps) + beta)`` (``learning_rate * beta`` for
    half-integer ``num_periods``).

    Args:
        learning_rate: scale (>= 0).
        decay_steps: length of the decay (int >= 1).
        num_periods: number of cosine periods over ``decay_steps`` (>= 0).
        alpha, beta: offsets (>= 0); ``s(0) = learning_rate * (1 + alpha + beta)``.

    >>> s = linear_cosine_decay(1.0, decay_steps=4)  # half a period, alpha = 0, beta = 0.001
    >>> [round(s(t), 6) for t in (0, 2, 4, 10)]  # at t = 2: linear 0.5 * cosine 0.5 + beta
    [1.001, 0.251, 0.001, 0.001]
    """

    name = "linear_cosine_decay"

    def __init__(
        self,
        learning_rate: float,
        decay_steps: int,
        num_periods: float = 0.5,
        alpha: float = 0.0,
        beta: float = 0.001,
    ) -> None:
        self.learning_rate = check_float("learning_rate", learning_rate)
        self.decay_steps = check_int("decay_steps", decay_steps)
        self.num_periods = check_float("num_periods", num_periods)
        self.alpha = check_float("alpha", alpha)
        self.beta = check_float("beta", beta)

    def _value(self, t, xp):
        _, linear, cosine = _linear_cosine_parts(t, self.decay_steps, self.num_periods, xp)
        return self.learning_rate * ((self.alpha + linear) * cosine + self.beta)

    def bounds(self) -> tuple[float, float]:
        return (self.learning_rate * self.beta, self.learning_rate * (1 + self.alpha + self.beta))


@register
class NoisyLinearCosineDecay(Schedule):
    """``learning_rate * max(0, (alpha + linear + eps_t) * cosine + beta)``.

    ``linear`` and ``cosine`` are those of :class:`LinearCosineDecay` (``t`` capped at
    ``decay_steps``) and ``eps_t ~ N(0, initial_variance / (1 + t')**variance_decay)`` with
    ``t' = min(t, decay_steps)``, drawn by :func:`standard_normal` from ``(seed, t)``: ``s(t)`` is
    reproducible and needs no state.

    Origin: ``tf.compat.v1.train.noisy_linear_cosine_decay`` (Bello et al. 2017). Deliberate
    difference: TF does not clip, so a large draw can make its value negative; here the value
    is clipped at 0. After ``decay_steps`` the noise keeps its final variance but is multiplied by
    ``cosine(decay_steps)`` (0 for half-integer ``num_periods``).

    Args:
        learning_rate, decay_steps, num_periods, alpha, beta: as :class:`LinearCosineDecay`.
        initial_variance: noise variance at ``t = 0`` (>= 0).
        variance_decay: decay exponent of the variance (>= 0).
        seed: integer seed of the noise (>= 0).

    >>> s = noisy_linear_cosine_decay(1.0, decay_steps=100, seed=3)
    >>> s(10) == noisy_linear_cosine_decay(1.0, decay_steps=100, seed=3)(10)  # (seed, t) decide
    True
    >>> round(s(100), 6), round(s(1000), 6)  # from decay_steps on the cosine is 0: lr * beta
    (0.001, 0.001)
    >>> noisy_linear_cosine_decay(1.0, 4, initial_variance=0.0)(2) == linear_cosine_decay(1.0, 4)(2)
    True
    """

    name = "noisy_linear_cosine_decay"

    def __init__(
        self,
        learning_rate: float,
        decay_steps: int,
        initial_variance: float = 1.0,
        variance_decay: float = 0.55,
        num_periods: float = 0.5,
        alpha: float = 0.0,
        beta: float = 0.001,
        seed: int = 0,
    ) -> None:
        self.learning_rate = check_float("learning_rate", learning_rate)
        self.decay_steps = check_int("decay_steps", decay_steps)
        self.initial_variance = check_float("initial_variance", initial_variance)
        self.variance_decay = check_float("variance_decay", variance_decay)
        self.num_periods = check_float("num_periods", num_periods)
        self.alpha = check_float("alpha", alpha)
        self.beta = check_float("beta", beta)
        self.seed = check_int("seed", seed, minimum=0, maximum=2**63 - 1)

    def noise_std(self, t: np.ndarray, xp: Ops) -> np.ndarray:
        """Standard deviation of ``eps_t``: ``sqrt(initial_variance / (1 + t')**variance_decay)``.

        ``t' = min(t, decay_steps)``.
        """
        capped = xp.minimum(t, self.decay_steps)
        return xp.sqrt(self.initial_variance / xp.power(1.0 + capped, self.variance_decay))

    def _value(self, t, xp):
        _, linear, cosine = _linear_cosine_parts(t, self.decay_steps, self.num_periods, xp)
        noise = self.noise_std(t, xp) * standard_normal(self.seed, t, xp)
        return self.learning_rate * xp.maximum(
            (self.alpha + linear + noise) * cosine + self.beta, 0.0
        )

    def bounds(self) -> tuple[float, float]:
        top = 1 + self.alpha + self.beta + MAX_ABS_NORMAL * math.sqrt(self.initial_variance)
        # the largest value by the formula's own arithmetic: linear = cosine = 1 and the largest
        # draw, whose logarithm (numpy's log1p) can differ from MAX_ABS_NORMAL's by an ulp
        largest_u1 = np.array([(2.0**32 - 1.0) * 2.0**-32])
        largest_normal = float(np.sqrt(-2.0 * np.log1p(-largest_u1))[0])
        noise = math.sqrt(self.initial_variance) * largest_normal  # (the largest noise_std)
        reached = (self.alpha + 1.0 + noise) * 1.0 + self.beta
        return (0.0, self.learning_rate * max(top, reached))


cosine_annealing = CosineAnnealing
cosine_annealing_warm_restarts = CosineAnnealingWarmRestarts
cosine_decay = CosineDecay
cosine_decay_restarts = CosineDecayRestarts
linear_cosine_decay = LinearCosineDecay
noisy_linear_cosine_decay = NoisyLinearCosineDecay
