"""Piecewise-constant schedules: constant, TF's piecewise_constant, PyTorch's StepLR and
MultiStepLR, and MXNet / d2l's FactorScheduler."""

from __future__ import annotations

from collections.abc import Sequence

from schedulers.base import Schedule, check_float, check_increasing, check_int, register


@register
class Constant(Schedule):
    """``value`` at every step.

    Args:
        value: the constant (>= 0).

    >>> s = constant(0.1)
    >>> s(0), s(10**6), s.to_dict()
    (0.1, 0.1, {'name': 'constant', 'value': 0.1})
    """

    name = "constant"

    def __init__(self, value: float) -> None:
        self.value = check_float("value", value)

    def _value(self, t, xp):
        return self.value + 0.0 * t

    def bounds(self) -> tuple[float, float]:
        return (self.value, self.value)


@register
class PiecewiseConstant(Schedule):
    """``values[i]`` where ``i`` is the number of boundaries strictly below ``t``.

    Origin: ``tf.compat.v1.train.piecewise_constant``: ``values[0]`` for ``t <= boundaries[0]``,
    ``values[1]`` for ``boundaries[0] < t <= boundaries[1]``, ..., ``values[-1]`` for
    ``t > boundaries[-1]`` (kept forever). Note TF's ``<=``: the value at a boundary step is
    still the one before it.

    Args:
        boundaries: strictly increasing step numbers (ints >= 0).
        values: ``len(boundaries) + 1`` values (>= 0).

    >>> s = piecewise_constant([2, 4], [1.0, 0.5, 0.1])
    >>> [s(t) for t in range(6)]  # TF's <=: a boundary step keeps the value before it
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.1]
    """

    name = "piecewise_constant"

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]) -> None:
        self.boundaries = check_increasing("boundaries", boundaries)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"values must be a list of numbers, got values={values!r}")
        if len(values) != len(self.boundaries) + 1:
            raise ValueError(
                f"values must have len(boundaries) + 1 = {len(self.boundaries) + 1} entries, "
                f"got {len(values)}: values={list(values)!r}"
            )
        self.values = [check_float(f"values[{i}]", v) for i, v in enumerate(values)]

    def _value(self, t, xp):
        return xp.take(self.values, xp.count_below(self.boundaries, t))

    def bounds(self) -> tuple[float, float]:
        return (min(self.values), max(self.values))


@register
class StepLR(Schedule):
    """``base_lr * gamma ** floor(t / step_size)``.

    Origin: PyTorch ``StepLR`` (closed form). Decays forever, one jump every ``step_size``.

    Args:
        base_lr: value for ``t < step_size`` (>= 0).
        step_size: period of the decay (int >= 1).
        gamma: factor per period, in [0, 1].

    >>> s = step_lr(1.0, step_size=2, gamma=0.5)
    >>> [s(t) for t in range(6)]  # 0.5 ** floor(t / 2)
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """

    name = "step_lr"

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.base_lr = check_float("base_lr", base_lr)
        self.step_size = check_int("step_size", step_size)
        self.gamma = check_float("gamma", gamma, 0.0, 1.0)

    def _value(self, t, xp):
        return self.base_lr * xp.power(self.gamma, xp.floor(t / self.step_size))

    def bounds(self) -> tuple[float, float]:
        return (0.0, self.base_lr)


@register
class MultiStep(Schedule):
    """``base_lr * gamma ** (number of milestones <= t)``.

    Origin: PyTorch ``MultiStepLR`` (closed form). A milestone listed twice decays twice, as in
    torch. After the last milestone the value stays at ``base_lr * gamma ** len(milestones)``.
    Milestones may be given in any order, as torch takes them (a ``Counter``: ``[30, 10]`` is
    ``[10, 30]``); they are stored sorted, so ``to_dict()`` writes them in increasing order.

    Args:
        base_lr: value before the first milestone (>= 0).
        milestones: steps (ints >= 0), in any order; a step listed ``k`` times decays ``k`` times.
        gamma: factor per milestone, in [0, 1].

    >>> s = multistep(1.0, milestones=[4, 2], gamma=0.5)
    >>> [s(t) for t in range(6)]  # each milestone decays from its own step on
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    >>> s.milestones
    [2, 4]
    """

    name = "multistep"

    def __init__(self, base_lr: float, milestones: Sequence[int], gamma: float = 0.1) -> None:
        self.base_lr = check_float("base_lr", base_lr)
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
            raise TypeError(f"milestones must be a list of integers, got milestones={milestones!r}")
        self.milestones = sorted(
            check_int(f"milestones[{i}]", m, 0) for i, m in enumerate(milestones)
        )
        self.gamma = check_float("gamma", gamma, 0.0, 1.0)

    def _value(self, t, xp):
        return self.base_lr * xp.power(self.gamma, xp.count_at_or_below(self.milestones, t))

    def bounds(self) -> tuple[float, float]:
        return (self.base_lr * self.gamma ** len(self.milestones), self.base_lr)


@register
class Factor(Schedule):
    """``max(stop_factor_lr, base_lr * factor ** t)``: multiply every step, floored.

    Origin: d2l.ai's ``FactorScheduler`` (after MXNet's ``lr_scheduler.FactorScheduler`` with
    ``step=1``), written as a function of the step: ``s(0) = max(stop_factor_lr, base_lr)`` is
    the first update's value and every update multiplies by ``factor`` until the floor
    ``stop_factor_lr`` is reached, where the value stays.

    Args:
        base_lr: value at ``t = 0`` (>= 0).
        factor: multiplier per step, in [0, 1].
        stop_factor_lr: floor (>= 0).

    >>> s = factor(1.0, factor=0.5, stop_factor_lr=0.1)
    >>> [s(t) for t in range(6)]  # halved every step down to the floor
    [1.0, 0.5, 0.25, 0.125, 0.1, 0.1]
    """

    name = "factor"

    def __init__(self, base_lr: float, factor: float = 1.0, stop_factor_lr: float = 1e-7) -> None:
        self.base_lr = check_float("base_lr", base_lr)
        self.factor = check_float("factor", factor, 0.0, 1.0)
        self.stop_factor_lr = check_float("stop_factor_lr", stop_factor_lr)

    def _value(self, t, xp):
        return xp.maximum(self.stop_factor_lr, self.base_lr * xp.power(self.factor, t))

    def bounds(self) -> tuple[float, float]:
        return (self.stop_factor_lr, max(self.stop_factor_lr, self.base_lr))


constant = Constant
piecewise_constant = PiecewiseConstant
step_lr = StepLR
multistep = MultiStep
factor = Factor
