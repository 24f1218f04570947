"""How a rule is executed: the ways of feeding one update rule its lists of tensors.

A rule (``adam_update``, ``sgd_update``, ...) is a function over aligned lists: parameters,
gradients, one list per state buffer and one step count per tensor. Every execution path below
calls the same rule; they differ only in which tensors they hand it.

* :func:`call_rule` hands it the tensors as they are (the ``single`` path calls it with one-element
  lists, the plain ``foreach`` path with a group's lists, as torch.optim does).
* :func:`blocked_rounds` cuts large tensors into cache-sized slices (:func:`list_slice`, by the
  L2's size) and groups small ones, so every op of the rule runs over one round before the next: its
  data stays in cache between the rule's ten or so ops instead of streaming through memory for
  each one. Slices of an elementwise update give the same numbers as the whole tensor.
* :class:`Packed` keeps the state of many small tensors in one optimizer-owned buffer per state
  key: a step gathers the gradients into one buffer (one multi-tensor copy), runs the rule once
  over whole buffers, and adds the resulting update to the parameters (one multi-tensor add,
  scaled by the step size when the rule's last op is torch's fused ``p.add_(d, alpha=-lr)``),
  or, when the rule reads the parameters (weight decay, Schedule-Free's interpolation; see
  ``RuleOptimizer._reads_params``), gathers them too, runs the rule on them and copies them back.
  Parameters keep their own storage; the state tensors in ``optimizer.state`` are views into the
  buffers, checked every step, so a replaced state tensor or a reset ``optimizer.state`` is seen.
* :class:`Flat` (``impl="flat"``) moves the parameters themselves into one buffer (their
  ``.data`` become views), the layout ``compile=True`` fuses into a single kernel.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import inspect
import itertools
import numbers
import operator
import os
import re
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

BLOCK = 1 << 20
"""Elements per block of the flat path's eager rule: the rule's five or six arrays of 1M float32
(p, g, two states, temporaries) are about 24 MiB, which stays in a current CPU's last-level
cache across the rule's ops; two threads each take half. Measured on an earlier 2-core machine
of this project's (32 MiB L3): 128k-element rounds lost to per-op threading overhead,
4M-element rounds left the cache. The blocked lists and the packed path take rounds of a
quarter of it (:data:`LIST_ROUNDS_PER_BLOCK`, :data:`PACKED_ROUNDS_PER_BLOCK`)."""

TORCH_GRAIN = 1 << 15
"""torch's CPU grain (``at::internal::GRAIN_SIZE``): an elementwise op over ``n`` elements runs on
``min(threads, ceil(n / TORCH_GRAIN))`` threads, thread ``t`` taking the ``t``-th of that many
equal consecutive chunks, whatever the op."""

PACK_BELOW = 1 << 14
"""Tensors with fewer elements than this are packed (their per-tensor overhead dominates)."""

PACK_AT_LEAST = 16
"""Packing pays for its gather and scatter only from this many small tensors on."""

LIST_ROUNDS_PER_BLOCK = 4
"""The blocked lists' rounds (:func:`blocked_rounds`) hold about ``BLOCK //
LIST_ROUNDS_PER_BLOCK`` elements (256k; a large tensor's slices take a whole block where a core's
L2 is under 2 MiB, :func:`list_slice`): each op of a round then passes over one to two MiB of
each array, and a tensor of 40k elements at a time is what torch's for-loop path keeps in a 2
MiB L2. Measured in ``stepsize bench optim`` (Intel Xeon with a 2 MiB L2 per core, 2 threads,
2026-12-06), the default path against torch's faster eager path, rounds of 1M elements against
256k, two runs each: 400x40k Adagrad 0.84x against 0.96x, RMSprop 0.92x against 0.97-1.01x, Adam
0.99x against 0.99-1.02x; 4x4M Adagrad 1.02-1.04x against 1.08-1.13x, RMSprop 1.05-1.11x
against 1.15x, Adadelta 1.15-1.18x against 1.20-1.24x; SGD, AdamW and Adam on 4x4M within
their runs' spread. Rounds of 64k lost to the per-op cost (Adam 0.92x, Adagrad 0.88x on
400x40k). Rounds of 128k read 1-3% faster on 400x40k alone, but lost to 256k in a bench of
400x40k and 4x4M together (2026-12-06, five alternating runs: 400x40k 0.97-1.08x against
1.05-1.15x, 4x4M 0.68-0.80x against 0.78-0.93x, the threads then not sharing their caches).
Smaller tensors are grouped into rounds of half this size since (:data:`LIST_GROUPS_PER_BLOCK`):
the loss was the large tensors' slices'."""


ROUNDS_IN_L2_FROM = 2 << 20
"""The L2 size per core (bytes) from which the blocked lists' rounds are sized to stay in it
(slices of ``BLOCK // LIST_ROUNDS_PER_BLOCK`` elements, groups of ``BLOCK //
LIST_GROUPS_PER_BLOCK``), below which they take a block or half of one (:func:`rounds_fit_l2`)."""


def list_slice() -> int:
    """Elements per slice of a large tensor in the blocked lists (:func:`blocked_rounds`):
    :func:`list_round` (256k) where each core's L2 holds :data:`ROUNDS_IN_L2_FROM` bytes or
    more, or its size is not known; ``BLOCK`` (1M) where it is smaller (:func:`l2_cache_bytes`).
    Which groups are cut into rounds at all (those of more than :func:`list_round` elements)
    does not depend on it, and neither do the numbers: a slice is whole SIMD widths.

    A 256k-element slice gives each of two threads 512 KiB of every float32 array, so a rule's
    three or four arrays stay in a 2 MiB L2 across its ops; with less L2 no slice large enough
    to be worth its ops' fixed cost stays there, and one of 1M (4 MiB an array) stays in the
    last-level cache with a quarter of the ops. Measured in one process, the two sizes taking
    turns with torch's for-loop and foreach paths, three optimizers each (AMD EPYC with AVX-512,
    1 MiB of L2 per core, 32 MiB of L3, 2 threads, 2026-12-06), 4x4M, ms a step with 256k
    against 1M over seven repeats: Adam 13.6-15.4 against 11.1-14.1, RMSprop 10.3-11.0 against
    8.5-10.1, Adagrad 9.8-11.6 against 7.9-11.2, AdamW and Adadelta from 17% less to 5% more,
    SGD the same (its large tensors take torch's kernel); slices of 128k were 8% slower than
    256k. (400x40k takes the same rounds either way: its tensors are grouped, see
    :func:`list_group`.) In the bench, whose machine moved between a slower and a faster memory
    regime from run to run, the default path's own 4x4M times were up to 19% lower after the
    change. On the Intel Xeon of :data:`LIST_ROUNDS_PER_BLOCK`'s docstring (2 MiB of L2) 1M
    slices were the slower ones on 4x4M (about 5-7%), as that docstring measured. All of this
    was measured with two threads: with more, each thread's share of a 256k slice is smaller
    and may stay in a smaller L2, while each op's fixed cost (a fork and join of every thread)
    grows; which size pays there is unmeasured, and the rule does not read the thread count."""
    return list_round() if rounds_fit_l2() else BLOCK


def rounds_fit_l2() -> bool:
    """Whether each core's L2 holds :data:`ROUNDS_IN_L2_FROM` bytes or more, or its size is not
    known (:func:`l2_cache_bytes`): the blocked lists' slices and groups are then sized to stay
    in it (:func:`list_slice`, :func:`list_group`), else a block or half of one."""
    l2 = l2_cache_bytes()
    return l2 is None or l2 >= ROUNDS_IN_L2_FROM


def list_round() -> int:
    """Elements per round of the blocked lists: ``BLOCK // LIST_ROUNDS_PER_BLOCK``; a group of
    more elements is cut into rounds, whose large tensors in slices of :func:`list_slice`."""
    return max(1, BLOCK // LIST_ROUNDS_PER_BLOCK)


def cpu_caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> list[tuple[str, str, str]]:
    """``(level, type, size)`` of each cache Linux reports for the first CPU under ``root`` (each
    ``index*`` folder's ``level``, ``type`` and ``size``, such as ``("2", "Unified", "1024K")``),
    in the folders' order; a folder it cannot read is left out, and none is there on another OS."""
    caches = []
    try:
        folders = sorted(name for name in os.listdir(root) if name.startswith("index"))
    except OSError:
        return []
    for name in folders:
        values = []
        for field in ("level", "type", "size"):
            try:
                with open(os.path.join(root, name, field)) as file:
                    values.append(file.read().strip())
            except OSError:
                break
        if len(values) == 3:
            caches.append((values[0], values[1], values[2]))
    return caches


@functools.cache
def l2_cache_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The size in bytes of the first CPU's level-2 data or unified cache (:func:`cpu_caches`;
    sizes such as ``1024K`` or ``2M``); None where it is not reported or not readable."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for level, kind, size in cpu_caches(root):
        if level == "2" and kind in ("Data", "Unified"):
            match = re.fullmatch(r"(\d+)\s*([KMG]?)I?B?", size.upper())
            return None if match is None else int(match[1]) * units[match[2]]
    return None


LIST_GROUPS_PER_BLOCK = 8
"""Consecutive tensors smaller than a slice of the blocked lists share one of at most ``BLOCK //
LIST_GROUPS_PER_BLOCK`` elements (128k: three tensors of 40k; :data:`LIST_GROUPS_PER_BLOCK_PAST_L2`
where a core's L2 is under 2 MiB, :func:`list_group`), while a larger tensor is still cut into
slices of :func:`list_slice` elements. Each op of such a round runs one kernel per tensor
whatever the round's size, so a smaller round costs only more multi-tensor calls, and its arrays
(p, g, the state, a temporary) stay in a 2 MiB L2 across the rule's ops. Measured in ``stepsize
bench optim`` (Intel Xeon, 2 MiB L2 per core, 2 threads, 2026-12-06, six runs of each; 400x40k,
the default path against torch's faster eager path, its for-loop one there): Adagrad 0.97-1.00x
against 0.91-0.96x with rounds of 256k, AdamW 0.94-1.01x against 0.92-0.98x, RMSprop 0.97-1.03x
against 0.93-1.01x, Adam 0.96-1.02x against 0.97-0.99x, Adadelta 0.98-1.01x against 0.97-1.01x;
4x4M unchanged (1.11-1.30x against 1.08-1.30x in the two runs of both). Rounds of 80k measured
about the same, of one 40k tensor slower (Adagrad 0.89-0.90x). Slices of 128k, as well, lost
5-12% on 4x4M (Adam 1.03-1.06x against 1.14-1.16x), hence the two sizes."""


LIST_GROUPS_PER_BLOCK_PAST_L2 = 2
""":data:`LIST_GROUPS_PER_BLOCK` where a core's L2 holds less than :data:`ROUNDS_IN_L2_FROM`
(groups of half a block, 512k: :func:`list_group`)."""


def list_group() -> int:
    """Elements up to which consecutive smaller tensors share a round of the blocked lists:
    ``BLOCK // LIST_GROUPS_PER_BLOCK`` (128k) where :func:`rounds_fit_l2`, half a block (512k)
    where each core's L2 is smaller, for :func:`list_slice`'s reason. (Half, not a whole block,
    measured alike, so that two tensors of half a block or more are rounds of their own, whose
    temporaries the optimizer keeps: a round of several tensors allocates them, as torch's
    multi-tensor ops have no output argument, ``RoundTemporaries``.) Measured there
    (AMD EPYC with AVX-512, 1 MiB of L2, 2 threads, 2026-12-06), in one process, 400x40k, groups
    of 128k against 512k against 1M, ms a step over four repeats (two of 1M): Adam 20.5-26.1 against
    19.1-24.7 against 19.6-24.7, AdamW 22.2-29.5 against 20.6-27.3 against 21.6-26.3, Adagrad
    14.5-17.6 against 13.1-16.5 against 13.5-16.0, RMSprop 15.3-19.8 against 13.9-18.4 against
    14.0-18.0 (Adadelta packs those tensors: within 3%)."""
    per_block = LIST_GROUPS_PER_BLOCK if rounds_fit_l2() else LIST_GROUPS_PER_BLOCK_PAST_L2
    return max(1, BLOCK // per_block)


def reducing_list_round() -> int:
    """Elements per round of the learning-rate-free rules' lists of whole tensors (the tensors
    they neither pack nor cut into blocks, each phase of a rule run over a round before the
    next): a packed round's ``BLOCK // PACKED_ROUNDS_PER_BLOCK`` (256k) where
    :func:`rounds_fit_l2`, :func:`list_group`'s half a block (512k) where each core's L2 is
    smaller. Their per-tensor reductions and roots keep the packages' bits, so a round's cost
    is its per-round sums and scalars (40-70 us) against the cache its tensors fill: rounds of
    one 40k tensor, in L2 as the packages run them, took DAdaptAdam 56.5 ms a step on 400x40k
    against 42.4 with 256k. Measured there (AMD EPYC with AVX-512, 1 MiB of L2, 2 threads,
    2026-12-06), in one process with the sizes taking turns, two repeats, 400x40k, ms a step
    with 256k against 512k against 1M rounds: DAdaptAdam 43.2 / 42.1 / 42.1 and 53.7 / 52.1 /
    52.2, DAdaptAdaGrad 65.7 / 63.9 / 65.8 and 68.2 / 66.1 / 68.1, DoG 16.7 / 15.8 / 15.6 and
    16.9 / 16.2 / 15.8, LDoG 17.5 / 16.7 / 16.7 and 17.6 / 17.2 / 16.9, Prodigy 37.4 / 35.4 /
    35.8 and 38.4 / 36.6 / 38.1. Not measured where the L2 holds 2 MiB, which keeps 256k."""
    return packed_round() if rounds_fit_l2() else list_group()


PACKED_ROUNDS_PER_BLOCK = 4
"""A packed step's rounds hold about ``BLOCK // PACKED_ROUNDS_PER_BLOCK`` elements: a round also
streams the user's gradients and parameters (separate allocations) besides the rule's arrays, and
256k-element rounds were 5-20% faster than 1M-element ones for all six classes on 2000x1k
(measured on this project's 2-core machine; 64k rounds lose again to per-op overhead)."""


def packed_round() -> int:
    """Elements per packed round (:func:`packed_rounds`' default): ``BLOCK //
    PACKED_ROUNDS_PER_BLOCK``."""
    return max(1, BLOCK // PACKED_ROUNDS_PER_BLOCK)


OUTSIDE_INFERENCE_MODE = torch.inference_mode(False)
"""Decorates what makes an optimizer's own buffers (layouts, scratch): normal tensors, even when
a step runs inside ``torch.inference_mode()``. An inference tensor keeps no version counter and
takes no in-place update outside inference mode, so a layout built by such a step failed every
later step outside it, where torch's state, made before, trains on.

One case differs from torch because of this: an optimizer whose *first* step runs inside
inference mode. torch makes its state there, of inference tensors, and its next step outside
raises ("Inplace update to inference tensor outside InferenceMode"); so does ours on the
default path (the state stays in torch's own tensors: a packed layout is not built from
inference tensors), while the flat path's layout holds the state in these normal buffers and
trains on, with the numbers torch's steps would give if its state were normal tensors."""

KEPT_TEMPORARIES_BYTES = 1 << 24
"""The size of the block :func:`keep_freed_temporaries` allocates and frees once (16 MiB): four
rounds' worth of ``BLOCK``-element temporaries in float32, two in float64."""


@functools.cache
def keep_freed_temporaries() -> None:
    """Let glibc's ``malloc`` keep the memory of a step's freed temporaries for the next round
    (once per process; called when an optimizer here is made or unpickled).

    A rule's out-of-place ops (``torch._foreach_sqrt`` and the like) allocate temporaries, freed
    at the end of each round of the blocked and packed paths. glibc returns the freed top of its
    heap to the system once it exceeds its trim threshold, and serves a chunk above its mmap
    threshold with a fresh ``mmap``; both start at 128 KiB and rise only when a freed chunk that
    was mmapped is larger (to its size, and twice that; up to 32 MiB). A round's temporaries
    several times one freed chunk's size (ten 100k-element tensors' square roots, 4 MB) were
    then returned and faulted back in on every round, in a process that never freed a larger
    block: Adagrad on 160 tensors of 100k elements spent 15k page faults and 30 ms a step on
    them (0.40x torch's for-loop path, which holds one temporary at a time, against 1.07x
    without them; 2 threads, torch 2.13). A training loop that frees a large activation raises
    the thresholds the same way; this does so once, with one freed block of
    :data:`KEPT_TEMPORARIES_BYTES` whose pages are never touched, so the thresholds become 16
    and 32 MiB: freed memory up to 32 MiB stays in the heap for reuse (what any process that
    has freed such a block keeps). A process whose thresholds were set (``mallopt``,
    ``MALLOC_TRIM_THRESHOLD_``) or raised higher is left as it is; another ``malloc`` ignores
    the block."""
    torch.empty(KEPT_TEMPORARIES_BYTES, dtype=torch.uint8, device="cpu")  # freed at once, untouched


MAX_ROUND_TEMPORARIES = 4
"""Kept temporaries a rule call may take (:class:`RoundTemporaries`); more are allocated."""


KEPT_TEMPORARY_SIZES = (1 << 14, BLOCK)
"""The element counts of the temporaries :class:`RoundTemporaries` keeps. A smaller one is
allocated: glibc serves it from its small bins, and for a tensor of a few hundred elements (a
one-tensor step over a model's biases) taking a kept one cost about 1 us more in Python than
``torch._foreach_sqrt`` allocating it (2.0 against 1.1 us); a larger one is a whole tensor of
the one-tensor path, allocated as torch's for-loop does."""


class RoundTemporaries:
    """Memory an optimizer keeps for the new tensors its rule makes within one call, on a CPU:
    the square roots, sums, differences and negated gradients of a round of the blocked lists,
    of a packed round and of a flat block (``optim._ops.temporary`` writes one there instead of
    allocating it).

    A round's rule allocated its temporaries and freed them at the round's end, 64 times a step
    for 4 tensors of 4M elements. In a fresh process that cost little, but after a run's history
    (``stepsize bench optim``'s SGD, Adam and AdamW rows before it) glibc served those blocks so
    that every op reading or writing them was slower: Adagrad's step on 4x4M rose from 16.6 to
    22.0 ms, and its ``_foreach_sqrt`` alone from 2.5 to 5.4 ms, with no page fault counted.
    Written into kept blocks, the rule's ops took 15.2 ms fresh and 16.3 ms after the history
    (2 threads, torch 2.13; ``torch.sqrt(x, out=kept)`` is the op torch's CPU multi-tensor
    ``_foreach_sqrt`` runs per tensor, so the bits are the same). In full bench runs the
    default path went from 0.80-0.94x torch's faster eager path to 1.09-1.35x on 4x4M for
    Adam, AdamW, Adagrad, RMSprop and Adadelta, and from 2.72-4.07x to 3.05-4.23x on 2000x1k
    (packed rounds), 2026-12-06, Intel Xeon.

    Held: one block per temporary a rule call makes (Adam, Adagrad and RMSprop one, Adadelta
    two, SGD's Nesterov direction one, and one more for the gradient's copy under ``maximize``
    or L2 weight decay) and dtype,
    each as large as the largest round seen, at most :data:`BLOCK` elements (4 MiB in float32);
    a temporary outside :data:`KEPT_TEMPORARY_SIZES`, or of a list of several tensors, or not
    contiguous, is allocated as before (for the lists of the 400x40k rounds, then six tensors
    of 40k, three since :data:`LIST_GROUPS_PER_BLOCK`, one kept op per tensor in Python was 1-2
    ms a step slower than the allocating multi-tensor op, fresh or after the history), and so is
    one whose op has a list operand of another dtype or shape (see ``optim._ops.temporary``).
    Not kept on a GPU, whose caching allocator
    already reuses a freed block without a system call, and where a kept block would need
    ordering between streams. Never pickled (rebuilt with the optimizer's caches).

    The learning-rate-free optimizers keep theirs explicitly instead
    (``optim._global.ReducingOptimizer._scratch``, handed to their rules by slot): their
    reductions write whole tensors of any size, on a GPU too, and their rules take a scratch
    argument. The classic rules keep torch's foreach code and signatures, so theirs come through
    ``optim._ops.temporary``."""

    __slots__ = ("blocks", "taken", "views")

    def __init__(self) -> None:
        self.blocks: dict[tuple[torch.dtype, int], Tensor] = {}
        # each block's views, by shape
        self.views: dict[tuple[torch.dtype, int], dict[torch.Size, Tensor]] = {}
        self.taken = 0  # blocks handed out in the current rule call

    @OUTSIDE_INFERENCE_MODE
    def _new_block(self, key: tuple[torch.dtype, int], size: int) -> Tensor:
        block = self.blocks[key] = torch.empty(size, dtype=key[0], device="cpu")
        return block

    def take(self, like: Tensor) -> Tensor | None:
        """A kept tensor shaped as ``like`` (a plain contiguous tensor on the CPU, of
        :data:`KEPT_TEMPORARY_SIZES` elements), distinct from those taken before in this rule
        call; None otherwise, and past :data:`MAX_ROUND_TEMPORARIES` in one call. Its view of
        the block is made once per shape (a new view costs about 2.5 us in Python)."""
        size = like.numel()
        if (
            not KEPT_TEMPORARY_SIZES[0] <= size <= KEPT_TEMPORARY_SIZES[1]
            or self.taken == MAX_ROUND_TEMPORARIES
            or not like.is_cpu
            or like.layout is not torch.strided  # (a sparse gradient: torch's own op)
            or type(like) not in _PLAIN_TYPES  # (a DTensor's op takes no plain out=)
            or not like.is_contiguous()
        ):
            return None
        key = (like.dtype, self.taken)
        self.taken += 1
        shape = like.shape
        views = self.views.get(key)
        view = None if views is None else views.get(shape)
        if view is not None:  # (the common case: a shape of the steps before)
            return view
        block = self.blocks.get(key)
        if block is None or block.numel() < size:
            block = self._new_block(key, size)
            self.views[key] = views = {}  # (the old block's views, and the block, freed)
        view = views[shape] = block[:size].view(shape)
        return view


_ROUND_TEMPORARIES: contextvars.ContextVar[RoundTemporaries | None] = contextvars.ContextVar(
    "round_temporaries", default=None
)


def round_temporaries() -> RoundTemporaries | None:
    """The kept memory of the rounds being run (:class:`temporaries_kept_in`), or None: outside
    them, and always under ``torch.compile`` (which cannot trace a ``ContextVar``)."""
    if torch.compiler.is_compiling():
        return None
    return _ROUND_TEMPORARIES.get()


class temporaries_kept_in:  # (named as the context manager it is used as)
    """Within it, the rules called by :func:`call_rule` write their temporaries into ``kept``
    (see :class:`RoundTemporaries`); each call starts from its first block. Entered by an
    optimizer's step around its own code, never under ``torch.compile``."""

    __slots__ = ("_kept", "_token")

    def __init__(self, kept: RoundTemporaries) -> None:
        self._kept = kept

    def __enter__(self) -> None:
        self._kept.taken = 0
        self._token = _ROUND_TEMPORARIES.set(self._kept)

    def __exit__(self, *exception: object) -> None:
        _ROUND_TEMPORARIES.reset(self._token)


_DEVICE = operator.attrgetter("device")
_DTYPE = operator.attrgetter("dtype")
_SHAPE = operator.attrgetter("shape")
_GRAD = operator.attrgetter("grad")
_LAYOUT = operator.attrgetter("layout")

_PLAIN_TYPES = frozenset((Tensor, torch.nn.Parameter))


def plain(tensors: Iterable[Tensor]) -> bool:
    """Whether every tensor is a plain ``Tensor`` or ``Parameter``, not a tensor subclass (a
    ``DTensor`` of FSDP2 or tensor parallelism, say): only plain tensors are packed, blocked or
    laid out flat here, since a subclass's ops cannot mix with our plain buffers; a subclass
    runs torch's multi-tensor lists as they are, whose ops it dispatches itself (one C-level
    pass)."""
    return all(map(_PLAIN_TYPES.__contains__, map(type, tensors)))


def dispatches_itself(tensor: Tensor) -> bool:
    """Whether ``tensor``'s class dispatches its own ops (``__torch_dispatch__``: ``DTensor``,
    ...), so they cannot mix with plain tensors. A ``Parameter`` subclass (FSDP1's
    ``FlatParameter``, say) or a class overriding only ``__torch_function__`` computes as a
    plain tensor."""
    return type(tensor).__torch_dispatch__ is not torch._C._disabled_torch_dispatch_impl


FAST_DTYPES = (torch.float32, torch.float64)
"""Blocking and packing are used for these; other dtypes run torch's foreach sequence unchanged,
so low-precision results are bitwise torch's (torch's bf16/fp16 CPU kernels round an element
differently in a tensor's vectorised body and in its scalar tail, so an op over a packed round
or a block is bitwise the op per tensor only in float32 and float64).

One exception in float32 and float64, torch's own and only in the sign of a zero: ``lerp`` with
weight exactly 1 computes ``end - (end - start) * 0`` in the scalar tail and ``end + 0 * (end -
start)`` in the vectorised body, so an ``end`` of ``-0.0`` gives ``+0.0`` in one and ``-0.0`` in
the other (``torch.zeros(12).lerp_(torch.full((12,), -0.0), 1.0)`` is ``+0.0``; with 16 elements,
``-0.0``). Adam with ``betas[0] = 0`` meets it on a gradient element of ``-0.0``: torch's
``exp_avg`` then has the sign of wherever the element falls in its own tensor, and a packed or
flat buffer gives the vectorised body's (values are the same either way; a parameter at zero
may differ in its sign too)."""


def in_fixed_memory(t: Tensor) -> bool:
    """Whether ``t`` is a CPU tensor in memory that others read where it lies: shared memory
    (``share_memory_()``: another process, as in Hogwild, which shares a model and may share
    the optimizer's state too, as ``torch.optim.Adagrad.share_memory()`` does) or pinned memory
    (CPU offloading, for fast copies to a GPU). Copied into a buffer of this library's, it
    would leave that memory as it was, or lose its pinning. ``is_pinned()`` is asked only once
    CUDA is initialised: pinning initialises it, and the question asks the CUDA driver."""
    if t.device.type != "cpu" or not t.numel():
        return False
    return t.untyped_storage().is_shared() or (torch.cuda.is_initialized() and t.is_pinned())


def _strided_as_new_state(state: Tensor, p: Tensor) -> bool:
    """Whether ``state`` has the strides of a state made for ``p`` (``zeros_like(p,
    memory_format=torch.preserve_format)``: ``p``'s own, or row-major where ``p`` is not
    dense). Other strides (SGD's buffer cloned from a gradient laid out otherwise, a loaded
    state saved in another layout) change the order of torch's CPU loops, and so the bits in
    low precision, which only torch's lists as they are reproduce."""
    return state.stride() == p.stride() or (
        state.stride() == torch.empty_like(p, memory_format=torch.preserve_format).stride()
    )


def states_fit(
    params: list[Tensor],
    states: list[dict],
    keys: tuple[str, ...],
    flat_keys: frozenset[str] = frozenset(),
) -> bool:
    """Whether every state tensor has its parameter's shape, dtype and strides (as made for it:
    :func:`_strided_as_new_state`), as a buffer laid out like the parameters holds it; a state
    of ``flat_keys`` instead has the parameter's elements in one dimension (Prodigy's ``s`` and
    ``p0``, flat in its package), its parameter row-major.
    (A state of another dtype, float64 sums kept after ``model.float()``, say, makes torch
    compute in the wider dtype: a buffer of the parameters' dtype would round differently, one
    gathered in the wider dtype would widen every tensor's; a state of another shape, after
    ``p.data`` was replaced by a tensor of another shape with as many elements, is torch's
    error, which a buffer would not raise.) And none of the state, step counters included, is
    in memory that must stay where it lies (:func:`in_fixed_memory`): torch updates it there."""
    return all(
        s[k].dtype == p.dtype
        and (
            s[k].shape == (p.numel(),) and p.is_contiguous()
            if k in flat_keys
            else s[k].shape == p.shape and _strided_as_new_state(s[k], p)
        )
        for p, s in zip(params, states)
        for k in keys
    ) and not any(
        isinstance(value, Tensor) and in_fixed_memory(value)
        for s in states
        for value in map(s.get, (*keys, "step"))
    )


def packs_alike(
    params: list[Tensor],
    states: list[dict],
    keys: tuple[str, ...],
    flat_keys: frozenset[str] = frozenset(),
) -> bool:
    """Whether these parameters, their gradients and their state can live in packed buffers:
    all contiguous, every state tensor fitting its parameter (:func:`states_fit`)."""
    return states_fit(params, states, keys, flat_keys) and all(
        p.is_contiguous() and p.grad.is_contiguous() and all(s[k].is_contiguous() for k in keys)
        for p, s in zip(params, states)
    )


def as_real(tensors: list[Tensor]) -> list[Tensor]:
    """Complex tensors as real views with a trailing dimension of 2, as torch.optim treats them."""
    return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]


def call_rule(
    rule: Callable[..., None],
    params: list[Tensor],
    grads: list[Tensor],
    steps: list,
    state: dict[str, list[Tensor]],
    arguments: dict[str, Any],
    complex_as_real: bool = True,
) -> None:
    """The rule over these lists, complex tensors seen as real pairs (unless
    ``complex_as_real=False``: torch.optim.SGD runs complex arithmetic on them, Adam and the
    others view them as real). Inside :class:`temporaries_kept_in`, the call's temporaries
    start again from the first kept block (those of the call before are dead)."""
    kept = round_temporaries()
    if kept is not None:
        kept.taken = 0
    if not complex_as_real:
        rule(params, grads, steps, state, **arguments)
        return
    real_state = {key: as_real(tensors) for key, tensors in state.items()}
    rule(as_real(params), as_real(grads), steps, real_state, **arguments)


def blocked_rounds(
    params: list[Tensor], grads: list[Tensor], steps: list, state: dict[str, list[Tensor]]
) -> list[tuple[list[Tensor], list[Tensor], list, dict[str, list[Tensor]]]]:
    """The lists cut into rounds of at most about :func:`list_slice` elements each.

    A contiguous tensor larger than a slice is cut into 1-D slices of that many elements (a
    multiple of every SIMD width, so each element takes the same vectorised code path as in the
    whole tensor); consecutive smaller tensors share a round of at most :func:`list_group`
    elements. A tensor whose parameter, gradient
    and state are not all contiguous goes whole into a round of its own, and so does a large
    one whose tensors are not all of one shape (state of the old shape of a parameter reshaped
    in its own memory): torch's op then raises its error, where flat slices would match them.
    """
    size, grouped = list_slice(), list_group()
    sizes = list(map(Tensor.numel, params))
    if max(sizes, default=0) < size and all(
        all(map(Tensor.is_contiguous, tensors)) for tensors in (params, grads, *state.values())
    ):  # the common case of many small tensors, found in C-level passes: slices of the lists
        cuts, start, filled = [], 0, 0
        for i, n in enumerate(sizes):
            if filled + n > grouped and i > start:
                cuts.append(slice(start, i))
                start, filled = i, 0
            filled += n
        cuts.append(slice(start, len(sizes)))
        return [
            (params[cut], grads[cut], steps[cut], {key: ts[cut] for key, ts in state.items()})
            for cut in cuts
        ]
    rounds: list = []
    current: tuple[list, list, list, dict] = ([], [], [], {key: [] for key in state})
    filled = 0

    def close() -> None:
        nonlocal current, filled
        if current[0]:
            rounds.append(current)
        current, filled = ([], [], [], {key: [] for key in state}), 0

    for i, (p, g) in enumerate(zip(params, grads)):
        buffers = {key: tensors[i] for key, tensors in state.items()}
        tensors = [p, g, *buffers.values()]
        n = p.numel()
        if not all(t.is_contiguous() for t in tensors) or (
            n >= size and not all(t.shape == p.shape for t in tensors)
        ):
            close()
            current = ([p], [g], [steps[i]], {key: [b] for key, b in buffers.items()})
            close()
            continue
        if n >= size:
            close()
            flat = [t.view(-1) for t in tensors]
            for start in range(0, n, size):
                piece = [t[start : start + size] for t in flat]
                pieces = dict(zip(buffers, piece[2:]))
                rounds.append(
                    ([piece[0]], [piece[1]], [steps[i]], {k: [v] for k, v in pieces.items()})
                )
            continue
        if filled + n > grouped:
            close()
        current[0].append(p)
        current[1].append(g)
        current[2].append(steps[i])
        for key, b in buffers.items():
            current[3][key].append(b)
        filled += n
    close()
    return rounds


def _shape_and_strides(t: Tensor) -> tuple[torch.Size, tuple[int, ...]]:
    return t.shape, t.stride()


def next_count(count: float, dtype: torch.dtype) -> float:
    """``count + 1`` as a step counter of ``dtype`` holds it, for the host's copy of a count.

    torch's ``float32`` counters stop at 2**24 (16777216 + 1 rounds back to 16777216), and its
    bias corrections read that value; a Python float would count on and round differently.
    """
    return float(np.float32(count + 1)) if dtype == torch.float32 else count + 1


def dense(grads: list) -> bool:
    """Whether every gradient is a dense tensor: none is None, COO, CSR or another sparse layout
    (C-level passes: this runs every step)."""
    return not any(map(operator.is_, grads, itertools.repeat(None))) and all(
        map(operator.is_, map(_LAYOUT, grads), itertools.repeat(torch.strided))
    )


def _identical(tensors: Iterable, held: list) -> bool:
    """Whether ``tensors`` are exactly the objects in ``held`` (identity, not values)."""
    tensors = list(tensors)
    return len(tensors) == len(held) and all(map(operator.is_, tensors, held))


def _entries(states: list[dict], key: str) -> Iterable:
    """``state.get(key)`` for every state (a C-level loop: this runs every step)."""
    return map(dict.get, states, itertools.repeat(key))


GUARDS_PER_LAYOUT = 4
"""Tensor guards a layout keeps, one per context its steps ran in (see :class:`Metadata`)."""


def _new_tensor_guard(tensors: list[Tensor]) -> Callable[..., bool] | None:
    """``TensorGuards(*tensors).check`` with every size and stride static, or None where this
    torch lacks it or takes other arguments (a private API)."""
    try:
        from torch._C._dynamo.guards import TensorGuards

        guards = TensorGuards(*tensors, dynamic_dims_sizes=None, dynamic_dims_strides=None)
    except Exception:
        return None
    return guards.check


@functools.cache
def _tensor_guard_notices_metadata() -> bool:
    """Whether this torch's guard says yes to its tensor and no to another dtype, shape or
    strides (probed once per process, in case a later torch's private guard checks less).
    Every probe tensor's dtype and device are given: whatever the defaults when the probe runs
    (with ``torch.set_default_dtype(torch.float64)`` the float64 one had the laid-out one's
    dtype, the guard seemed to miss the change, and every layout and compiled rule of the
    process went without it)."""
    cpu, float32 = torch.device("cpu"), torch.float32
    laid_out = torch.zeros(2, 3, dtype=float32, device=cpu)
    check = _new_tensor_guard([laid_out])
    if check is None:
        return False
    changed = (
        torch.zeros(3, 2, dtype=float32, device=cpu).t(),
        torch.zeros(3, 2, dtype=float32, device=cpu),
        torch.zeros(2, 3, dtype=torch.float64, device=cpu),
    )
    same = torch.ones(2, 3, dtype=float32, device=cpu)
    try:
        return check(same) is True and not any(check(t) for t in changed)
    except Exception:
        return False


def tensor_guard(tensors: list[Tensor]) -> Callable[..., bool] | None:
    """torch.compile's guard on these tensors' metadata (``TensorGuards(...).check``, called
    with the tensors in the same order), or None where this torch lacks it, checks less than
    dtype, shape and strides (:func:`_tensor_guard_notices_metadata`), or does not accept the
    tensors as they are."""
    if not tensors or not _tensor_guard_notices_metadata():
        return None
    check = _new_tensor_guard(tensors)
    try:
        return check if check is not None and check(*tensors) is True else None
    except Exception:
        return None


class Metadata:
    """What a layout assumes of its tensors beyond their identity: each one's dtype, device,
    shape and strides as when the layout was built, checked at every step.

    ``p.data = t`` keeps the ``Parameter`` object but may give it another size or dtype, or a
    view of its own memory with another shape (``p.data = p.data.view(5, 7)``) or strides
    (``p.data = p.data.t()``, which a square matrix survives with its shape). Any such change
    sends the optimizer back to a new layout built from the current tensors.

    The common case is one C++ pass over the tensors with torch.compile's own tensor guard
    (``torch._C._dynamo.guards.TensorGuards``, the check a compiled graph runs on its inputs:
    dtype, device, sizes and strides, and also dispatch keys and ``requires_grad``): 0.8-0.9 ms
    for 2000 tensors with cold caches on this project's 2-core CPU, against 1.4-1.8 ms for the
    Python-level passes (dtype, device, element count, strides). Where the guard fails, the
    passes decide, so the answer is always theirs. A guard also fails on what the layout does
    not depend on: a step inside ``torch.autocast`` or a dispatch mode (other dispatch keys),
    or with ``requires_grad`` off. When the passes then hold, a guard built in that context is
    kept beside the first (up to :data:`GUARDS_PER_LAYOUT`), so a script that always steps
    inside ``torch.autocast`` pays the passes once; a guard of another context fails at its
    first tensor (about 4 us on 2000 tensors).

    The guard is a private API: where another torch lacks it, or its guard checks less (probed
    once per process, :func:`_tensor_guard_notices_metadata`), the passes alone decide. The
    passes notice every change above except a view made with ``as_strided`` that gives a
    size-1 dimension another shape's stride.
    """

    __slots__ = ("_checks", "devices", "dtypes", "sizes", "strides")

    def __init__(self, tensors: list[Tensor]) -> None:
        self.dtypes = list(map(_DTYPE, tensors))
        self.devices = list(map(_DEVICE, tensors))
        self.sizes = list(map(Tensor.numel, tensors))
        self.strides = list(map(Tensor.stride, tensors))
        check = tensor_guard(tensors)
        self._checks: list[Callable[..., bool]] = [] if check is None else [check]

    def holds(self, tensors: list[Tensor]) -> bool:
        """Whether ``tensors`` (the layout's own objects, in order) still have the metadata they
        were laid out with."""
        for check in self._checks:
            if check(*tensors):
                return True
        if not self.passes_hold(tensors):
            return False
        if self._checks and len(self._checks) < GUARDS_PER_LAYOUT:
            check = tensor_guard(tensors)  # (this step's context: autocast, a mode, ...)
            if check is not None:
                self._checks.append(check)
        return True

    def passes_hold(self, tensors: list[Tensor]) -> bool:
        """The Python-level passes: every tensor's dtype, device, element count and strides."""
        return (
            list(map(_DTYPE, tensors)) == self.dtypes
            and list(map(_DEVICE, tensors)) == self.devices
            and list(map(Tensor.numel, tensors)) == self.sizes
            and list(map(Tensor.stride, tensors)) == self.strides
        )


class OwnedState:
    """State tensors moved into optimizer-owned flat buffers, one per state key.

    Built from the current state tensors: their values are copied in, then each state tensor
    lies in its buffer (:func:`_lay_into`: the same object, which a user may hold, or where it
    cannot be, a view in its place). Step counters lie in one counter vector on ``step_device``
    (or stay where they are: ``None``), so one ``add_`` counts a step for every tensor.
    :meth:`state_holds` checks that ``optimizer.state`` still holds exactly these tensors, where
    they were laid.

    The buffers are made outside ``torch.inference_mode()`` (see :data:`OUTSIDE_INFERENCE_MODE`).
    """

    @OUTSIDE_INFERENCE_MODE
    def __init__(
        self,
        params: list[Tensor],
        states: list[dict],
        keys: tuple[str, ...],
        counts_steps: bool,
        step_device: torch.device | None = None,
    ) -> None:
        self.params = list(params)
        self.metadata = Metadata(params)
        self.sizes = self.metadata.sizes
        self.keys = keys
        self.dtype = params[0].dtype
        self.buffers: dict[str, Tensor] = {}
        self.views: dict[str, list[Tensor]] = {}
        for key in keys:
            tensors = [s[key] for s in states]
            self.buffers[key] = gather(tensors, like=params)
            views = views_like(self.buffers[key], params)
            # (a flat state of a row-major parameter, see states_fit: its part, flat)
            views = [v if v.shape == t.shape else v.view(t.shape) for v, t in zip(views, tensors)]
            self.views[key] = _lay_into(states, key, tensors, views)
        self.step_vector: Tensor | None = None
        self.step_views: list[Tensor] = []
        if counts_steps:
            counters = [s["step"] for s in states]
            moved = counters if step_device is None else [c.to(step_device) for c in counters]
            self.step_vector = torch.stack(moved)
            self.step_views = _lay_into(states, "step", counters, list(self.step_vector.unbind(0)))
        self.state_views = list(itertools.chain.from_iterable(self.views.values()))
        self.all_views = [*self.state_views, *self.step_views]
        self.pointers = list(map(Tensor.data_ptr, self.all_views))
        self.view_metadata = Metadata(self.state_views)
        self.stamp: tuple[int, int] | None = None  # the optimizer's state when last verified
        self.own_references = _own_references(self.all_views, self._view_lists())
        self.entries = list(states)
        """The parameters' ``optimizer.state`` entries (see :meth:`only_own_references`)."""
        self.trusted_at: int | None = None
        """The optimizer state's ``exposures`` count when :meth:`storage_holds` last held with no
        reference to a view beyond the layout's own and its entry's (see
        ``RuleOptimizer._storage_holds``); None before."""

    def _view_lists(self) -> list[list[Tensor]]:
        """The layout's own lists that hold the views of :attr:`all_views` (a subclass keeping
        another one adds it, see :meth:`only_own_references`)."""
        return [*self.views.values(), self.state_views, self.all_views, self.step_views]

    def only_own_references(self, also_held: int = 0) -> bool:
        """Whether nothing holds a state view but its entry in ``optimizer.state``, the
        layout's own lists and ``also_held`` more references the optimizer knows of and counts
        the reads of (DoG's x_0 in its group, see ``RuleOptimizer._views_also_held``): the sum
        of the views' Python reference counts is what those alone give, no view has a weak
        reference, and no C++ holder shares a view's tensor (an autograd graph that saved it,
        say): each ``_use_count`` is its Python object's one. Nor may anything but
        ``optimizer.state`` and :attr:`entries` hold an entry: a kept ``entry.values()`` or
        ``items()`` view (or an iterator over one) holds its entry, not the tensors, and hands
        them out later without another count. (C-level passes, run only after something was
        handed out.) Anything else holding a view or an entry makes a count larger; so does a
        holder not counted here, which only leaves the layout checked at every step."""
        views, entries = self.all_views, self.entries
        return (
            sum(map(sys.getrefcount, entries)) == len(entries) * (2 + MAP_REFCOUNT_OVERHEAD)
            and sum(map(sys.getrefcount, views)) == self.own_references + also_held
            and not any(map(weakref.getweakrefcount, views))
            and _USE_COUNT is not None
            and sum(map(_USE_COUNT, views)) == len(views)
        )

    def storage_holds(self) -> bool:
        """Whether every state view still lies in the buffers as laid out: at its address, with
        its dtype, shape and strides (:class:`Metadata`).

        ``state[p][key].data = t`` or ``.set_(t)`` keeps the tensor, which :meth:`state_holds`
        checks, but moves its data elsewhere, where torch reads it (one ``data_ptr`` per view,
        about 0.1 us each). ``.data = t`` with ``t`` at the same address but of another shape
        or strides (``s.data = s.data.t()``), or an in-place op that changes a view's shape or
        strides (``.t_()``, ``.resize_(n)``), keeps the address; torch then pairs the state
        with the parameter by index, or refuses a shape that does not fit. The metadata
        check (torch.compile's tensor guard: 0.08 us a view in cache, about 0.25 us in a
        step) sees those. (Comparing the shapes only when a buffer's version counter had
        moved, as before, missed ``.data =``, which moves no counter: Adam's packed and flat
        paths trained on the untransposed state.) A step counter's view is checked for its
        address only: torch reads a counter through its value (``_get_value``, an in-place
        ``+= 1``), which the same memory under another shape, ``.data = step.data.view(1)``,
        gives alike, and the counters are a third of Adam's views.
        """
        return list(map(Tensor.data_ptr, self.all_views)) == self.pointers and (
            self.view_metadata.holds(self.state_views)
        )

    def counts_hold(self) -> bool:
        """Whether the step counters still hold the count the layout expects (see :class:`Flat`)."""
        return True

    def params_hold(self, params: list[Tensor]) -> bool:
        """Whether these are the parameters laid out here, in the same dtype, shapes and strides
        (``p.data`` may have been replaced by a tensor of another size or dtype, or by a view of
        its own memory with another shape, ``p.data = p.data.view(5, 7)``: see
        :class:`Metadata`)."""
        return _identical(params, self.params) and self.metadata.holds(params)

    def holds(self, params: list[Tensor], states: list[dict], keys: tuple[str, ...]) -> bool:
        """Whether the layout still describes these parameters, state keys and state tensors."""
        return keys == self.keys and self.state_holds(params, states)

    def state_holds(self, params: list[Tensor], states: list[dict]) -> bool:
        """Whether these are the parameters laid out here, with these state views, unchanged
        and still lying in the buffers (:meth:`storage_holds`)."""
        if not self.params_hold(params):
            return False
        for key in self.keys:
            if not _identical(_entries(states, key), self.views[key]):
                return False
        if self.step_views and not _identical(_entries(states, "step"), self.step_views):
            return False
        return self.storage_holds()


def _map_refcount_overhead() -> int:
    """What ``map(sys.getrefcount, ...)`` counts for each object beyond its holders (the
    reference its call holds: 1 on CPython 3.11), measured on an object held by one local and
    one list."""
    probe = object()
    return sum(map(sys.getrefcount, [probe])) - 2


MAP_REFCOUNT_OVERHEAD = _map_refcount_overhead()

_USE_COUNT = getattr(Tensor, "_use_count", None)
"""How many C++ holders share a tensor (a private method: without it no layout trusts its views,
see ``OwnedState.only_own_references``)."""


def _own_references(views: list[Tensor], lists: list[list[Tensor]]) -> int:
    """The sum of ``sys.getrefcount`` over ``views`` (through ``map``) when each is held only by
    ``lists`` and by one ``optimizer.state`` entry."""
    holders = collections.Counter(map(id, itertools.chain.from_iterable(lists)))
    per_view = [holders[id(v)] + 1 + MAP_REFCOUNT_OVERHEAD for v in views]
    return sum(per_view)


def _lay_into(states: list[dict], key: str, tensors: list[Tensor], views: list[Tensor]) -> list:
    """Each state tensor ``tensors[i]`` (``states[i][key]``) moved to lie where ``views[i]`` lies
    in a buffer (``t.data = view``, its values already copied there): the same object, so code
    holding it (a monitor reading ``exp_avg`` every step, a reset through a kept reference)
    sees the state as torch's live tensor. Where that cannot be (a tensor held twice, of
    another device or class than its view, or an inference tensor), the view replaces it in
    ``states[i]``. (Replacing every one, as before, left a reference taken after the first
    step reading the values of that step: the packed layout is built at the second.) Returns
    the tensors the state now holds."""
    if len(set(map(id, tensors))) != len(tensors) or not all(
        type(t) is Tensor and t.device == v.device and not t.is_inference()
        for t, v in zip(tensors, views)
    ):
        for s, view in zip(states, views):
            s[key] = view
        return views
    for t, view in zip(tensors, views):
        t.data = view
    return list(tensors)


def caches_in_blocks(device: torch.device | str) -> bool:
    """Whether the rules run in cache-sized blocks and rounds on ``device``: on a CPU, yes (each
    op's pass over a block finds the previous op's output in cache); on a GPU, no. There every
    block is more kernel launches, and torch's multi-tensor kernels already take all tensors in
    a few: measured on an NVIDIA H200 (torch 2.11, 2026-12-04), the blocked default path
    stepped 4 tensors of 4M elements in 1.05 ms (SGD with momentum) and 2.37 ms (Adam) where
    torch's foreach path took 0.21 and 0.55 ms."""
    return torch.device(device).type == "cpu"


def packed_rounds(
    sizes: list[int], device: torch.device | str = "cpu", limit: int | None = None
) -> list[tuple[int, int, int, int]]:
    """Consecutive whole tensors of these sizes, grouped into rounds of about ``limit`` elements
    (default ``BLOCK // PACKED_ROUNDS_PER_BLOCK``; one round for all, where ``device`` does not
    work in blocks: :func:`caches_in_blocks`): (first tensor, end tensor, first element, end
    element). A tensor of ``limit`` elements or more is a round of its own (before, it joined
    the smaller tensors before it, and a learning-rate-free rule that cuts a tensor larger than
    a block into blocks, SPS's, then ran it whole)."""
    rounds = []
    first = start = filled = 0
    if not caches_in_blocks(device):
        limit = sum(sizes)
    elif limit is None:
        limit = packed_round()
    for i, size in enumerate(sizes):
        if size >= limit and filled:  # (close the round of the smaller ones before it)
            rounds.append((first, i, start, start + filled))
            first, start, filled = i, start + filled, 0
        filled += size
        if filled >= limit or i == len(sizes) - 1:
            rounds.append((first, i + 1, start, start + filled))
            first, start, filled = i + 1, start + filled, 0
    return rounds


class Packed(OwnedState):
    """Optimizer-owned flat state for many small, contiguous, real tensors of one device and dtype.

    The state lives in :class:`OwnedState`'s buffers (counters stay on the host, as torch's).

    A step runs in rounds of consecutive whole tensors of about ``BLOCK // PACKED_ROUNDS_PER_BLOCK``
    elements. Each round gathers its gradients (and, if the rule reads them, its parameters) into
    a reused scratch buffer the size of one round (one ``torch.cat`` when the round's tensors are
    all 1-D, a multi-tensor copy otherwise), runs the rule over that scratch and the round's slice
    of the state buffers, and adds the result to its parameters (or copies the parameters back)
    while it is still in cache. Memory then sees each parameter, gradient and state element
    about once per step, as in a fused kernel.

    The gather and the write-back run in the calling thread, one tensor after another (torch's
    multi-tensor ops loop over a CPU's tensors in one thread). Split across two Python threads
    (torch releases the GIL inside an op), adds into 2000 tensors of 1k elements took 1.9-2.2 ms
    against 3.0 alone; but between a step's rule ops, whose second OpenMP thread spins on the
    other core after each op, it gains nothing. An Adam-like step over them, six such stepped in
    turn on this project's 2-core machine, medians of 12 runs: 8.8 ms in one thread, 8.8 with
    each round's write-back handed to a worker thread while the next round gathers (one run
    14.2), 9.3 with each write-back halved between the two threads; ``OMP_WAIT_POLICY=passive``
    made all three slower (12.7-16.6 ms).
    """

    @OUTSIDE_INFERENCE_MODE
    def __init__(self, params: list[Tensor], states: list[dict], keys: tuple[str, ...]) -> None:
        counts_steps = bool(states) and "step" in states[0]
        super().__init__(params, states, keys, counts_steps)
        self.rounds = packed_rounds(self.sizes, params[0].device)
        largest = max(end - begin for _, _, begin, end in self.rounds)
        self.grad = torch.empty(largest, dtype=self.dtype, device=params[0].device)
        self.work = torch.empty_like(self.grad)  # the parameters, or the update to add to them
        self.grad_views = [views_like(self.grad, params[i:j]) for i, j, _, _ in self.rounds]
        self.work_views = [views_like(self.work, params[i:j]) for i, j, _, _ in self.rounds]
        # Rounds of 1-D tensors gather with one torch.cat, faster than a copy per tensor on a CPU
        # (a gradient has its parameter's shape, torch checks it; params_hold checks the sizes).
        self.one_dim = [all(p.dim() == 1 for p in params[i:j]) for i, j, _, _ in self.rounds]

    def step(
        self,
        rule: Callable[..., None],
        params: list[Tensor],
        grads: list[Tensor],
        arguments: dict[str, Any],
        reads_params: bool,
        update_scale: float = 1.0,
    ) -> bool:
        """One update of every packed tensor; False (nothing done) if their counts differ.

        ``reads_params``: the rule runs on the gathered parameters, which are copied back after.
        Otherwise it runs on a scratch filled with ``-0.0`` (``-0.0 + u`` is ``u`` exactly for
        every ``u``, signed zeros included, where ``0.0 + (-0.0)`` would be ``+0.0``), which then
        holds the update ``u``, and each parameter gets ``p.add_(u, alpha=update_scale)``:
        torch's own last op when the rule's is a fused ``p.add_(d, alpha=-lr)`` run here with a
        unit step (see ``RuleOptimizer._packed_arguments``), a plain ``p.add_(u)`` otherwise.
        The fill shows in a profile (0.67 ms of Adam's step on 2000 tensors of 1k elements), yet
        with it left out (a wrong update, for timing only) the step was no faster, 8.65-9.26 ms
        against 8.38-8.88: the rule's first op then took that time, most likely the other
        thread's wake-up after the gather's one-thread pass.

        Counts differ only after some tensors were skipped (no gradient); that step then runs on
        the plain lists, with one count per tensor, as torch does.
        """
        if self.step_vector is not None:
            # note: a host read of the host-resident counters (torch keeps them there too)
            low, high = torch.aminmax(self.step_vector)
            if low.item() != high.item():
                return False
            self.step_vector.add_(1)
            steps = [next_count(high.item(), self.step_vector.dtype)]
        else:
            steps = [None]
        for (i, j, begin, end), grad_views, work_views, one_dim in zip(
            self.rounds, self.grad_views, self.work_views, self.one_dim
        ):
            size = end - begin
            grad, work = self.grad[:size], self.work[:size]
            gather_into(grad, grad_views, grads[i:j], one_dim)
            if reads_params:
                gather_into(work, work_views, params[i:j], one_dim)
            else:
                work.fill_(-0.0)  # the rule adds its update into these: work becomes the update
            state = {key: [self.buffers[key][begin:end]] for key in self.keys}
            call_rule(rule, [work], [grad], steps, state, arguments, complex_as_real=False)
            if reads_params:
                write_in_place(torch._foreach_copy_, params[i:j], work_views)
            elif update_scale == 1:
                write_in_place(torch._foreach_add_, params[i:j], work_views)
            else:
                write_in_place(torch._foreach_add_, params[i:j], work_views, alpha=update_scale)
        return True


MAX_RUNS = 8
"""Runs of equal-length parts up to which per-part reductions use one 2-D view per run."""


class Segments:
    """The consecutive parts of a flat buffer, one per parameter: their element counts, the
    runs of consecutive parts of one length, and the shape and strides of each part laid out
    as a parameter that is not row-major (channels_last), by position; ``kept``: what a
    reduction over the parts keeps for them from step to step (the dots' addresses and aligned
    rows, ``optim._global.aligned_addresses``), living as long as the layout does."""

    __slots__ = ("kept", "runs", "sizes", "strided")

    def __init__(
        self, sizes: list[int], strided: dict[int, tuple[tuple, tuple]] | None = None
    ) -> None:
        self.sizes = sizes
        self.strided = strided or {}
        self.kept: dict[Any, Any] = {}  # (what a reduction keeps for these parts, see _global)
        # Runs of consecutive parts of one length: (first part, end part, first element, length).
        self.runs: list[tuple[int, int, int, int]] = []
        start = 0
        for i, size in enumerate(sizes):
            if self.runs and self.runs[-1][3] == size:
                first, _, begin, _ = self.runs[-1]
                self.runs[-1] = (first, i + 1, begin, size)
            else:
                self.runs.append((i, i + 1, start, size))
            start += size

    @classmethod
    def of(cls, params: list[Tensor]) -> Segments:
        strided = {
            i: (tuple(p.shape), p.stride()) for i, p in enumerate(params) if not p.is_contiguous()
        }
        return cls([p.numel() for p in params], strided)

    def many_small(self) -> bool:
        """Whether the parts are many (``PACK_AT_LEAST`` or more) and small (under ``PACK_BELOW``
        elements on average), so that one op over a run of them beats one op per part."""
        count = len(self.sizes)
        return count >= PACK_AT_LEAST and sum(self.sizes) < PACK_BELOW * count

    def split(self, flat: Tensor, logical: bool = False) -> list[Tensor]:
        """The parts of ``flat`` as views; with ``logical``, a part laid out as a parameter that
        is not row-major as a copy of its elements in their logical (row-major) order, the
        order of the references' ``p.flatten()`` (a reduction over it then adds as theirs)."""
        parts = list(flat.split(self.sizes))
        if logical:
            for i, (shape, stride) in self.strided.items():
                parts[i] = parts[i].as_strided(shape, stride).reshape(-1)
        return parts

    def few_runs(self) -> bool:
        """Whether the parts form at most :data:`MAX_RUNS` runs of equal length: each run is then
        a 2-D view (parts x length), reduced and scaled by one op per run, whose rows give the
        bits of their tensors' own ops (measured for sums and norms of rows of 3 to 16k
        elements, bf16, float32, float64; a reduction over rows of :data:`TORCH_GRAIN` elements
        or more is taken part by part, see :meth:`_per_run`)."""
        return len(self.runs) <= MAX_RUNS

    def _per_run(
        self, flat: Tensor, over_rows: Callable[[Tensor], Tensor], one: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """``over_rows`` (a reduction of each row of a 2-D view) over each run of ``flat``'s
        parts, or ``one`` (the reduction of one part) over each part of a run of parts of
        :data:`TORCH_GRAIN` elements or more: from there torch splits a tensor's own reduction
        between threads, each summing its share, where a row is summed in one pass, so the two
        round apart (2 threads, float32 sums of 2 to 8 rows: equal up to 32768 elements, apart
        from 40000 on; DoG's flat path 1.7e-9 from its package, with 2 of its 46 tensors of
        33000 elements and 3 of 40000)."""
        values = []
        for first, end, begin, length in self.runs:
            span = flat[begin : begin + (end - first) * length]
            if length < TORCH_GRAIN:
                values.append(over_rows(span.view(end - first, length)))
            else:
                values.append(torch.stack([one(part) for part in span.split(length)]))
        return values[0] if len(values) == 1 else torch.cat(values)

    def norm_per_part(self, flat: Tensor) -> Tensor:
        """The Euclidean norm of each part of ``flat``, in its dtype, bit for bit each part's own
        ``norm()``: with few runs, one ``vector_norm`` over the rows of each run (a row reduces
        as its tensor does; see :meth:`_per_run`); else one multi-tensor norm over the parts.
        (``segment_reduce`` was 4-8x faster on 300 parts of two sizes, but sums in another
        order: DoG's float32 parameters ended 4e-7 from its package's.)"""
        if not self.few_runs():
            return torch.stack(torch._foreach_norm(self.split(flat)))
        return self._per_run(
            flat, lambda rows: torch.linalg.vector_norm(rows, dim=1), torch.linalg.vector_norm
        )

    def sum_per_part(self, flat: Tensor) -> Tensor:
        """The sum of each part of ``flat``, in its dtype, bit for bit each part's own ``sum()``
        (with few runs, one ``sum`` over the rows of each run, see :meth:`_per_run`; else one
        per part, see :meth:`norm_per_part`)."""
        if not self.few_runs():
            return torch.stack([part.sum() for part in self.split(flat)])
        return self._per_run(flat, lambda rows: rows.sum(dim=1), Tensor.sum)

    def sub_scaled_(self, x: Tensor, y: Tensor, scales: Tensor) -> None:
        """``x -= scales[i] * y`` over each part i of the flat ``x`` and ``y``, for parts that form
        few runs (:meth:`few_runs`): one ``addcmul_`` per run, no temporary the size of ``x``,
        the bits of each part's ``x.add_(y, alpha=-scale)``."""
        for first, end, begin, length in self.runs:
            span = slice(begin, begin + (end - first) * length)
            rows = (end - first, length)
            x[span].view(rows).addcmul_(y[span].view(rows), scales[first:end, None], value=-1)


def gather(tensors: list[Tensor], like: list[Tensor] | None = None) -> Tensor:
    """One flat buffer holding ``tensors`` one after the other, each part laid out in memory as
    its tensor of ``like`` (default: ``tensors``) is, see :func:`views_like`."""
    like = tensors if like is None else like
    if all(t.is_contiguous() for t in like):
        return torch.cat([t.detach().reshape(-1) for t in tensors])
    flat = torch.empty(sum(t.numel() for t in like), dtype=tensors[0].dtype, device=like[0].device)
    torch._foreach_copy_(views_like(flat, like), [t.detach() for t in tensors])
    return flat


def gather_into(flat: Tensor, views: list[Tensor], tensors: list[Tensor], one_dim: bool) -> None:
    """Copy ``tensors`` into ``flat`` (whose parts ``views`` are shaped like them), one after the
    other: one ``torch.cat`` if they are all 1-D (``one_dim``), else one multi-tensor copy
    (:func:`write_in_place`)."""
    if one_dim:
        torch.cat(tensors, out=flat)
    else:
        write_in_place(torch._foreach_copy_, views, tensors)


_BELOW_AUTOGRAD = getattr(torch._C, "_AutoDispatchBelowADInplaceOrView", None)
"""A guard that dispatches ops past autograd's two layers (``Autograd*``, ``ADInplaceOrView``)
straight to their kernels, as those layers do themselves once they have done their part."""


WRITES_BELOW_AUTOGRAD = _BELOW_AUTOGRAD is not None
"""Whether :func:`write_in_place` can take its shortcut with this torch."""


def write_in_place(
    op: Callable[..., Any], targets: list[Tensor], *args: Any, **kwargs: Any
) -> None:
    """``op(targets, *args, **kwargs)``, a multi-tensor in-place op over plain tensors (the
    packed path's parameters, or its buffers' views), dispatched past autograd's layers, each
    target's version counter then bumped once, as the ``ADInplaceOrView`` layer does.

    Each of a multi-tensor op's per-tensor calls on a CPU passes through those layers, about
    half a microsecond each: in a step under ``no_grad`` over tensors that are not inference
    tensors and carry no forward-mode tangent, they do nothing else (no graph is recorded, no
    view is rebased), and a tensor saved for backward and modified by the step is still caught
    by its version. Measured (2 threads, 2000 parameters of 1k elements): one
    ``torch._foreach_add_`` into them 3.2 -> 2.0 ms in cache; the default step of two
    optimizers stepped in turn, each over its own tensors, RMSprop 9.8 -> 8.7 ms, Adagrad
    8.5 -> 7.8, SGD 8.1 -> 7.6, Adam 12.0 -> 11.0; in the bench's round-robin of 15 optimizers,
    where each step finds every tensor out of cache, within its noise (RMSprop, four runs of
    both orders: 0.99x). Where any of those conditions fails (grad mode on, a forward-AD level
    open, an inference tensor, which autograd's layer refuses to change outside inference
    mode), or this torch lacks the guard, ``op`` runs as it is, through the layers. (Not
    under ``torch.compile``: the packed path it serves is eager only.)"""
    if not run_below_autograd(functools.partial(op, targets, *args, **kwargs), targets):
        op(targets, *args, **kwargs)


def run_below_autograd(kernel: Callable[[], Any], written: list[Tensor]) -> bool:
    """``kernel()``, in-place ops on ``written`` only, dispatched past autograd's layers, each
    tensor of ``written`` then bumped once in its version counter (see :func:`write_in_place`);
    False, nothing run, where that shortcut does not hold now: grad mode on, a forward-AD level
    open, an inference tensor in ``written``, or a torch without the guard (C-level passes)."""
    if (
        not WRITES_BELOW_AUTOGRAD
        or torch.is_grad_enabled()
        or torch.autograd.forward_ad._current_level >= 0
        or any(map(Tensor.is_inference, written))
    ):
        return False
    with _BELOW_AUTOGRAD():
        kernel()
    torch.autograd.graph.increment_version(written)
    return True


def views_like(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Views into ``flat`` shaped like each of ``like``, one after the other, each with its
    tensor's strides when those fill its part densely (``channels_last``, a transpose), so a
    memory format survives the move into a buffer; row-major otherwise."""
    views, offset = [], 0
    for t in like:
        part = flat[offset : offset + t.numel()]
        strides = None if t.is_contiguous() else dense_strides(t)
        views.append(part.view_as(t) if strides is None else part.as_strided(t.shape, strides))
        offset += t.numel()
    return views


def dense_strides(t: Tensor) -> tuple[int, ...] | None:
    """``t``'s strides if its elements fill one block of memory without gaps or overlaps, in
    some order of its dimensions (row-major, ``channels_last``, a transpose); else None."""
    expected = 1
    for stride, size in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return None
        expected *= size
    return t.stride()


class CompiledNumbers:
    """The numbers a compiled rule takes as constants, not 0-dim tensors (one record per rule and
    kind of device for the process, as Dynamo keeps one cache of graphs per function): a zero,
    and on a CPU any other number but ``lr`` for as long as every call has passed it the value
    of its first.

    A 0-dim tensor is the same one at every step, so its new values never recompile: ``lr``,
    which schedules change (from 0, in a warmup), always is one, and so is any other number once
    it has had a second value other than 0 (one recompile, then none: a ``momentum`` schedule,
    or a grid over ``weight_decay`` in one process). A number that never changes (``betas``,
    ``eps``, ``weight_decay``: most, in most runs) is compiled in, as torch.compile does with a
    float: inductor's CPU kernel loads a 0-dim tensor inside its vector loop, once every 8
    elements, and converts and broadcasts it there (its vector stores may alias the tensor, so
    the C++ compiler cannot hoist the load). Adam's kernel on 4 tensors of 4M elements (AMD
    EPYC, AVX2, 2 threads; best of 60 calls): 6.5-6.8 ms with its six numbers loaded in the
    loop, 5.6-6.1 ms with them hoisted out of it by hand, torch's ``fused=True`` 5.5-6.0 ms.

    A zero is always compiled in: the rule then drops its term (``weight_decay``, ``momentum``),
    as torch's kernels branch on ``weight_decay != 0`` on the host. As a tensor it would add
    ``0 * p``, which is NaN where ``p`` is infinite: Adam, Adagrad, SGD, RMSprop and Adadelta
    compiled turned an infinite parameter into NaN where torch keeps it infinite. On a GPU
    (``zeros_only``) only a zero is compiled in: the kernels there are bandwidth-bound, and a
    captured graph replays the values it was captured with (:class:`ReplayedCalls`, whose key
    holds the numbers passed as themselves), so every other number is a tensor.
    """

    def __init__(self, device: torch.device, per_step: Iterable[str] = ()) -> None:
        self.tensors = {"lr", *per_step}  # never compiled in (see ``per_step`` below)
        self.first: dict[str, Any] = {}  # name: its value compiled in, other than 0
        self.varying: set[str] = set()  # names that have had two values other than 0
        self.zeros_only = device.type != "cpu"

    def holds(self, name: str, value: Any) -> bool:
        """Whether ``value`` (of the rule argument ``name``) goes in as a constant: a number,
        not ``lr`` or one of ``per_step`` (the arguments a rule is handed anew at every step,
        Schedule-Free's averaging weight, which would recompile at the second step), and 0 or
        the value every call passed before; a second value other than 0 makes ``name`` a
        tensor from then on."""
        if isinstance(value, Tensor) or name in self.tensors:
            return False
        if value == 0:
            return True
        if self.zeros_only or name in self.varying:
            return False
        if self.first.setdefault(name, value) == value:
            return True
        self.varying.add(name)
        return False


_COMPILED_NUMBERS: dict[tuple[Callable[..., None], str], CompiledNumbers] = {}
"""The record of :class:`CompiledNumbers` for each rule and kind of device, in this process."""


def compiled_numbers(
    rule: Callable[..., None], device: torch.device, per_step: Iterable[str]
) -> CompiledNumbers:
    """The process's :class:`CompiledNumbers` of ``rule`` on ``device``'s kind (made at its first
    compiled call; ``per_step``: the rule's arguments computed anew at every step)."""
    key = (rule, device.type)
    record = _COMPILED_NUMBERS.get(key)
    if record is None:
        record = _COMPILED_NUMBERS[key] = CompiledNumbers(device, per_step)
    return record


class ReplayedCalls:
    """A flat layout's compiled rule calls, captured in CUDA graphs and replayed when one repeats.

    A compiled call costs the host Dynamo's guards, AOTAutograd's wrapper and Inductor's Python
    launcher, about 0.1-0.2 ms per call measured on an H200's host (Adam on 4 tensors of 4M
    elements: 0.245 ms of host time per step, against 0.063 ms for torch's ``fused=True``, for a
    kernel of 0.107 ms, faster than torch's 0.118 ms; the step took 0.333 ms from one
    ``torch.cuda.synchronize()`` to the next, torch's 0.177 ms). A flat layout's buffers never
    move, and the compiled rule takes every number but a zero as a 0-dim tensor refilled in
    place (:meth:`Flat.compiled_arguments`; a zero is compiled in, and it is in the key below),
    so a call that repeats launches the same kernels on the same addresses: captured once in a
    ``torch.cuda.CUDAGraph``, it is then one ``replay()``.

    A call is keyed by the tensors it is handed that the layout does not own, the gradients
    (address, dtype, shape, strides: a gradient autograd allocated anew at the address of the
    last one replays too), by every argument that is not a tensor (``first_step``,
    ``maximize``, ...), by torch's deterministic-algorithms flag and by Dynamo's stance
    (:func:`dynamo_stance`): Dynamo's graph for it is then the one it ran before. The layout's own
    buffers and 0-dim tensors are made with it and never replaced (a layout whose tensors were
    is rebuilt, with new :class:`ReplayedCalls`). A key is captured the second time it is seen
    (its kernels are compiled and tuned by then: a capture cannot compile), and its graph is
    replayed from then on; the last :attr:`LIMIT` keys are kept.

    Nothing synchronises: the capture runs on a side stream with ``capture_begin`` and
    ``capture_end`` (``torch.cuda.graph`` would synchronise the device and empty the cache
    first), and a replay joins the current stream, ordered after the eager ops before it (new
    hyperparameter values filled in). Off CUDA, while a stream is being captured (a user's own
    graph of the step), or when a capture fails, the call runs as it is. The numbers are the
    compiled call's own: a graph replays its kernels. Each graph keeps a private memory pool for
    the temporaries its kernels allocate (Adam's two 0-dim bias corrections; SGD's kernel has
    none), where the caching allocator reserves a small-tensor block (2 MiB): about that much
    GPU memory per param group and captured key (not measured).
    """

    LIMIT = 4

    def __init__(self) -> None:
        self.graphs: dict[tuple, Any] = {}  # key: its torch.cuda.CUDAGraph, or None (failed)
        self.seen: collections.deque[tuple] = collections.deque(maxlen=self.LIMIT)
        self.replays = 0  # (how many calls were replays, for the tests)

    def __call__(self, run: Callable[[], None], tensors: list[Tensor], values: tuple) -> None:
        """``run()``, or its captured graph's replay (``tensors``: the gradients it reads;
        ``values``: its other arguments that are not tensors; see above)."""
        device = tensors[0].device
        if not self.replayable(device):
            run()
            return
        key = (
            values,
            tuple((t.data_ptr(), t.dtype, t.shape, t.stride()) for t in tensors),
            torch.are_deterministic_algorithms_enabled(),
            dynamo_stance(),
        )
        try:
            graph = self.graphs.get(key)
        except TypeError:  # (an argument that cannot be a key: the call runs as it is)
            run()
            return
        if graph is None and key not in self.graphs and key in self.seen:
            graph = self.graphs[key] = _captured(run, device)
            while len(self.graphs) > self.LIMIT:
                del self.graphs[next(iter(self.graphs))]
        if graph is None:
            self.seen.append(key)
            run()
            return
        graph.replay()
        self.replays += 1

    @staticmethod
    def replayable(device: torch.device) -> bool:
        """Whether a call on ``device`` can be captured and replayed: on CUDA, outside another
        capture."""
        return device.type == "cuda" and not torch.cuda.is_current_stream_capturing()


def dynamo_stance() -> tuple:
    """What ``torch.compiler.set_stance`` has set now (the stance, whether guards are skipped,
    its eager backend), as a key: a call made under another stance (``"force_eager"``, to
    debug a compiled step's numbers) is another call, which runs as the stance says and is not
    replayed from a graph captured under the last one. ``()`` where this torch keeps no
    stance."""
    stance = getattr(torch._dynamo.eval_frame, "_stance", None)
    if stance is None:
        return ()
    return (
        getattr(stance, "stance", None),
        getattr(stance, "skip_guard_eval_unsafe", None),
        id(getattr(stance, "backend", None)),
    )


def _captured(run: Callable[[], None], device: torch.device) -> Any:
    """``run``'s kernels captured in a CUDA graph (not run), or None if the capture failed."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.stream(torch.cuda.Stream(device)):
        try:
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                run()
            finally:
                graph.capture_end()
        except Exception:  # (the call then runs as it is, and raises if it is wrong)
            return None
    return graph


_RECORDING = threading.local()
"""The graphs :func:`_inductor_recorded` compiles in this thread during one Dynamo call."""


@functools.cache
def _compile_fx() -> Callable[..., Any]:
    """Inductor's ``compile_fx``, imported when the first :class:`CompiledRule` is made.
    Importing it imports ``torch.utils.mkldnn``, whose classes warn at import that
    ``torch.jit.script_method`` is deprecated (14 ``DeprecationWarning``s, torch 2.13): torch's
    own import, which a user's ``fused=True`` step would show where torch's fused classes, which
    import no compiler, show none. Those warnings alone are silenced, for that import only."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`torch\.jit\.script_method` is deprecated",
            category=DeprecationWarning,
        )
        from torch._inductor.compile_fx import compile_fx
    return compile_fx


def _inductor_recorded(graph: torch.fx.GraphModule, example_inputs: list) -> Callable[..., Any]:
    """torch.compile's ``inductor`` backend (``compile_fx``, which the name ``"inductor"``
    stands for), its compiled graph also recorded with what kind of input it was compiled for
    (:func:`_input_kinds`) and where Dynamo took each input from, while a
    :class:`CompiledRule` call is recording in this thread. One function for the process, so
    that Dynamo's cache, which is per backend, is shared by every optimizer."""
    compiled = _compile_fx()(graph, example_inputs)
    recorded = getattr(_RECORDING, "graphs", None)
    if recorded is not None:
        recorded.append((compiled, _input_kinds(example_inputs), _input_sources(graph)))
    return compiled


class _ZeroDim(NamedTuple):
    """A graph input that is a 0-dim tensor: a float Dynamo turned into one, when it is not
    one of the call's tensors."""

    dtype: torch.dtype
    device: torch.device


def _input_kinds(example_inputs: list) -> list[Any]:
    """What each of a graph's example inputs is: ``None`` for a number (a size, a float),
    :class:`_ZeroDim` for a 0-dim tensor, ``Tensor`` for any other tensor. Not the inputs
    themselves: they are an optimizer's buffers, and the record lives as long as the process's
    Dynamo cache (kept, they held the first compiled optimizer's parameters, gradients and
    state after it was deleted: 256 MB for Adam on 4 tensors of 4M elements)."""
    return [
        None
        if not isinstance(example, Tensor)
        else _ZeroDim(example.dtype, example.device)
        if example.dim() == 0
        else Tensor
        for example in example_inputs
    ]


def _input_sources(graph: torch.fx.GraphModule) -> list[str | None]:
    """Where Dynamo took each input of ``graph`` from (``"L['grads'][0]"``,
    ``"L['grads'][0].size()[0]"``, ...: its placeholders' sources), None where not known."""
    sources = []
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            source = getattr(node.meta.get("grapharg"), "source", None)
            name = getattr(source, "name", None)
            sources.append(name() if callable(name) else name)
    return sources


class _Graph(NamedTuple):
    """A compiled graph and what it was compiled for (see :class:`CompiledRule`)."""

    compiled: Callable[..., Any]  # called with the inputs, as Dynamo's bytecode calls it
    inputs: tuple  # per graph input: a position in the call's tensors, or a recorded constant
    tensors_hold: Callable[..., bool]  # Dynamo's own tensor guard over the call's tensors
    global_state: Any  # Dynamo's guard on grad mode, autocast, threads, default dtype, ...
    ambient: tuple  # inference mode, Dynamo's stance and flag, no modes: :func:`_ambient`
    dynamo_code: Any  # the code of Dynamo's cache entry for the graph: kept while Dynamo has it
    aliasing: tuple  # which of the call's tensors share a storage, and where: :func:`_aliasing`


class CompiledRule:
    """``function`` compiled by torch.compile, each of its graphs called without Dynamo once it
    is compiled and its call seen again (on a CPU).

    A call through Dynamo costs the host its frame and guards and the config patch that raises
    its recompile limit (:func:`limited`): Adam on 4 tensors of 1k elements took 83 us a call
    warm on this project's CPU (66 us without the patch), its graph called directly 15 us, and
    the step 214 us before and 143 us after this class; more with cold caches after a large
    kernel (in-process A/B on 4 tensors of 4M, medians of 20 rounds against torch fused:
    AdamW 0.96x before, 0.99x after; Adam 0.97x and 0.99x). A flat layout calls the rule with
    its own buffers, which never move, and numbers that rarely change, so most calls repeat
    one already compiled.

    The first call of a kind runs through Dynamo, whose backend (:func:`_inductor_recorded`)
    records the graph inductor compiles and where Dynamo took each of its inputs from (its
    sources: ``L['grads'][0]``, ``L['grads'][0].size()[0]``, ``L['weight_decay']``). The
    graph Dynamo ran for a call is the one the call compiled, or, for a call Dynamo served
    from its cache without compiling (a third buffer size, served by the dynamic-shape graph;
    AdamW on the graph Adam's call compiled), the one whose cache entry alone, of the entries
    for this backend, passes its own guard manager for the call's arguments. When that graph
    was recorded, its inputs are read from the call by its sources: a tensor of the call, a
    size of a dynamic-shape graph, or a number (a float argument that had changed, which
    Dynamo passes as a 0-dim tensor it makes: Adam and AdamW share one rule, and AdamW's
    ``weight_decay`` after Adam's zero is one). The graph is then kept for the call's numbers
    (every argument that is not a tensor, by type and value, and the structure of the lists),
    and later calls with those numbers call it directly with the inputs so read, when all of
    these hold, which cover what Dynamo's guards check for such a call:

    - each tensor's dtype, device, sizes, strides, dispatch keys and ``requires_grad`` as at
      the capture (Dynamo's own ``TensorGuards``, :func:`tensor_guard`);
    - the same tensors passed twice, the same sharing a storage, each at the same storage offset
      as at the capture (:func:`_aliasing`; Dynamo's guards on duplicated and aliased inputs).
      The spans, views of the layout's buffers, share storages, and AOTAutograd's wrapper
      inside the graph's callable handles that aliasing at every call, direct or not; a
      dynamic-shape graph over them takes their storage offsets as inputs, which the offsets
      checked here fix;
    - Dynamo's global state guard (grad mode, autocast, thread count, default dtype,
      deterministic algorithms), inference mode, Dynamo's stance and ``disable`` flag as at the
      capture, and no torch function or dispatch mode active.

    A kept graph serves its calls even after Dynamo has compiled a later one whose guards also
    pass for them (a dynamic-shape graph, which Dynamo would then try first): both are graphs
    of the same rule for these inputs, and the kept one is the static kernel where there is
    one.

    A rule changes nothing but its tensors (no list, dict or other Python object it is handed),
    so Dynamo's bytecode around the graph does nothing a direct call skips; the tests hold
    every compiled rule's direct calls to the Dynamo-called rule's bits.

    Anything else runs through Dynamo, which recompiles or not as it would have: a new number, a
    graph not kept (an input that is none of the above), two entries whose guards pass, a
    stance other than the default (where Dynamo may not run a graph at all). On a GPU every
    call goes through Dynamo with inductor's backend by its name, as before this class
    (:class:`ReplayedCalls` captures repeating calls there in CUDA graphs; the direct calls are
    not tested on a GPU). One instance per function for the process
    (:func:`compiled_rule`), as Dynamo keeps one cache per function.
    """

    def __init__(self, function: Callable[..., None]) -> None:
        self.code = function.__code__
        _compile_fx()  # (inductor imported now, without its import's warnings, for both backends)
        self.dynamo = limited(torch.compile(function, fullgraph=True, dynamic=None))
        self.recording = limited(  # (on a CPU; elsewhere the backend by its name, as before)
            torch.compile(function, fullgraph=True, dynamic=None, backend=_inductor_recorded)
        )
        self.graphs: dict[tuple, list[_Graph]] = {}
        self.direct_calls = 0  # (calls that skipped Dynamo, for the tests)
        self.signature = inspect.signature(function)
        # each recorded graph's Dynamo entry's code and backend, callable, input sources and
        # input kinds (an entry's code object, not the entry: a Python wrapper of an entry
        # that torch._dynamo.reset() freed is handed out again for a new entry at its address)
        self.recorded: list[tuple[Any, Any, Callable[..., Any], list, list]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        tensors: list[Tensor] = []
        key = _call_key(args, kwargs, tensors)
        if not tensors or tensors[0].device.type != "cpu":
            self.dynamo(*args, **kwargs)
            return
        try:
            graphs = self.graphs.get(key)
        except TypeError:  # (an argument that cannot be a key: through Dynamo)
            self.dynamo(*args, **kwargs)
            return
        if graphs and self._called_directly(graphs, tensors):
            return
        before = [entry.code for entry in _dynamo_entries(self.code)]
        _RECORDING.graphs = recorded = []
        try:
            self.recording(*args, **kwargs)
        finally:
            _RECORDING.graphs = None
        entries = _dynamo_entries(self.code)
        added = [entry for entry in entries if not _held(before, entry.code)]
        if len(recorded) == 1 and len(added) == 1:  # (compiled by this call)
            compiled, kinds, sources = recorded[0]
            paths = list(map(_source_path, sources))
            if None not in paths:
                self.recorded.append((added[0].code, added[0].backend, compiled, paths, kinds))
        elif recorded or added:
            return
        graph = self._graph_ran(args, kwargs, tensors, entries, added)
        if graph is not None:
            self.graphs.setdefault(key, []).append(graph)

    def _graph_ran(
        self, args: tuple, kwargs: dict, tensors: list[Tensor], entries: list, added: list
    ) -> _Graph | None:
        """The recorded graph Dynamo just ran for this call, with the call's inputs, or None.
        It is the one the call compiled (``added``, its cache entry), or, for a call Dynamo
        served from its cache, the one whose entry alone, of the entries for this backend,
        passes its guards for the call's arguments (checked with the entries' own guard
        managers, as Dynamo checks them, in the same state). Its inputs are read from the
        call by the graph's sources: a tensor of the call, a size, or a number (a float
        Dynamo passes as a 0-dim tensor it makes is made so once, for this key)."""
        codes = [entry.code for entry in entries]
        self.recorded = [item for item in self.recorded if _held(codes, item[0])]
        ambient = _ambient()
        stance = ambient[1]
        runs_graphs = not stance or (stance[0] == "default" and not stance[1])
        if not (self.recorded and runs_graphs and ambient[-1]) or ambient[2]:
            return None  # (under another stance Dynamo may not have run a graph, or another)
        aliasing = _aliasing(tensors)
        if aliasing is None:
            return None
        try:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            frame = dict(bound.arguments)
            backend = self.recorded[0][1]  # (Dynamo tries only its backend's entries)
            ran = added or [
                entry
                for entry in entries
                if entry.backend is backend and entry.guard_manager.check(frame)
            ]
        except Exception:  # (a private API that changed: no graph)
            return None
        found = [item for item in self.recorded if len(ran) == 1 and item[0] is ran[0].code]
        if not found:
            return None
        code, _, compiled, paths, kinds = found[0]
        positions = {id(t): _At(i) for i, t in enumerate(tensors)}
        inputs: list = []
        for path, kind in zip(paths, kinds, strict=True):
            value = _resolved(path, frame)
            if isinstance(value, Tensor) and id(value) in positions:
                inputs.append(positions[id(value)])
            elif type(value) in (int, float) and kind is None:
                inputs.append(value)  # (a size of a dynamic-shape graph, or a number)
            elif type(value) in (int, float) and type(kind) is _ZeroDim:
                inputs.append(torch.tensor(value, dtype=kind.dtype, device=kind.device))
            else:
                return None
        check = tensor_guard(_distinct(tensors, aliasing))
        if check is None:
            return None
        try:
            from torch._C._dynamo.guards import GlobalStateGuard

            global_state = GlobalStateGuard()
        except Exception:
            return None
        return _Graph(compiled, tuple(inputs), check, global_state, ambient, code, aliasing)

    def _called_directly(self, graphs: list[_Graph], tensors: list[Tensor]) -> bool:
        """Call the first of ``graphs`` (kept for this call's numbers) that Dynamo would run for
        ``tensors``, and say whether one was; graphs whose Dynamo cache entry is gone
        (``torch._dynamo.reset()``) are dropped."""
        aliasing = _aliasing(tensors)
        if aliasing is None:
            return False
        codes = [entry.code for entry in _dynamo_entries(self.code)]
        if any(not _held(codes, graph.dynamo_code) for graph in graphs):
            graphs[:] = [graph for graph in graphs if _held(codes, graph.dynamo_code)]
        ambient = _ambient()
        distinct = _distinct(tensors, aliasing)
        for graph in graphs:
            if (
                graph.ambient == ambient
                and graph.aliasing == aliasing
                and graph.global_state.check()
                and graph.tensors_hold(*distinct)
            ):
                graph.compiled(*[tensors[i] if type(i) is _At else i for i in graph.inputs])
                self.direct_calls += 1
                return True
        return False


def _held(objects: list, one: Any) -> bool:
    """Whether ``one`` is one of ``objects`` (identity)."""
    return any(map(operator.is_, objects, itertools.repeat(one)))


class _At(int):
    """A graph input's position among a call's tensors (an ``int`` apart from the constants)."""


def _call_key(args: tuple, kwargs: dict, tensors: list[Tensor]) -> tuple:
    """What a call passes besides its tensors (by type and value, lists and dicts by their
    structure), as a key; its tensors are appended to ``tensors`` in order."""
    return (tuple(_key_of(value, tensors) for value in args), _key_of(kwargs, tensors))


def _key_of(value: Any, tensors: list[Tensor]) -> Any:
    """One argument's part of :func:`_call_key`."""
    if isinstance(value, Tensor):
        tensors.append(value)
        return Tensor
    if type(value) is list:
        if all(map(isinstance, value, itertools.repeat(Tensor))):  # (a list of tensors: one pass)
            tensors.extend(value)
            return (list, len(value))
        return (list, *(_key_of(item, tensors) for item in value))
    if type(value) is dict:
        return (dict, *((name, _key_of(item, tensors)) for name, item in value.items()))
    return (type(value), value)


def _aliasing(tensors: list[Tensor]) -> tuple | None:
    """Which of ``tensors`` are the same object, which share a storage, and where each starts
    in it: per tensor, the position of its object's first occurrence, the position of the first
    of them on its storage, and its storage offset (with the sizes and strides the tensor guard
    checks, this fixes which elements of any two overlap; Dynamo tells a tensor passed twice
    from two views of the same memory). None where a storage is empty (its address, 0, tells
    nothing)."""
    pointers = [t.untyped_storage().data_ptr() for t in tensors]
    if 0 in pointers:
        return None
    same_object: dict[int, int] = {}
    same_storage: dict[int, int] = {}
    return tuple(
        (same_object.setdefault(id(t), i), same_storage.setdefault(p, i), t.storage_offset())
        for i, (t, p) in enumerate(zip(tensors, pointers))
    )


def _distinct(tensors: list[Tensor], aliasing: tuple) -> list[Tensor]:
    """``tensors`` with each object once (Dynamo's tensor guard refuses one passed twice), in
    order, as :func:`_aliasing` found them."""
    return [t for i, t in enumerate(tensors) if aliasing[i][0] == i]


def _ambient() -> tuple:
    """What a compiled graph depends on beyond Dynamo's global state guard: inference mode,
    Dynamo's stance and ``disable`` flag, and whether a torch function or dispatch mode is
    active (see :class:`CompiledRule`)."""
    return (
        torch.is_inference_mode_enabled(),
        dynamo_stance(),
        torch._dynamo.config.disable,
        torch._C._len_torch_function_stack() == 0 and torch._C._len_torch_dispatch_stack() == 0,
    )


_SOURCE_START = re.compile(r"L\['(\w+)'\]")
_SOURCE_STEP = re.compile(
    r"\[(\d+)\]|\['([^'\]]+)'\]|\.size\(\)\[(\d+)\]|\.stride\(\)\[(\d+)\]|(\.storage_offset\(\))"
)


def _source_path(source: str | None) -> tuple | None:
    """A Dynamo source name as a path from the frame's locals (``"L['grads'][0].size()[0]"``:
    ``("grads", (("item", 0), ("size", 0)))``; a dynamic-shape graph over views also takes
    their ``.storage_offset()``), or None for any other form."""
    start = _SOURCE_START.match(source or "")
    if start is None:
        return None
    steps, position = [], start.end()
    while position < len(source):
        step = _SOURCE_STEP.match(source, position)
        if step is None:
            return None
        index, key, size, stride, offset = step.groups()
        if index is not None or key is not None:
            steps.append(("item", int(index) if index is not None else key))
        elif offset is not None:
            steps.append(("offset", None))
        else:
            steps.append(("size", int(size)) if size is not None else ("stride", int(stride)))
        position = step.end()
    return (start.group(1), tuple(steps))


def _resolved(path: tuple, frame: dict) -> Any:
    """The value at ``path`` (:func:`_source_path`) in the frame's locals ``frame``."""
    name, steps = path
    value = frame[name]
    for kind, at in steps:
        if kind == "item":
            value = value[at]
        elif kind == "offset":
            value = value.storage_offset()
        else:
            value = value.size(at) if kind == "size" else value.stride(at)
    return value


def _dynamo_entries(code: Any) -> list:
    """Dynamo's cache entries for ``code`` (``torch._dynamo.reset()`` drops them; each entry's
    ``code``, Dynamo's bytecode for it, is a Python object of its own, which identifies the
    entry while it is held), or ``[]`` where this torch does not list them."""
    listed = _cache_entry_lister()
    return [] if listed is None else listed(code)


@functools.cache
def _cache_entry_lister() -> Callable[[Any], list] | None:
    """Dynamo's private lister of a code object's cache entries, or None where this torch lacks
    it."""
    try:
        from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list
    except ImportError:
        return None
    return _debug_get_cache_entry_list


@functools.cache
def compiled_rule(function: Callable[..., None]) -> CompiledRule:
    """The process's :class:`CompiledRule` of ``function``."""
    return CompiledRule(function)


def limited(compiled: Callable[..., None]) -> Callable[..., None]:
    """``compiled`` with Dynamo's limit of graphs per function raised from 8 to 256 for its
    calls only (see ``RuleOptimizer._compiled``)."""

    raised_limit = torch._dynamo.config.patch(recompile_limit=256)  # (made once: a class each)

    def run(*args: Any, **kwargs: Any) -> None:
        with raised_limit:
            compiled(*args, **kwargs)

    return run


LIVE_FLAT_BUFFERS: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()
"""The flat parameter buffer of every live :class:`Flat` layout, by the address of its memory:
parameters viewing one are this library's to lay out again (see ``optim._base``'s
``_kept_where_they_lie``)."""


class Flat(OwnedState):
    """``impl="flat"``: one param group's parameters of one device and dtype in one buffer.

    Every ``Parameter`` keeps its identity but its ``.data`` becomes a view into the flat parameter
    buffer, its ``.grad`` a view into the flat gradient buffer (autograd accumulates into it in
    place while it is not reset to ``None``), and every state tensor a view into its flat buffer.
    So after the first step ``p.grad`` is the optimizer's view, not the tensor it was: a
    gradient that was a view into memory of the user's (a bucket of gradients, as DDP's
    ``gradient_as_bucket_view=True`` makes them; a ``p.grad`` held elsewhere) no longer is
    ``p.grad``, and gradients accumulated after (``zero_grad(set_to_none=False)``, then
    ``backward()``) land in the flat buffer, not in that memory (torch.optim leaves ``p.grad``
    the tensor it was). Code that needs its own gradient memory to stay ``p.grad`` takes the
    default path.
    :meth:`holds` checks all of that before each step; when anything was replaced (``p.data = ...``,
    ``model.to(...)``, a state tensor, the set of parameters with a gradient), the optimizer builds
    a new layout from the current tensors.
    """

    @OUTSIDE_INFERENCE_MODE
    def __init__(
        self, params: list[Tensor], states: list[dict], keys: tuple[str, ...], counts_steps: bool
    ) -> None:
        self.flat_param = gather(params)
        LIVE_FLAT_BUFFERS[self.flat_param.untyped_storage().data_ptr()] = self.flat_param
        self.flat_grad = gather([p.grad for p in params], like=params)
        self.param_views = views_like(self.flat_param, params)
        self.grad_views = views_like(self.flat_grad, params)
        for p, param_view, grad_view in zip(params, self.param_views, self.grad_views):
            p.data = param_view
            p.grad = grad_view
        self.param_pointers = [view.data_ptr() for view in self.param_views]
        self.grad_pointers = list(map(Tensor.data_ptr, self.grad_views))
        self.grad_layouts = list(map(_shape_and_strides, self.grad_views))
        self.grad_metadata = Metadata(self.grad_views)
        self.grad_targets = views_like(self.flat_grad, params)  # (ours only: copies land here)
        self.one_dim = all(p.dim() == 1 for p in params)  # (gradients gather with torch.cat)
        super().__init__(params, states, keys, counts_steps, self.flat_param.device)
        # The buffers cut at the large row-major tensors, whose new gradients the rule reads
        # where they are: (first element, end element, that tensor's position or None).
        self.span_bounds: list[tuple[int, int, int | None]] = []
        start = done = 0
        for i, (size, view) in enumerate(zip(self.sizes, self.param_views)):
            if size >= BLOCK and view.is_contiguous():
                if start > done:
                    self.span_bounds.append((done, start, None))
                self.span_bounds.append((start, start + size, i))
                done = start + size
            start += size
        if start > done or not self.span_bounds:
            self.span_bounds.append((done, start, None))
        self.large = [i for _, _, i in self.span_bounds if i is not None]
        self.count = 0.0  # the host's copy of the step count, set by the optimizer
        self.hyperparameter_tensors: dict[str, Tensor] = {}
        self.last_values: dict[str, Any] = {}
        self.replayed = ReplayedCalls()  # (the compiled calls over these buffers)

    def counts_hold(self) -> bool:
        """Whether every step counter still holds :attr:`count`, the host's copy that the eager
        step's scalars are computed from: an in-place edit (``state[p]["step"].zero_()`` to
        restart the bias corrections) changes the counters, and the layout is then rebuilt
        from them, as torch reads them. Read where the counters live on the host (a CPU) only:
        on a device the read would synchronise, and an in-place edit there is not seen."""
        if self.step_vector is None or self.step_vector.device.type != "cpu":
            return True
        low, high = torch.aminmax(self.step_vector)
        return low.item() == high.item() == self.count

    @functools.cached_property
    def rounds(self) -> list[tuple[int, int, int, int]]:
        """The buffer in rounds of whole tensors, as the learning-rate-free rules see it (see
        ``optim._global.Pack``): on a CPU each large tensor (:attr:`large`) a round of its own,
        whose new gradient a rule can then read where it lies (:meth:`round_gradients`); on a
        GPU (:func:`caches_in_blocks`) one round over the whole buffer. There a round is a
        kernel per op, not a pass through cache: on an NVIDIA H200 (torch 2.11) Prodigy's step
        on 4 tensors of 4M elements launched 173 kernels in 3.84 ms with a round per large
        tensor, 75 in 1.28 ms with one round (copying 64 MB of new gradients in is about 30 us
        of that bandwidth)."""
        if not caches_in_blocks(self.flat_param.device):
            return [(0, len(self.sizes), 0, sum(self.sizes))]
        rounds, first, start = [], 0, 0
        for large in [*self.large, len(self.sizes)]:
            if large > first:  # the tensors between two large ones
                rounds += [
                    (i + first, j + first, begin + start, end + start)
                    for i, j, begin, end in packed_rounds(
                        self.sizes[first:large], self.flat_param.device
                    )
                ]
                start += sum(self.sizes[first:large])
            if large < len(self.sizes):
                rounds.append((large, large + 1, start, start + self.sizes[large]))
                start += self.sizes[large]
            first = large + 1
        return rounds

    @functools.cached_property
    def round_segments(self) -> list[Segments]:
        """Each round's parts, one per parameter."""
        return [Segments.of(self.params[i:j]) for i, j, _, _ in self.rounds]

    def params_updated(self) -> None:
        """Count a step's update in every parameter's version counter, as an in-place op on it
        would (one C call). A step updates the parameters through the flat buffer, whose
        counter their ``.data`` views do not share (``p.data = view`` links none), so a
        parameter saved for backward before a step and used after it went unseen: torch.optim's
        step makes that backward raise ("modified by an inplace operation"); the flat path's,
        before, let it compute a gradient with the updated values."""
        torch.autograd.graph.increment_version(self.params)

    def params_hold(self, params: list[Tensor]) -> bool:
        """Whether these are the parameters laid out here, still views into the flat buffer: the
        same objects at the same addresses, dtypes, shapes and strides (:class:`Metadata`:
        ``p.data = p.data.view(5, 7)`` keeps the address, as does ``p.data.view(torch.int32)``)."""
        if not _identical(params, self.params):
            return False
        if list(map(Tensor.data_ptr, params)) != self.param_pointers:
            return False
        return self.metadata.holds(params)

    def grads_in_place(self, grads: list[Tensor]) -> bool:
        """Whether ``grads`` (the parameters' ``.grad``) are the layout's own views, still lying
        in the flat gradient buffer as laid out. ``p.grad.data = t`` or ``p.grad.set_(t)``
        keeps the view object but moves its data, or gives it other strides at the same
        address (``p.grad.data = p.grad.data.t()``), and torch reads the gradient there
        (checked as :meth:`OwnedState.storage_holds` checks the state views)."""
        return (
            _identical(grads, self.grad_views)
            and list(map(Tensor.data_ptr, grads)) == self.grad_pointers
            and self.grad_metadata.holds(grads)
        )

    def sync_grads(self, grads: list[Tensor] | None = None, leave: Iterable[int] = ()) -> None:
        """Copy each parameter's gradient into the flat gradient buffer unless it is its view
        there, still as laid out (:meth:`grads_in_place`), or its position is in ``leave``
        (``grads``: the parameters' ``.grad``, if already read).

        The views are the gradients while a training loop keeps them (``zero_grad(set_to_none=
        False)``: autograd accumulates into the buffer in place, nothing to copy). With torch's
        default ``zero_grad()`` autograd allocates new ones every step: they are copied in with
        one multi-tensor op, ``torch.cat`` when all are new and 1-D, else one multi-tensor copy
        of the new ones (2000 gradients of 1k elements: 1.4 and 1.8 ms, where a copy per tensor
        and pointing ``p.grad`` back at its view took 4.4 ms). ``p.grad`` is left as it is: a
        loop that drops its gradients every step would pay for that pointing every step. A view
        whose data was moved (``p.grad.data = t``) is copied in as a new gradient, from where
        it now lies; a gradient that is a view (of the buffer itself, perhaps: ``p.grad =
        p.grad.t()``, which a copy in place would refuse) from a clone.
        """
        grads = list(map(_GRAD, self.params)) if grads is None else grads
        if self.grads_in_place(grads):
            return
        leave = set(leave)
        if not leave and self.one_dim and not any(map(operator.is_, grads, self.grad_views)):
            try:
                torch.cat(grads, out=self.flat_grad)
                return
            except RuntimeError:  # a new gradient aliasing the buffer, which cat refuses
                pass
        new = [
            i
            for i, (grad, view) in enumerate(zip(grads, self.grad_views))
            if i not in leave
            and (
                grad is not view
                or grad.data_ptr() != self.grad_pointers[i]
                or _shape_and_strides(grad) != self.grad_layouts[i]
            )
        ]
        if new:  # (a view may lie in the buffer itself, p.grad.t(): copied from its clone)
            sources = [grads[i].clone() if grads[i]._is_view() else grads[i] for i in new]
            torch._foreach_copy_([self.grad_targets[i] for i in new], sources)

    def new_large_gradients(self, grads: list[Tensor]) -> dict[int, Tensor]:
        """Copy the gradients ``grads`` (the parameters' ``.grad``) into the flat gradient
        buffer (:meth:`sync_grads`), except a large tensor's new row-major one, which a rule
        reads where autograd left it; those, 1-D, by the tensor's position."""
        own = {}
        for i in self.large:
            grad = grads[i]
            if grad is not self.grad_views[i] and grad.is_contiguous():
                own[i] = grad.view(-1)
        self.sync_grads(grads, leave=own)
        return own

    def round_gradients(self, grads: list[Tensor]) -> dict[int, Tensor]:
        """The gradients ``grads`` (the parameters' ``.grad``) ready for :attr:`rounds`: where a
        large tensor is a round of its own (a CPU), its new row-major gradient is read where
        autograd left it, by the tensor's position (:meth:`new_large_gradients`); on a GPU,
        where one round spans the buffer, every new gradient is copied in (:meth:`sync_grads`,
        one multi-tensor copy) and none is returned."""
        if caches_in_blocks(self.flat_param.device):
            return self.new_large_gradients(grads)
        self.sync_grads(grads)
        return {}

    def gradient_spans(self, grads: list[Tensor]) -> list[tuple[int, int, Tensor]] | None:
        """The gradients ``grads`` (the parameters' ``.grad``) as consecutive spans of the
        buffers, ``(begin, end, gradient)`` with a 1-D ``gradient`` of ``end - begin``
        elements, for a rule run span by span; None when they are all in the flat gradient
        buffer (the layout's views, or new ones copied in).

        The buffers are cut at every large tensor (``BLOCK`` elements or more, row-major), which
        is a span of its own, and a new gradient of one is read where autograd left it: copying
        it in costs a pass over memory of its own (SGD with momentum on 4 tensors of 4M elements
        and torch's default ``zero_grad()``: the eager step took 12.9-13.4 ms with the copy,
        7.0-8.7 without). The other spans are the flat gradient buffer's, with new small
        gradients copied in (:meth:`sync_grads`). The spans of a layout are always the same, so
        a compiled rule sees one structure of lists for it. Elementwise rules give the same
        values span by span as over the whole buffer.
        """
        own = self.new_large_gradients(grads)
        if not own:
            return None
        return [
            (begin, end, own.get(i, self.flat_grad[begin:end]))
            for begin, end, i in self.span_bounds
        ]

    def compiled_arguments(
        self, arguments: dict[str, Any], compiled_in: CompiledNumbers | None = None
    ) -> dict[str, Any]:
        """The compiled rule's numbers: each a 0-dim float64 tensor on the buffer's device,
        refilled only when changed (a compiled rule then sees the same tensor at every step,
        and a new value never recompiles), but for those ``compiled_in`` takes as constants
        (see :class:`CompiledNumbers`), passed as Python floats."""
        converted = {}
        last_values, held_tensors = self.last_values, self.hyperparameter_tensors
        for name, value in arguments.items():
            if type(value) is float and last_values.get(name) is value:  # (most, every step)
                converted[name] = held_tensors[name]
                continue
            if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real | Tensor):
                converted[name] = value
                continue
            if compiled_in is not None and compiled_in.holds(name, value):
                converted[name] = float(value)
                continue
            held = held_tensors.get(name)
            if held is None:
                with torch.inference_mode(False):  # (see OUTSIDE_INFERENCE_MODE)
                    held = torch.zeros((), dtype=torch.float64, device=self.flat_param.device)
                held_tensors[name] = held
            if isinstance(value, Tensor):
                held.copy_(value.reshape(()))
                last_values.pop(name, None)
            elif last_values.get(name) != value:
                held.fill_(value)
                last_values[name] = value
            converted[name] = held
        return converted
