"""The schedule type: a pure, serialisable function of the step, on ints, arrays or tensors.

Every schedule subclasses :class:`Schedule` and writes its formula **once**, in
``_value(self, t, xp)``, against the operations namespace ``xp`` (:data:`ARRAY`: numpy float64
arrays, with torch's vectorised ``cos``/``sin``, several times faster than numpy's float64 loops).

There is one evaluation path. A single step ``s(7)`` is evaluated as the one-element array
``[7.0]``, so ``s(t)`` and ``s(array)[i]`` are **equal bit for bit** (every elementwise function
used gives an element the same bits wherever it sits in an array: tested for each one in
``tests/schedulers/test_properties.py``). A single call costs a few microseconds; the driver
(:mod:`schedulers.driver`) evaluates steps in blocks, so driving an optimizer costs well under
a microsecond per update.

Conventions shared by every schedule:

* ``t`` counts optimizer updates already made: ``s(0)`` is the value used by the first update.
  Steps are float64: whole steps are exact up to ``2**53``, and a step above it is refused
  (``ValueError``), as the constructors refuse step counts above it; fractional steps
  (``epoch + i / n``) are allowed.
* Every constructor argument is stored under its own name, so ``s.to_dict()`` is
  ``{"name": <registered name>, <argument>: <value>, ...}`` (nested schedules as nested dicts,
  ``None`` arguments left out) and :func:`from_dict` rebuilds an equal schedule.
* ``s.bounds()`` returns an enclosure ``(lowest, highest)`` of every value ``s(t)`` returns
  for ``t >= 0``, rounding included. For a base schedule it is the documented extremes (e.g.
  ``base_lr`` and ``eta_min``) joined with the float64 values the formula's own arithmetic
  gives at its extreme points, which can lie an ulp outside them (``eta_min + (base_lr -
  eta_min)`` is not always ``base_lr``), so it is exact up to such an ulp; for compositions
  it may be wider than the values reached (``inf`` where unknown, e.g. a user function
  without declared bounds).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import numbers
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

#: Largest whole step (and step count argument) that float64 represents exactly.
MAX_STEP = 2**53

# ----------------------------------------------------------------------------------------------
# The operation namespace: numpy float64 arrays.
# ----------------------------------------------------------------------------------------------


def _branch(index: np.ndarray, t: np.ndarray, pieces: Sequence[Callable]) -> np.ndarray:
    out = np.empty(np.shape(t), dtype=np.float64)
    for k, piece in enumerate(pieces):
        mask = index == k
        if mask.any():
            out[mask] = piece(t[mask])
    return out


def _c_pow(base: float, exponent: float) -> float:
    """``math.pow`` with numpy's answers where it raises: inf on overflow, nan off its domain."""
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


class CLibrary:
    """``math.<name>`` over float64 arrays: the C library's ``cos``, ``sin``, ``tanh`` or
    ``pow``, whose bits Python's ``math`` and ``**`` give, and so the Python schedulers of torch
    (``CosineAnnealingLR``, ``OneCycleLR``, ``CyclicLR``, ``PolynomialLR``, ``StepLR``) and
    timm (``CosineLRScheduler``, ``TanhLRScheduler``).

    The first call compares numpy's function with ``math``'s on :attr:`PROBES` and keeps
    numpy's only where every one agrees; otherwise each element goes through ``math`` (about 8x
    slower: 190 ms for 10**6 values). On this project's CPU (no AVX-512) numpy's ``cos``,
    ``sin`` and ``power`` agree (one value through here: 1.7 us; 10**6 cosines: 19 ms), its
    ``tanh`` does not (its own SIMD routine, an ulp off at 1435 of 6000 arguments). With
    AVX-512 numpy runs Intel's SVML, up to 4 ulp off the C library (numpy issue 23523).
    torch's SIMD ``cos``, used before, put 301 of 200,000 angles an ulp off it.

    ``power`` gets an exponent of its own for every element: where one value fills its loop
    (a 0-d exponent, or one repeated by broadcasting), numpy takes a square root for 0.5,
    correctly rounded, where ``pow`` is an ulp off at some bases (3 of the first 6000
    integers).
    """

    #: inputs where schedules take them: angles ``pi * k / n`` over [0, pi] and spread over
    #: [0, 2000 pi) (a cosine's angle grows where a cycle repeats); tanh arguments in [-10, 10];
    #: bases in (0, 2) to whole and fractional exponents up to 3000
    _SPREAD = (np.arange(2048) * 0.6180339887498949) % 1
    _ANGLES = np.concatenate([np.pi * np.arange(2048) / 2047, 2000 * np.pi * _SPREAD])
    PROBES: ClassVar[dict[str, tuple[np.ndarray, ...]]] = {
        "cos": (_ANGLES,),
        "sin": (_ANGLES,),
        "tanh": (20.0 * _SPREAD - 10.0,),
        "pow": (2.0 * _SPREAD + 1e-3, np.concatenate([np.arange(1024.0), 3000 * _SPREAD[:1024]])),
    }

    def __init__(self, name: str) -> None:
        self.name = name
        self.function = _c_pow if name == "pow" else getattr(math, name)
        self.ufunc = np.power if name == "pow" else getattr(np, name)
        self._numpy: bool | None = None  # numpy's agrees with the C library here (first call)

    def numpy_agrees(self) -> bool:
        """Whether numpy's function gives the C library's bits at every probe."""
        if self._numpy is None:
            probes = self.PROBES[self.name]
            with np.errstate(all="ignore"):
                ours = self.ufunc(*probes).tolist()
            self._numpy = ours == list(map(self.function, *(p.tolist() for p in probes)))
        return self._numpy

    def __call__(self, *arguments: Any) -> np.ndarray:
        if self.numpy_agrees():
            if len(arguments) == 1:
                return self.ufunc(arguments[0])
            return self._numpy_pow(*arguments)
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arguments))
        function, shape = self.function, arrays[0].shape
        flat = [a.reshape(-1).tolist() for a in arrays]
        if self.name == "pow":
            values = list(map(function, *flat))
        else:  # (math raises on an infinite angle, numpy gives nan)
            values = [function(v) if math.isfinite(v) else math.nan for v in flat[0]]
        return np.array(values, dtype=np.float64).reshape(shape)

    def _numpy_pow(self, base: Any, exponent: Any) -> np.ndarray:
        """numpy's ``power`` with an exponent of its own for every element (see the class)."""
        exponent = np.asarray(exponent, dtype=np.float64)
        base = np.asarray(base, dtype=np.float64)
        if exponent.ndim and exponent.flags.c_contiguous and base.shape in ((), exponent.shape):
            return np.power(base, exponent)  # (the common case: one exponent per step)
        if exponent.ndim == 0 and base.ndim and base.flags.c_contiguous:
            return np.power(base, np.full(base.shape, exponent))
        shape = np.broadcast_shapes(base.shape, exponent.shape)
        exponent = np.array(np.broadcast_to(exponent, shape)).reshape(-1)
        base = np.broadcast_to(base, shape).reshape(-1) if base.ndim else base
        return np.power(base, exponent).reshape(shape)


_C_POW = CLibrary("pow")


def _power(base: Any, exponent: Any) -> np.ndarray:
    """``base ** exponent`` for ``base >= 0`` (``0 ** 0 = 1``), the C library's ``pow``
    (:class:`CLibrary`), as Python's ``**`` in torch's schedulers: exact whenever the power is
    representable (``0.5 ** 3``, ``2.0 ** 10``).

    For a number ``0 < base < 1``, exponents whose power is below ``2**-1076`` give 0 directly
    (what ``pow`` rounds them to): numpy's SIMD ``pow`` takes a slow path on underflow, 15x
    slower, which ``step_lr`` over 10**6 steps would otherwise hit.
    """
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        if np.ndim(base) == 0 and 0.0 < base < 1.0 and np.ndim(exponent) > 0:
            vanishing = exponent > 1076.0 / -math.log2(base)
            out = _C_POW(base, np.where(vanishing, 0.0, exponent))
            out[vanishing] = 0.0
            return out
        return _C_POW(base, exponent)


class Ops:
    """A namespace of elementwise operations over float64 arrays; :data:`ARRAY` is the instance.

    ``count_below(seq, t)`` and ``count_at_or_below(seq, t)`` count the entries of a sorted
    ``seq`` that are ``< t`` and ``<= t``. ``take_rows(rows, i)`` picks row ``i`` of a table of
    tuples (one array per column). ``branch(index, t, pieces)`` evaluates ``pieces[index](t)``
    elementwise and only where each piece is selected, so a piece never sees steps outside its
    own segment (no overflow or domain warnings from unused branches). ``power(base, exponent)``
    (``base >= 0``), ``cos``, ``sin`` and ``tanh`` are the C library's (:class:`CLibrary`), as
    Python's ``**`` and ``math`` in torch's and timm's schedulers: a power is exact when the
    result is representable, so ``0.1 * 0.5 ** 3`` is ``0.0125`` as in torch.
    """

    def __init__(self, name: str, **ops: Any) -> None:
        self.name = name
        self.__dict__.update(ops)

    def __repr__(self) -> str:
        return f"<schedule ops: {self.name}>"


ARRAY = Ops(
    "array",
    pi=math.pi,
    inf=math.inf,
    exp=np.exp,
    log=np.log,
    log1p=np.log1p,
    tanh=CLibrary("tanh"),
    cos=CLibrary("cos"),
    sin=CLibrary("sin"),
    sqrt=np.sqrt,
    floor=np.floor,
    ceil=np.ceil,
    power=_power,
    minimum=np.minimum,
    maximum=np.maximum,
    where=np.where,
    count_below=lambda seq, t: np.searchsorted(np.asarray(seq), t, side="left"),
    count_at_or_below=lambda seq, t: np.searchsorted(np.asarray(seq), t, side="right"),
    take=lambda seq, i: np.asarray(seq, dtype=np.float64)[i],
    take_rows=lambda rows, i: tuple(column[i] for column in np.asarray(rows, dtype=np.float64).T),
    branch=_branch,
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
    """The names :func:`from_dict` accepts, sorted.

    >>> names = registered_names()
    >>> "cosine_decay" in names and "wsd" in names, names == sorted(names)
    (True, True)
    >>> from_dict({"name": "constant", "value": 0.5})(7)
    0.5
    """
    return sorted(_REGISTRY)


@functools.cache
def _parameters(cls: type[Schedule]) -> dict[str, inspect.Parameter]:
    """The constructor's parameters of a schedule class (read once per class)."""
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self")
    return params


def _plain(value: Any) -> Any:
    """A constructor argument as a TOML-friendly value (str/int/float/bool/list/dict)."""
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rebuild(key: str, value: Any) -> Any:
    """Nested schedule specs (mappings with a ``name``) rebuilt; other values as they are (a
    constructor's own checks turn a malformed nested spec into :func:`from_dict`'s error).
    ``key`` is the argument's name, which an error from a nested spec is prefixed with."""
    if isinstance(value, Mapping) and "name" in value:
        return _rebuild_nested(key, value)
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return [
            _rebuild_nested(f"{key}[{i}]", v) if "name" in v else v for i, v in enumerate(value)
        ]
    return value


def _rebuild_nested(where: str, spec: Mapping[str, Any]) -> Schedule:
    """:func:`from_dict` of a nested spec; its ``TypeError``/``ValueError`` says where the spec
    sits, e.g. ``schedules[2].schedule: value must be ...``."""
    try:
        return from_dict(spec)
    except (TypeError, ValueError) as err:
        if type(err) not in (TypeError, ValueError):
            raise
        inner = getattr(err, "spec_path", None)
        path = f"{where}.{inner}" if inner else where
        message = err.spec_message if inner else str(err)  # type: ignore[attr-defined]
        located = type(err)(f"{path}: {message}")
        located.spec_path, located.spec_message = path, message  # type: ignore[attr-defined]
        raise located from None


def from_dict(spec: Mapping[str, Any]) -> Schedule:
    """Rebuild a schedule from ``Schedule.to_dict()`` output (nested compositions included).

    ``spec["name"]`` picks the schedule; every other key is a constructor argument. A nested
    mapping (or a list of mappings) is itself rebuilt with :func:`from_dict`; its error is
    prefixed with where it sits (``schedules[2].schedule: value must be ...``).

    Raises:
        TypeError: ``spec`` is not a mapping, or an argument of a type the constructor rejects.
        ValueError: unknown name (the message lists the valid ones), unknown or missing keys
            (the message lists the valid keys), or an argument the constructor rejects.

    >>> s = from_dict({"name": "step_lr", "base_lr": 1.0, "step_size": 2})
    >>> s(1), s(2)  # gamma takes its default, 0.1
    (1.0, 0.1)
    >>> w = from_dict({"name": "linear_warmup", "schedule": {"name": "constant", "value": 1.0},
    ...                "warmup_steps": 4})
    >>> [w(t) for t in range(5)], from_dict(w.to_dict()) == w
    ([0.0, 0.25, 0.5, 0.75, 1.0], True)
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
    return cls(**{k: _rebuild(k, v) for k, v in args.items()})


# ----------------------------------------------------------------------------------------------
# The schedule type.
# ----------------------------------------------------------------------------------------------


def hull(*values: float) -> tuple[float, float]:
    """``(min(values), max(values))``: the smallest interval holding ``values``."""
    return (min(values), max(values))


def product_bounds(first: tuple[float, float], second: tuple[float, float]) -> tuple[float, float]:
    """An enclosure of ``x * y`` for ``x`` in ``first`` and ``y`` in ``second`` (intervals
    ``(low, high)``, either end possibly negative or infinite): the lowest and highest of the
    four products of the ends, with ``0 * inf = 0`` (an unknown end times a factor that can be
    0). Rounding is monotonic, so the float64 product of two values inside the intervals lies
    inside the float64 products of the ends."""

    def times(a: float, b: float) -> float:
        return 0.0 if a == 0 or b == 0 else a * b

    return hull(*(times(a, b) for a in first for b in second))


class Schedule:
    """A learning-rate (or any hyperparameter) schedule: a pure function of the step ``t``.

    Call it on an ``int`` or ``float`` (returns a ``float``), a numpy array of steps, of any
    shape including 0-dim (returns a float64 array of that shape) or a torch tensor of steps
    (returns a float64 tensor of that shape on the same device). Steps must be finite, ``>= 0``
    and at most ``2**53`` (``ValueError`` otherwise), and real numbers: a bool, complex,
    date/time or object array or tensor is refused (``TypeError``), as a bool or complex number
    is; ``t`` counts updates already made, so ``s(0)`` is the first update's value.

    Subclasses set ``name``, store each constructor argument as an attribute of the same name,
    and implement ``_value(t, xp)`` (the formula, once, on a 1-d float64 array of steps) and
    ``bounds()``. Composites hold their parts as constructor arguments (a schedule or a list of
    them), which :meth:`children` finds; one whose parts see another clock than ``t`` says so in
    :meth:`_child_steps`.

    >>> s = step_lr(1.0, step_size=2, gamma=0.5)
    >>> s(0), s([1, 2, 5]).tolist()  # one step, or an array of steps
    (1.0, [1.0, 0.5, 0.25])
    >>> s.to_dict()
    {'name': 'step_lr', 'base_lr': 1.0, 'step_size': 2, 'gamma': 0.5}
    >>> from_dict(s.to_dict()) == s, s.bounds()
    (True, (0.0, 1.0))
    """

    name: ClassVar[str] = ""
    #: True for schedules whose value also depends on observed metrics (reduce-on-plateau).
    reactive: ClassVar[bool] = False

    # --- evaluation -------------------------------------------------------------------------
    def _value(self, t: np.ndarray, xp: Ops) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, t: Any) -> Any:
        if type(t) is int or type(t) is float:
            return float(self._evaluate(_scalar_step(t))[0])
        return self._call_other(t)

    def _call_other(self, t: Any) -> Any:
        if isinstance(t, (bool, np.bool_)):
            raise TypeError(f"step t must be a number or an array of steps, got t={t!r}")
        if isinstance(t, numbers.Real) and not isinstance(t, np.generic):
            return float(self._evaluate(_scalar_step(t))[0])
        torch = _torch_if_tensor(t)
        if torch is not None:
            return torch.from_numpy(self._evaluate_array(_tensor_steps(t, torch))).to(t.device)
        if isinstance(t, np.generic):  # a numpy scalar gives a numpy scalar
            return self._evaluate_array(np.asarray(t))[()]
        if isinstance(t, (np.ndarray, list, tuple)):
            return self._evaluate_array(np.asarray(t))
        raise TypeError(
            f"step t must be an int, a float, a numpy array or a torch tensor, "
            f"got {type(t).__name__}"
        )

    def _evaluate_array(self, steps: np.ndarray) -> np.ndarray:
        dtype = steps.dtype
        if dtype.kind not in "iuf":  # (numpy counts bool apart, timedelta64 as an integer)
            if dtype.kind == "O":
                _refuse_large_objects(steps)
            raise TypeError(f"steps must be {_STEP_DTYPES}, got dtype {dtype}")
        flat = np.ascontiguousarray(steps, dtype=np.float64).reshape(-1)
        bad = ~((flat >= 0) & (flat <= MAX_STEP))  # (nan compares false)
        if dtype.itemsize > 8 or (dtype.kind in "iu" and dtype.itemsize == 8):
            bad |= (steps > MAX_STEP).reshape(-1)  # (2**53 + 1 rounds to 2**53 in float64)
        if bad.any():
            first = int(np.argmax(bad))
            if not steps.ndim:  # (a numpy scalar or 0-d array: one step)
                raise ValueError(f"step t must be {_STEP_RULE}, got t={steps.item()!r}")
            where = np.unravel_index(first, steps.shape)
            index = ", ".join(str(int(i)) for i in where)
            raise ValueError(
                f"steps must be {_STEP_RULE}, got steps[{index}] = {steps.flat[first].item()!r} "
                f"({int(bad.sum())} bad step(s) of {flat.size})"
            )
        return self._evaluate(flat).reshape(steps.shape)

    def _evaluate(self, flat: np.ndarray) -> np.ndarray:
        """Values at a contiguous 1-d float64 array of valid steps (no checks: the driver's)."""
        values = self._value(flat, ARRAY)
        if (
            type(values) is np.ndarray
            and values.shape == flat.shape
            and values.dtype == np.float64
            and not np.may_share_memory(values, flat)
        ):
            return values
        return np.array(np.broadcast_to(np.asarray(values, dtype=np.float64), flat.shape))

    def bounds(self) -> tuple[float, float]:  # pragma: no cover - abstract
        """An enclosure ``(lowest, highest)`` of the values over all steps ``t >= 0``."""
        raise NotImplementedError

    # --- structure --------------------------------------------------------------------------
    def _arguments(self) -> dict[str, Any]:
        return {param: getattr(self, param) for param in _parameters(type(self))}

    def children(self) -> list[Schedule]:
        """The schedules this one is built from (its schedule-valued arguments), in order."""
        cached = self.__dict__.get("_children")
        if cached is None:  # arguments never change after construction: found once
            cached = []
            for value in self._arguments().values():
                if isinstance(value, Schedule):
                    cached.append(value)
                elif isinstance(value, (list, tuple)):
                    cached.extend(v for v in value if isinstance(v, Schedule))
            self.__dict__["_children"] = cached
        return list(cached)

    def walk(self) -> Iterator[Schedule]:
        """This schedule and every schedule nested in it, each once, parents first."""
        seen: set[int] = set()
        stack: list[Schedule] = [self]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            stack.extend(reversed(node.children()))

    def _child_steps(self, t: float) -> list[tuple[Schedule, float]]:
        """The children whose values ``s(t)`` uses, each with the step it is evaluated at."""
        return [(child, t) for child in self.children()]

    def active_steps(self, t: float) -> list[tuple[Schedule, float]]:
        """Every schedule ``s(t)`` evaluates (this one first) with the step it sees.

        A schedule inside a ``join`` piece that has not started (or has ended) is absent; one
        inside a warmup with ``clock="after_warmup"`` sees ``max(t - warmup_steps, 0)``, etc.
        The driver feeds metrics to the reactive schedules found here, at their own steps.
        """
        out, stack = [], [(self, float(t))]
        while stack:
            node, local = stack.pop()
            out.append((node, local))
            stack.extend(reversed(node._child_steps(local)))
        return out

    def _state_token(self) -> Any:
        """What of a reactive schedule's state its values depend on (None if not reactive)."""
        return None

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., <constructor argument>: <value>, ...}``; ``None`` arguments omitted."""
        out: dict[str, Any] = {"name": self.name}
        for param, value in self._arguments().items():
            if value is not None:
                out[param] = _plain(value)
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items() if v is not None)
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return type(self) is type(other) and self._arguments() == other._arguments()

    def __hash__(self) -> int:
        # a reactive schedule's hash follows its state: do not key dicts by one while it observes
        return hash((type(self), repr(self)))

    # --- arithmetic -------------------------------------------------------------------------
    # A number operand is checked here, so that a refusal names the operator and the number
    # the user wrote, not the argument of the schedule built from it (a scale, a constant).
    def __mul__(self, other: Any) -> Schedule:
        from schedulers.compose import product, scale

        if isinstance(other, Schedule):
            return product([self, other])
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return scale(self, _operand("schedule * number", "the factor", other))
        return NotImplemented

    __rmul__ = __mul__

    def __add__(self, other: Any) -> Schedule:
        from schedulers.compose import sum_of
        from schedulers.steps import constant

        if isinstance(other, Schedule):
            return sum_of([self, other])
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            value = _operand("schedule + number", "the added number", other)
            return sum_of([self, constant(value)])
        return NotImplemented

    def __radd__(self, other: Any) -> Schedule:
        if isinstance(other, numbers.Real) and not isinstance(other, bool) and other == 0:
            return self  # sum([s1, s2]) starts from 0
        return self.__add__(other)

    def __truediv__(self, other: Any) -> Schedule:
        from schedulers.compose import scale

        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            divisor = _operand("schedule / number", "the divisor", other, positive=True)
            factor = 1.0 / divisor
            if math.isinf(factor):
                raise ValueError(
                    f"schedule / number: the divisor {divisor!r} is too small, 1 / {divisor!r} "
                    "overflows float64; divide by a number >= 5.6e-309 (or multiply instead)"
                )
            return scale(self, factor)
        return NotImplemented

    def clamp(self, floor: float = 0.0, ceiling: float | None = None) -> Schedule:
        """This schedule clipped to ``[floor, ceiling]``; see :class:`schedulers.compose.clamp`."""
        from schedulers.compose import clamp

        return clamp(self, floor, ceiling)

    def shift(self, steps: int) -> Schedule:
        """This schedule started ``steps`` updates later (earlier if negative); see
        :class:`schedulers.compose.shift`."""
        from schedulers.compose import shift

        return shift(self, steps)


#: What a step must be (the constructors' step counts stop at 2**53 too: :func:`check_int`).
_STEP_RULE = "finite and >= 0 and at most 2**53 (float64 tells whole steps apart up to there)"
#: The array types a step array may have.
_STEP_DTYPES = "real numbers (an array of an integer or floating-point dtype)"


def _scalar_step(t: Any) -> np.ndarray:
    """A single step as the one-element float64 array the formulas take (validated)."""
    try:
        value = float(t)
    except OverflowError:
        raise ValueError(f"step t must be {_STEP_RULE}, got t={_shown(t)} (too large)") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"step t must be {_STEP_RULE}, got t={t!r}")
    if value > MAX_STEP or (type(t) is not float and t > MAX_STEP):  # (an int 2**53 + 1 rounds)
        raise ValueError(f"step t must be {_STEP_RULE}, got t={_shown(t)} (too large)")
    return np.array([value])


def _refuse_large_objects(steps: np.ndarray) -> None:
    """For an object array of Python numbers (numpy's type for a list holding an int above
    2**64), a ``ValueError`` naming the first one out of range, as for a numeric array."""
    items = steps.reshape(-1).tolist()
    if not items or not all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in items
    ):
        return
    bad = [k for k, v in enumerate(items) if not 0 <= v <= MAX_STEP]
    if bad and not steps.ndim:
        raise ValueError(f"step t must be {_STEP_RULE}, got t={_shown(items[0])}")
    if bad:
        index = ", ".join(str(int(i)) for i in np.unravel_index(bad[0], steps.shape))
        raise ValueError(
            f"steps must be {_STEP_RULE}, got steps[{index}] = {_shown(items[bad[0]])} "
            f"({len(bad)} bad step(s) of {len(items)})"
        )


def _tensor_steps(t: Any, torch: Any) -> np.ndarray:
    """A torch tensor's steps as a numpy array on the host, refusing what a numpy array of its
    dtype would be refused for (bool, complex); integer steps keep their dtype, so that an
    int64 step above 2**53 is seen before float64 rounds it."""
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"steps must be {_STEP_DTYPES}, got dtype {t.dtype}")
    if t.is_floating_point():
        return t.detach().to("cpu", torch.float64).numpy()  # a host read of the steps
    host = t.detach().to("cpu")
    try:
        return host.numpy()
    except (TypeError, RuntimeError):  # an integer dtype numpy lacks: its values are exact
        return host.to(torch.float64).numpy()


def _operand(operation: str, role: str, value: Any, positive: bool = False) -> float:
    """A number in ``schedule <op> number`` as a float, or a ``ValueError`` naming the operation,
    the number's role in it and the number (finite, ``>= 0``, or ``> 0`` with ``positive``)."""
    try:
        return check_float("number", value, low_open=positive)
    except ValueError:
        rule = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{operation}: {role} must be a finite number {rule}, got {_shown(value)}"
        ) from None


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


def _shown(value: Any) -> str:
    """``repr(value)``, shortened for huge integers (``10**400`` has 401 digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


def check_int(name: str, value: Any, minimum: int = 1, maximum: int = MAX_STEP) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (bools and floats with a fraction are
    rejected). The default ``maximum`` is ``2**53``: step counts must be exact in float64."""
    rule = f"an integer in [{minimum}, {'2**53' if maximum == MAX_STEP else maximum}]"
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)):
        raise TypeError(f"{name} must be {rule}, got {name}={_shown(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{name} must be {rule}, got {name}={value!r}")
        value = int(value)
    value = operator.index(value)
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be {rule}, got {name}={_shown(value)}")
    return value


def check_float(
    name: str,
    value: Any,
    low: float = 0.0,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high`` (open or closed);
    ``-0.0`` is returned as ``0.0`` (the same value, so equal schedules have one repr and hash)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {name}={_shown(value)}")
    closing = ")" if high_open or high == math.inf else "]"
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{closing}"
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(
            f"{name} must be a finite number in {interval}, got {name}={_shown(value)} "
            "(too large for a float)"
        ) from None
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        raise ValueError(
            f"{name} must be a finite number in {interval}, got {name}={_shown(value)}"
        )
    return number + 0.0  # (-0.0 stored as 0.0: equal schedules print, and hash, the same)


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
