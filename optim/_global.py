"""The shared step of optimizers whose update reduces over whole param groups (or all of them).

D-Adaptation, Prodigy, DoG, SPS and SLS compute a scalar from the whole model (a weighted sum, a
distance, a norm) before they can update any parameter, so their rules cannot run on the blocks
and packed buffers of ``optim._base``'s default path. :class:`ReducingOptimizer` hands each rule
complete lists instead, as *chunks*, one path deciding what a chunk is:

``impl="single"``
    one chunk per parameter (the readable reference);
``impl="foreach"`` (the default)
    per param group, device and dtype, the group's own tensors in rounds of whole tensors (about
    256k elements; a larger tensor is a round of its own, and one of more than ``BLOCK``
    elements is seen as blocks of ``BLOCK``, views of it, its gradient and its state, so no
    temporary is larger than a round, a tensor or a block; see
    :meth:`ReducingOptimizer._blocks`); many small tensors
    (``optim._paths.PACK_AT_LEAST`` or more, each under ``PACK_BELOW`` elements) are packed as
    in ``optim._base``: their state lives in optimizer-owned buffers (``optimizer.state`` holds
    views, checked every step), the step gathers parameters and gradients into one buffer, runs
    the rules on it and copies the parameters back (a CPU runs a multi-tensor op as a loop, so
    one op over a buffer beats thousands of small ones); the rules see the buffers as one chunk
    per round of whole tensors (``optim._paths.packed_rounds``, about 256k elements), so each
    phase runs in cache and no temporary is larger than a round, and a rule hands each chunk
    back when its update is done (:meth:`ReducingOptimizer.updated`), which copies that round
    to its parameters while it is still in cache; LDoG, whose step sizes are each tensor's own,
    has each round gathered just before its distances and update (:meth:`ReducingOptimizer.fill`);
    a group run as its own tensors keeps its chunks for the next step while its parameters and
    state are unchanged (:class:`KeptChunks`), as ``optim._base``'s classic rules keep their
    lists;
``impl="flat"``
    the tensors of each param group, device and dtype live in one flat buffer (the parameters'
    ``.data`` become views, as for ``optim._paths.Flat``), seen as chunks of rounds as above, a
    tensor of ``BLOCK`` elements or more a round of its own, whose new gradient (torch's
    default ``zero_grad()``) is read where autograd left it; smaller new ones are copied in.

A rule that needs per-tensor values (DoG, LDoG) reduces a packed or flat chunk over its parts
(``Chunk.segments``: one op per run of equal-sized parts when the parts are many and small and
form few runs, else one op per part; either way the bits of each tensor's own op).

Reductions return one value per tensor (:func:`dots`, :func:`abs_sums`, ...) in float64 on the
parameters' device, and :func:`total` adds them up in the order of the param groups and their
tensors, one after another, as the references' Python floats add ``.item()`` by ``.item()``, so
that the float64 estimates are the packages' bits (a group mixing dtypes or devices too: see
:func:`parameter_order`). The algorithm's global scalars (D-Adaptation's ``d``, Prodigy's,
...) are kept in the param groups under the reference package's names, as 0-dim float64
tensors on the device after the first step (floats before it, as the references keep them,
computing in Python floats), so ``step()`` never reads a value back from the device; on a CPU,
where that read is no synchronisation, Prodigy and the D-Adaptation classes keep them as
Python floats, as the references do (:func:`host_scalars`, :meth:`ReducingOptimizer.number`). DoG's
package instead computes its ``rbar``, ``G`` and ``eta`` as tensors in the parameters' dtype,
and so do ours (``optim.dog``). On the CPU the updates read them as numbers
(``optim._ops.host_number``: host memory, not a synchronisation), as the references pass their
floats. Python's ``max``/``min`` of the references are :func:`py_max` and
:func:`py_min`, which treat NaN as Python does. A learning rate given as a tensor enters at its
value (float64 scalars as for a float); the packages would compute their estimates in its dtype
(float32 for ``torch.tensor(1.0)``), which is not their algorithm but an accident of Python's
arithmetic on a tensor, so their numbers are matched for a float ``lr``. (DoG's package does
all of its arithmetic in tensors, and ``optim.dog`` follows it, a tensor ``lr`` included.)
"""

from __future__ import annotations

import ctypes
import functools
import glob
import inspect
import itertools
import math
import numbers
import operator
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from optim import _ops as ops
from optim import _paths
from optim._base import (
    RuleOptimizer,
    _grads_of_another_dtype,
    _is_sparse,
    _kept_where_they_lie,
    _number,
    without_grad,
)
from optim._paths import (
    _DEVICE,
    _DTYPE,
    _GRAD,
    _SHAPE,
    FAST_DTYPES,
    OUTSIDE_INFERENCE_MODE,
    PACK_AT_LEAST,
    PACK_BELOW,
    Flat,
    OwnedState,
    Segments,
    _identical,
    as_real,
    dense,
    gather_into,
    packed_rounds,
    packs_alike,
    states_fit,
    views_like,
    write_in_place,
)
from optim._state import TrackedState


class Pack(OwnedState):
    """Optimizer-owned buffers for many small tensors of one group, device and dtype: the state
    (:class:`optim._paths.OwnedState`), and a gradient and a parameter buffer refilled at every
    step (the parameters keep their own storage).

    The rules see the buffers as several chunks, one per round of consecutive whole tensors
    (``optim._paths.packed_rounds``): each phase of a rule then runs over a cache-sized part
    before the next, and its temporaries are that size, not the whole group's (on a CPU,
    allocating and freeing temporaries of many megabytes cost page faults every step).
    """

    @OUTSIDE_INFERENCE_MODE
    def __init__(
        self, params: list[Tensor], states: list[dict], keys: tuple[str, ...], positions: list[int]
    ) -> None:
        super().__init__(params, states, keys, counts_steps=False)
        self.positions = positions  # where the parameters stand in their param group
        self.grad = torch.empty(sum(self.sizes), dtype=self.dtype, device=params[0].device)
        self.work = torch.empty_like(self.grad)
        self.grad_views = views_like(self.grad, params)
        self.work_views = views_like(self.work, params)
        self.one_dim = all(p.dim() == 1 for p in params)
        self.rounds = packed_rounds(self.sizes, params[0].device)
        self.segments = [Segments.of(params[i:j]) for i, j, _, _ in self.rounds]

    def gather(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        positions: list[int],
        with_params: bool = True,
    ) -> list[Chunk]:
        """Fill the buffers from ``params`` (unless not ``with_params``: each round is then
        filled when a rule needs it, see ``ReducingOptimizer.fill``) and ``grads``; the chunks
        over them, one per round."""
        gather_into(self.grad, self.grad_views, grads, self.one_dim)
        if with_params:
            gather_into(self.work, self.work_views, params, self.one_dim)
        return [
            Chunk(
                [self.work[begin:end]],
                [self.grad[begin:end]],
                {key: [self.buffers[key][begin:end]] for key in self.keys},
                positions[i:j],
                segments,
            )
            for (i, j, begin, end), segments in zip(self.rounds, self.segments)
        ]


class Chunk(NamedTuple):
    """Aligned lists a rule runs over: parameters, gradients and one list per state key."""

    params: list[Tensor]
    grads: list[Tensor]
    state: dict[str, list[Tensor]]
    positions: list[int] = []  # noqa: RUF012 (a NamedTuple default, never mutated)
    """Where each tensor's parameter stands in its param group's ``params`` (per-tensor rules)."""
    segments: Segments | None = None
    """For a chunk of one flat buffer (packed or ``impl="flat"``): the parameters it holds, one
    after the other (per-tensor rules reduce over them); None for a chunk of the parameters' own
    tensors."""


class Work(NamedTuple):
    """One param group's chunks for this step (empty if no parameter has a gradient)."""

    group: dict
    chunks: list[Chunk]


class KeptChunks(NamedTuple):
    """A param group's chunks over the parameters' own tensors (neither packed, flat, in blocks
    nor complex views), as a step built them, kept for the next step: while
    :meth:`~optim._base.RuleOptimizer._steady` finds them current (the same parameters and
    state keys, no state entry assigned, added or removed since) and every parameter still has
    a dense gradient and the device, dtype and size it had, the next step reuses them with its own
    gradients (:meth:`ReducingOptimizer._kept_chunks`), as the classic rules reuse their
    :class:`~optim._base.SteadyLists`; a group of a few small tensors then skips the state
    lookups and the choice of rounds (DAdaptSGD over five tiny tensors: 36 of a 240 us step).
    Not kept, so that every step chooses again, where that choice can change without anything
    above changing: ``impl="flat"``'s (its layouts), a group the default path may pack
    (:meth:`ReducingOptimizer._may_pack`) and SPS's and SLS's groups holding a tensor of more
    than ``BLOCK`` elements (blocks where it and its gradient are contiguous)."""

    params: list[Tensor]  # the group's parameters as they were (a copy of its list)
    keys: tuple[str, ...]
    stamp: tuple[int, int]
    kind: tuple[torch.device, torch.dtype]
    sizes: list[int]  # each parameter's number of elements (its rounds were chosen by them)
    chunks: list[Chunk]
    spans: list[tuple[int, int]]  # each chunk's parameters, params[begin:end]


def host_scalars(device: torch.device) -> bool:
    """Whether a step computes its global scalars (the estimate ``d``, the sums' totals) as
    Python floats, as the references do: on a CPU, outside ``torch.compile``, where reading a
    0-dim tensor is no synchronisation and every operation on one is a kernel dispatch (a
    Prodigy step on one 50-element tensor ran 58 aten ops, 299 us, with them as tensors,
    against the package's 24 ops, 82 us). Elsewhere they stay 0-dim float64 tensors on the
    device, so that ``step()`` never reads one back. Float64 either way: the same bits."""
    return device.type == "cpu" and not torch.compiler.is_compiling()


def host_numbers(device: torch.device, *values: Tensor) -> tuple[float | Tensor, ...]:
    """``values`` (a step's totals: 0-dim tensors, or Python floats already where :func:`total`
    added them on the host) read as Python floats where the step computes its scalars on the
    host (:func:`host_scalars`), else as they are."""
    if not host_scalars(device):
        return values
    return tuple(v.item() if isinstance(v, Tensor) else v for v in values)


def choose(condition: bool | Tensor, if_true: float | Tensor, otherwise: float | Tensor):
    """``if_true if condition else otherwise``: ``torch.where`` for a tensor condition (on the
    device, nothing read back), Python's conditional for a host one."""
    if isinstance(condition, Tensor):
        return torch.where(condition, if_true, otherwise)
    return if_true if condition else otherwise


def py_max(a: float | Tensor, b: float | Tensor) -> float | Tensor:
    """Python's ``max(a, b)``: ``b`` if ``b > a`` else ``a`` (a NaN ``b`` loses), on host numbers
    or 0-dim tensors alike."""
    return choose(b > a, b, a)


def py_min(a: float | Tensor, b: float | Tensor) -> float | Tensor:
    """Python's ``min(a, b)``: ``b`` if ``b < a`` else ``a`` (a NaN ``b`` loses), on host numbers
    or 0-dim tensors alike."""
    return choose(b < a, b, a)


def python_sqrt(x: float | Tensor) -> float | Tensor:
    """``math.sqrt`` of a host number or a 0-dim float64 tensor, as the references take it of
    their Python floats: a tensor in host memory is read, rooted by Python and put back (not a
    synchronisation); on a GPU, ``torch.sqrt``, which CUDA rounds correctly. (torch's CPU
    ``sqrt`` of float64 is not correctly rounded: 1.4% of 20k values in [1e-8, 1e-3] were an ulp
    from ``math.sqrt``, which put DAdaptSGD's d an ulp from the package's after 16 steps.)"""
    if not isinstance(x, Tensor):
        return math.sqrt(x)
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return x.sqrt()
    return torch.tensor(math.sqrt(x.item()), dtype=torch.float64, device=x.device)


def ieee_divide(a: float | Tensor, b: float | Tensor) -> float | Tensor:
    """``a / b`` as IEEE 754 and a tensor divide it: where ``b`` is 0 a host number gives
    ``±inf`` (``a`` not 0) or NaN, where Python raises ``ZeroDivisionError``. For an estimate
    that a step computes and then discards (DAdaptSGD's at lr 0, whose ``||s||`` is 0 there)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor) or b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def total(
    values: Iterable[Tensor],
    device: torch.device,
    start: float | Tensor | None = None,
    order: list[list[tuple[int, int]]] | None = None,
) -> Tensor | float:
    """``start + v_1 + v_2 + ...`` over the entries of ``values`` (0-dim tensors or vectors, in
    order), added one after another in float64 (0 if there is nothing to add): the bits of the
    references' Python float that accumulates ``.item()`` parameter by parameter (a ``sum``
    adds pairwise, which put D-Adaptation's and Prodigy's float64 estimates an ulp from the
    packages' at the first step, and a chaotic loss grows an ulp to 1e-2 in 200 steps).

    Where the step computes its scalars on the host (:func:`host_scalars`: a CPU, outside
    ``torch.compile``) a Python float: up to :data:`HOST_LOOP_MOST` entries read with one
    ``tolist`` per vector and added in a Python loop, as the references add them (not
    ``sum()``, which compensates its rounding from Python 3.12), more by the scan below, read
    once. Elsewhere a 0-dim float64 tensor on ``device``, added by ``torch.cumsum`` (on a GPU
    the scan adds in another order, within rounding of it), nothing read back.

    ``order`` (see :func:`parameter_order`): for each of ``values``, the (param group,
    position) of each of its entries; they are then added in the order of the param groups and
    their parameters, as the packages add them."""
    values = list(values)
    if not host_scalars(device):
        return _scanned_total(values, device, start, order)
    if sum(map(Tensor.numel, values)) <= HOST_LOOP_MOST:
        return _host_total(values, start, order)
    return _scanned_total(values, device, start, order).item()


HOST_LOOP_MOST = 256
"""The most entries :func:`total` adds in a Python loop on the host. The reorder, ``cat``,
conversion and scan of 0-dim tensors (and the read of the result) took 15-23 us a call for 6 to
2000 entries, one thread; the loop 3.2-4.6 us for 6, 12-19 for 250, 17-21 for 400 to 512 and
78-116 for 2000 (the 2000 tensors of the packed 2000x1k bench model, two such totals a
DAdaptSGD step)."""


def _scanned_total(
    values: list[Tensor],
    device: torch.device,
    start: float | Tensor | None,
    order: list[list[tuple[int, int]]] | None,
) -> Tensor:
    """:func:`total` as a 0-dim float64 tensor on ``device``, added by ``torch.cumsum``."""
    parts = [v.reshape(-1) for v in values]
    if order is not None and parts:
        joined = torch.cat(parts)
        parts = [joined[torch.tensor(_in_group_order(order), device=joined.device)]]
    if start is not None:
        if not isinstance(start, Tensor):  # (a host number: a step's running sum, see host_scalars)
            start = torch.tensor(start, dtype=torch.float64, device=device)
        parts.insert(0, start.reshape(-1))
    if not parts:
        return torch.zeros((), dtype=torch.float64, device=device)
    flat = (parts[0] if len(parts) == 1 else torch.cat(parts)).to(torch.float64)
    if flat.numel() == 1:
        return flat.reshape(())
    return torch.cumsum(flat, 0)[-1]


def _host_total(
    values: list[Tensor],
    start: float | Tensor | None,
    order: list[list[tuple[int, int]]] | None,
) -> float:
    """:func:`total` on the host: a Python float (see there)."""
    numbers: list[float] = []
    for v in values:
        numbers.extend(v.reshape(-1).tolist())
    if order is not None:
        numbers = [numbers[i] for i in _in_group_order(order)]
    if start is not None:
        numbers.insert(0, start.item() if isinstance(start, Tensor) else float(start))
    if not numbers:
        return 0.0
    running = numbers[0]
    for number in numbers[1:]:
        running += number
    return running


def _in_group_order(order: list[list[tuple[int, int]]]) -> list[int]:
    """The positions of :func:`total`'s entries (listed chunk by chunk, ``order`` giving each
    one's param group and position) in the order of the param groups and their parameters."""
    keys = [key for keys in order for key in keys]
    return sorted(range(len(keys)), key=keys.__getitem__)


def parameter_order(
    work: list[Work], included: Callable[[dict], bool] | None = None
) -> list[list[tuple[int, int]]] | None:
    """For per-tensor values listed chunk by chunk over the param groups of ``work`` (those
    ``included`` only), the (param group, position) of each, for :func:`total`; None when they
    are already in the groups' order, which is when no group mixes dtypes or devices (its
    chunks then follow its parameters). A group that mixes them has a chunk per kind: its
    values came kind by kind, and Prodigy's and D-Adaptation's ``d`` was an ulp from the
    packages' by the third step of a group of float32 and float64 tensors."""
    items = [(i, item) for i, item in enumerate(work) if included is None or included(item.group)]
    if all(
        len({(c.params[0].dtype, c.params[0].device) for c in item.chunks}) <= 1
        for _, item in items
    ):
        return None
    return [[(i, p) for p in chunk.positions] for i, item in items for chunk in item.chunks]


BLAS_DOT_PROBE_SIZES = (0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 64, 100, 1000, 1023, 4097)
"""Lengths on which :func:`blas_dot` must give ``torch.dot``'s bits, each at four offsets."""

_BLAS_INTEGERS: list[ctypes.c_int64] = []
"""The 64-bit integers whose addresses :func:`blas_dot` passes (kept alive here)."""


@functools.cache
def _blas_integer(value: int) -> int:
    """The address of a kept 64-bit integer holding ``value``: read as the 32-bit integer of the
    usual BLAS interface (its low half, on a little-endian machine) or as the 64-bit one of an
    ILP64 build, the same value either way. (Cached: one C-level lookup per tensor and step.)"""
    kept = ctypes.c_int64(value)
    _BLAS_INTEGERS.append(kept)
    return ctypes.addressof(kept)


@functools.cache
def blas_dot(dtype: torch.dtype) -> Callable[[int, int, int, int, int], float] | None:
    """``torch.dot``'s own CPU routine for ``dtype`` (float32: ``sdot_``, float64: ``ddot_``, of
    the BLAS linked into ``libtorch_cpu``: MKL on x86), called through ``ctypes`` with
    ``(&n, x, &1, y, &1)`` (addresses as ints, see :func:`_blas_integer`); None where it is not
    found, or where, on :data:`BLAS_DOT_PROBE_SIZES` at four offsets each, one of its results is
    not ``torch.dot``'s bit for bit (another BLAS, another calling convention).

    Why: ``torch.dot`` is where torch's CPU dot calls this routine (``at::native::blas_impl::
    dot_fast_path``), after a dispatch and a 0-dim result of its own; the references take one
    ``torch.dot(...).item()`` per tensor, and on 2000 tensors of 1k elements a ``torch.dot``
    each and their ``torch.stack`` took 2.2-3.1 us per tensor, the routine through ``ctypes``
    1.0-1.7 us with its two ``data_ptr`` reads, the same bits (the same routine, in the same
    process, under the same thread settings). Checked once per process and dtype.
    """
    name = {torch.float32: "sdot_", torch.float64: "ddot_"}.get(dtype)
    if name is None or sys.byteorder != "little":
        return None
    paths = sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "*torch_cpu.*")))
    try:
        routine = getattr(ctypes.CDLL(paths[0]), name)  # (releases the GIL, as torch.dot)
    except (IndexError, OSError, AttributeError):
        return None
    routine.restype = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
    routine.argtypes = [ctypes.c_void_p] * 5
    return routine if _gives_torch_dot_bits(routine, dtype) else None


def _gives_torch_dot_bits(routine: Callable[..., float], dtype: torch.dtype) -> bool:
    """Whether ``routine`` gives ``torch.dot``'s bits on :data:`BLAS_DOT_PROBE_SIZES`, each at
    four offsets into buffers of values spread over many binades (see :func:`blas_dot`)."""
    generator = torch.Generator().manual_seed(0)
    one = _blas_integer(1)
    on_cpu = {"dtype": dtype, "device": "cpu"}  # (whatever the default device)
    for size in BLAS_DOT_PROBE_SIZES:
        for offset in range(4):
            scales = torch.logspace(-6, 6, size + 8, **on_cpu)
            x = (torch.randn(size + 8, generator=generator, **on_cpu) * scales)[offset:]
            y = torch.randn(size + 8, generator=generator, **on_cpu)[3 - offset :]
            x, y = x[:size], y[:size]
            expected = torch.dot(x, y).item()
            got = routine(_blas_integer(size), x.data_ptr(), one, y.data_ptr(), one)
            if not (got == expected or (math.isnan(got) and math.isnan(expected))):
                return False
    return True


def dots(xs: list[Tensor], ys: list[Tensor], segments: Segments | None = None) -> Tensor:
    """[<x_i, y_i>] as a float64 vector: one ``torch.dot`` per tensor in the tensors' dtype, the
    references' ``torch.dot(...).item()``, bit for bit; or, with ``segments``, per part of the
    one flat tensor of each list, each part dotted where its own tensor would lie
    (:func:`aligned_parts`).

    A dot reads its two tensors once and allocates nothing. (Multiplying the tensors and summing
    the concatenated products in float64 made two model-sized temporaries and a slow converting
    sum: Prodigy's step on four tensors of 4M elements took 104 ms, 63 of them here.) A dot has
    no row-wise form with those bits: MKL's ``ddot`` fuses its multiplies and adds, and a
    batched ``bmm``, ``vecdot`` or ``(x * y).sum(1)`` differ from it in 22 of 64 float64 rows
    of 3 elements (and in 29-62 of 64 rows of 7 to 4097 elements, float32 too). So many small
    parts cost a dot each: on a CPU, for the parts of a flat buffer, a call of ``torch.dot``'s
    own BLAS routine (:func:`blas_dot`, 1.0-1.7 us per part with its ``data_ptr`` reads, where
    ``torch.dot`` and the ``torch.stack`` of the results took 2.2-3.1 us: DAdaptSGD's step on
    2000 tensors of 1k elements went from 29 to 15 ms; with the parts' addresses kept with the
    layout, :func:`aligned_addresses`, a round of 250 parts of 1k float32 took 240 us, 270
    before); ``torch.dot`` elsewhere. One dot over
    a packed round, taken before, was within rounding of them, and a chaotic loss grew that to
    a relative 1.2e-7 from DAdaptAdam's package in 200 float64 steps of 31 small tensors
    (``test_many_small_tensors_give_the_packages_bits``).

    ``ys`` may be an iterator: each ``y`` is dotted before the next is drawn, so each may be
    written into the same scratch (DAdaptAdam's quotients), and all the dots are stacked and
    converted once (a stack and a conversion per tensor cost DAdaptAdam's step on 400 tensors
    of 40k elements about 2-4 ms).
    """
    if segments is not None:
        (x,), (y,) = xs, ys
        routine = _blas_dot_for(x, y)
        if routine is not None:  # (each part contiguous, see aligned_parts: torch.dot's call)
            if segments.strided:  # (logical-order copies, held here while the routine reads)
                xs, ys = aligned_parts(x, segments, 0), aligned_parts(y, segments, 1)
                x_at, y_at = map(Tensor.data_ptr, xs), map(Tensor.data_ptr, ys)
            else:
                x_at, y_at = aligned_addresses(x, segments, 0), aligned_addresses(y, segments, 1)
            one = itertools.repeat(_blas_integer(1))
            values = map(routine, _blas_sizes(segments), x_at, one, y_at, one)
            return torch.tensor(list(values), dtype=torch.float64, device=x.device)
        xs, ys = aligned_parts(x, segments, 0), aligned_parts(y, segments, 1)  # (1-D)
    return torch.stack([torch.dot(_flat(x), _flat(y)) for x, y in zip(xs, ys)]).to(torch.float64)


def _flat(t: Tensor) -> Tensor:
    return t if t.dim() == 1 else t.reshape(-1)


def _blas_dot_for(x: Tensor, y: Tensor) -> Callable[..., float] | None:
    """:func:`blas_dot` for the parts of the flat ``x`` and ``y``: where both are contiguous CPU
    tensors of one real dtype (their parts then are, see :func:`aligned_parts`) short enough for
    the routine's 32-bit count, no ``torch.compile`` traces the step and no dispatch or
    ``__torch_function__`` mode is active (a user's mode, a FLOP counter or an op logger, then
    sees each ``torch.dot``, as it would with torch's own ops); else None."""
    if (
        x.device.type != "cpu"
        or y.device.type != "cpu"
        or x.dtype != y.dtype
        or not (x.is_contiguous() and y.is_contiguous())
        or max(x.numel(), y.numel()) > 2**31 - 1
        or torch.compiler.is_compiling()
        or torch._C._len_torch_dispatch_stack()
        or torch._C._is_torch_function_mode_enabled()
    ):
        return None
    return blas_dot(x.dtype)


ALIGNMENT = 64
"""Bytes to which torch's CPU allocator aligns a tensor's storage (``c10::gAlignment``)."""


def _aligned(part: Tensor) -> Tensor:
    """``part`` of a flat buffer, or a copy of it where its data does not start on an
    :data:`ALIGNMENT` boundary, as a tensor of its own does. On a CPU ``torch.dot`` is MKL's,
    whose bits depend on where the data starts (float64 parts starting 8 bytes off a 16-byte
    boundary, float32 ones 4, 8 or 12 bytes off, summed in another order), so a part of a flat
    buffer is dotted where the references' own tensor would lie."""
    if part.device.type != "cpu" or part.data_ptr() % ALIGNMENT == 0:
        return part
    return part.clone()


_PADDED = threading.local()
"""Each thread's reused buffers for :func:`aligned_parts`, by (slot, dtype)."""


def _padded_buffer(slot: int, dtype: torch.dtype, numel: int) -> Tensor:
    """A reused CPU buffer of at least ``numel`` elements, one per ``slot``, dtype and thread
    (a new megabyte-sized temporary at every call cost page faults: 3.6 of a DAdaptSGD step's
    26 ms on 2000 tensors of 1k elements)."""
    buffers = _PADDED.__dict__.setdefault("buffers", {})
    buffer = buffers.get((slot, dtype))
    if buffer is None or buffer.numel() < numel:
        with torch.inference_mode(False):  # (see OUTSIDE_INFERENCE_MODE)
            buffer = buffers[slot, dtype] = torch.empty(numel, dtype=dtype, device="cpu")
    return buffer


def aligned_parts(flat: Tensor, segments: Segments, slot: int = 0) -> list[Tensor]:
    """The parts of ``flat`` (see :class:`~optim._paths.Segments`) in their logical order, each
    starting on an :data:`ALIGNMENT` boundary as its own tensor would (see :func:`_aligned`).

    Parts that already start there are views; otherwise, on a CPU, every run of equal-length
    parts (``Segments.runs``) is copied with one op into the rows of a reused buffer
    (``slot``: which one; valid until the next call with it) padded to whole multiples of
    :data:`ALIGNMENT` bytes (a copy per part would cost about as much as its dot). A part laid
    out as a channels_last parameter is its logical-order copy (``Segments.split``).
    """
    if torch.compiler.is_compiling():  # (a user's torch.compile(step): no data pointers)
        return segments.split(flat, logical=True)
    if flat.device.type != "cpu" or segments.strided:
        return [_aligned(part) for part in segments.split(flat, logical=True)]
    rows = _padded_rows(flat, segments, slot)
    return segments.split(flat) if rows is None else rows.parts


def aligned_addresses(flat: Tensor, segments: Segments, slot: int = 0) -> list[int]:
    """The address of each part of :func:`aligned_parts` (for a contiguous CPU ``flat`` whose
    ``segments`` have no strided parts), as its ``data_ptr()``, with no view or ``data_ptr``
    call per part: the parts' byte offsets, or the padded rows' addresses, are kept with the
    layout (:func:`_kept_with`)."""
    rows = _padded_rows(flat, segments, slot)
    if rows is not None:
        return rows.addresses
    size = flat.element_size()
    offsets = _kept_with(
        segments,
        ("offsets", size),
        lambda: [begin * size for begin in itertools.accumulate(segments.sizes, initial=0)][:-1],
    )
    return list(map(flat.data_ptr().__add__, offsets))


def _blas_sizes(segments: Segments) -> list[int]:
    """:func:`_blas_integer` of each part's size, kept with the layout (see
    :func:`aligned_addresses`)."""
    return _kept_with(segments, "sizes", lambda: list(map(_blas_integer, segments.sizes)))


def _kept_with(
    segments: Segments, key: Any, make: Callable[[], Any], padded: Tensor | None = None
) -> Any:
    """What ``segments`` (a layout's parts) keeps under ``key``: ``make()``, made when it keeps
    nothing there yet, or kept it for another ``padded`` buffer (another thread's, or one
    since outgrown). Kept with the layout, it lasts as long as the optimizer's layout does."""
    entry = segments.kept.get(key)
    if entry is None or entry[0] is not padded:
        entry = segments.kept[key] = (padded, make())
    return entry[1]


class PaddedRows(NamedTuple):
    """The rows of :func:`_padded_rows`: each run's (2-D views), each part (a row), and each
    part's address."""

    targets: list[Tensor]
    parts: list[Tensor]
    addresses: list[int]


def _padded_rows(flat: Tensor, segments: Segments, slot: int) -> PaddedRows | None:
    """The parts of the contiguous CPU ``flat`` copied into aligned rows of a reused buffer
    (see :func:`aligned_parts`), or None where every part already starts on the boundary. The
    rows are laid out once per layout and buffer, and refilled at every call."""
    per_line = max(1, ALIGNMENT // flat.element_size())
    if flat.data_ptr() % ALIGNMENT == 0 and all(
        begin % per_line == 0 and (end - first == 1 or length % per_line == 0)
        for first, end, begin, length in segments.runs
    ):
        return None
    widths = [-(-length // per_line) * per_line for _, _, _, length in segments.runs]
    counts = [end - first for first, end, _, _ in segments.runs]
    padded = _padded_buffer(slot, flat.dtype, sum(map(operator.mul, counts, widths)))

    def lay_out() -> PaddedRows:
        targets, parts, start = [], [], 0
        for (_, _, _, length), count, width in zip(segments.runs, counts, widths):
            target = padded[start : start + count * width].view(count, width)[:, :length]
            targets.append(target)
            parts.extend(target.unbind(0))
            start += count * width
        return PaddedRows(targets, parts, list(map(Tensor.data_ptr, parts)))

    rows = _kept_with(segments, ("rows", slot, flat.dtype), lay_out, padded)
    for (first, end, begin, length), target in zip(segments.runs, rows.targets):
        target.copy_(flat[begin : begin + (end - first) * length].view(end - first, length))
    return rows


def _pieces(lists: tuple[list[Tensor], ...], scratch: Tensor | None):
    """Aligned pieces of the tensors of ``lists``, tensor by tensor, and where to write a
    piece-sized result: ``(tensors, out)``. A contiguous tensor that fits ``scratch`` comes whole,
    with ``out`` a view of the buffer shaped like it; a longer one in flat slices of
    ``scratch.numel()`` elements; tensors smaller than a kept temporary (see :func:`room_for`),
    not all contiguous or not all of the buffer's dtype
    (a state kept in float32 after ``model.double()``) or not all of one shape (a state of the
    old shape of a parameter reshaped in its own memory: the op's own error, not a flat view's
    silent match), or without ``scratch``, whole with ``out`` None (the caller allocates). This
    runs for every tensor at every step: the common case costs the checks (about 0.75 us per
    tensor for the shapes) and one view of the buffer (:func:`_room`)."""
    size = None if scratch is None else scratch.numel()
    dtype = None if scratch is None else scratch.dtype
    for tensors in zip(*lists):
        first = tensors[0]
        if (
            size is None
            or first.numel() < _paths.KEPT_TEMPORARY_SIZES[0]  # (see room_for)
            or not all(map(Tensor.is_contiguous, tensors))
            or not all(map(operator.is_, map(_DTYPE, tensors), itertools.repeat(dtype)))
            or not all(map(operator.eq, map(_SHAPE, tensors), itertools.repeat(first.shape)))
        ):
            yield tensors, None
        elif first.numel() <= size:
            yield tensors, _room(scratch, first)
        else:
            flats = [t.view(-1) for t in tensors]
            for start in range(0, first.numel(), size):
                pieces = [f[start : start + size] for f in flats]
                yield pieces, scratch[: pieces[0].numel()]


def _sums_of(
    elementwise: Callable[..., Tensor],
    lists: tuple[list[Tensor], ...],
    scratch: Tensor | None,
    segments: Segments | None,
) -> Tensor:
    """[sum(elementwise(x_i, ...))] as a vector in the tensors' dtype, one entry per tensor of
    the aligned ``lists`` (``elementwise(tensors, out)`` writes into ``out`` unless it is None),
    each the references' ``elementwise(...).sum()`` of that tensor, bit for bit. With
    ``segments``, per part of the one flat tensor of each list (many small parts: the elementwise
    result over the whole flat tensor, reduced by ``Segments.sum_per_part``, the same bits).

    With ``scratch`` (a flat buffer of the tensors' dtype and device), each result that fits is
    written there (see :func:`room_for`), so nothing is allocated: on a CPU a tensor-sized temporary
    costs page faults at every step. (Only tensors that are not viewed as blocks can be larger
    than the buffer: not contiguous, or Prodigy's ``slice_p`` state.)"""
    if segments is not None:
        flats = [flat for (flat,) in lists]
        if segments.many_small():
            return segments.sum_per_part(elementwise(flats, room_for(scratch, *flats[:2])))
        lists = tuple(segments.split(flat) for flat in flats)
    return torch.stack([elementwise(ts, room_for(scratch, *ts[:2])).sum() for ts in zip(*lists)])


def _abs(tensors: tuple[Tensor, ...], out: Tensor | None) -> Tensor:
    (x,) = tensors
    return x.abs() if out is None else torch.abs(x, out=out)


def _square(tensors: tuple[Tensor, ...], out: Tensor | None) -> Tensor:
    (x,) = tensors
    return x * x if out is None else torch.mul(x, x, out=out)


def _quotient(tensors: tuple[Tensor, ...], out: Tensor | None) -> Tensor:
    x, y, d = tensors
    product = x * y if out is None else torch.mul(x, y, out=out)
    if d.dtype != product.dtype and torch.result_type(product, d) != product.dtype:
        # (a float32 g and a float64 state after model.float(): promoted, as the package's)
        return product.div(d)
    return product.div_(d)


def abs_sums(
    xs: list[Tensor],
    scratch: Tensor | None = None,
    segments: Segments | None = None,
) -> Tensor:
    """[||x_i||_1] as a float64 vector: each ``x.abs().sum()`` in the tensors' dtype, as the
    references compute it (:func:`_sums_of`). (On a CPU ``vector_norm(x, 1)`` is 3-8x slower than
    ``abs`` and ``sum``: 3.3 against 0.9 ms on 4M float32 elements, one thread.)"""
    return _sums_of(_abs, (xs,), scratch, segments).to(torch.float64)


def quotient_sums(
    xs: list[Tensor],
    ys: list[Tensor],
    ds: list[Tensor],
    scratch: Tensor | None = None,
    segments: Segments | None = None,
) -> Tensor:
    """[sum(x_i y_i / d_i)] as a float64 vector: each ``(x * y).div(d).sum()`` in the tensors'
    dtype, as ``dadaptation``'s DAdaptAdaGrad computes its weighted sums (a
    ``torch.dot(x, y / d)`` rounds differently in float32; see :func:`_sums_of`)."""
    return _sums_of(_quotient, (xs, ys, ds), scratch, segments).to(torch.float64)


def squared_sums_per_tensor(
    xs: list[Tensor], segments: Segments | None = None, scratch: Tensor | None = None
) -> Tensor:
    """[sum(x_i * x_i)] as a vector in the tensors' dtype: each tensor's ``(x * x).sum()``, the
    squares rounded to the dtype and then summed as one tensor (:func:`_sums_of`): ``dog``'s
    ``(p.grad ** 2).sum()`` and ``dadaptation``'s DAdaptSGD's ``(s * s).sum()``, bit for bit (a
    squared ``vector_norm``, :func:`sum_of_squares`, rounds differently in float32: DAdaptSGD's
    d was 1.2e-7 apart)."""
    return _sums_of(_square, (xs,), scratch, segments)


def add_products_(
    xs: list[Tensor], ys: list[Tensor], zs: list[Tensor], scratch: Tensor | None = None
) -> None:
    """x_i += y_i z_i with the product rounded first, ``x.add_(y * z)`` as ``dadaptation``
    writes it (``addcmul_`` fuses the two and rounds once: 140 of 1000 float32 elements
    differ); with ``scratch``, the products are written there a piece at a time."""
    for (x, y, z), out in _pieces((xs, ys, zs), scratch):
        x.add_(y * z if out is None else torch.mul(y, z, out=out))


def sum_of_squares(xs: list[Tensor]) -> Tensor:
    """sum_i ||x_i||² as a 0-dim float64 tensor."""
    norms = torch.stack(torch._foreach_norm(xs)).to(torch.float64)
    return (norms * norms).sum()


def room_for(scratch: Tensor | None, x: Tensor, y: Tensor | None = None) -> Tensor | None:
    """The first ``x.numel()`` elements of ``scratch`` (a reused flat buffer) shaped as ``x``,
    where an elementwise result of ``x`` (and ``y``, of its shape) is written; None when they
    do not fit it (not contiguous, another dtype than the buffer's, or more elements) or ``x``
    is smaller than the temporaries kept on the classic paths (``KEPT_TEMPORARY_SIZES``: glibc
    serves those from its bins without a page fault): the caller then allocates. (No
    generator, no flat views: it runs for every tensor at every step, and its checks cost about
    a microsecond; the room is :func:`_room`. DAdaptSGD's step on an MNIST-1D MLP's six
    tensors of 10 to 65536 elements writes the largest's square there.)"""
    if (
        scratch is None
        or x.dtype is not scratch.dtype
        or x.numel() > scratch.numel()
        or x.numel() < _paths.KEPT_TEMPORARY_SIZES[0]
        or not x.is_contiguous()
        or (y is not None and (y.dtype is not scratch.dtype or not y.is_contiguous()))
    ):
        return None
    return _room(scratch, x)


def _room(scratch: Tensor, x: Tensor) -> Tensor:
    """The first ``x.numel()`` elements of the flat ``scratch`` as a view shaped as ``x``, which
    is contiguous and fits: one ``as_strided`` (x's shape and strides from the buffer's start),
    2.3-2.7 us where a slice and a ``view`` took 5.5-7.6 us (one thread; it runs for a tensor at
    every step); under ``torch.compile`` the slice and the view, as traced before."""
    if not torch.compiler.is_compiling():
        return scratch.as_strided(x.shape, x.stride())
    room = scratch[: x.numel()]
    return room if x.dim() == 1 else room.view(x.shape)


def norms_of_differences(
    xs: list[Tensor], ys: list[Tensor], scratch: Tensor | None = None
) -> Tensor:
    """[||x_i - y_i||] as a vector in the tensors' dtype, each difference in that dtype and
    reduced as one tensor: the references' ``torch.norm(p - p0)``, bit for bit. With
    ``scratch`` (a flat buffer of their dtype, see :func:`room_for`), each difference is written
    there, so nothing is allocated: on a CPU a tensor-sized temporary costs page faults at every
    step (LDoG on 4x4M float32, one thread, spent about a third of its step in them; 400 tensors
    of 40k elements: 17 ms through the buffer against 43 ms for ``_foreach_sub`` and
    ``_foreach_norm``, 2 threads)."""
    return torch.stack([torch.linalg.vector_norm(z) for z in differences(xs, ys, scratch)])


def differences(xs: list[Tensor], ys: list[Tensor], scratch: Tensor | None = None) -> Iterator:
    """x_i - y_i for each pair, one at a time, each written into ``scratch`` where it fits
    (:func:`room_for`; valid until the next is drawn), else a temporary: the references'
    ``p0 - p``, the same bits. For a consumer that reduces each before it draws the next
    (:func:`dots`, :func:`norms_of_differences`)."""
    for x, y in zip(xs, ys):
        room = room_for(scratch, x, y)
        yield x - y if room is None else torch.sub(x, y, out=room)


def copies_in_their_strides(tensors: list[Tensor]) -> list[Tensor] | None:
    """Copies of ``tensors``, each with its own strides, for an op the packages run in place on
    a gradient (the coupled decay ``grad.add_(p, alpha=decay)``, Schedule-Free AdamW's
    ``grad.div_(denom)``) where one is a strided view whose elements leave gaps (``p.grad =
    buffer[::2]``); None where every tensor is contiguous (one C-level pass: the common case),
    one is sparse, or ``torch.compile`` traces the step: the caller then computes into new
    tensors, as the same ops give the same bits on contiguous operands.

    Why: ``clone()`` and an out-of-place op lay out such a tensor contiguously, and torch runs
    another loop over a strided operand: MKL's strided ``dot`` adds in another order (Prodigy's
    float32 ``d`` was 1e-7 from its package's after a coupled decay), and an elementwise
    kernel's scalar loop rounds complex division and bf16 arithmetic otherwise than its
    vectorised one (Schedule-Free AdamW on complex64 1.2e-7 apart, on bf16 2e-3). A tensor
    whose elements overlap (an expanded one, which the packages' in-place op refuses) is copied
    contiguously."""
    if torch.compiler.is_compiling() or all(map(Tensor.is_contiguous, tensors)):
        return None
    if not _paths.dense(tensors):
        return None
    return [
        t.new_empty_strided(t.shape, t.stride()).copy_(t) if _apart(t) else t.clone()
        for t in tensors
    ]


def with_coupled_decay(
    grads: list[Tensor], params: list[Tensor], weight_decay: Any
) -> list[Tensor]:
    """g + weight_decay * x for each gradient, the packages' coupled (L2) decay, which they add
    into ``p.grad`` in place (``grad.add_(p, alpha=decay)``); here into new tensors, ``p.grad``
    left as it was (torch's contract), a strided gradient's in a copy with its strides
    (:func:`copies_in_their_strides`), so that what the packages then reduce or add where it
    lies has their bits."""
    copies = copies_in_their_strides(grads)
    if copies is None:
        return ops.add_scaled(grads, params, weight_decay)
    ops.add_scaled_(copies, params, weight_decay)
    return copies


def _apart(t: Tensor) -> bool:
    """Whether no two of ``t``'s elements share memory (each dimension's stride, in increasing
    order, beyond the reach of the smaller ones)."""
    reach = 0
    for stride, size in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n > 1):
        if stride <= reach:
            return False
        reach += stride * (size - 1)
    return True


def roots_plus(vs: list[Tensor], eps: float | Tensor, scratch: Tensor | None = None) -> Iterator:
    r"""\sqrt{v} + \epsilon for each v, the packages' ``v.sqrt().add_(eps)``, one at a time, each
    written into ``scratch`` where it fits (:func:`room_for`; valid until the next is drawn),
    else a temporary. ``eps``: a number, or a 0-dim tensor (Prodigy's d * eps), added as the
    multi-tensor op adds it, so the bits are the same either way.

    On a CPU a tensor-sized temporary costs page faults at every step: DAdaptAdam's step on
    4x4M was 0.73x of its package's speed with three of them per tensor."""
    term = [eps] if isinstance(eps, Tensor) else eps  # (one 0-dim tensor per x:
    # ``_foreach_add_`` given a single tensor would read it on the host)
    for v in vs:
        room = room_for(scratch, v)
        root = v.sqrt() if room is None else torch.sqrt(v, out=room)
        ops.add_([root], term)
        yield root


def chunk_roots_plus(vs: list[Tensor], eps: float | Tensor, scratch: Tensor | None) -> list[Tensor]:
    r"""\sqrt{v} + \epsilon for all of a chunk's tensors at once (DAdaptAdaGrad's
    ``alphak.sqrt().add_(eps)``, Prodigy's ``exp_avg_sq.sqrt().add_(d * eps)``). A chunk of one
    tensor (a large one, or a packed or flat round) goes through :func:`roots_plus`, into
    ``scratch`` where it fits (valid until the next use of ``scratch``); a list of several
    smaller tensors runs the multi-tensor ops, whose temporaries do not fault.

    Measured (2 threads): DAdaptAdaGrad on 4 tensors of 4M, the step alone in its process, took
    47k faults a step from these and its update's quotient and z, 125-126 ms against 75-84 ms
    without; one op per tensor was 20-35% slower on 400 tensors of 40k. Prodigy on 4x4M, its
    root and its difference (:func:`differences`) in the buffer its sums use, in one process
    with the two versions taking turns (AMD EPYC with AVX-512, 2026-12-06): 27.9, 29.7 and 31.9
    ms a step against 28.5, 30.4 and 32.9 with temporaries; on 400x40k one op per tensor was
    1-2% slower there too, so lists keep the multi-tensor ops."""
    if len(vs) == 1:
        return list(roots_plus(vs, eps, scratch))
    roots = list(torch._foreach_sqrt(vs))
    ops.add_(roots, [eps] * len(roots) if isinstance(eps, Tensor) else eps)  # (as above)
    return roots


def norms_per_tensor(xs: list[Tensor], segments: Segments | None = None) -> Tensor:
    """[||x_i||] as a vector in the tensors' dtype: of each tensor of ``xs``, or, with
    ``segments``, of the parts of the one flat tensor ``xs[0]`` (many small parts:
    ``Segments.norm_per_part``). Each is the references' ``p.norm()``, bit for bit."""
    if segments is not None:
        (x,) = xs
        if segments.many_small():
            return segments.norm_per_part(x)
        xs = segments.split(x)
    return torch.stack(torch._foreach_norm(xs))


def sub_scaled_per_tensor_(
    xs: list[Tensor], ys: list[Tensor], scales: Tensor, segments: Segments | None = None
) -> None:
    """x_i -= scales[i] y_i for each tensor i of the lists, or, with ``segments``, for each part
    of the flat ``xs[0]`` and ``ys[0]`` (many small parts in few runs of one size: one op per
    run, ``Segments.sub_scaled_``; else part by part), each as the references'
    ``x.add_(y, alpha=-scale)``."""
    if segments is not None:
        (x,), (y,) = xs, ys
        if segments.many_small() and segments.few_runs():
            segments.sub_scaled_(x, y, scales.to(x.dtype))
            return
        xs, ys = segments.split(x), segments.split(y)
    if scales.device.type == "cpu" and not torch.compiler.is_compiling():
        # host numbers (host memory: no synchronisation): the references' p.add_(g, alpha=-eta),
        # one rounding and no temporary (a multi-tensor op has one alpha for the whole list)
        for x, y, scale in zip(xs, ys, scales.tolist()):
            x.add_(y, alpha=-scale)
        return
    torch._foreach_sub_(xs, torch._foreach_mul(ys, list(scales.unbind())))


FSDP_FLATTENED = "_fsdp_flattened"
"""The attribute ``torch.distributed.fsdp`` (FSDP1) sets on the tensors it shards: its
``FlatParameter`` and, with ``use_orig_params=True``, the original parameters, views of a shard."""


def sum_over_ranks(*values: Tensor | float) -> tuple[Tensor, ...]:
    """``values`` (0-dim tensors, or host floats: :func:`total` on a CPU) each summed over the
    ranks of the default process group, in one ``all_reduce`` of their float64 stack: the
    packages' ``fsdp_in_use`` reduction, where each rank holds a shard of the parameters and
    its sums are partial. The packages reduce in a float32 CUDA tensor; here the sums stay
    float64, on the parameters' device (a host float on the CPU), with no device read."""
    import torch.distributed as dist

    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values])
    dist.all_reduce(stacked)
    return tuple(stacked.unbind())


def _require_process_group(optimizer: Any) -> None:
    """Sharded sums are summed over the default process group: refuse a step without one
    before anything is changed (the packages fail in their first reduction, state half done)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            f"{type(optimizer).__name__}: fsdp_in_use=True (or a parameter FSDP marked as a "
            "shard) sums the estimates over the ranks, and torch.distributed has no default "
            "process group: call torch.distributed.init_process_group first, or set "
            "fsdp_in_use=False for unsharded parameters"
        )


def d_times_lr(group: dict) -> Tensor | float:
    """``d * lr``, the step size of Prodigy, DAdaptAdam and DAdaptAdaGrad (their ``_step_size``;
    DAdaptSGD divides it by ||g_0||)."""
    return group["d"] * group["lr"]


class FairseqFlags:
    """The two properties that fairseq's optimizer wrappers read, with the values of
    ``prodigyopt.Prodigy`` and ``dadaptation.DAdaptAdam``, which define them."""

    @property
    def supports_memory_efficient_fp16(self) -> bool:
        """False: no promise of float32 arithmetic over float16 parameters and gradients, which
        fairseq's ``MemoryEfficientFP16Optimizer`` needs."""
        return False

    @property
    def supports_flat_params(self) -> bool:
        """True: the parameters and gradients may be collapsed into one contiguous tensor
        (fairseq's ``FP16Optimizer`` does)."""
        return True


class ReducingOptimizer(RuleOptimizer):
    """Base of the optimizers whose step reduces over whole param groups (see the module).

    A subclass gives ``_state_keys`` (and ``_new_state``) as for :class:`RuleOptimizer`, and
    :meth:`_update`, the algorithm's step over every group's chunks. ``compile=True`` and
    ``fused=True`` are not offered (the global scalars would split any fused kernel).
    """

    _elementwise = False
    _accepts_tensor_subclasses = False  # (their sums and scratch buffers are plain tensors)
    _counts_steps = False
    _repeats_as_reference = False  # (the package's per-parameter loop differs: we warn)
    _packs = True
    """Whether the default path may pack small tensors (not when the parameters must be updated
    in place between calls, as SLS's trials); per-tensor rules reduce over a packed or flat
    chunk's parts (``Chunk.segments``)."""
    _blocks_large_tensors = False
    """Whether the default path may run a large tensor as several chunks (see :meth:`_blocks`):
    its sums are then added block by block, within rounding of one reduction per tensor, not
    its bits, so only for a rule with no reference package to match (SPS, SLS). D-Adaptation's
    and Prodigy's ran in blocks: DAdaptAdam on a 1.5M-element float64 tensor ended 4.6e-6 from
    its package after 100 steps of a chaotic loss, Prodigy 2.4e-9."""
    _steps_without_gradients = False
    """Whether the package's step goes on when no parameter has a gradient (DAdaptAdaGrad: its
    running sums live in the groups, so it recomputes d from them and counts the step); the
    others change nothing then, as torch.optim does."""
    _counts_updates = False
    """Whether each parameter's state holds ``"step"``, a Python int counting the updates it
    received, as the reference package keeps it (``prodigyopt``, dadaptation's ``DAdaptAdam``):
    the package takes a state without it for a new one, so a checkpoint of ours must carry it."""
    _rule = staticmethod(lambda params, grads, steps, state: None)
    _package_computing_in_numbers: str | None = None
    """The reference package, where it computes its global estimate in Python numbers from the
    groups' values (``prodigyopt``, ``dadaptation``): NumPy floats narrower than float64 among
    them are refused (:func:`refuse_narrow_numpy_numbers`)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        *,
        impl: str | None = None,
        foreach: bool | None = None,
    ) -> None:
        # torch's keyword picks the path, but stays out of the param groups: the reference
        # packages have no such key, and a state dict must carry theirs only
        self._foreach_keyword = foreach
        super().__init__(params, defaults, impl=impl, compile=False)

    def _path_keywords(
        self, defaults: dict[str, Any], impl: str | None, compile: bool
    ) -> tuple[bool | None, bool | None]:
        return self._foreach_keyword, None

    def _reset_caches(self) -> None:
        super()._reset_caches()  # (also after copy.deepcopy or unpickling)
        self._packed: dict[tuple[int, int], Pack] = {}
        self._scatter: dict[int, tuple[list[Tensor], list[Tensor]]] = {}
        """Per packed chunk (by its buffer slice): the parameters it stands for and its views."""
        self._unfilled: dict[int, bool] = {}
        """The packed chunks (by their buffer slice) whose parameters are not gathered yet, and
        whether those are all 1-D (one ``torch.cat``)."""
        self._scratch_buffers: dict[tuple[torch.device, torch.dtype, int], Tensor] = {}
        self._kept: dict[int, KeptChunks] = {}
        """Each param group's chunks as last built, by its index (see :class:`KeptChunks`)."""

    def _reads_params(self, group: dict) -> bool:
        return True

    _fsdp_marked = False
    """Whether a parameter is a shard FSDP marked (``FSDP_FLATTENED``), which turns the packages'
    ``fsdp_in_use`` on whatever the group says."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self._package_computing_in_numbers is not None:  # (before the group is added)
            for values in (param_group, self.defaults):
                refuse_narrow_numpy_numbers(self, values, len(self.param_groups))
        super().add_param_group(param_group)
        if any(getattr(p, FSDP_FLATTENED, False) for p in self.param_groups[-1]["params"]):
            self._fsdp_marked = True

    def sharded(self) -> bool:
        """The packages' ``fsdp_in_use``: the first group's flag, or a parameter marked by FSDP
        (see :func:`sum_over_ranks`)."""
        return self._fsdp_marked or bool(self.param_groups[0].get("fsdp_in_use"))

    def over_ranks(self, *sums: Tensor) -> tuple[Tensor, ...]:
        """``sums`` over the whole model: summed over the ranks when the parameters are sharded
        (:meth:`sharded`, :func:`sum_over_ranks`), as they are otherwise."""
        return sum_over_ranks(*sums) if self.sharded() else sums

    def step_sizes(self) -> list[Tensor | float | None]:
        """Each param group's step size as the optimizer stands (read after an update, it is what
        a study or a TensorBoard chart follows): ``d * lr`` for Prodigy, DAdaptAdam and
        DAdaptAdaGrad, ``d * lr / ||g_0||`` for DAdaptSGD (from the estimate the next update
        starts from), DoG's ``eta`` (LDoG: the median over the group's tensors), SPS's and
        SLS's ``step_size`` (of the last update); None where the group has none yet (DoG and
        DAdaptSGD before their first update). 0-dim tensors stay where the step keeps them:
        nothing is read back to the host."""
        return [self._step_size(group) for group in self.param_groups]

    def _step_size(self, group: dict) -> Tensor | float | None:
        raise NotImplementedError

    def _ensure_state(self, group: dict, params: list[Tensor], states: list[dict]) -> list[bool]:
        if self._counts_updates:
            for state in states:
                if not state:  # a new entry: the counter first, as in the package's state dict
                    state["step"] = 0
        return super()._ensure_state(group, params, states)

    def _count_updates(self, work: list[Work]) -> None:
        """``state["step"] += 1`` for every parameter this step updated (see
        ``_counts_updates``). Set past :class:`~optim._state.TrackedState`'s count: an int
        counter is no layout's view, and counting it would make every step re-verify the state.
        """
        for item in work:
            params = item.group["params"]
            for i in {i for chunk in item.chunks for i in chunk.positions}:  # (a tensor's blocks)
                entry = self.state[params[i]]
                dict.__setitem__(entry, "step", entry.get("step", 0) + 1)

    # --- temporaries -------------------------------------------------------------------------

    def _scratch(self, like: Tensor, numel: int, slot: int = 0) -> Tensor:
        """A reused flat buffer of ``numel`` elements of ``like``'s dtype and device (one per
        dtype, device and ``slot``, grown as needed). Valid until the next call for that slot: a
        rule reduces it at once; a rule that needs two results at once takes two slots.

        On a CPU, allocating and freeing a temporary of a megabyte or more costs page faults at
        every step (glibc returns such memory to the system), more than the arithmetic on it.
        """
        key = (like.device, like.dtype, slot)
        buffer = self._scratch_buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            with torch.inference_mode(False):  # (see OUTSIDE_INFERENCE_MODE)
                buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._scratch_buffers[key] = buffer
        return buffer[:numel]

    def scratch_like(self, chunk: Chunk) -> Tensor | None:
        """A reused buffer shaped like ``chunk``'s one flat parameter tensor (a packed or flat
        round), for a rule's temporary over it; None for a chunk of the parameters' own tensors
        or one larger than ``BLOCK``."""
        if chunk.segments is None or chunk.params[0].numel() > _paths.BLOCK:
            return None
        x = chunk.params[0]
        return self._scratch(x, x.numel()).view_as(x)

    def whole_scratch(self, chunk: Chunk, slot: int = 0) -> Tensor | None:
        """Where a rule writes an elementwise result of ``chunk``'s tensors before reducing it
        whole (see :func:`_sums_of`): on a CPU a reused buffer as large as the chunk's largest
        tensor (a tensor-sized temporary costs page faults there at every step), held between
        steps; elsewhere None, so they are temporaries, as in the packages (a GPU's caching
        allocator reuses their blocks, and holding the largest tensor's size between steps
        would take it from the forward and backward passes). ``slot``: another buffer, for a
        second result needed while the first is (see :meth:`_scratch`)."""
        if not chunk.params[0].is_cpu:
            return None
        return self._scratch(chunk.params[0], max(t.numel() for t in chunk.params), slot)

    # --- global scalars ----------------------------------------------------------------------

    @staticmethod
    def _device_of(work: list[Work]) -> torch.device:
        for item in work:
            if item.chunks:
                return item.chunks[0].params[0].device
        for item in work:  # (no gradient anywhere: a step of _steps_without_gradients)
            for p in item.group["params"]:
                return p.device
        return torch.device("cpu")

    @staticmethod
    def scalar(group: dict, name: str, device: torch.device) -> Tensor:
        """``group[name]`` as a 0-dim float64 tensor on ``device`` (converted once and kept)."""
        value = group[name]
        if not isinstance(value, Tensor):
            value = torch.tensor(float(value), dtype=torch.float64, device=device)
            group[name] = value
        elif value.device != device or value.dtype != torch.float64 or value.dim() != 0:
            value = value.detach().reshape(()).to(device=device, dtype=torch.float64)
            group[name] = value
        return value

    @staticmethod
    def number(group: dict, name: str, device: torch.device) -> float | Tensor:
        """``group[name]`` as a Python float where the step computes its scalars on the host
        (:func:`host_scalars`), else as :meth:`scalar` keeps it (a 0-dim float64 tensor on
        ``device``)."""
        if not host_scalars(device):
            return ReducingOptimizer.scalar(group, name, device)
        value = group[name]
        return value.item() if isinstance(value, Tensor) else float(value)

    @staticmethod
    def number_or_tensor(value: Any, device: torch.device) -> float | Tensor:
        """A hyperparameter: a float if it is known on the host, else a 0-dim device tensor."""
        if isinstance(value, Tensor):
            value = value.detach().reshape(())
            if value.device.type == "cpu":
                return value.item()  # a host value: not a device sync
            return value.to(device=device, dtype=torch.float64)
        return float(value)

    # --- chunks ------------------------------------------------------------------------------

    def _chunks(self, index: int, group: dict) -> list[Chunk]:
        # A user's torch.compile(step): plain lists (no layout is built or read in a trace)
        compiling = torch.compiler.is_compiling()
        steady = None if compiling else self._steady_chunks(index, group)
        if steady is None and self.impl == "flat" and not compiling:
            steady = self._steady_flat_chunks(index, group)
        if steady is None and not compiling:
            steady = self._kept_chunks(index, group)
        if steady is not None:
            return steady
        self._kept.pop(index, None)
        positions = [i for i, p in enumerate(group["params"]) if p.grad is not None]
        params = [group["params"][i] for i in positions]
        if not params:
            return []
        for p in params:
            if _is_sparse(p.grad):
                self._check_sparse(group, index, p)
        states = [self.state[p] for p in params]
        self._ensure_state(group, params, states)
        keys = self._state_keys(group)
        if self.impl == "single":
            chunks = [
                Chunk(as_real([p]), as_real([p.grad]), {k: as_real([s[k]]) for k in keys}, [i])
                for p, s, i in zip(params, states, positions)
            ]
            if not compiling:
                self._keep(index, group, states, keys, chunks)
            return chunks
        by_kind: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            by_kind.setdefault((p.device, p.dtype), []).append(i)
        if self.impl == "flat" and not compiling:
            if (
                not _kept_where_they_lie(params, self.param_groups)
                and states_fit(params, states, keys, self._flat_state_keys(group))
                and not _grads_of_another_dtype(params)  # (a flat gradient buffer: one dtype)
            ):
                kinds = [[positions[i] for i in indices] for indices in by_kind.values()]
                return self._flat_chunks(index, params, states, keys, list(by_kind.values()), kinds)
            # A state tensor of another shape or dtype than its parameter's: the package's
            # numbers, or its error, from the lists below, as the classic flat path (a buffer
            # laid out like the parameters would reshape or convert that state); and a
            # parameter that must stay where it lies (shared memory, memory another tensor
            # holds, overlapping elements: see _kept_where_they_lie).
            self._layouts.pop(index, None)
        chunks = []
        for number, indices in enumerate(by_kind.values()):
            ps = [params[i] for i in indices]
            ss = [states[i] for i in indices]
            where = [positions[i] for i in indices]
            packed = (
                None
                if compiling
                else self._packed_chunks((index, number), group, ps, ss, keys, where)
            )
            if packed is not None:
                chunks.extend(packed)
                continue
            # Rounds of whole tensors (a large tensor is a round of its own, in blocks): each
            # phase of a rule then runs over a round while it is in cache, and no temporary is
            # larger than a round, a tensor or a block.
            sizes = [p.numel() for p in ps]  # (a trace reads no cache sizes: a packed round's)
            limit = None if compiling else _paths.reducing_list_round()
            for i, j, _, _ in packed_rounds(sizes, ps[0].device, limit):
                blocks = self._blocks(ps[i], ss[i], keys, where[i]) if j - i == 1 else None
                if blocks is not None:
                    chunks.extend(blocks)
                    continue
                state = {k: as_real([s[k] for s in ss[i:j]]) for k in keys}
                grads = as_real([p.grad for p in ps[i:j]])
                chunks.append(Chunk(as_real(ps[i:j]), grads, state, where[i:j]))
        if not compiling and len(by_kind) == 1 and self.impl != "flat":  # (flat: its layouts)
            self._keep(index, group, states, keys, chunks)
        return chunks

    def _keep(
        self, index: int, group: dict, states: list[dict], keys: tuple[str, ...], chunks: list
    ) -> None:
        """Keep ``chunks`` for the next step (:class:`KeptChunks`) where they are the group's
        own tensors, every parameter's, in order: each chunk's parameters and state the objects
        of a run of consecutive parameters (not packed, flat, in blocks or complex views), one
        device and dtype; ``states``: the parameters' entries."""
        params = group["params"]
        stamp = self.state.stamp() if isinstance(self.state, TrackedState) else None
        if stamp is None or not chunks or len(states) != len(params):
            return
        if self.impl != "single" and self._may_pack(params):
            return  # (chosen again at every step, see _may_pack)
        if self._blocks_large_tensors and max(map(Tensor.numel, params)) > _paths.BLOCK:
            return  # (blocks, where its tensors allow them this step: see _blocks)
        spans, begin = [], 0
        for chunk in chunks:
            end = begin + len(chunk.params)
            if chunk.segments is not None or chunk.positions != list(range(begin, end)):
                return
            if not _identical(chunk.params, params[begin:end]):
                return
            for key in keys:
                if not _identical(chunk.state[key], [s[key] for s in states[begin:end]]):
                    return
            spans.append((begin, end))
            begin = end
        kind, sizes = (params[0].device, params[0].dtype), list(map(Tensor.numel, params))
        self._kept[index] = KeptChunks(list(params), keys, stamp, kind, sizes, chunks, spans)

    def _kept_chunks(self, index: int, group: dict) -> list[Chunk] | None:
        """Last step's chunks of this group (:class:`KeptChunks`) with this step's gradients, if
        they still describe it; None otherwise."""
        kept = self._kept.get(index)
        params = group["params"]
        if kept is None or not self._steady(kept, group, params):
            return None
        grads = list(map(_GRAD, params))
        device, dtype = kept.kind
        if not (
            dense(grads)
            and all(map(operator.is_, map(_DTYPE, params), itertools.repeat(dtype)))
            and all(map(operator.eq, map(_DEVICE, params), itertools.repeat(device)))
            and list(map(Tensor.numel, params)) == kept.sizes
        ):  # (C-level passes)
            return None
        return [
            Chunk(chunk.params, grads[begin:end], chunk.state, chunk.positions)
            for chunk, (begin, end) in zip(kept.chunks, kept.spans)
        ]

    def _blocks(
        self, p: Tensor, state: dict, keys: tuple[str, ...], position: int
    ) -> list[Chunk] | None:
        """A tensor of more than ``BLOCK`` elements as chunks of ``BLOCK`` consecutive ones
        (flat views of it, its gradient and its state), or None: a rule then allocates no
        temporary larger than a block. On a CPU a tensor-sized temporary costs page faults at
        every step, or not, depending on the allocator's history (DAdaptAdam on 4x4M float32,
        one thread, run alone: 64 ms without faults, 88-130 ms with 1.5k-31k a step; in
        blocks 56-59 ms, none). Its sums are then taken per block and added in float64
        (:func:`total`): within the dtype's rounding of one reduction per tensor, not its
        bits, so only a class with no package to match runs blocks (``_blocks_large_tensors``:
        SPS, SLS). None for the others, and for a tensor that cannot be viewed
        flat with its gradient and state (not contiguous, complex, a state of another shape:
        Prodigy's ``slice_p``, or the old shape of a parameter reshaped in its own memory, whose
        next step the package refuses)."""
        size = p.numel()
        if not self._blocks_large_tensors or size <= _paths.BLOCK or p.is_complex():
            return None
        if not _paths.caches_in_blocks(p.device):
            return None
        tensors = [p, p.grad, *(state[key] for key in keys)]
        if not all(t.is_contiguous() and t.shape == p.shape for t in tensors):
            return None
        flat, flat_grad, *flat_states = (t.view(-1) for t in tensors)
        chunks = []
        for start in range(0, size, _paths.BLOCK):
            block = slice(start, start + _paths.BLOCK)
            blocked_state = {key: [t[block]] for key, t in zip(keys, flat_states)}
            chunks.append(Chunk([flat[block]], [flat_grad[block]], blocked_state, [position]))
        return chunks

    def _packed_chunks(self, slot, group, params, states, keys, positions) -> list[Chunk] | None:
        """The chunks over packed buffers (gathered now, scattered after the step), or None."""
        packable = self._may_pack(params)
        packable = packable and packs_alike(params, states, keys, self._flat_state_keys(group))
        if not packable:
            self._packed.pop(slot, None)
            return None
        packed = self._packed.get(slot)
        if packed is None or not packed.holds(params, states, keys):
            packed = Pack(params, states, keys, positions)
            self._packed[slot] = packed
        packed.positions = positions
        return self._gather(packed, params, [p.grad for p in params], positions)

    def _may_pack(self, params: list[Tensor]) -> bool:
        """Whether the default path packs ``params`` (one device and dtype) where their tensors
        and state allow it (:func:`~optim._paths.packs_alike`, which can change from step to
        step: a gradient not contiguous this once): enough of them, all small, of a fast dtype
        and real. A group it may pack keeps no chunks between steps (:meth:`_keep`), so that
        it is packed again once it can be."""
        return (
            self._packs
            and len(params) >= PACK_AT_LEAST
            and params[0].dtype in FAST_DTYPES
            and not params[0].is_complex()
            and max(map(Tensor.numel, params)) < PACK_BELOW
        )

    def _gather(self, packed: Pack, params, grads, positions, late: bool = False) -> list[Chunk]:
        """The chunks over ``packed``'s buffers, filled now (``late``: the gradients only, each
        chunk's parameters when :meth:`fill` asks for them); each is copied back to its
        parameters by :meth:`updated`, or after the step."""
        chunks = packed.gather(params, grads, positions, with_params=not late)
        for (i, j, _, _), chunk in zip(packed.rounds, chunks):
            self._scatter[id(chunk.params[0])] = (params[i:j], packed.work_views[i:j])
            if late:
                self._unfilled[id(chunk.params[0])] = packed.one_dim
        return chunks

    def _flat_state_keys(self, group: dict) -> frozenset[str]:
        """The state keys whose tensors hold their parameter's elements in one dimension, as the
        reference package keeps them (see ``optim._paths.states_fit``); none here."""
        return frozenset()

    def _late_params(self, group: dict) -> bool:
        """Whether the steady packed path may leave each chunk's parameters to be gathered when
        the rule asks for them (:meth:`fill`), for a rule that reads them in one round at a
        time: the gather then lands in cache just before its reads. False here."""
        return False

    def unfilled(self, chunks: list[Chunk]) -> bool:
        """Whether some of ``chunks`` wait for their parameters (see :meth:`fill`)."""
        return bool(self._unfilled) and any(id(c.params[0]) in self._unfilled for c in chunks)

    def fill(self, chunk: Chunk) -> None:
        """Gather ``chunk``'s parameters into its slice of the packed buffer if that was left
        for later (:meth:`_late_params`); nothing otherwise."""
        one_dim = self._unfilled.pop(id(chunk.params[0]), None)
        if one_dim is not None:
            params, views = self._scatter[id(chunk.params[0])]
            gather_into(chunk.params[0], views, params, one_dim)

    def updated(self, chunk: Chunk) -> None:
        """A rule's last write to ``chunk``'s parameters is done: a packed chunk is copied back
        to the user's parameters now, while its round is still in cache (after the whole step,
        a model-sized copy would read it from memory again). Nothing for other chunks, or for
        one whose parameters were never gathered (:meth:`fill`)."""
        pending = self._scatter.pop(id(chunk.params[0]), None)
        if pending is not None and id(chunk.params[0]) not in self._unfilled:
            write_in_place(torch._foreach_copy_, *pending)

    def _steady_chunks(self, index: int, group: dict) -> list[Chunk] | None:
        """The common case, checked in a few passes over the group: every parameter has a dense
        gradient and the whole group is packed as last step, its state unchanged (the
        ``TrackedState`` count, as ``RuleOptimizer``'s packed path); None otherwise."""
        packed = self._packed.get((index, 0))
        grads = self._steady_gradients(packed, group)
        if grads is None:
            return None
        params = group["params"]
        return self._gather(packed, params, grads, packed.positions, self._late_params(group))

    def _steady_gradients(self, layout: OwnedState | None, group: dict) -> list[Tensor] | None:
        """The group's gradients if ``layout`` (packed or flat) still holds the whole group as
        last step, every gradient dense and the state unchanged (``_still_valid``); None
        otherwise."""
        params = group["params"]
        if layout is None or len(layout.params) != len(params):
            return None
        grads = list(map(_GRAD, params))
        if not dense(grads) or not self._still_valid(layout, params, group):
            return None
        return grads

    def _flat_chunks(self, index, params, states, keys, kinds, positions) -> list[Chunk]:
        """The chunks over each kind's flat buffers, one per round of whole tensors (as
        :class:`Pack`'s); ``positions``: where each kind's parameters stand in the group."""
        layouts = self._layouts.get(index)
        valid = layouts is not None and len(layouts) == len(kinds)
        if valid:
            for layout, indices in zip(layouts, kinds):
                ps = [params[i] for i in indices]
                if not layout.holds(ps, [states[i] for i in indices], keys):
                    valid = False
                    break
        if not valid:
            layouts = []
            for indices in kinds:
                ps = [params[i] for i in indices]
                if any(p.is_complex() for p in ps):
                    raise TypeError(f"{type(self).__name__}(impl='flat') needs real parameters")
                layouts.append(Flat(ps, [states[i] for i in indices], keys, counts_steps=False))
            self._layouts[index] = layouts
        return self._chunks_of_layouts(layouts, positions)

    def _steady_flat_chunks(self, index: int, group: dict) -> list[Chunk] | None:
        """The flat path's common case, checked in a few passes over the group (as
        :meth:`_steady_chunks`): one layout, every parameter with a dense gradient, the layout
        and its state as last step (the ``TrackedState`` count); None otherwise. (Checking every
        state entry at every step, as a new layout is checked, cost 5 ms of DAdaptSGD's step on
        2000 tensors.)"""
        layouts = self._layouts.get(index)
        if not layouts or len(layouts) != 1:
            return None
        grads = self._steady_gradients(layouts[0], group)
        if grads is None:
            return None
        return self._chunks_of_layouts(layouts, [list(range(len(grads)))], [grads])

    def _chunks_of_layouts(
        self, layouts: list[Flat], positions: list, grads: list | None = None
    ) -> list[Chunk]:
        """The chunks over each layout's flat buffers, one per round of whole tensors, its new
        gradients copied in; ``positions``: where each layout's parameters stand in the group;
        ``grads``: each layout's parameters' ``.grad``, if already read."""
        if grads is None:
            grads = [list(map(_GRAD, layout.params)) for layout in layouts]
        chunks = []
        for layout, where, layout_grads in zip(layouts, positions, grads):
            own = layout.round_gradients(layout_grads)
            for (i, j, begin, end), segments in zip(layout.rounds, layout.round_segments):
                state = {k: [layout.buffers[k][begin:end]] for k in layout.keys}
                chunks.append(
                    Chunk(
                        [layout.flat_param[begin:end]],
                        [own[i] if i in own else layout.flat_grad[begin:end]],
                        state,
                        where[i:j],
                        segments,
                    )
                )
        return chunks

    # --- step --------------------------------------------------------------------------------

    def _update(self, work: list[Work]) -> bool | None:
        """The algorithm's step over every group's chunks; ``False``: the step stopped before
        any update (a package's early return), so no update is counted."""
        raise NotImplementedError

    @without_grad
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every param group; returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.sharded():
            _require_process_group(self)
        self._internally(self._step_groups)
        return loss

    def _step_groups(self) -> None:
        """The body of :meth:`step`, after the closure."""
        if self._package_computing_in_numbers is not None:  # (values set since, or loaded)
            for index, group in enumerate(self.param_groups):
                refuse_narrow_numpy_numbers(self, group, index)
        self._scatter, self._unfilled = {}, {}
        work = [Work(group, self._chunks(i, group)) for i, group in enumerate(self.param_groups)]
        gradients = any(item.chunks for item in work)
        stepped = (gradients or self._steps_without_gradients) and self._update(work) is not False
        if stepped and self._counts_updates:
            self._count_updates(work)
        if stepped and self.impl == "flat":
            for index, item in enumerate(work):
                for layout in self._layouts.get(index, ()) if item.chunks else ():
                    layout.params_updated()  # (their chunks' parameters: the flat buffer's)
        for key, (params, updated) in self._scatter.items():  # packed chunks not copied back
            if key not in self._unfilled:
                write_in_place(torch._foreach_copy_, params, updated)
        self._scatter, self._unfilled = {}, {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``; flat layouts are rebuilt at the next step."""
        super().load_state_dict(state_dict)
        self._layouts.clear()
        self._packed.clear()
        self._kept.clear()


def refuse_narrow_numpy_numbers(owner: ReducingOptimizer, group: dict, index: int) -> None:
    """``TypeError`` if a value of ``group`` (param group ``index``; its ``params`` aside, a
    tuple such as ``betas`` item by item) is a NumPy float narrower than float64.

    ``prodigyopt`` and ``dadaptation`` compute d's estimate in Python numbers from their groups'
    values: given a ``np.float32`` (``lr``, ``d0``, ``betas``, ``growth_rate``, ...; or a group's
    ``d`` in a checkpoint of such a run), NumPy 2 keeps ``float * np.float32`` in float32 (NEP
    50), so the package's d and its steps are float32 numbers from then on. Ours computes them
    in float64 0-dim tensors and does not follow: Prodigy with ``d0=np.float32(1e-5)`` ended
    1.1e-6 from its package after 30 steps, DAdaptAdam with ``lr=np.float32(0.5)`` 5.1e-7, where
    ``float(...)`` of the same values gives the package's bits. A clear error instead of a silent
    deviation; ``np.float64`` (a Python float) is taken."""
    narrow = [
        key
        for key, value in group.items()
        if isinstance(value, _MAY_BE_NARROW) and key != "params" and _has_narrow(value)
    ]
    if not narrow:  # (at every step: one pass over the group's values, one isinstance each)
        return
    arguments = _constructor_arguments(type(owner))  # (named first: d0 before the d it sets)
    for key in sorted(narrow, key=lambda k: (k not in arguments, arguments.get(k))):
        value = group[key]
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for position, item in items:
            if _is_narrow(item):
                name = key if position is None else f"{key}[{position}]"
                origin = " (the estimate, d0 at the start)" if key == "d" else ""
                raise TypeError(
                    f"{type(owner).__name__}: param group {index}'s {name}={item!r}{origin} is a "
                    f"NumPy {item.dtype} number; {owner._package_computing_in_numbers} then "
                    f"computes its estimate d in NumPy's {item.dtype} arithmetic, which this "
                    "class does not follow (it computes in float64): give Python floats, float(x)"
                )


_MAY_BE_NARROW = (np.floating, tuple)
"""The types of a group's values :func:`refuse_narrow_numpy_numbers` looks into further."""


def _is_narrow(item: Any) -> bool:
    """Whether ``item`` is a NumPy float narrower than float64."""
    return isinstance(item, np.floating) and item.dtype.itemsize < 8


def _has_narrow(value: Any) -> bool:
    """Whether ``value`` (or an item of it, a tuple) is a NumPy float narrower than float64."""
    return any(map(_is_narrow, value if isinstance(value, tuple) else (value,)))


@functools.cache
def _constructor_arguments(cls: type) -> dict[str, int]:
    """The names of ``cls``'s constructor arguments, by position."""
    return {name: i for i, name in enumerate(inspect.signature(cls).parameters)}


def known_zero(value: float | Tensor) -> bool:
    """Whether ``value`` (a host number, such as ``common_lr``'s, or a 0-dim sum) is 0 and that is
    known without a device read: a number, or a tensor in host memory, read there as a number
    (not a synchronisation) outside ``torch.compile``. On a device it is not read: False."""
    if not isinstance(value, Tensor):
        return value == 0.0
    return value.device.type == "cpu" and not torch.compiler.is_compiling() and value.item() == 0.0


def common_lr(param_groups: list[dict], device: torch.device) -> float | Tensor:
    """The references' ``lr = max(group['lr'])``, every group's lr being it or 0.

    Host numbers are checked (``RuntimeError`` as the references); device tensors are not read.
    """
    values = [ReducingOptimizer.number_or_tensor(g["lr"], device) for g in param_groups]
    if all(isinstance(v, float) for v in values):
        lr = max(values)
        for v in values:
            if v not in (lr, 0.0):
                raise RuntimeError(
                    "Setting different lr values in different parameter groups is only "
                    f"supported for values of 0 (as the reference), got lrs {values}"
                )
        return lr
    tensors = [torch.as_tensor(v, dtype=torch.float64, device=device) for v in values]
    return torch.stack(tensors).max()


def check_positive(value: Any, name: str, finite: bool = False) -> None:
    """Raise unless ``value`` is a number > 0 (the references' ``0 < value``); with ``finite``,
    a finite one too (an infinite lr or distance estimate, which the references take, reaches
    every parameter as NaN within a few steps)."""
    number = _number(value, name)
    if finite and not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a finite number > 0, got {name}={value!r}")
    if not number > 0:
        raise ValueError(f"{name} must be a number > 0, got {name}={value!r}")


def check_finite(value: Any, name: str, meaning: str = "") -> None:
    """Raise unless ``value`` is a finite number (NaN and infinities are refused: they reach every
    parameter as NaN). ``meaning`` says what the number is, for the message."""
    if not math.isfinite(_number(value, name)):
        what = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must be a finite number{what}, got {name}={value!r}")


def check_count(value: Any, name: str, low: int) -> None:
    """Raise unless ``value`` is an integer >= ``low`` (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {name}={value!r}")


def check_at_least(value: Any, name: str, low: float) -> None:
    """Raise unless ``value`` is a number >= ``low`` (infinity allowed)."""
    number = _number(value, name)
    if not number >= low:
        raise ValueError(f"{name} must be a number >= {low:g} (inf allowed), got {name}={value!r}")


def active(group: dict) -> bool:
    """The references' ``group['lr'] > 0`` (a device tensor lr is taken as active)."""
    lr = group["lr"]
    if isinstance(lr, Tensor):
        return lr.device.type != "cpu" or bool(lr.item() > 0)
    return lr > 0.0
