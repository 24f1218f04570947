"""Composition: schedules in sequence (join), products, scalar multiples and clamping.

Compositions are schedules themselves: they serialise as nested dicts and evaluate with the
same scalar / array code as their parts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from schedulers.base import (
    Ops,
    Schedule,
    check_float,
    check_increasing,
    check_schedule,
    register,
)


def _check_schedules(name: str, schedules: Sequence[Schedule], minimum: int = 1) -> list[Schedule]:
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence):
        raise TypeError(f"{name} must be a list of schedules, got {name}={schedules!r}")
    if len(schedules) < minimum:
        raise ValueError(f"{name} needs at least {minimum} schedule(s), got {len(schedules)}")
    return [check_schedule(f"{name}[{i}]", s) for i, s in enumerate(schedules)]


@register
class Join(Schedule):
    """``schedules[i](t - boundaries[i - 1])`` where ``i`` is the number of boundaries ``<= t``.

    Origin: optax ``join_schedules``: each piece starts its own clock at its boundary (the first
    at 0), so ``join([warm, cosine], [100])`` runs ``cosine`` from its step 0 at ``t = 100``. The
    last piece runs forever.

    Args:
        schedules: ``len(boundaries) + 1`` schedules (or their dicts).
        boundaries: strictly increasing steps (ints >= 1) where the next piece starts.
    """

    name = "join"

    def __init__(self, schedules: Sequence[Schedule], boundaries: Sequence[int]) -> None:
        self.schedules = _check_schedules("schedules", schedules)
        self.boundaries = check_increasing("boundaries", boundaries, minimum=1)
        if len(self.schedules) != len(self.boundaries) + 1:
            raise ValueError(
                f"join needs len(boundaries) + 1 = {len(self.boundaries) + 1} schedules, "
                f"got {len(self.schedules)}"
            )
        self._pieces: dict[str, list] = {}

    def _pieces_for(self, xp: Ops) -> list:
        pieces = self._pieces.get(xp.name)
        if pieces is None:
            offsets = [0, *self.boundaries]

            def piece(schedule: Schedule, offset: int):
                return lambda t: schedule._value(t - offset, xp)

            pieces = [piece(s, o) for s, o in zip(self.schedules, offsets)]
            self._pieces[xp.name] = pieces
        return pieces

    def _value(self, t, xp):
        index = xp.count_at_or_below(self.boundaries, t)
        return xp.branch(index, t, self._pieces_for(xp))

    def bounds(self):
        lows, highs = zip(*(s.bounds() for s in self.schedules))
        return (min(lows), max(highs))


@register
class Product(Schedule):
    """``schedules[0](t) * schedules[1](t) * ...``: e.g. a decay times a cyclic factor.

    Args:
        schedules: at least one schedule.
    """

    name = "product"

    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self.schedules = _check_schedules("schedules", schedules)

    def _value(self, t, xp):
        value = self.schedules[0]._value(t, xp)
        for schedule in self.schedules[1:]:
            value = value * schedule._value(t, xp)
        return value

    def bounds(self):
        low, high = 1.0, 1.0
        for s in self.schedules:
            s_low, s_high = s.bounds()
            low, high = low * s_low, high * s_high
        return (low, high)


@register
class Scale(Schedule):
    """``factor * schedule(t)``.

    Args:
        schedule: the scaled schedule.
        factor: the multiplier (>= 0).
    """

    name = "scale"

    def __init__(self, schedule: Schedule, factor: float) -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.factor = check_float("factor", factor)

    def _value(self, t, xp):
        return self.factor * self.schedule._value(t, xp)

    def bounds(self):
        low, high = self.schedule.bounds()
        return (self.factor * low, self.factor * high)


@register
class Clamp(Schedule):
    """``min(max(schedule(t), floor), ceiling)``.

    Args:
        schedule: the clamped schedule.
        floor: lowest value (>= 0).
        ceiling: highest value (>= floor), or ``None`` for no ceiling.
    """

    name = "clamp"

    def __init__(
        self, schedule: Schedule, floor: float = 0.0, ceiling: float | None = None
    ) -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.floor = check_float("floor", floor)
        self.ceiling = None if ceiling is None else check_float("ceiling", ceiling, self.floor)
        self._ceiling = math.inf if ceiling is None else self.ceiling

    def _value(self, t, xp):
        return xp.minimum(xp.maximum(self.schedule._value(t, xp), self.floor), self._ceiling)

    def bounds(self):
        def clip(v: float) -> float:
            return min(max(v, self.floor), self._ceiling)

        low, high = self.schedule.bounds()
        return (clip(low), clip(high))


join = Join
product = Product
scale = Scale
clamp = Clamp
