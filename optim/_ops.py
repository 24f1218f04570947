"""Multi-tensor arithmetic whose scalar may be a Python number, a list of numbers or a 0-dim tensor.

Every update rule in this package is written once, over lists of tensors, with these helpers and
``torch._foreach_*`` ops. A hyperparameter known on the host (a Python number, or one number per
tensor) goes straight into the ``value=``/``alpha=``/scalar-list argument of the op, exactly as
torch.optim's foreach path passes it, so results are bitwise torch's, low precision included. One
given as a 0-dim tensor on the device (CUDA ``capturable=True``, or the compiled flat path, which
passes every hyperparameter as a tensor so a new value never recompiles) is applied by tensor
broadcasting. Neither form reads a device tensor's value, so nothing here synchronises.

A 0-dim tensor on the host (the global scalars of the learning-rate-free optimizers, ``d`` or
``eta``, computed on the CPU) is read as a number by :func:`host_number` in eager code: reading
host memory is not a synchronisation, and a number goes into the op's ``alpha=``/``value=``
argument, as the reference packages pass their Python floats, instead of a broadcast product that
allocates a temporary the size of the tensors (on a CPU, allocating and freeing those cost more
than the arithmetic: Prodigy's step on 2M elements spent about 40% of its time in them).
"""

from __future__ import annotations

import contextvars
import itertools
import numbers
import operator
import threading
from collections.abc import Callable

import torch
from torch import Tensor

from optim._paths import _PLAIN_TYPES, KEPT_TEMPORARY_SIZES, round_temporaries

Scalar = float | Tensor
TensorList = list[Tensor]
_Scalars = Scalar | list[float] | TensorList  # (one value, or one per tensor)
_DTYPE = operator.attrgetter("dtype")
_IS_CPU = operator.attrgetter("is_cpu")
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def host_number(value: _Scalars) -> _Scalars:
    """``value``, or its number if it is a 0-dim tensor on the host (a list: each item), outside
    ``torch.compile`` (a compiled rule keeps tensors, so a new value never recompiles)."""
    if torch.compiler.is_compiling():
        return value
    if isinstance(value, list):
        return [host_number(v) for v in value] if value and _on_host(value[0]) else value
    return value.item() if _on_host(value) else value


def is_low_precision(xs: TensorList) -> bool:
    """Whether ``xs`` hold bfloat16 or float16 elements (judged by the first)."""
    return bool(xs) and xs[0].dtype in _LOW_PRECISION


def _on_host(value) -> bool:
    return isinstance(value, Tensor) and value.device.type == "cpu" and value.dim() == 0


def per_count(
    formula: Callable[..., Scalar],
    counts: list[float],
    *per_tensor: Scalar | list[float],
    held: bool = False,
) -> list[float] | list[Tensor]:
    """``[formula(t, *values) for t, *values in zip(counts, *per_tensor)]`` as numbers, ``formula``
    evaluated once per distinct ``(t, *values)``.

    ``formula`` is a rule's host arithmetic on hyperparameters (a bias-corrected step size).
    Each of ``per_tensor`` is a hyperparameter: one value for every tensor, or a list with one
    value per tensor (param groups run together with their own learning rates; see
    ``RuleOptimizer._per_tensor_arguments``). A hyperparameter given as a 0-dim host tensor
    (``lr=torch.tensor(0.01)``) makes it tensor arithmetic in that tensor's dtype, as in
    torch.optim's for-loop path, and the value is read back as a number (host memory: no
    synchronisation), as torch's op reads its ``value=``.

    >>> lr = torch.tensor(0.01)  # float32
    >>> per_count(lambda t, lr: lr / (1 - 0.9**t), [1.0, 1.0], lr) == [float(lr / (1 - 0.9))] * 2
    True
    >>> per_count(lambda t, lr: lr * t, [1.0, 2.0], [0.5, 0.25])
    [0.5, 0.5]

    With ``held``, values computed as 0-dim host tensors stay tensors (one per tensor, as
    torch's foreach path keeps Adagrad's ``-lr / (1 + (t - 1) lr_decay)``), for a multi-tensor
    ``mul`` over bfloat16 or float16 tensors, which multiplies by a tensor in float32 and by a
    number rounded to their dtype (see :func:`_held_as_tensor`).
    """
    if held and not torch.compiler.is_compiling():
        values = _per_row(formula, (counts, *per_tensor), len(counts))
        if _on_host(values[0]):
            return values
        return [host_number(value) for value in values]
    if list not in map(type, per_tensor):  # (one value for every tensor: a C-level pass)
        if len(counts) == 1:  # (the common case, a step's one count, without the bookkeeping)
            value = formula(counts[0], *per_tensor)
            return [value if isinstance(value, float) else host_number(value)]
        values = {t: host_number(formula(t, *per_tensor)) for t in set(counts)}
        return [values[t] for t in counts]
    return _per_row(lambda *row: host_number(formula(*row)), (counts, *per_tensor), len(counts))


def negated(value: Scalar | list[float]) -> Scalar | list[float]:
    """``-value``, or for one number per tensor (see :func:`per_tensor`) each negated: the
    ``alpha=-lr`` of a rule's last op, without :func:`per_tensor`'s bookkeeping on a hot path.

    >>> negated(0.5), negated([0.5, 0.25])
    (-0.5, [-0.5, -0.25])
    """
    return [-v for v in value] if type(value) is list else -value


def per_tensor(
    formula: Callable[..., Scalar], *arguments: Scalar | list[float]
) -> Scalar | list[Scalar]:
    """``formula(*arguments)``, or where an argument is a list with one number per tensor (param
    groups run together; see ``RuleOptimizer._per_tensor_arguments``), the list of its values
    per tensor, ``formula`` evaluated once per distinct row: a multi-tensor op takes the list as
    torch's scalar list.

    >>> per_tensor(lambda lr: 1 - lr * 0.1, 0.5), per_tensor(lambda lr: 1 - lr, [0.5, 0.25])
    (0.95, [0.5, 0.75])
    """
    if list not in map(type, arguments):  # (one value for every tensor: a C-level pass)
        return formula(*arguments)
    (length,) = {len(values) for values in arguments if type(values) is list}
    return _per_row(formula, arguments, length)


def _per_row(formula: Callable[..., Scalar], arguments: tuple, length: int) -> list:
    """``formula`` over ``length`` rows, a list argument giving each row its own value and any
    other the same one, evaluated once per distinct row."""
    columns = [
        values if type(values) is list else itertools.repeat(values, length) for values in arguments
    ]
    rows = list(zip(*columns))
    computed = {row: formula(*row) for row in set(rows)}
    return [computed[row] for row in rows]


_FAST_ROUTE_DTYPES = (torch.float32, torch.float64)


def host_in_dtype_of(value: Scalar, xs: TensorList) -> Scalar:
    """A 0-dim host tensor ``value`` cast to the dtype of ``xs`` (anything else unchanged), as
    torch.optim's for-loop path casts a tensor ``beta1`` to the parameter's dtype before
    ``1 - beta1`` (float64 parameters: the weight is exact, not rounded to float32)."""
    if _on_host(value) and not torch.compiler.is_compiling() and value.dtype != xs[0].dtype:
        return value.to(xs[0].dtype)
    return value


def in_dtype_of(value: _Scalars, xs: TensorList) -> _Scalars:
    """``value`` (a scalar or a list of 0-dim tensors, one per x) in the dtype of ``xs``.

    Eager ops already cast a 0-dim float64 scalar to a float32 operand's dtype (the scalar's
    bits never widen the computation), so eager code on a CPU needs nothing. Under
    ``torch.compile`` the same cast is made explicit, so inductor's kernel computes in float32
    and stays vectorised instead of widening every element to float64. On a GPU, eager, a
    float32 or float64 list gets a device scalar of another of the two dtypes cast too: torch's
    multi-tensor CUDA ops take their fast route (one kernel over the list, reading the scalar on
    the device) only for a scalar of the list's dtype, and ran a non-vectorised op per tensor
    otherwise (Prodigy on 4 tensors of 4M elements, H200: 16 such ``mul`` a step, 16 us each
    against 8 us). The result is the same either way (a float32 kernel reads a float64 operand
    as ``float(value)``; float32 to float64 is exact).
    """
    if not torch.compiler.is_compiling():
        if (
            isinstance(value, Tensor)
            and not value.is_cpu
            and xs
            and value.dtype != xs[0].dtype
            and value.dtype in _FAST_ROUTE_DTYPES
            and xs[0].dtype in _FAST_ROUTE_DTYPES
            and value.device == xs[0].device
        ):
            return value.to(xs[0].dtype)
        return value
    if isinstance(value, list):
        return [v.to(x.dtype) if v.dtype != x.dtype else v for v, x in zip(value, xs)]
    if isinstance(value, Tensor) and value.dtype != xs[0].dtype:
        return value.to(xs[0].dtype)
    return value


def computed_once(*scalar_lists: TensorList) -> tuple[TensorList, ...]:
    """Loop-invariant 0-dim scalars, forced into a buffer of their own under ``torch.compile``.

    Inductor inlines pointwise producers into their consumer, so a bias correction built from
    ``pow`` would be recomputed for every vector of the parameter buffer (two million ``pow``
    calls per step on 16M elements). A concatenation is always materialised: stacking the
    scalars (with a spare zero, so even one scalar is a real concatenation) computes them once.
    Values are moved, not changed; eager code does nothing.
    """
    if not torch.compiler.is_compiling():
        return scalar_lists
    flat = [s for scalars in scalar_lists for s in scalars]
    packed = torch.stack([*flat, torch.zeros_like(flat[0])]).unbind(0)
    out, start = [], 0
    for scalars in scalar_lists:
        out.append(list(packed[start : start + len(scalars)]))
        start += len(scalars)
    return tuple(out)


def may_be_nonzero(value: Scalar) -> bool:
    """True unless ``value`` is known on the host to be zero: a Python number, or a 1-element
    tensor on the host, read as torch.optim reads ``if momentum != 0`` (host memory: no
    synchronisation; so ``momentum=torch.tensor(0.0)`` makes no momentum buffer, as in torch).

    A device tensor's value is never inspected (that would synchronise), nor is any tensor
    under ``torch.compile``, so such a hyperparameter takes the general branch; the result is
    the same, since adding ``0 * x`` changes nothing finite.
    """
    if isinstance(value, Tensor):
        if value.device.type != "cpu" or value.numel() != 1 or torch.compiler.is_compiling():
            return True
        return value.item() != 0
    return value != 0


def is_unit(value: Scalar) -> bool:
    """Whether ``value`` is known on the host to be 1 or -1 (``value * x`` exact for every x)."""
    value = host_number(value)
    return not isinstance(value, Tensor) and abs(value) == 1


def as_float64(steps: TensorList) -> TensorList:
    """Step counters promoted to float64, so bias corrections match torch's double arithmetic."""
    if steps[0].dtype == torch.float64:
        return steps
    one = torch.ones((), dtype=torch.float64, device=steps[0].device)
    return list(torch._foreach_mul(steps, one))


def scalar_pow(base: Scalar, exponents: TensorList) -> TensorList:
    """``[base ** e for e in exponents]``."""
    if isinstance(base, Tensor):
        return list(torch._foreach_pow([base] * len(exponents), exponents))
    return list(torch._foreach_pow(base, exponents))


_NUMBERS = frozenset((float, int))
_OPERAND_DTYPES = (torch.float32, torch.float64)
_OPERANDS_KEPT = 64
_FLOAT32_MAX = torch.finfo(torch.float32).max


class KeptOperands(threading.local):
    """The 0-dim tensors :func:`operand` hands out, one set per thread: for each dtype,
    ``_OPERANDS_KEPT`` tensors made once, together (views of one buffer), each holding one
    value (``tensors``, by ``(value, dtype)``); a new value is written into the oldest.

    Kept rather than made per value: a tensor made for a new value (a bias correction, at every
    step) and kept a while is a small allocation that outlives the step's temporaries, and glibc's
    ``malloc`` carved it out of the hole they left, so the next step's temporaries no longer fit
    there: with a new tensor per value, kept until 64 had accumulated, Adam on 8 tensors of 1M
    elements grew by a 4 MB round's temporaries (and faulted them in) at every step for 60
    steps, 230 MiB in all. Per thread, since a value is written into a tensor in place, which
    another thread's op may be reading meanwhile."""

    def __init__(self) -> None:
        self.tensors: dict[tuple[float, torch.dtype], Tensor] = {}
        self.seen_once: set[tuple[float, torch.dtype]] = set()
        self._slots: dict[torch.dtype, list[Tensor]] = {}
        self._held: dict[torch.dtype, list[tuple[float, torch.dtype] | None]] = {}
        self._oldest: dict[torch.dtype, int] = {}

    def keep(self, value: float, dtype: torch.dtype) -> Tensor:
        """A kept 0-dim CPU tensor of ``dtype`` now holding ``value`` (the oldest value of that
        dtype is forgotten)."""
        slots = self._slots.get(dtype)
        if slots is None:
            with torch.inference_mode(False):  # (a normal tensor: written in place any time)
                slots = list(torch.empty(_OPERANDS_KEPT, dtype=dtype, device="cpu").unbind())
            self._slots[dtype] = slots
            self._held[dtype] = [None] * _OPERANDS_KEPT
            self._oldest[dtype] = 0
        index = self._oldest[dtype]
        self._oldest[dtype] = (index + 1) % _OPERANDS_KEPT
        forgotten = self._held[dtype][index]
        if forgotten is not None:
            del self.tensors[forgotten]
        tensor = slots[index]
        tensor.fill_(value)
        key = (value, dtype)
        self._held[dtype][index] = key
        self.tensors[key] = tensor
        return tensor


_kept_operands = KeptOperands()


def operand(value: _Scalars, xs: TensorList) -> _Scalars:
    """``value`` as the scalar operand of a multi-tensor ``mul`` or ``div`` over ``xs``: a
    Python number (or a list of one number per tensor, all equal) becomes a 0-dim CPU tensor of
    their dtype when they are all float32 or all float64 CPU tensors; anything else is returned
    as it is.

    The numbers are the same: torch's CPU kernels read a number operand, and a 0-dim CPU tensor
    operand, as one value in the tensors' dtype (float32: ``float(value)``), so the results are
    bitwise equal. The cost is not: a number is wrapped into a new tensor for every tensor of
    the list (``_foreach_mul_(xs, 0.9)`` takes 1.6-2.2 us a tensor of 1k elements on this
    project's CPU, against 0.4-0.5 us with a tensor operand; ``_foreach_add`` gains nothing,
    so it keeps its number). A number seen again (a hyperparameter) reuses its tensor; a new
    one (a bias correction) is written into a kept tensor (:class:`KeptOperands`) for a list
    of two or more, and for one tensor from the second time it is seen. bfloat16 and float16
    keep the number (torch's multi-tensor ``mul`` rounds it to their dtype, as a tensor operand
    of their dtype would be; see :func:`tensor_mul_`), which leaves torch's own op to decide.
    """
    given = value
    if (
        type(value) is list
        and len(value) == len(xs)
        and value
        and type(value[0]) in _NUMBERS
        and value.count(value[0]) == len(value)
    ):
        value = value[0]  # one number per tensor, all the same (a step's bias correction)
    if type(value) not in _NUMBERS or not value or not xs or torch.compiler.is_compiling():
        return given  # (zero too: 0.0 and -0.0 are one key of the kept tensors, not one sign)
    first = xs[0]
    dtype = first.dtype
    if dtype not in _OPERAND_DTYPES or not first.is_cpu:
        return given
    if dtype is torch.float32 and not abs(value) <= _FLOAT32_MAX:
        return given  # (a float32 tensor cannot hold it: torch's number rounds it to inf)
    if len(xs) > 1 and not (
        all(map(operator.is_, map(_DTYPE, xs), itertools.repeat(dtype))) and all(map(_IS_CPU, xs))
    ):
        return given
    kept = _kept_operands
    key = (value, dtype)
    tensor = kept.tensors.get(key)
    if tensor is not None:
        return tensor
    if len(xs) == 1 and key not in kept.seen_once:
        if len(kept.seen_once) >= _OPERANDS_KEPT:
            kept.seen_once.clear()
        kept.seen_once.add(key)
        return given
    return kept.keep(value, dtype)


def mul_(xs: TensorList, factor: Scalar) -> None:
    """``x *= factor`` for every x (``factor`` a scalar or one 0-dim tensor per x), with the bits
    of torch's multi-tensor ``_foreach_mul_``, or, inside :func:`tensor_method_numbers`, of
    ``Tensor.mul_`` (see :func:`tensor_mul_`)."""
    if is_low_precision(xs) and tensor_method_numbers_active():
        tensor_mul_(xs, factor)  # (the two differ only there: float32 and float64 skip the check)
    else:
        _foreach_mul_(xs, factor)


def _foreach_mul_(xs: TensorList, factor: Scalar) -> None:
    if _held_as_tensor(factor, xs):
        torch._foreach_mul_(xs, factor)  # (its Tensor overloads: float32, see below)
        return
    torch._foreach_mul_(xs, operand(in_dtype_of(host_number(factor), xs), xs))


def _held_as_tensor(factor, xs: TensorList) -> bool:
    """Whether ``factor`` multiplies bfloat16 or float16 CPU tensors as the 0-dim host tensor it
    is (or a list of such, one per tensor), not as its number.

    torch's multi-tensor ``_foreach_mul_`` rounds a number to the tensors' dtype first, but
    multiplies by a 0-dim tensor in float32 (its Tensor and Tensor-list overloads, as
    ``Tensor.mul_`` does: torch 2.13, 0.9 times 100k bfloat16 elements, 33132 differ). torch's
    foreach path passes a hyperparameter given as a tensor on as that tensor (SGD's
    ``_foreach_mul_(bufs, momentum)``, RMSprop's ``alpha``, Adadelta's ``rho``, Adagrad's
    ``-lr / (1 + (t - 1) lr_decay)`` from a tensor ``lr``), so the rules' hyperparameters keep
    their tensors here too. In float32 and float64 the two are the same bits, and the number
    is faster (:func:`operand`). Not on a GPU, whose kernels were not measured."""
    if not is_low_precision(xs) or not xs[0].is_cpu:
        return False
    first = factor[0] if type(factor) is list and factor else factor
    return _on_host(first) and not torch.compiler.is_compiling()


_TENSOR_METHOD_NUMBERS = contextvars.ContextVar("tensor_method_numbers", default=False)


def tensor_method_numbers_active() -> bool:
    """Whether this runs inside :func:`tensor_method_numbers` (torch's for-loop path); never
    under ``torch.compile`` (whose kernels round as inductor does, and which cannot trace a
    ``ContextVar``)."""
    return not torch.compiler.is_compiling() and _TENSOR_METHOD_NUMBERS.get()


class tensor_method_numbers:  # (named as the context manager it is used as)
    """Within it, :func:`mul_` multiplies as ``Tensor.mul_`` does: the one-tensor path, whose
    reference is torch.optim's for-loop path (``foreach=False``), runs its rules inside it.

    A class rather than a ``contextlib.contextmanager`` generator, which costs 0.5 us more per
    step, a few percent of a one-tensor step (torch's optimizer-in-backward pattern runs one
    optimizer per parameter with ``foreach=False``)."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _TENSOR_METHOD_NUMBERS.set(True)

    def __exit__(self, *exception: object) -> None:
        _TENSOR_METHOD_NUMBERS.reset(self._token)


def tensor_mul_(xs: TensorList, factor: Scalar) -> None:
    """``x.mul_(factor)`` for every x, with ``Tensor.mul_``'s bits: the op of the packages that
    update one tensor at a time (``dadaptation``, ``prodigyopt``), where :func:`mul_` has the bits
    of torch's multi-tensor op (torch.optim's foreach path).

    The two differ on a CPU for a number times a bfloat16 or float16 tensor: ``_foreach_mul_``
    rounds the number to the tensors' dtype first (x * bf16(0.9)), ``Tensor.mul_`` multiplies by
    it in float32 (torch 2.13: 331 of 1000 bf16 elements differ for 0.9, 149 of fp16; every
    other multi-tensor op with a number, and a 0-dim float32 operand, agree). Those lists take
    ``Tensor.mul_`` itself, one tensor at a time; anything else is :func:`mul_`. A NumPy scalar
    (``np.float64(0.9)``, from a config or a grid) is a number there, as torch reads it.
    """
    factor = host_number(factor)
    if (
        (type(factor) in _NUMBERS or isinstance(factor, numbers.Real))
        and is_low_precision(xs)
        and xs[0].is_cpu
        and not torch.compiler.is_compiling()
    ):
        for x in xs:
            x.mul_(factor)
    else:
        _foreach_mul_(xs, factor)


def _added_term(term, xs: TensorList):
    """``term`` as the operand of a multi-tensor add over ``xs``: as it is, but a 0-dim tensor
    under ``torch.compile``, which is given once per x (the list overload).

    Added as one tensor (``torch._foreach_add(xs, t)``), a compiled graph reads its value at
    compile time (inductor's ``_tensorify_python_scalars`` guards ``t.item() == value``), so
    each new value recompiles, and torch's on-disk compile cache then serves the kernel of an
    earlier process with that process's value baked in (torch 2.13: ``Adadelta(eps=1e-6,
    compile=True)`` run after a cached ``eps=1e-3`` updated with 1e-3, 0.28 apart from torch
    after three steps). As a list of that tensor it stays an input of the kernel."""
    term = in_dtype_of(host_number(term), xs)
    if isinstance(term, Tensor) and torch.compiler.is_compiling():
        return [term] * len(xs)
    return term


def add_(xs: TensorList, term: _Scalars) -> None:
    """``x += term`` for every x (``term`` a scalar or one 0-dim tensor per x)."""
    torch._foreach_add_(xs, _added_term(term, xs))


_ONE_TENSOR_OP = {
    torch._foreach_sqrt: torch.sqrt,
    torch._foreach_neg: torch.neg,
    torch._foreach_add: torch.add,
    torch._foreach_addcmul: torch.addcmul,
}


def temporary(
    foreach_op: Callable[..., TensorList],
    xs: TensorList,
    *operands: _Scalars,
    **keywords: Scalar,
) -> TensorList:
    """``list(foreach_op(xs, *operands, **keywords))``, a new list the rule uses only until it
    returns (``foreach_op`` one of ``torch._foreach_sqrt``, ``_neg``, ``_add``, ``_addcmul``).

    In an optimizer's step on a CPU, the result for a list of one tensor of 16k to 1M elements
    (a round of the blocked lists, a packed round, a flat block) is written into memory the
    optimizer keeps (:class:`optim._paths.RoundTemporaries`, which says why and when) by the
    one-tensor op (``torch.sqrt(x, out=kept)``): the op torch's CPU multi-tensor op runs for
    each tensor, so the bits are the same. The kept tensor has ``x``'s dtype and shape, so a
    list operand of another dtype or shape (a state tensor a user replaced with a float64 one:
    torch computes ``g + mu * b`` in float64 then, or broadcasts) keeps torch's allocating op.
    A rule must not keep such a tensor (in its state, or past its return): the next call writes
    over it.
    """
    if len(xs) != 1 or xs[0].numel() < KEPT_TEMPORARY_SIZES[0]:  # (cheap checks first)
        return list(foreach_op(xs, *operands, **keywords))
    x = xs[0]
    firsts = [operand[0] if isinstance(operand, list) else operand for operand in operands]
    for operand, first in zip(operands, firsts):
        if isinstance(operand, list) and (first.dtype != x.dtype or first.shape != x.shape):
            return list(foreach_op(xs, *operands, **keywords))
    kept = round_temporaries()
    out = None if kept is None else kept.take(x)
    if out is None:
        return list(foreach_op(xs, *operands, **keywords))
    _ONE_TENSOR_OP[foreach_op](x, *firsts, out=out, **keywords)
    return [out]


def temporary_add(xs: TensorList, term: _Scalars) -> TensorList:
    """``x + term`` for every x, a :func:`temporary` of the rule."""
    return temporary(torch._foreach_add, xs, _added_term(term, xs))


def regularized_gradients(
    grads: TensorList, params: TensorList, *, maximize: bool, weight_decay: Scalar
) -> TensorList:
    r"""The rule's gradients :math:`g = \pm\nabla f(\theta) + \lambda\theta` (``maximize``
    negates, ``weight_decay`` is the L2 coefficient :math:`\lambda`), as torch.optim's foreach
    path makes them: ``_foreach_neg``, then the decay added into that copy in place, or into a
    new list without ``maximize``. Either new list is a :func:`temporary` of the rule; the
    gradients as given where neither applies."""
    if maximize:
        grads = temporary(torch._foreach_neg, grads)
    if may_be_nonzero(weight_decay):
        number = host_number(weight_decay)
        if maximize and not isinstance(number, Tensor) and grads and not grads[0].is_sparse:
            add_scaled_(grads, params, number)  # (into the negated copy, as torch reuses it)
        else:
            grads = temporary_add_scaled(grads, params, number)
    return grads


def temporary_add_scaled(xs: TensorList, ys: TensorList, scale: Scalar) -> TensorList:
    """``x + scale * y`` for every pair, as :func:`add_scaled` computes it, a :func:`temporary`
    of the rule where it is one multi-tensor op (``scale`` a number, ``xs`` dense)."""
    scale = host_number(scale)
    if isinstance(scale, Tensor) or (xs and xs[0].is_sparse):
        return add_scaled(xs, ys, scale)
    return temporary(torch._foreach_add, xs, ys, alpha=scale)


def div_(xs: TensorList, divisor: _Scalars) -> None:
    """``x /= divisor`` for every x (``divisor`` a scalar or one 0-dim tensor per x)."""
    torch._foreach_div_(xs, operand(in_dtype_of(host_number(divisor), xs), xs))


def add_scaled(xs: TensorList, ys: TensorList, scale: Scalar) -> TensorList:
    """New list ``x + scale * y`` (a sparse x plus a dense y adds x last: sparse + dense is
    undefined; sparse + sparse keeps torch's order of entries, which sets the order in which an
    update adds repeated rows)."""
    scale = host_number(scale)
    if xs and xs[0].is_sparse and not ys[0].is_sparse:
        return list(torch._foreach_add(torch._foreach_mul(ys, scale), xs))
    if isinstance(scale, Tensor):
        return list(torch._foreach_add(xs, torch._foreach_mul(ys, in_dtype_of(scale, ys))))
    return list(torch._foreach_add(xs, ys, alpha=scale))


LARGE_TENSOR = 16_384
"""Elements per tensor (on average) from which :func:`difference_into` takes one op per tensor
(measured, 2 threads: 400 tensors of 40k elements 8.4 ms per tensor against 10.9 as two
multi-tensor ops; 100 of 4096 elements 0.38 against 0.28, 2000 of 1000 9.2 against 3.7)."""


def difference_into(outs: TensorList, xs: TensorList, ys: TensorList) -> None:
    """out_i = x_i - y_i, written into ``outs`` (no temporary): one ``torch.sub(out=)`` per
    tensor for a few tensors (a packed round) or large ones (one pass over memory instead of
    two, see :data:`LARGE_TENSOR`), else a multi-tensor copy and subtraction (one op each,
    however many tensors, cheaper per small tensor). The same bits either way: the
    difference is taken in the inputs' promoted dtype and rounded to ``out``'s, as
    ``dadaptation``'s ``z.copy_(x0 - s)``. A tensor of another shape than the others (a state
    replaced by the user) takes that expression itself, with its broadcast or its error
    (``out=`` would resize it, with a warning, and train on)."""
    if len(outs) <= 4 or sum(map(Tensor.numel, outs)) >= LARGE_TENSOR * len(outs):
        for out, x, y in zip(outs, xs, ys):
            if out.shape == x.shape == y.shape:
                torch.sub(x, y, out=out)
            else:
                out.copy_(x - y)
    else:
        torch._foreach_copy_(outs, xs)
        torch._foreach_sub_(outs, ys)


def add_scaled_(xs: TensorList, ys: TensorList, scale: Scalar | list[float]) -> None:
    """``x += scale * y`` for every pair (``scale`` a scalar, or one number per pair: each run
    of equal numbers is one multi-tensor op with ``alpha=``, which has no scalar list; a run of
    one CPU tensor is its ``add_``, the op the multi-tensor one runs for it on a CPU)."""
    scale = host_number(scale)
    if isinstance(scale, Tensor):
        torch._foreach_add_(xs, torch._foreach_mul(ys, in_dtype_of(scale, ys)))
    elif type(scale) is list:
        start = 0
        for alpha, run in itertools.groupby(scale):
            end = start + len(list(run))
            if end - start == 1 and xs[start].is_cpu and type(xs[start]) in _PLAIN_TYPES:
                xs[start].add_(ys[start], alpha=alpha)
            else:
                torch._foreach_add_(xs[start:end], ys[start:end], alpha=alpha)
            start = end
    else:
        torch._foreach_add_(xs, ys, alpha=scale)


def lerp_(xs: TensorList, ys: TensorList, weight: Scalar) -> None:
    """``x += weight * (y - x)`` for every pair (torch.lerp).

    A tensor weight is written out as ``x + w * (y - x)``: ``_foreach_lerp_`` with tensor weights
    has no inductor lowering, so under ``torch.compile`` it would run eagerly and split the fused
    kernel (torch.lerp rounds differently only for weights >= 0.5, by an ulp).

    A 0-dim host tensor weight over bfloat16 or float16 tensors is their ``Tensor.lerp_``'s
    inside :func:`tensor_method_numbers` (torch's for-loop path, RMSprop's ``grad_avg.lerp_(grad,
    1 - alpha)`` with a tensor ``alpha``): rounded to their dtype first, where a number weight
    (``_foreach_lerp_``'s, tensor or not) is taken in float32.
    """
    if _on_host(weight) and is_low_precision(xs) and tensor_method_numbers_active():
        weight = weight.to(xs[0].dtype)  # (torch's for-loop path: Tensor.lerp_ rounds it so)
    weight = host_number(weight)
    if isinstance(weight, Tensor):
        add_scaled_(xs, list(torch._foreach_sub(ys, xs)), weight)
    else:
        torch._foreach_lerp_(xs, ys, weight)


def addcmul_(xs: TensorList, ys: TensorList, zs: TensorList, value: Scalar) -> None:
    """``x += value * y * z`` for every triple."""
    value = host_number(value)
    if isinstance(value, Tensor):
        torch._foreach_add_(
            xs, torch._foreach_mul(torch._foreach_mul(ys, zs), in_dtype_of(value, xs))
        )
    else:
        torch._foreach_addcmul_(xs, ys, zs, value)


def on_device(value: _Scalars) -> bool:
    """True for a 0-dim tensor or a list of them (device scalars), False for host numbers."""
    return isinstance(value, Tensor) or (isinstance(value, list) and isinstance(value[0], Tensor))


def addcdiv_(
    xs: TensorList, numerators: TensorList, denominators: TensorList, value: _Scalars
) -> None:
    """``x += value * n / d`` for every triple.

    ``value`` is a Python number, a list of numbers (one per x, torch's scalar list), a 0-dim
    tensor, or a list with one 0-dim tensor per x. A tensor value scales the numerators (it never
    divides), so a zero value leaves ``x`` unchanged.
    """
    value = host_number(value)
    if on_device(value):
        scaled = torch._foreach_mul(numerators, in_dtype_of(value, xs))
        torch._foreach_addcdiv_(xs, scaled, denominators)
    else:
        torch._foreach_addcdiv_(xs, numerators, denominators, value)
