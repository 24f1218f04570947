"""The schedule type: a pure, serialisable function of the step, on ints, arrays or tensors.

Every schedule subclasses :class:`Schedule` and writes its formula **once**, in
``_value(self, t, xp)``, against an operations namespace ``xp``:

* for one step (``s(7)``) ``xp`` is :data:`SCALAR`, built on :mod:`math` and plain Python
  numbers, so driving an optimizer costs a few hundred nanoseconds;
* for many steps (``s(np.arange(10**6))`` or a torch tensor) ``xp`` is :data:`ARRAY`, built on
  numpy float64 arrays.

The two namespaces expose the same names (``exp``, ``cos``, ``where``, ``floor``, ``minimum``,
``count_below``, ``take``, ``branch``...), so a formula reads like the mathematics and runs on
either. Vectorised and scalar values agree to a few ulps (numpy's SIMD ``exp`` and ``pow`` may
round the last bit differently from :mod:`math`; the array ``cos`` and ``sin`` are torch's
vectorised ones, several times faster than numpy's float64 loops).

Conventions shared by every schedule:

* ``t`` counts optimizer updates already made: ``s(0)`` is the value used by the first update.
* Every constructor argument is stored under its own name, so ``s.to_dict()`` is
  ``{"name": <registered name>, <argument>: <value>, ...}`` (nested schedules as nested dicts,
  ``None`` arguments left out) and :func:`from_dict` rebuilds an equal schedule.
* ``s.bounds()`` returns the documented ``(lowest, highest)`` value over all ``t >= 0``.
"""

from __future__ import annotations

import bisect
import inspect
import itertools
import math
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

# ----------------------------------------------------------------------------------------------
# Operation namespaces: the same names over Python floats (math) and numpy float64 arrays.
# ----------------------------------------------------------------------------------------------

_U64 = (1 << 64) - 1


def _scalar_branch(index: int, t: Any, pieces: Sequence[Callable[[Any], Any]]) -> Any:
    return pieces[index](t)


def _array_branch(index: np.ndarray, t: np.ndarray, pieces: Sequence[Callable]) -> np.ndarray:
    out = np.empty(np.shape(t), dtype=np.float64)
    for k, piece in enumerate(pieces):
        mask = index == k
        if mask.any():
            out[mask] = piece(t[mask])
    return out


def _scalar_power(base: float, exponent: float) -> float:
    if base > 0:
        return math.exp(exponent * math.log(base))
    return 1.0 if exponent == 0 else 0.0  # bases are >= 0 in every formula


def _array_power(base: Any, exponent: Any) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.exp(exponent * np.log(base))
    zero = np.equal(base, 0)
    if np.any(zero):
        out = np.where(zero, np.where(np.equal(exponent, 0), 1.0, 0.0), out)
    return out


def _torch_elementwise(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """numpy float64 array -> array through ``torch.<name>`` (zero-copy, SIMD; torch is loaded on
    first use). numpy's float64 ``cos``/``sin`` are scalar loops on many CPUs, 5x slower."""

    def apply(x: Any) -> np.ndarray:
        import torch

        array = np.ascontiguousarray(x, dtype=np.float64)
        return getattr(torch, name)(torch.from_numpy(array)).numpy()

    return apply


def _array_int_power(base: float, exponent: np.ndarray) -> np.ndarray:
    k = exponent.astype(np.int64)
    table = base ** np.arange(int(k.max(initial=0)) + 1, dtype=np.float64)
    return table[k]


class Ops:
    """A namespace of elementwise operations; :data:`SCALAR` and :data:`ARRAY` are the instances.

    ``count_below(seq, t)`` and ``count_at_or_below(seq, t)`` count the entries of a sorted
    ``seq`` that are ``< t`` and ``<= t`` (``bisect_left`` / ``bisect_right``).
    ``take_rows(rows, i)`` picks row ``i`` of a table of tuples (one tuple per row for a scalar
    ``i``, one array per column for an array ``i``). ``branch(index, t, pieces)`` evaluates
    ``pieces[index](t)`` elementwise and only where each
    piece is selected, so a piece never sees steps outside its own segment (no overflow or
    domain warnings from unused branches).

    ``power(base, exponent)`` is ``exp(exponent * log(base))`` (``base >= 0``, with
    ``0 ** 0 = 1``) on both paths: numpy's ``np.power`` is an order of magnitude slower than
    ``exp`` and ``log``, and one formula for both paths keeps them within an ulp or two. Its
    relative error is about ``|exponent * log(base)| * 2**-53`` (below 1e-13 while the result
    is above 1e-300). ``int_power(base, k)`` is C's ``pow`` for small integers ``k >= 0``
    (exact whenever the power is representable, e.g. cycle lengths ``T_0 * T_mult**i``).
    """

    def __init__(self, name: str, **ops: Any) -> None:
        self.name = name
        self.__dict__.update(ops)

    def __repr__(self) -> str:
        return f"<schedule ops: {self.name}>"


SCALAR = Ops(
    "scalar",
    pi=math.pi,
    inf=math.inf,
    exp=math.exp,
    log=math.log,
    log1p=math.log1p,
    cos=math.cos,
    sin=math.sin,
    sqrt=math.sqrt,
    floor=math.floor,
    ceil=math.ceil,
    power=_scalar_power,
    int_power=operator.pow,  # k is a Python int on the scalar path
    minimum=min,
    maximum=max,
    where=lambda cond, a, b: a if cond else b,
    count_below=bisect.bisect_left,
    count_at_or_below=bisect.bisect_right,
    take=operator.getitem,
    take_rows=operator.getitem,
    branch=_scalar_branch,
    as_uint64=lambda t: int(t) & _U64,
    wrap_uint64=lambda x: x & _U64,
    high32_unit=lambda x: (x >> 32) * 2.0**-32,
    low32_unit=lambda x: (x & 0xFFFFFFFF) * 2.0**-32,
)

ARRAY = Ops(
    "array",
    pi=math.pi,
    inf=math.inf,
    exp=np.exp,
    log=np.log,
    log1p=np.log1p,
    cos=_torch_elementwise("cos"),
    sin=_torch_elementwise("sin"),
    sqrt=np.sqrt,
    floor=np.floor,
    ceil=np.ceil,
    power=_array_power,
    int_power=_array_int_power,
    minimum=np.minimum,
    maximum=np.maximum,
    where=np.where,
    count_below=lambda seq, t: np.searchsorted(np.asarray(seq), t, side="left"),
    count_at_or_below=lambda seq, t: np.searchsorted(np.asarray(seq), t, side="right"),
    take=lambda seq, i: np.asarray(seq, dtype=np.float64)[i],
    take_rows=lambda rows, i: tuple(column[i] for column in np.asarray(rows, dtype=np.float64).T),
    branch=_array_branch,
    as_uint64=lambda t: np.asarray(t).astype(np.uint64),
    wrap_uint64=lambda x: x,  # numpy uint64 arithmetic already wraps modulo 2**64
    high32_unit=lambda x: (x >> np.uint64(32)).astype(np.float64) * 2.0**-32,
    low32_unit=lambda x: (x & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32,
)

# ----------------------------------------------------------------------------------------------
# Registry and (de)serialisation.
# ----------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Schedule]] = {}


def register(cls: type[Schedule]) -> type[Schedule]:
    """Class decorator: make ``cls`` constructible by :func:`from_dict` under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"schedule name {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered_names() -> list[str]:
    """The names :func:`from_dict` accepts, sorted."""
    return sorted(_REGISTRY)


def _parameters(cls: type[Schedule]) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self")
    return params


def _plain(value: Any) -> Any:
    """A constructor argument as a TOML-friendly value (str/int/float/bool/list/dict)."""
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _rebuild(value: Any) -> Any:
    if isinstance(value, Mapping):
        return from_dict(value)
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return [from_dict(v) for v in value]
    return value


def from_dict(spec: Mapping[str, Any]) -> Schedule:
    """Rebuild a schedule from ``Schedule.to_dict()`` output (nested compositions included).

    ``spec["name"]`` picks the schedule; every other key is a constructor argument. A nested
    mapping (or a list of mappings) is itself rebuilt with :func:`from_dict`.

    Raises:
        TypeError: ``spec`` is not a mapping.
        ValueError: unknown name (the message lists the valid ones), unknown or missing keys
            (the message lists the valid keys), or an argument the constructor rejects.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(f"a schedule spec must be a mapping with a 'name', got {spec!r}")
    if "name" not in spec:
        raise ValueError(
            f"a schedule spec needs a 'name' key, got keys {sorted(spec)}; "
            f"valid names: {', '.join(registered_names())}"
        )
    name = spec["name"]
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"unknown schedule name={name!r}; valid names: {', '.join(registered_names())}"
        )
    params = _parameters(cls)
    args = {k: v for k, v in spec.items() if k != "name"}
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} for schedule {name!r}; valid keys: {', '.join(params)}"
        )
    missing = [
        p
        for p, param in params.items()
        if param.default is inspect.Parameter.empty and p not in args
    ]
    if missing:
        raise ValueError(
            f"schedule {name!r} is missing required key(s) {missing}; "
            f"valid keys: {', '.join(params)}"
        )
    return cls(**{k: _rebuild(v) for k, v in args.items()})


# ----------------------------------------------------------------------------------------------
# The schedule type.
# ----------------------------------------------------------------------------------------------


class Schedule:
    """A learning-rate (or any hyperparameter) schedule: a pure function of the step ``t``.

    Call it on an ``int`` (returns a ``float``), a numpy array of steps (returns a float64
    array) or a torch tensor of steps (returns a float64 tensor on the same device). Steps must
    be ``>= 0``; ``t`` counts updates already made, so ``s(0)`` is the first update's value.

    Subclasses set ``name``, store each constructor argument as an attribute of the same name,
    and implement ``_value(t, xp)`` (the formula, once) and ``bounds()``.
    """

    name: ClassVar[str] = ""
    #: True for schedules whose value also depends on observed metrics (reduce-on-plateau).
    reactive: ClassVar[bool] = False

    # --- evaluation -------------------------------------------------------------------------
    def _value(self, t: Any, xp: Ops) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, t: Any) -> Any:
        if type(t) is int:  # the hot path: the driver calls this once per update
            if t < 0:
                raise ValueError(f"step t must be >= 0, got t={t!r}")
            return float(self._value(t, SCALAR))
        return self._call_other(t)

    def _call_other(self, t: Any) -> Any:
        if isinstance(t, bool):
            raise TypeError(f"step t must be an integer or an array of steps, got t={t!r}")
        if isinstance(t, numbers.Integral):
            return self(int(t))
        if isinstance(t, numbers.Real):
            if not (math.isfinite(t) and t >= 0):
                raise ValueError(f"step t must be finite and >= 0, got t={t!r}")
            return float(self._value(float(t), SCALAR))
        torch = _torch_if_tensor(t)
        if torch is not None:
            values = self._evaluate_array(t.detach().to("cpu", torch.float64).numpy())
            return torch.from_numpy(values).to(t.device)
        if isinstance(t, (np.ndarray, list, tuple)):
            return self._evaluate_array(np.asarray(t))
        raise TypeError(
            f"step t must be an int, a numpy array or a torch tensor, got {type(t).__name__}"
        )

    def _evaluate_array(self, steps: np.ndarray) -> np.ndarray:
        if steps.dtype == np.bool_ or not np.issubdtype(steps.dtype, np.number):
            raise TypeError(f"steps must be a numeric array, got dtype {steps.dtype}")
        steps = steps.astype(np.float64, copy=False)
        if steps.size and not (np.all(np.isfinite(steps)) and steps.min() >= 0):
            raise ValueError("steps must be finite and >= 0")
        values = self._value(steps, ARRAY)
        return np.broadcast_to(np.asarray(values, dtype=np.float64), steps.shape).copy()

    def bounds(self) -> tuple[float, float]:  # pragma: no cover - abstract
        """The documented ``(lowest, highest)`` value over all steps ``t >= 0``."""
        raise NotImplementedError

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., <constructor argument>: <value>, ...}``; ``None`` arguments omitted."""
        out: dict[str, Any] = {"name": self.name}
        for param in _parameters(type(self)):
            value = getattr(self, param)
            if value is not None:
                out[param] = _plain(value)
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((type(self), repr(self)))

    # --- arithmetic -------------------------------------------------------------------------
    def __mul__(self, other: Any) -> Schedule:
        from schedulers.compose import product, scale

        if isinstance(other, Schedule):
            return product([self, other])
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return scale(self, float(other))
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Schedule:
        from schedulers.compose import scale

        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            if other <= 0:
                raise ValueError(
                    f"a schedule can only be divided by a positive number, got {other!r}"
                )
            return scale(self, 1.0 / float(other))
        return NotImplemented

    def clamp(self, floor: float = 0.0, ceiling: float | None = None) -> Schedule:
        """This schedule clipped to ``[floor, ceiling]``; see :class:`schedulers.compose.clamp`."""
        from schedulers.compose import clamp

        return clamp(self, floor, ceiling)


def _torch_if_tensor(t: Any) -> Any:
    """The torch module if ``t`` is a torch tensor (torch is imported only if already loaded)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(t, torch.Tensor):
        return torch
    return None


# ----------------------------------------------------------------------------------------------
# Argument checks shared by every constructor: they name the parameter, the value and the rule.
# ----------------------------------------------------------------------------------------------


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools and floats with a fraction are rejected)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
        value = int(value)
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return value


def check_float(
    name: str,
    value: Any,
    low: float = 0.0,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high`` (open or closed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {name}={value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        closing = ")" if high_open or high == math.inf else "]"
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{closing}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {name}={value!r}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {name}={value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {name}={value!r}")
    return value


def check_schedule(name: str, value: Any) -> Schedule:
    """``value`` if it is a :class:`Schedule`; a mapping is rebuilt with :func:`from_dict`."""
    if isinstance(value, Mapping):
        value = from_dict(value)
    if not isinstance(value, Schedule):
        raise TypeError(f"{name} must be a Schedule, got {name}={value!r}")
    return value


def check_increasing(name: str, values: Any, strict: bool = True, minimum: int = 0) -> list[int]:
    """``values`` as a list of integers ``>= minimum``, increasing (strictly if ``strict``)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of integers, got {name}={values!r}")
    out = [check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(values)]
    for a, b in itertools.pairwise(out):
        if b < a or (strict and b == a):
            order = "strictly increasing" if strict else "non-decreasing"
            raise ValueError(f"{name} must be {order}, got {name}={list(values)!r}")
    return out
