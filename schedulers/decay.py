"""Smooth decays: TensorFlow's exponential / natural-exponential / inverse-time / polynomial
decays, d2l's power (square-root) decay, PyTorch's LinearLR and REX.

TensorFlow-family schedules follow ``tf.compat.v1.train.*`` (names and semantics): with
``staircase=True`` the exponent ``p = t / decay_steps`` is replaced by ``floor(t / decay_steps)``.
"""

from __future__ import annotations

from schedulers.base import Ops, Schedule, check_bool, check_float, check_int, hull, register


def _decay_exponent(t, decay_steps: int, staircase: bool, xp: Ops):
    """``p = t / decay_steps``, floored when ``staircase`` (TF's ``global_step / decay_steps``)."""
    p = t / decay_steps
    return xp.floor(p) if staircase else p


class _TFDecay(Schedule):
    """The shared arguments of TF's exponential, natural-exponential and inverse-time decays."""

    def __init__(
        self, learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False
    ) -> None:
        self.learning_rate = check_float("learning_rate", learning_rate)
        self.decay_steps = check_int("decay_steps", decay_steps)
        self.decay_rate = self._check_decay_rate(decay_rate)
        self.staircase = check_bool("staircase", staircase)

    def _check_decay_rate(self, decay_rate: float) -> float:
        return check_float("decay_rate", decay_rate)

    def _exponent(self, t, xp: Ops):
        return _decay_exponent(t, self.decay_steps, self.staircase, xp)

    def bounds(self) -> tuple[float, float]:
        return (0.0, self.learning_rate)


@register
class ExponentialDecay(_TFDecay):
    """``learning_rate * decay_rate ** p`` with ``p = t / decay_steps`` (floored if staircase).

    Origin: ``tf.compat.v1.train.exponential_decay``. ``s(0) = learning_rate``; the value keeps
    decaying forever and reaches 0 only in the limit (it underflows to 0.0 for huge ``t``).
    PyTorch's ``ExponentialLR(gamma)`` is
    ``exponential_decay(lr, decay_steps=1, decay_rate=gamma)``.

    Args:
        learning_rate: value at ``t = 0`` (>= 0).
        decay_steps: steps over which the value is multiplied by ``decay_rate`` (int >= 1).
        decay_rate: multiplicative decay per ``decay_steps``, in (0, 1] (growth is refused: it
            overflows; use a warmup for increasing phases).
        staircase: decay in discrete jumps every ``decay_steps`` steps.

    >>> s = exponential_decay(1.0, decay_steps=2, decay_rate=0.25)
    >>> [s(t) for t in range(5)]  # 0.25 ** (t / 2)
    [1.0, 0.5, 0.25, 0.125, 0.0625]
    >>> [exponential_decay(1.0, 2, 0.25, staircase=True)(t) for t in range(5)]
    [1.0, 1.0, 0.25, 0.25, 0.0625]
    """

    name = "exponential_decay"

    def _check_decay_rate(self, decay_rate: float) -> float:
        return check_float("decay_rate", decay_rate, 0.0, 1.0, low_open=True)

    def _value(self, t, xp):
        return self.learning_rate * xp.power(self.decay_rate, self._exponent(t, xp))


@register
class NaturalExpDecay(_TFDecay):
    """``learning_rate * exp(-decay_rate * p)`` with ``p = t / decay_steps`` (floored if staircase).

    Origin: ``tf.compat.v1.train.natural_exp_decay``. ``s(0) = learning_rate``; decays forever
    towards 0. TensorFlow (2.21) evaluates it as an exponential decay at the rate
    ``exp(-decay_rate)``, ``learning_rate * exp(-decay_rate) ** p``; here the exponent is
    taken whole, which is closer to the exact value: beside TF in float64 (hyperparameters
    given as float64 tensors; TF rounds Python floats to float32 first) over 24 random
    configurations of 3000 steps, the two differed by up to 1.8e-13 relative, and against a
    60-digit reference ours erred by at most 5.7e-14, TF's by 1.7e-13.

    Args:
        learning_rate: value at ``t = 0`` (>= 0).
        decay_steps: the unit of ``p`` (int >= 1).
        decay_rate: rate in the exponent (>= 0).
        staircase: use ``floor(t / decay_steps)``.

    >>> s = natural_exp_decay(1.0, decay_steps=2, decay_rate=1.0)
    >>> [round(s(t), 6) for t in range(3)]  # exp(-t / 2): 1, exp(-0.5), exp(-1)
    [1.0, 0.606531, 0.367879]
    >>> natural_exp_decay(1.0, 2, 1.0, staircase=True)(1)  # floor(1 / 2) = 0
    1.0
    """

    name = "natural_exp_decay"

    def _value(self, t, xp):
        return self.learning_rate * xp.exp(-self.decay_rate * self._exponent(t, xp))


@register
class InverseTimeDecay(_TFDecay):
    """``learning_rate / (1 + decay_rate * p)`` with ``p = t / decay_steps`` (floored if staircase).

    Origin: ``tf.compat.v1.train.inverse_time_decay``. ``s(0) = learning_rate``; decays like
    ``1/t`` forever.

    Args:
        learning_rate: value at ``t = 0`` (>= 0).
        decay_steps: the unit of ``p`` (int >= 1).
        decay_rate: coefficient of ``p`` (>= 0).
        staircase: use ``floor(t / decay_steps)``.

    >>> s = inverse_time_decay(1.0, decay_steps=2, decay_rate=1.0)
    >>> [round(s(t), 6) for t in (0, 1, 2, 6)]  # 1 / (1 + t / 2)
    [1.0, 0.666667, 0.5, 0.25]
    >>> inverse_time_decay(1.0, 2, 1.0, staircase=True)(1)  # floor(1 / 2) = 0
    1.0
    """

    name = "inverse_time_decay"

    def _value(self, t, xp):
        return self.learning_rate / (1.0 + self.decay_rate * self._exponent(t, xp))

    def bounds(self) -> tuple[float, float]:
        return (0.0, self.learning_rate)


@register
class PolynomialDecay(Schedule):
    """``(learning_rate - end_learning_rate) * (1 - t / D) ** power + end_learning_rate``.

    Origin: ``tf.compat.v1.train.polynomial_decay``.

    * ``cycle=False``: ``t`` is capped at ``decay_steps`` and ``D = decay_steps``: the value
      reaches ``end_learning_rate`` at ``t = decay_steps`` and stays there.
    * ``cycle=True``: ``D = decay_steps * max(ceil(t / decay_steps), 1)`` (``D = decay_steps``
      at ``t = 0``), the first multiple of ``decay_steps`` that is ``>= t``: the value reaches
      ``end_learning_rate`` at every multiple of ``decay_steps`` and then jumps back up, each
      cycle decaying more slowly.

    PyTorch's ``PolynomialLR(total_iters, power)`` is
    ``polynomial_decay(lr, total_iters, end_learning_rate=0.0, power=power)``.

    Args:
        learning_rate: value at ``t = 0`` (>= 0).
        decay_steps: length of the decay (int >= 1).
        end_learning_rate: final value (>= 0; may exceed ``learning_rate`` for an increase).
        power: exponent (> 0); 1 is linear.
        cycle: restart as described above.

    >>> s = polynomial_decay(1.0, decay_steps=4, end_learning_rate=0.0, power=2.0)
    >>> [s(t) for t in range(6)]  # (1 - t / 4) ** 2, then held
    [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    >>> polynomial_decay(1.0, 4, 0.0, power=2.0, cycle=True)(6)  # D = 8: (1 - 6 / 8) ** 2
    0.0625
    """

    name = "polynomial_decay"

    def __init__(
        self,
        learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
    ) -> None:
        self.learning_rate = check_float("learning_rate", learning_rate)
        self.decay_steps = check_int("decay_steps", decay_steps)
        self.end_learning_rate = check_float("end_learning_rate", end_learning_rate)
        self.power = check_float("power", power, low_open=True)
        self.cycle = check_bool("cycle", cycle)

    def _value(self, t, xp):
        if self.cycle:
            # (at least one period: t = 0, and a subnormal t whose t / decay_steps is 0)
            periods = xp.maximum(xp.ceil(t / self.decay_steps), 1.0)
            horizon = self.decay_steps * periods
        else:
            t = xp.minimum(t, self.decay_steps)
            horizon = self.decay_steps
        remaining = xp.maximum(1.0 - t / horizon, 0.0)
        lr, end = self.learning_rate, self.end_learning_rate
        return (lr - end) * xp.power(remaining, self.power) + end

    def bounds(self) -> tuple[float, float]:
        # at t = 0 the value is (lr - end) * 1 + end, which can round an ulp past lr
        lr, end = self.learning_rate, self.end_learning_rate
        return hull(lr, end, (lr - end) * 1.0 + end)


@register
class PowerDecay(Schedule):
    """``base_lr * (t + 1) ** -power``.

    Origin: d2l.ai, "Learning Rate Scheduling" (the square-root schedule is ``power = 0.5``);
    also the classical Robbins–Monro ``η_t ∝ t^{-power}`` with ``t + 1`` so that
    ``s(0) = base_lr``. Decays forever towards 0.

    Args:
        base_lr: value at ``t = 0`` (>= 0).
        power: exponent (> 0).

    >>> s = power_decay(1.0, power=0.5)
    >>> [round(s(t), 6) for t in (0, 3, 15, 99)]  # 1 / sqrt(t + 1)
    [1.0, 0.5, 0.25, 0.1]
    """

    name = "power_decay"

    def __init__(self, base_lr: float, power: float = 0.5) -> None:
        self.base_lr = check_float("base_lr", base_lr)
        self.power = check_float("power", power, low_open=True)

    def _value(self, t, xp):
        return self.base_lr * xp.power(t + 1.0, -self.power)

    def bounds(self) -> tuple[float, float]:
        return (0.0, self.base_lr)


@register
class Linear(Schedule):
    """``base_lr * (start_factor + (end_factor - start_factor) * t' / total_iters)``.

    ``t' = min(t, total_iters)``.

    Origin: PyTorch ``LinearLR`` (its closed form). The factor moves linearly from
    ``start_factor`` at ``t = 0`` to ``end_factor`` at ``t = total_iters`` and stays there:
    from ``t = total_iters`` on the value is exactly ``base_lr * end_factor``. Before
    ``total_iters`` the bits are those of torch's closed form, rounded in its order; from there
    on that closed form can land an ulp off ``end_factor`` (``-3.5e-18`` for
    ``start_factor=0.026133372210336965, end_factor=0, total_iters=3007``), a negative learning
    rate, which is not taken.

    Args:
        base_lr: the value the factors multiply (>= 0).
        start_factor: factor at ``t = 0``, in [0, 1] (torch requires > 0; 0 is allowed here).
        end_factor: factor from ``t = total_iters`` on, in [0, 1].
        total_iters: length of the ramp (int >= 1).

    >>> s = linear(1.0, start_factor=0.25, end_factor=1.0, total_iters=3)
    >>> [s(t) for t in range(5)]  # 0.25 + 0.75 * t / 3, then end_factor
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    name = "linear"

    def __init__(
        self,
        base_lr: float,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
    ) -> None:
        self.base_lr = check_float("base_lr", base_lr)
        self.start_factor = check_float("start_factor", start_factor, 0.0, 1.0)
        self.end_factor = check_float("end_factor", end_factor, 0.0, 1.0)
        self.total_iters = check_int("total_iters", total_iters)

    def _value(self, t, xp):
        # torch's closed form, rounded in its order: (end - start) * t before the division;
        # from total_iters on exactly end_factor, where torch's closed form can round
        # start + (end - start) * T / T an ulp off it (below 0 for end_factor = 0)
        ramp = self.start_factor + (self.end_factor - self.start_factor) * t / self.total_iters
        return self.base_lr * xp.where(t < self.total_iters, ramp, self.end_factor)

    def bounds(self) -> tuple[float, float]:
        # the ramp rises (or falls) towards its value at t = total_iters by its own arithmetic,
        # which can round an ulp past end_factor
        start, end, total = self.start_factor, self.end_factor, self.total_iters
        low, high = hull(start, end, start + (end - start) * total / total)
        return (self.base_lr * low, self.base_lr * high)


@register
class Rex(Schedule):
    """REX: ``end + (lr - end) * (1 - z) / (1/2 + (1 - z) / 2)`` with ``z = min(t, T) / T``.

    ``lr = learning_rate``, ``end = end_learning_rate``, ``T = decay_steps``. The "reflected
    exponential" profile: it stays near ``lr`` longer than a linear decay and falls steeply at
    the end, reaching ``end_learning_rate`` at ``t = decay_steps`` and staying there.

    Origin: Chen, Wolfe & Kyrillidis, "REX: Revisiting Budgeted Training with an Improved
    Schedule", MLSys 2022 (arXiv:2107.04197), eq. (1) (with ``beta = 1/2``), written with the
    TF decays' names.

    Args:
        learning_rate: value at ``t = 0`` (>= 0).
        decay_steps: length of the decay (int >= 1).
        end_learning_rate: final value, in [0, learning_rate].

    >>> s = rex(1.0, decay_steps=4)
    >>> [round(s(t), 6) for t in range(6)]
    [1.0, 0.857143, 0.666667, 0.4, 0.0, 0.0]
    """

    name = "rex"

    def __init__(
        self, learning_rate: float, decay_steps: int, end_learning_rate: float = 0.0
    ) -> None:
        self.learning_rate = check_float("learning_rate", learning_rate)
        self.decay_steps = check_int("decay_steps", decay_steps)
        self.end_learning_rate = check_float(
            "end_learning_rate", end_learning_rate, 0.0, self.learning_rate
        )

    def _value(self, t, xp):
        remaining = 1.0 - xp.minimum(t, self.decay_steps) / self.decay_steps
        lr, end = self.learning_rate, self.end_learning_rate
        return end + (lr - end) * remaining / (0.5 + remaining / 2)

    def bounds(self) -> tuple[float, float]:
        # at t = 0 the value is end + (lr - end) * 1 / 1, which can round an ulp past lr
        lr, end = self.learning_rate, self.end_learning_rate
        return hull(end, lr, end + (lr - end))


exponential_decay = ExponentialDecay
natural_exp_decay = NaturalExpDecay
inverse_time_decay = InverseTimeDecay
polynomial_decay = PolynomialDecay
power_decay = PowerDecay
linear = Linear
rex = Rex
