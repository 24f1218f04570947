"""Warmup around any schedule: constant, linear (gradual), exponential, the untuned warmup of
Ma & Yarats, and the RAdam warmup of pytorch_warmup.

Every warmup multiplies the wrapped schedule by a ramp ``r(t)`` that reaches 1 at
``t = warmup_steps`` and stays 1 afterwards::

    s(t) = r(t) * schedule(tau(t))

The wrapped schedule's clock ``tau`` is chosen with ``clock``, and the choice is explicit because
libraries disagree:

* ``clock="after_warmup"`` (default): ``tau(t) = max(t - warmup_steps, 0)``. The schedule starts
  after the warmup (its decay steps do *not* include the warmup steps, as timm's
  ``warmup_prefix=True`` or optax's ``join_schedules``); during warmup the ramp scales the
  schedule's first value ``schedule(0)``.
* ``clock="from_start"``: ``tau(t) = t``. The schedule runs underneath the warmup (its decay steps
  *include* the warmup steps); the ramp scales ``schedule(t)`` (as in Ma & Yarats).

Both are continuous at ``t = warmup_steps`` whenever the ramp is.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from schedulers.base import (
    ARRAY,
    Ops,
    Schedule,
    check_choice,
    check_float,
    check_int,
    check_schedule,
    product_bounds,
    register,
)

CLOCKS = ("after_warmup", "from_start")


class _Warmup(Schedule):
    """``r(t) * schedule(tau(t))``; subclasses define ``_ramp`` for ``0 <= t <= warmup_steps``."""

    lowest_ramp: float

    def _init_warmup(self, schedule: Schedule, warmup_steps: int, clock: str) -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.warmup_steps = check_int("warmup_steps", warmup_steps)
        self.clock = check_choice("clock", clock, CLOCKS)

    def _ramp(self, t, xp: Ops):  # pragma: no cover - abstract
        raise NotImplementedError

    def ramp(self, t: np.ndarray, xp: Ops) -> np.ndarray:
        """The multiplier ``r(t)``: the warmup formula before ``warmup_steps``, 1 from there on."""
        k = self.warmup_steps
        return xp.where(t < k, self._ramp(xp.minimum(t, k), xp), 1.0)

    def _clock(self, t, xp: Ops):
        return xp.maximum(t - self.warmup_steps, 0) if self.clock == "after_warmup" else t

    def _value(self, t, xp):
        return self.ramp(t, xp) * self.schedule._value(self._clock(t, xp), xp)

    def _child_steps(self, t):
        local = max(t - self.warmup_steps, 0.0) if self.clock == "after_warmup" else t
        return [(self.schedule, local)]

    def bounds(self) -> tuple[float, float]:
        """The ramp's range ``[lowest_ramp, 1]`` times the schedule's: every product of the
        ends (an enclosure also where the schedule can be negative or its bounds unknown)."""
        return product_bounds((self.lowest_ramp, 1.0), self.schedule.bounds())


@register
class ConstantWarmup(_Warmup):
    """``r(t) = factor`` for ``t < warmup_steps``, then 1: a small fixed value, then the schedule.

    Origin: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (ResNet-110 on
    CIFAR-10 trains at 0.01, a tenth of the base rate, for the first iterations). With
    ``schedule=constant(lr)`` this is PyTorch's ``ConstantLR(factor, total_iters=warmup_steps)``.

    Args:
        schedule: the wrapped schedule (a :class:`Schedule` or its dict).
        warmup_steps: steps at the reduced value (int >= 1).
        factor: multiplier during warmup, in [0, 1].
        clock: ``"after_warmup"`` or ``"from_start"`` (module docstring).

    >>> s = constant_warmup(step_lr(1.0, step_size=2, gamma=0.5), warmup_steps=2, factor=0.1)
    >>> [s(t) for t in range(5)]  # 0.1 * s(0) twice, then step_lr from its own step 0
    [0.1, 0.1, 1.0, 1.0, 0.5]
    """

    name = "constant_warmup"

    def __init__(
        self,
        schedule: Schedule,
        warmup_steps: int,
        factor: float = 0.1,
        clock: str = "after_warmup",
    ) -> None:
        self._init_warmup(schedule, warmup_steps, clock)
        self.factor = check_float("factor", factor, 0.0, 1.0)
        self.lowest_ramp = self.factor

    def _ramp(self, t, xp):
        return self.factor + 0.0 * t


@register
class LinearWarmup(_Warmup):
    """``r(t) = start_factor + (1 - start_factor) * t / warmup_steps`` for ``t < warmup_steps``.

    Origin: Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", 2017
    (gradual warmup). ``s(0) = start_factor * schedule(0)``; with the default ``start_factor=0``
    the first update has a zero step, as in HuggingFace's linear warmup:
    ``linear_warmup(cosine_decay(lr, T - W), W)`` is transformers'
    ``get_cosine_schedule_with_warmup(optimizer, W, T)`` bit for bit up to ``T`` (transformers
    5.25, 60 random configurations), and ``linear_warmup(constant(lr), W)`` its
    ``get_constant_schedule_with_warmup`` at every step. After ``T`` transformers' cosine rises
    again; this one stays at ``alpha * lr``.

    Args:
        schedule: the wrapped schedule.
        warmup_steps: length of the ramp (int >= 1).
        start_factor: ramp at ``t = 0``, in [0, 1].
        clock: ``"after_warmup"`` or ``"from_start"``.

    >>> s = linear_warmup(cosine_decay(1.0, decay_steps=4), warmup_steps=2)
    >>> [round(s(t), 6) for t in range(7)]  # the cosine starts at t = 2, its mean at t = 4
    [0.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 0.0]
    >>> s = linear_warmup(cosine_decay(1.0, decay_steps=4), warmup_steps=2, clock="from_start")
    >>> [round(s(t), 6) for t in range(5)]  # the ramp times the cosine underneath
    [0.0, 0.426777, 0.5, 0.146447, 0.0]
    """

    name = "linear_warmup"

    def __init__(
        self,
        schedule: Schedule,
        warmup_steps: int,
        start_factor: float = 0.0,
        clock: str = "after_warmup",
    ) -> None:
        self._init_warmup(schedule, warmup_steps, clock)
        self.start_factor = check_float("start_factor", start_factor, 0.0, 1.0)
        self.lowest_ramp = self.start_factor

    def _ramp(self, t, xp):
        return self.start_factor + (1.0 - self.start_factor) * t / self.warmup_steps


@register
class ExponentialWarmup(_Warmup):
    """``r(t) = start_factor ** (1 - t / warmup_steps)`` for ``t < warmup_steps``.

    A geometric ramp: the value is multiplied by the same factor
    ``start_factor ** (-1 / warmup_steps)`` at every warmup step, from
    ``start_factor * schedule(0)`` at ``t = 0`` to the schedule at ``t = warmup_steps``
    (the exponential warmup of LR range tests and of e.g. PaLM-style setups).

    Args:
        schedule: the wrapped schedule.
        warmup_steps: length of the ramp (int >= 1).
        start_factor: ramp at ``t = 0``, in (0, 1].
        clock: ``"after_warmup"`` or ``"from_start"``.

    >>> s = exponential_warmup(constant(1.0), warmup_steps=2, start_factor=0.01)
    >>> [round(s(t), 6) for t in range(4)]  # 0.01 ** (1 - t / 2), then the schedule
    [0.01, 0.1, 1.0, 1.0]
    """

    name = "exponential_warmup"

    def __init__(
        self,
        schedule: Schedule,
        warmup_steps: int,
        start_factor: float = 0.01,
        clock: str = "after_warmup",
    ) -> None:
        self._init_warmup(schedule, warmup_steps, clock)
        self.start_factor = check_float("start_factor", start_factor, 0.0, 1.0, low_open=True)
        self.lowest_ramp = self.start_factor

    def _ramp(self, t, xp):
        return xp.power(self.start_factor, 1.0 - t / self.warmup_steps)


@register
class UntunedWarmup(_Warmup):
    """The untuned warmup of Ma & Yarats for Adam-like optimizers, set by ``beta2`` alone.

    Origin: Jerry Ma & Denis Yarats, "On the Adequacy of Untuned Warmup for Adaptive
    Optimization", AAAI 2021 (arXiv:1910.04209). Their step index starts at 1, ours at 0, so
    the ramp is evaluated at ``t + 1``:

    * ``form="linear"``: ``r(t) = min(1, (1 - beta2) / 2 * (t + 1))``, i.e. linear over
      ``2 / (1 - beta2)`` steps (2000 for ``beta2 = 0.999``);
    * ``form="exponential"``: ``r(t) = 1 - exp(-(1 - beta2) * (t + 1))`` (never exactly 1).

    As in the paper the ramp multiplies the schedule underneath (``clock="from_start"``).

    pytorch_warmup 0.2 (``UntunedLinearWarmup``, ``UntunedExponentialWarmup``) differs: it
    truncates each period to an integer, and float64 rounds ``1 - beta2`` below its decimal
    value. Its linear period is ``int(2 / (1 - beta2))``, and ``2 / (1 - 0.999)`` is
    ``1999.9999999999982``, so its linear ramp is ``(t + 1) / 1999`` where the paper's is over
    2000 steps (up to 5e-4 apart for ``beta2 = 0.999``, 5e-3 for 0.99). Its exponential period
    is ``int(1 / (1 - beta2))``, so its exponential ramp is ``1 - exp(-(t + 1) / 999)`` where the
    paper's time constant is 1000 (up to 3.7e-4 apart for 0.999, 3.7e-3 for 0.99). Here the
    paper's rates are kept.

    Args:
        schedule: the wrapped schedule.
        beta2: the optimizer's second-moment decay, in (0, 1).
        form: ``"linear"`` or ``"exponential"``.

    >>> s = untuned_warmup(constant(1.0), beta2=0.999)  # linear over 2 / (1 - 0.999) = 2000 steps
    >>> [round(s(t), 6) for t in (0, 999, 1999, 5000)]  # min(1, (1 - beta2) / 2 * (t + 1))
    [0.0005, 0.5, 1.0, 1.0]
    >>> round(untuned_warmup(constant(1.0), beta2=0.999, form="exponential")(999), 6)  # 1 - 1/e
    0.632121
    """

    name = "untuned_warmup"
    clock = "from_start"

    def __init__(self, schedule: Schedule, beta2: float = 0.999, form: str = "linear") -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.beta2 = check_float("beta2", beta2, 0.0, 1.0, low_open=True, high_open=True)
        self.form = check_choice("form", form, ("linear", "exponential"))
        rate = 1.0 - self.beta2
        self.warmup_steps = max(1, math.ceil(2.0 / rate) - 1)
        # the ramp rises with t: its first value, by its own arithmetic (1 - exp(-rate), which
        # can be an ulp below -expm1(-rate))
        self.lowest_ramp = float(self.ramp(np.zeros(1), ARRAY)[0])

    def ramp(self, t: np.ndarray, xp: Ops) -> np.ndarray:
        rate = 1.0 - self.beta2
        if self.form == "linear":
            return xp.minimum(1.0, rate / 2 * (t + 1))
        return 1.0 - xp.exp(-rate * (t + 1))


@register
class RAdamWarmup(_Warmup):
    """The warmup factor that RAdam's variance rectification implies, from pytorch_warmup.

    ``r(t) = sqrt((rho - 4) (rho - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho))`` at
    ``rho = rho_{t + delta}``, where ``rho_inf = 2 / (1 - beta2) - 1``,
    ``rho_k = rho_inf - 2 k beta2**k / (1 - beta2**k)`` and the offset ``delta`` is the smallest
    ``k >= 1`` with ``rho_k > 4`` (Liu et al., "On the Variance of the Adaptive Learning Rate and
    Beyond", ICLR 2020; Ma & Yarats 2021, section 3). The ramp rises towards 1 and never reaches
    it exactly. As in pytorch_warmup it multiplies the schedule underneath
    (``clock="from_start"``).

    Origin: pytorch_warmup's ``RAdamWarmup`` (``rho_inf_fn``, ``rho_fn``, ``get_offset``,
    ``warmup_factor``): its first dampened step is our ``t = 0``.

    Args:
        schedule: the wrapped schedule.
        beta2: the optimizer's second-moment decay, in (0.6, 1) (pytorch_warmup's range).

    >>> s = radam_warmup(constant(1.0), beta2=0.999)
    >>> round(s(0), 6), round(s(100), 4), round(s(10_000), 4)
    (0.017312, 0.2209, 0.9998)
    """

    name = "radam_warmup"
    clock = "from_start"

    def __init__(self, schedule: Schedule, beta2: float = 0.999) -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.beta2 = check_float("beta2", beta2, 0.6, 1.0, low_open=True, high_open=True)
        self._rho_inf = 2.0 / (1.0 - self.beta2) - 1.0
        self._offset = next(k for k in itertools.count(1) if self._rho(float(k)) > 4)
        self.lowest_ramp = float(self.ramp(np.zeros(1), ARRAY)[0])

    def _rho(self, k):
        b2k = self.beta2**k
        return self._rho_inf - 2 * k * b2k / (1 - b2k)

    def ramp(self, t: np.ndarray, xp: Ops) -> np.ndarray:
        k = t + self._offset
        b2k = xp.power(self.beta2, k)
        rho = self._rho_inf - 2.0 * k * b2k / (1.0 - b2k)
        rho_inf = self._rho_inf
        return xp.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))


constant_warmup = ConstantWarmup
linear_warmup = LinearWarmup
exponential_warmup = ExponentialWarmup
untuned_warmup = UntunedWarmup
radam_warmup = RAdamWarmup
