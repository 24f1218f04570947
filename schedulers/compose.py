"""Composition: schedules in sequence (join), sums, products, scalar multiples, clamping, time
shifts, and schedules from a user's function.

Compositions are schedules themselves: they serialise as nested dicts and evaluate with the
same array code as their parts. Each says which step its parts see (:meth:`_child_steps`), so
the driver can feed a reduce-on-plateau nested anywhere at its own step.
"""

from __future__ import annotations

import bisect
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from schedulers.base import (
    MAX_STEP,
    Ops,
    Schedule,
    check_bool,
    check_float,
    check_increasing,
    check_int,
    check_schedule,
    register,
)


def _check_schedules(name: str, schedules: Sequence[Schedule], minimum: int = 1) -> list[Schedule]:
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence):
        raise TypeError(f"{name} must be a list of schedules, got {name}={schedules!r}")
    if len(schedules) < minimum:
        raise ValueError(f"{name} needs at least {minimum} schedule(s), got {len(schedules)}")
    return [check_schedule(f"{name}[{i}]", s) for i, s in enumerate(schedules)]


def _shifted_value(schedule: Schedule, offset: int, xp: Ops, t: Any) -> Any:
    """``schedule`` on its own clock, started at step ``offset`` (a :class:`Join` piece)."""
    return schedule._value(t - offset, xp)


@register
class Join(Schedule):
    """``schedules[i](t - boundaries[i - 1])`` where ``i`` is the number of boundaries ``<= t``.

    Origin: optax ``join_schedules``: each piece starts its own clock at its boundary (the first
    at 0), so ``join([warm, cosine], [100])`` runs ``cosine`` from its step 0 at ``t = 100``. The
    last piece runs forever.

    Args:
        schedules: ``len(boundaries) + 1`` schedules (or their dicts).
        boundaries: strictly increasing steps (ints >= 1) where the next piece starts.

    >>> s = join([constant(0.1), step_lr(1.0, step_size=2, gamma=0.5)], [3])
    >>> [s(t) for t in range(7)]  # step_lr runs from its own step 0 at t = 3
    [0.1, 0.1, 0.1, 1.0, 1.0, 0.5, 0.5]
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

    def _value(self, t, xp):
        # the pieces are built at each call, never kept: a join holds only its schedules, so
        # pickle, torch.save and deepcopy see (and copy) exactly what to_dict() describes
        offsets = [0, *self.boundaries]
        pieces = [partial(_shifted_value, s, o, xp) for s, o in zip(self.schedules, offsets)]
        return xp.branch(xp.count_at_or_below(self.boundaries, t), t, pieces)

    def _child_steps(self, t):
        index = bisect.bisect_right(self.boundaries, t)
        offset = self.boundaries[index - 1] if index else 0
        return [(self.schedules[index], t - offset)]

    def bounds(self) -> tuple[float, float]:
        lows, highs = zip(*(s.bounds() for s in self.schedules))
        return (min(lows), max(highs))


def _times(a: float, b: float) -> float:
    """``a * b`` with ``0 * inf = 0`` (bounds of products where one bound is unknown)."""
    return 0.0 if a == 0 or b == 0 else a * b


@register
class Sum(Schedule):
    """``schedules[0](t) + schedules[1](t) + ...``: e.g. a floor plus a decay, or two cycles.

    ``a + b`` and ``a + 0.01`` build one (a number is a :func:`constant`).

    Args:
        schedules: at least one schedule.

    >>> s = sum_of([constant(0.01), cosine_decay(0.1, 10)])
    >>> round(s(0), 6), round(s(10), 6)
    (0.11, 0.01)
    """

    name = "sum"

    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self.schedules = _check_schedules("schedules", schedules)

    def _value(self, t, xp):
        value = self.schedules[0]._value(t, xp)
        for schedule in self.schedules[1:]:
            value = value + schedule._value(t, xp)
        return value

    def bounds(self) -> tuple[float, float]:
        lows, highs = zip(*(s.bounds() for s in self.schedules))
        return (sum(lows), sum(highs))


@register
class Product(Schedule):
    """``schedules[0](t) * schedules[1](t) * ...``: e.g. a decay times a cyclic factor.

    Args:
        schedules: at least one schedule.

    >>> s = product([linear(1.0, 1.0, 0.0, total_iters=4), step_lr(1.0, step_size=2, gamma=0.5)])
    >>> [s(t) for t in range(5)]  # (1, 0.75, 0.5, 0.25, 0) times (1, 1, 0.5, 0.5, 0.25)
    [1.0, 0.75, 0.25, 0.125, 0.0]
    >>> linear(1.0, 1.0, 0.0, total_iters=4) * step_lr(1.0, step_size=2, gamma=0.5) == s
    True
    """

    name = "product"

    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self.schedules = _check_schedules("schedules", schedules)

    def _value(self, t, xp):
        value = self.schedules[0]._value(t, xp)
        for schedule in self.schedules[1:]:
            value = value * schedule._value(t, xp)
        return value

    def bounds(self) -> tuple[float, float]:
        """Interval multiplication: the lowest and highest of the four products of the ends (an
        enclosure also where a factor can be negative)."""
        low, high = 1.0, 1.0
        for s in self.schedules:
            ends = [_times(a, b) for a in (low, high) for b in s.bounds()]
            low, high = min(ends), max(ends)
        return (low, high)


@register
class Scale(Schedule):
    """``factor * schedule(t)``.

    Args:
        schedule: the scaled schedule.
        factor: the multiplier (>= 0).

    >>> s = scale(cosine_decay(1.0, decay_steps=4), 0.1)
    >>> [round(s(t), 6) for t in (0, 2, 4)]  # 0.1 times the peak, the mean, the floor
    [0.1, 0.05, 0.0]
    >>> 0.1 * cosine_decay(1.0, decay_steps=4) == s
    True
    """

    name = "scale"

    def __init__(self, schedule: Schedule, factor: float) -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.factor = check_float("factor", factor)

    def _value(self, t, xp):
        return self.factor * self.schedule._value(t, xp)

    def bounds(self) -> tuple[float, float]:
        low, high = self.schedule.bounds()
        return (_times(self.factor, low), _times(self.factor, high))


@register
class Clamp(Schedule):
    """``min(max(schedule(t), floor), ceiling)``.

    Args:
        schedule: the clamped schedule.
        floor: lowest value (>= 0).
        ceiling: highest value (>= floor), or ``None`` for no ceiling.

    >>> s = clamp(linear(1.0, 1.0, 0.0, total_iters=4), floor=0.1, ceiling=0.6)
    >>> [s(t) for t in range(6)]  # 1, 0.75, 0.5, 0.25, 0, 0 clipped to [0.1, 0.6]
    [0.6, 0.6, 0.5, 0.25, 0.1, 0.1]
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

    def bounds(self) -> tuple[float, float]:
        def clip(v: float) -> float:
            return min(max(v, self.floor), self._ceiling)

        low, high = self.schedule.bounds()
        return (clip(low), clip(high))


@register
class Shift(Schedule):
    """``schedule(max(t - steps, 0))``: the schedule started ``steps`` updates later.

    Before it starts (``t < steps``) the value is ``schedule(0)``. A negative ``steps`` starts it
    ``|steps|`` updates earlier: ``schedule(t + |steps|)``. In a :class:`Join`, whose pieces start
    their clocks at their boundaries, ``s.shift(-W)`` after a boundary at ``W`` runs ``s`` on the
    global clock: timm's ``warmup_prefix=False``,
    ``join([ramp, s.shift(-W)], [W])(t) = s(t)`` for ``t >= W``.

    Args:
        schedule: the shifted schedule.
        steps: the delay in updates (int; negative to advance).

    >>> s = linear(1.0, 1.0, 0.0, total_iters=4).shift(2)
    >>> [s(t) for t in range(7)]
    [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """

    name = "shift"

    def __init__(self, schedule: Schedule, steps: int) -> None:
        self.schedule = check_schedule("schedule", schedule)
        self.steps = check_int("steps", steps, minimum=-MAX_STEP)

    def _value(self, t, xp):
        return self.schedule._value(xp.maximum(t - self.steps, 0.0), xp)

    def _child_steps(self, t):
        return [(self.schedule, max(t - self.steps, 0.0))]

    def bounds(self) -> tuple[float, float]:
        return self.schedule.bounds()


def _import_path(function: Callable) -> str | None:
    """``"module:qualname"`` if importing it gives back ``function``, else None."""
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is function else None


def _why_no_path(function: Callable) -> str:
    """Why :func:`_import_path` finds no path for ``function`` (the end of a ``to_dict`` error)."""
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if module and ("<" in qualname or module == "__main__"):
        return (
            "it has no import path (a lambda, a nested function or one defined in __main__); "
            "define it with def at the top level of an importable module"
        )
    if not module or not qualname:
        return (
            "it names no module and qualname to import it back by (numpy ufuncs from scipy.special "
            "are such objects); give it by its import path, e.g. "
            "from_function('scipy.special:expit'), which is kept"
        )
    return (
        f"importing {module}:{qualname} does not give it back; give it by an import path "
        "that does, as 'module:qualname'"
    )


def _resolve(path: str) -> Callable:
    module, _, qualname = path.partition(":")
    if not module or not qualname:
        raise ValueError(f"function must be a callable or 'module:qualname', got function={path!r}")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import function={path!r}: {err}") from None
    if not callable(found):
        raise TypeError(f"function={path!r} is not callable")
    return found


@register
class FromFunction(Schedule):
    """``function(t)``: a schedule from a user's function of the step.

    The function takes a 1-d float64 numpy array of steps and returns their values (an array of
    the same length, or a number); with ``vectorized=False`` it takes one step (a float) and
    returns one number, and is called once per step. It must be pure (the same value for the
    same ``t``).

    It is serialised by its import path: ``to_dict()`` gives
    ``{"name": "function", "function": "package.module:qualname", ...}`` and :func:`from_dict`
    imports it back. The path is the function's own ``__module__`` and ``__qualname__`` when
    importing them gives it back, else the ``"module:qualname"`` it was given by (a scipy
    ufunc such as ``"scipy.special:expit"`` carries neither). The path identifies the function
    (equality, ``repr`` and hash), so ``from_function("scipy.special:expit")`` and
    ``from_function(scipy.special.expit)`` differ: only the first can be serialised. A lambda,
    a nested function or one defined in ``__main__`` has no import path: it works in memory,
    and ``to_dict()`` refuses it with a message saying so.

    Args:
        function: the callable, or its ``"module:qualname"``.
        bounds: a list ``[lowest, highest]`` of its values if known (lets :func:`attach` check
            the whole range at once; otherwise the driver checks each value as it is written).
        vectorized: whether ``function`` takes an array of steps.

    >>> s = from_function("math:sqrt", vectorized=False)
    >>> s(16), s.to_dict()["function"]
    (4.0, 'math:sqrt')
    """

    name = "function"

    def __init__(
        self,
        function: Callable | str,
        bounds: Sequence[float] | None = None,
        vectorized: bool = True,
    ) -> None:
        given = function if isinstance(function, str) else None
        if given is not None:
            function = _resolve(given)
        if not callable(function):
            raise TypeError(f"function must be callable or 'module:qualname', got {function!r}")
        self._function = function
        # what identifies the function (equality, repr, hash, to_dict): its own import path;
        # else the path it was given by (a scipy ufunc has no __module__ or __qualname__ to
        # find one from); else the object itself (a lambda: in memory only)
        self._key: Any = _import_path(function) or given or function
        if bounds is not None:
            try:  # (a list, a tuple or a 1-d array; not a number, a string or a mapping)
                size = None if isinstance(bounds, (str, bytes, Mapping)) else len(bounds)
            except TypeError:
                size = None
            if size is None:
                raise TypeError(f"bounds must be a list [lowest, highest], got bounds={bounds!r}")
            if size != 2:
                raise ValueError(f"bounds must be [lowest, highest], got bounds={bounds!r}")
            low = check_float("bounds[0]", bounds[0], -math.inf)
            high = check_float("bounds[1]", bounds[1], low)
            bounds = [low, high]
        self.bounds_ = bounds
        self.vectorized = check_bool("vectorized", vectorized)

    @property
    def function(self) -> Callable:
        """The wrapped callable."""
        return self._function

    def _identity(self) -> Any:
        """The import path that identifies the function, or the object when it has none."""
        key = self.__dict__.get("_key")  # (absent from one pickled before it was kept)
        return (_import_path(self._function) or self._function) if key is None else key

    def _arguments(self):
        return {"function": self._identity(), "bounds": self.bounds_, "vectorized": self.vectorized}

    def to_dict(self) -> dict[str, Any]:
        path = self._identity()
        if not isinstance(path, str):
            raise ValueError(
                f"from_function({self._function!r}) cannot be serialised: "
                + _why_no_path(self._function)
            )
        out = {"name": self.name, "function": path, "vectorized": self.vectorized}
        if self.bounds_ is not None:
            out["bounds"] = list(self.bounds_)
        return out

    def __repr__(self):
        key = self._identity()
        path = key if isinstance(key, str) else repr(self._function)
        return f"function(function={path!r}, bounds={self.bounds_!r}, vectorized={self.vectorized})"

    def _value(self, t, xp):
        if self.vectorized:
            return self._function(t)
        return np.fromiter((self._function(float(x)) for x in t), dtype=np.float64, count=len(t))

    def bounds(self) -> tuple[float, float]:
        return tuple(self.bounds_) if self.bounds_ is not None else (-math.inf, math.inf)


join = Join
sum_of = Sum
product = Product
scale = Scale
clamp = Clamp
shift = Shift
from_function = FromFunction
