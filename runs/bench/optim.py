"""``stepsize bench optim``: our optimizers' ``step()`` against torch.optim, in the same process.

For each optimizer and model shape (fp32 tensors; gradients in place, or with ``--new-grads``
new gradient tensors before every step as torch's default ``zero_grad()`` leaves autograd to
allocate them, which the flat path must copy into its buffer), the median time of one
``step()`` for torch.optim's single-tensor, foreach and fused implementations and for ours: the
default path (parameters' own storage), the flat path, and the flat path compiled. Variants are
timed round-robin (one step of each in turn), so a busy machine slows them alike and the ratios
stay fair; each runs as ``--instances`` optimizers over tensors of their own (default 3), whose
times are pooled, since where an optimizer's memory happens to lie moved identical ones' steps
up to 1.36x apart in one process. Speedups are torch's time over ours (above 1: ours is faster):

* ``default / eager``: the default path against torch's faster eager path (single or foreach);
* ``compiled / fused``: ``compile=True`` against torch's ``fused=True``.

Also printed: the memory beyond the state, for our default path and for torch fused: the peak
bytes a step holds in temporaries, and the scratch buffers an optimizer keeps from step to step
(:func:`kept_bytes`); the effective bandwidth (bytes the update must read and write once, over
the best time of ours), with the machine's in-place bandwidth for scale (measured alone, so a
row whose buffers stay in cache can exceed it); the load average when the bench starts (times
from a busy machine are slow, though the round-robin keeps the ratios fair); the first
compiled step's wall time in a fresh process with a cold and with a warm inductor cache; and,
where our default path packs the state, the packed floor (:class:`PackedFloor`, timed in the
same round-robin): a step that only makes the two passes over the user's tensors that any step
on their own storage makes, so ``eager / floor`` is the most such a step could gain on torch;
and, per row, the thread handoff (:class:`ThreadHandoff`, in the same round-robin): whether the
threads shared their caches while the row ran, which moves our packed default path's ratios
(on this project's 2-core machine, Adagrad on 400x40k: 1.1x torch in one regime, 0.65x in the
other), slows torch's for-loop path about 1.25x and our flat path not at all (see the README).

With ``--alone`` each variant is instead timed as a training script runs it, the only optimizer
of a fresh process (:func:`time_alone`, ``--instances`` processes per variant, one at a time),
with the minor page faults of each step: a round-robin keeps many optimizers' memory in one
process, so the allocator's heap stays large and a step's temporaries reuse it; alone, torch's
eager paths hand their freed temporaries (a whole tensor's, 16 MiB per 4M-element tensor) back
to the OS and fault them in again at the next step, where our default path's, a block's at
most, stay in the heap. The column layout is the round-robin's, less the CPU-only columns,
plus the faults.

With ``--device cuda`` the tensors live on the GPU and each time runs between two
``torch.cuda.synchronize()`` calls (the compiled path is Triton kernels there, torch's fused
path its CUDA kernels); the CPU-only columns (packed floor, handoff, bandwidth) are left out.
The memory is counted as on a CPU, from the tensors ops create (not the caching allocator's
totals, which round a 16 MB state tensor up to its 2 MiB-rounded segment, and differ run to
run with the allocator's history).
Targets (issue 11, 2-core CPU): default >= 1.0x torch's faster eager path on 4x4M and 400x40k for
all six classes, >= 5x on 2000x1k; compiled within 1.1x of torch fused on 4x4M (Adam, AdamW, SGD
with momentum, Adagrad) and >= 5x faster on 2000x1k.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import inspect
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import optim
from optim import _paths
from runs.results import cpu_model, cpu_text, torch_cpu_kernels

MODELS = {"4x4M": (4, 4_000_000), "400x40k": (400, 40_000), "2000x1k": (2000, 1_000)}
OPTIMIZERS: dict[str, tuple[dict, int]] = {
    # name: (hyperparameters, tensors read + written per element: parameter, gradient, state)
    "SGD": ({"lr": 1e-3, "momentum": 0.9}, 5),
    "Adam": ({"lr": 1e-3}, 7),
    "AdamW": ({"lr": 1e-3}, 7),
    "Adagrad": ({"lr": 1e-2}, 5),
    "RMSprop": ({"lr": 1e-2}, 5),
    "Adadelta": ({}, 7),
}
TORCH_FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}
COLUMNS = (
    "torch single",
    "torch foreach",
    "torch fused",
    "ours default",
    "ours flat",
    "ours flat+compile",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stepsize bench optim``."""
    parser.add_argument(
        "--optimizers",
        default=None,
        help="comma-separated (default: all; with --lr-free: all learning-rate-free ones)",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated shapes")
    parser.add_argument("--repeat", type=int, default=15, help="timed steps per measurement")
    parser.add_argument(
        "--instances",
        type=int,
        default=3,
        help="optimizers built per variant, each over its own tensors, their times pooled "
        "(default 3: identical optimizers in one process step up to 1.36x apart)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled flat path")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument(
        "--new-grads",
        action="store_true",
        help="new gradient tensors before every step (untimed), as a training loop with torch's "
        "default zero_grad() hands them over, instead of the same tensors in place",
    )
    parser.add_argument(
        "--lr-free",
        action="store_true",
        help="instead: the learning-rate-free optimizers against their reference packages",
    )
    parser.add_argument(
        "--alone",
        action="store_true",
        help="each variant timed in a fresh process of its own, one optimizer stepping, as a "
        "training script runs it (its temporaries freed back to the OS between steps), with "
        "the page faults of each step; instead of the round-robin in one process",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the tensors live: cpu (default) or cuda (times taken between "
        "torch.cuda.synchronize() calls; the CPU-only columns are left out)",
    )


class Shape(NamedTuple):
    """A benchmark model: ``groups`` param groups of ``count`` tensors of ``numel`` elements."""

    count: int
    numel: int
    groups: int = 1

    @property
    def elements(self) -> int:
        return self.groups * self.count * self.numel


def parse_model(spec: str) -> Shape:
    """A shape: a name from MODELS or ``COUNTxNUMEL`` with optional k/M suffixes (``8x2k``),
    optionally after ``GROUPSg``: that many param groups of such tensors, each group with its
    own learning rate, as per-layer groups (``300g1x1k``: 300 groups of one 1k tensor)."""
    if spec in MODELS:
        return Shape(*MODELS[spec])
    scale = {"k": 1_000, "M": 1_000_000}
    try:
        groups, grouped, rest = spec.rpartition("g")
        count, numel = rest.split("x")
        factor = scale.get(numel[-1], 1)
        digits = numel[:-1] if numel[-1] in scale else numel  # (one suffix: "4Mk" is refused)
        shape = Shape(int(count), int(digits) * factor, int(groups) if grouped else 1)
    except (ValueError, IndexError):  # no "x", a number missing ("4x") or not a number
        shape = Shape(0, 0)
    if min(shape) < 1:
        raise ValueError(
            f"--models: bad shape {spec!r}; allowed: {', '.join(MODELS)}, COUNTxNUMEL like 8x2k, "
            "or GROUPSgCOUNTxNUMEL like 300g1x1k"
        )
    return shape


def _round_robin_ms(
    steps: dict[Any, Callable[[], object]],
    repeat: int,
    before: dict[Any, Callable[[], object]] | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Median milliseconds of each step, timed one step of each in turn (after 3 warm-ups);
    ``before[key]``, if given, runs untimed before each of that key's steps. A key ``(label,
    instance)`` is one of several instances of a variant: their times are pooled under
    ``label`` (one median over all of them). On a ``cuda`` device each time runs from a
    ``torch.cuda.synchronize()`` to another after the step, so it counts the kernels the step
    launched, not only their launch."""
    before = before or {}
    sync = torch.cuda.synchronize if device.startswith("cuda") else _nothing
    for key, step in steps.items():
        for _ in range(3):
            before.get(key, _nothing)()
            step()
    times: dict[str, list[float]] = {}
    for _ in range(repeat):
        for key, step in steps.items():
            before.get(key, _nothing)()
            sync()
            start = time.perf_counter()
            step()
            sync()
            label = key[0] if isinstance(key, tuple) else key
            times.setdefault(label, []).append(time.perf_counter() - start)
    return {label: statistics.median(t) * 1e3 for label, t in times.items()}


def _gradients_line(args: argparse.Namespace) -> str:
    """How the bench hands the gradients over, for its header (with ``--lr-free``: their values
    put back before each step, :func:`same_gradients`)."""
    line = "new tensors before each step" if args.new_grads else "the same tensors, in place"
    if getattr(args, "lr_free", False):
        line += (
            "; their values put back before each step, untimed, for every column alike (the "
            "package's AdamWScheduleFree writes into p.grad)"
        )
    return line


def _instances_line(args: argparse.Namespace) -> str:
    """How many optimizers each variant runs, for the header."""
    return f"instances: {args.instances} per variant, each over its own tensors, their times pooled"


def _nothing() -> None:
    pass


def _tensors(params: list) -> list[torch.Tensor]:
    """The tensors of ``params`` (tensors, or param groups), in order."""
    return [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]


def new_gradients(params: list, restore: bool = False) -> Callable[[], None]:
    """A callable that gives every tensor of ``params`` (tensors or param groups) a new gradient
    tensor, as autograd does after torch's default ``zero_grad()`` (``set_to_none=True``): it
    alternates between two sets made here, so each step sees other tensors than the last.
    With ``restore``, it also copies each set's first values back into it as it hands it over,
    for an optimizer that writes into ``p.grad`` (see :func:`same_gradients`)."""
    tensors = _tensors(params)
    generator = torch.Generator().manual_seed(1)
    sets = [
        [(torch.randn(p.shape, generator=generator) * 1e-2).to(p.device) for p in tensors]
        for _ in range(2)
    ]
    kept = [[grad.clone() for grad in grads] for grads in sets] if restore else None
    turn = [0]

    def give() -> None:
        turn[0] ^= 1
        for p, grad in zip(tensors, sets[turn[0]]):
            p.grad = grad
        if kept is not None:
            torch._foreach_copy_(sets[turn[0]], kept[turn[0]])

    return give


def same_gradients(params: list) -> Callable[[], None]:
    """A callable that copies back into every tensor's ``p.grad`` (in place: the same tensors)
    the values it holds now. Run untimed before each step of each learning-rate-free variant,
    so that every column steps on the same gradients: the package's ``AdamWScheduleFree``
    (schedulefree 1.4.1) writes into ``p.grad`` during ``step()``, and would otherwise step
    from the second step on over gradients it rewrote itself, where ours does not write them."""
    tensors = _tensors(params)
    kept = [p.grad.clone() for p in tensors]

    def restore() -> None:
        torch._foreach_copy_([p.grad for p in tensors], kept)

    return restore


def _params(shape: Shape, lr: float | None = None, device: str = "cpu") -> list:
    """The tensors (gradients set) on ``device``, or with ``shape.groups > 1`` the param groups,
    each with learning rate ``lr * 0.99**i`` (per-layer rates) unless ``lr`` is None."""
    generator = torch.Generator().manual_seed(0)
    params = []
    for _ in range(shape.groups * shape.count):
        p = torch.randn(shape.numel, generator=generator).to(device).requires_grad_()
        p.grad = (torch.randn(shape.numel, generator=generator) * 1e-2).to(device)
        params.append(p)
    if shape.groups == 1:
        return params
    groups = [
        {"params": params[i * shape.count : (i + 1) * shape.count]} for i in range(shape.groups)
    ]
    if lr is not None:
        for i, group in enumerate(groups):
            group["lr"] = lr * 0.99**i
    return groups


class PackedFloor:
    """The least a default-path step over packed state can cost: the two passes it makes over
    the user's own tensors and nothing else, no arithmetic, no checks.

    Round by round as the default path packs a group (``optim._paths.packed_rounds``): every
    gradient gathered into a scratch buffer (``optim._paths.gather_into``: one ``torch.cat`` of
    1-D tensors), then an update (zeros) added into every parameter with one multi-tensor add,
    as the default path adds it (``optim._paths.write_in_place``).
    A step that keeps the parameters in their own storage reads every gradient and writes every
    parameter once at least; about 1 us per tensor each on a CPU, whatever the op. torch's eager
    time over this one bounds the speedup any such step can reach (the bench's ``eager / floor``).
    """

    def __init__(self, params: list) -> None:
        groups = [g["params"] for g in params] if isinstance(params[0], dict) else [params]
        self.groups = []
        for tensors in groups:
            rounds = _paths.packed_rounds([t.numel() for t in tensors])
            size = max(end - begin for _, _, begin, end in rounds)
            grad = torch.empty(size, dtype=tensors[0].dtype)
            update = torch.zeros(size, dtype=tensors[0].dtype)
            plan = [
                (
                    tensors[i:j],
                    grad[: end - begin],
                    _paths.views_like(grad, tensors[i:j]),
                    _paths.views_like(update, tensors[i:j]),
                    all(t.dim() == 1 for t in tensors[i:j]),
                )
                for i, j, begin, end in rounds
            ]
            self.groups.append(plan)

    @torch.no_grad()
    def step(self) -> None:
        """Gather the gradients and add the (zero) update into the parameters, round by round."""
        for plan in self.groups:
            for tensors, grad, grad_views, update_views, one_dim in plan:
                _paths.gather_into(grad, grad_views, [t.grad for t in tensors], one_dim)
                _paths.write_in_place(torch._foreach_add_, tensors, update_views)


class ThreadHandoff:
    """How much a step pays when one thread reads what another thread just wrote: the packed
    default path's pattern, timed against the same work with no handoff.

    Each round gathers ``SOURCES`` tensors into a scratch (``torch.cat``, which copies each
    source on all threads, thread ``t`` writing the ``t``-th chunk of every source's slot) and
    then runs one op over the whole scratch and a state (thread ``t`` reading the ``t``-th
    chunk of the scratch: across the slots, mostly lines another thread wrote). That is
    :meth:`crossed`. :meth:`kept` gathers the same sources with the scratch seen as ``threads``
    rows, source ``s`` viewed as ``threads`` rows too, so row ``t`` of the scratch, the chunk
    thread ``t`` reads in the op, holds exactly what thread ``t`` wrote. The data, the bytes
    moved and the op over the scratch are the same, but the gathers are not the same kernel:
    :meth:`kept`'s ``torch.cat`` along dim 1 of 2-D views costs more than :meth:`crossed`'s of
    1-D tensors (the gathers alone, on this project's 2-core machine: 1.5 against 0.9 ms a step
    with one thread, 0.9 against 0.7 ms with two), which reads as a ratio somewhat under 1
    where there is no handoff to pay. With one thread there is no handoff at all, so the bench
    prints n/a there and does not time this. With several, ``crossed / kept`` is about 1
    where the threads share their caches and about 2-3 where they do not (on this project's
    2-core virtual machine it moves between the two every few seconds to minutes, which we read
    as the two virtual cores placed on host cores that share a last-level cache or not; with the
    defaults and 2 threads, over 60 s of one process: 2.7-4.8 ms crossed against 2.5-4.8 ms kept
    in the first regime, 8.6-10.0 ms against 2.7-3.9 ms in the second). Our packed default path
    hands half its data between threads twice a round (the gather, and the add of the update),
    so a row measured in the second regime shows it slower against torch, whose per-tensor ops
    keep each thread on its own part of each tensor. (The two steps make as many parallel ops,
    so the OpenMP workers' wake-ups cost them alike.)

    Sources of ``threads * TORCH_GRAIN`` elements (``optim._paths``) split into exactly
    ``threads`` chunks, which the
    :meth:`kept` layout needs; ``rounds`` rounds of ``SOURCES`` sources, by default as many as
    make about ``ELEMENTS`` (larger than a last-level cache, so each step reads the sources from
    memory as a step reads the gradients; 32 rounds with 2 threads).
    """

    SOURCES = 4
    ELEMENTS = 1 << 23

    def __init__(self, rounds: int | None = None, threads: int | None = None) -> None:
        self.threads = threads or torch.get_num_threads()
        numel = self.threads * _paths.TORCH_GRAIN
        rounds = rounds or max(1, self.ELEMENTS // (self.SOURCES * numel))
        generator = torch.Generator().manual_seed(0)
        self.rounds = [
            [torch.randn(numel, generator=generator) for _ in range(self.SOURCES)]
            for _ in range(rounds)
        ]
        self.scratch = torch.empty(self.SOURCES * numel)
        self.state = torch.zeros(rounds, self.SOURCES * numel)

    def crossed(self) -> None:
        """Gather each round as the packed path does, then one op over the round."""
        for sources, state in zip(self.rounds, self.state):
            torch.cat(sources, out=self.scratch)
            state.addcmul_(self.scratch, self.scratch)

    def kept(self) -> None:
        """The same, gathered so that each thread's chunk of the op is what it wrote."""
        rows = self.scratch.view(self.threads, -1)
        for sources, state in zip(self.rounds, self.state):
            torch.cat([s.view(self.threads, -1) for s in sources], dim=1, out=rows)
            state.addcmul_(self.scratch, self.scratch)


def packs(name: str, shape: Shape) -> bool:
    """Whether our default path packs the state of ``name`` over ``shape``'s tensors on a CPU (a
    group of ``PACK_AT_LEAST`` or more, each under the class's threshold there,
    ``_packs_below``; every rule with the bench's hyperparameters keeps state, which a stateless
    rule, plain SGD, would not)."""
    below = getattr(optim, name)._packs_below(torch.device("cpu"))
    return shape.count >= _paths.PACK_AT_LEAST and shape.numel < below


class _PeakTemporaries(TorchDispatchMode):
    """The most bytes held at once in tensors that ops created (not in place, not views), and
    (:meth:`held_bytes`) the memory of those still held at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.made: list[tuple[weakref.ref, int, int]] = []  # (tensor, its data's address, bytes)

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        if func._schema.is_mutable or any(r.alias_info is not None for r in returns):
            return out  # in place, or a view: no new memory
        for tensor in out if isinstance(out, (list, tuple)) else [out]:
            if not isinstance(tensor, torch.Tensor):
                continue
            nbytes = tensor.numel() * tensor.element_size()
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(tensor, self._freed, nbytes)
            self.made.append((weakref.ref(tensor), tensor.data_ptr(), nbytes))
        return out

    def held_bytes(self, excluding: set[int] | frozenset[int] = frozenset()) -> int:
        """Bytes of the memory the made tensors still hold, but at the addresses ``excluding``:
        a tensor alive but moved elsewhere (``t.data = view``, as a layout lays a state tensor
        into its buffer) no longer holds the memory it was made with."""
        held = {}
        for ref, address, nbytes in self.made:
            tensor = ref()
            if tensor is not None and tensor.data_ptr() == address and address not in excluding:
                held[address] = nbytes
        return sum(held.values())


def temporary_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Peak bytes of temporaries during one (later) ``step()``: memory a step holds beyond the
    state and beyond what the optimizer keeps (:func:`kept_bytes`)."""
    optimizer.step()
    with _PeakTemporaries() as counter:
        optimizer.step()
    return counter.peak


def _state_storages(optimizer: torch.optim.Optimizer) -> set[int]:
    """The addresses of the memory the tensors in ``optimizer.state`` lie in."""
    return {
        value.untyped_storage().data_ptr()
        for entry in optimizer.state.values()
        for value in entry.values()
        if isinstance(value, torch.Tensor)
    }


def kept_bytes(
    make: Callable[[list], torch.optim.Optimizer],
    shape: Shape,
    lr: float | None,
    device: str = "cpu",
) -> int:
    """Bytes an optimizer keeps beyond its state from step to step (scratch buffers, such as
    the packed path's gathered gradients): the memory of the tensors a new optimizer's first
    three steps made and still hold afterwards, but those whose memory holds state (a state
    tensor, or the buffer a packed layout's state tensors view). Counted before as what they
    hold less the bytes of all state, which went below 0 where the constructor makes the state
    (Adagrad's ``sum``: on 4x4M its steps' kept 1 MiB read 0)."""
    optimizer = make(_params(shape, lr, device))
    with _PeakTemporaries() as counter:
        for _ in range(3):
            optimizer.step()
        gc.collect()  # (tensors in reference cycles: freed now, not at some later collection)
    return counter.held_bytes(excluding=_state_storages(optimizer))


def machine_bandwidth_gbs(repeat: int = 15) -> float:
    """In-place bandwidth of this machine, for scale: ``x.add_(y)`` over 64 MiB each, which
    reads 2 and writes 1 float per element, at the best of ``repeat`` steps (after 3 warm-ups)."""
    x, y = torch.ones(16 * 2**20), torch.ones(16 * 2**20)
    for _ in range(3):
        x.add_(y, alpha=1e-9)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        x.add_(y, alpha=1e-9)
        best = min(best, time.perf_counter() - start)
    return 3 * x.numel() * 4 / best / 1e9


def _cache_line(root: str = "/sys/devices/system/cpu/cpu0/cache") -> str:
    """The data caches of the first CPU (Linux sysfs), for the header: whether blocking pays
    depends on them (torch's for-loop path keeps a tensor in L2 when its arrays fit, and the
    default path's slices follow the L2's size, ``optim._paths.list_slice``), so runs on
    machines with other caches are not comparable row for row."""
    caches = [
        f"L{level} {size}" for level, kind, size in _paths.cpu_caches(root) if kind != "Instruction"
    ]
    return "caches (cpu0): " + (", ".join(caches) if caches else "not reported by this OS")


def _load_line() -> str:
    """The 1-minute load average and the cores, for the header (where the OS reports it)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # (Windows)
        return "load average: not reported by this OS"
    # (a number, not a verdict: it also counts whatever ran in the minute before, such as a
    # previous bench; other work running now slows every variant alike, the ratios stay fair)
    return f"load average (1 min, at the start): {load:.2f} on {os.cpu_count() or 1} cores"


def _build(
    variants: dict[str, Callable[[list], Any]],
    shape: Shape,
    lr: float | None,
    new_grads: bool,
    instances: int = 1,
    device: str = "cpu",
    restore: bool = False,
) -> tuple[dict[tuple[str, int], Any], dict[tuple[str, int], Callable[[], None]] | None]:
    """``instances`` of each variant's optimizer (anything with a ``step()``), each over its own
    tensors of ``shape``, keyed ``(label, instance)``, built one instance of every variant at a
    time; and what runs (untimed) before each step: with ``new_grads``, new gradient tensors
    (see :func:`new_gradients`); with ``restore``, the gradients' values put back (see
    :func:`same_gradients`), for every variant alike; else nothing (None). Several instances
    average out where each one's memory happens to lie, which alone moved identical
    optimizers' steps up to 1.36x apart."""
    keys = [(label, i) for i in range(instances) for label in variants]
    params = {key: _params(shape, lr, device) for key in keys}
    optimizers = {key: variants[key[0]](params[key]) for key in keys}
    if new_grads:
        before = {key: new_gradients(params[key], restore) for key in keys}
    elif restore:
        before = {key: same_gradients(params[key]) for key in keys}
    else:
        before = None
    return optimizers, before


def _bench_lr(name: str) -> float:
    """The learning rate the bench gives ``name``: its :data:`OPTIMIZERS` entry's, or the
    class's default."""
    kwargs, _ = OPTIMIZERS[name]
    return kwargs.get("lr", inspect.signature(getattr(optim, name)).parameters["lr"].default)


def classic_variants(
    name: str, compile_flat: bool, device: str = "cpu"
) -> dict[str, Callable[[list], Any]]:
    """Each implementation of ``name`` the bench times, by column label: torch.optim's for-loop,
    foreach and (where this torch has it on ``device``) fused paths, and ours: default, flat
    and (``compile_flat``) compiled; each a callable building the optimizer over the tensors
    or param groups it is given, with the bench's hyperparameters (:data:`OPTIMIZERS`)."""
    kwargs, _ = OPTIMIZERS[name]
    theirs, ours = getattr(torch.optim, name), getattr(optim, name)
    variants: dict[str, Callable[[list], Any]] = {
        "torch single": lambda ps: theirs(ps, foreach=False, **kwargs),
        "torch foreach": lambda ps: theirs(ps, foreach=True, **kwargs),
    }
    if name in TORCH_FUSED and torch_has_fused(name, device):
        variants["torch fused"] = lambda ps: theirs(ps, fused=True, **kwargs)
    variants["ours default"] = lambda ps: ours(ps, **kwargs)
    variants["ours flat"] = lambda ps: ours(ps, impl="flat", **kwargs)
    if compile_flat:
        variants["ours flat+compile"] = lambda ps: ours(ps, compile=True, **kwargs)
    return variants


def measure(
    name: str,
    model: str,
    repeat: int,
    compile_flat: bool,
    new_grads: bool = False,
    instances: int = 1,
    handoff: ThreadHandoff | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Median ``step()`` milliseconds of every implementation for one optimizer and shape, pooled
    over ``instances`` of each (``new_grads``: new gradient tensors before each step, see
    :func:`new_gradients`); with ``handoff``, its two steps timed in the same round-robin
    (``"handoff crossed"``, ``"handoff kept"``), so their ratio tells what the threads' caches
    were like while this row ran. On another ``device`` than the CPU only the times are measured
    (no packed floor or handoff: those are about a CPU's threads and caches)."""
    shape = parse_model(model)
    lr = _bench_lr(name)
    variants = classic_variants(name, compile_flat, device)
    on_cpu = device == "cpu"
    if packs(name, shape) and on_cpu:
        variants["packed floor"] = PackedFloor
    optimizers, before = _build(variants, shape, lr, new_grads, instances, device)
    steps: dict[Any, Callable[[], object]] = {key: opt.step for key, opt in optimizers.items()}
    if handoff is not None and on_cpu:
        steps.update({("handoff crossed", 0): handoff.crossed, ("handoff kept", 0): handoff.kept})
    results = _round_robin_ms(steps, repeat, before, device)
    for side, label in (("ours", "ours default"), ("fused", "torch fused")):
        if label in variants:
            results[f"temporaries {side}"] = temporary_bytes(optimizers[label, 0])
            results[f"kept {side}"] = kept_bytes(variants[label], shape, lr, device)
    return results


FIRST_STEP_SHAPE = "Adam, 50 tensors of 1k"
_FIRST_STEP = """
import sys, time, torch, optim
threads, device = int(sys.argv[1]), sys.argv[2]
if threads:
    torch.set_num_threads(threads)
params = [torch.randn(1000, device=device, requires_grad=True) for _ in range(50)]
for p in params:
    p.grad = torch.randn(1000, device=device)
optimizer = optim.Adam(params, compile=True)
if device != "cpu":
    torch.cuda.synchronize()
start = time.perf_counter()
optimizer.step()
if device != "cpu":
    torch.cuda.synchronize()
print(time.perf_counter() - start)
"""


def first_compiled_step_seconds(
    threads: int | None = None, device: str = "cpu"
) -> tuple[float, float]:
    """Wall time of the first compiled Adam step (:data:`FIRST_STEP_SHAPE`) on ``device`` in a
    fresh process with ``threads`` threads (default: torch's), to a ``torch.cuda.synchronize()``
    on a GPU: with a new, empty inductor cache, then warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        times = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", _FIRST_STEP, str(threads or 0), device],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                raise ValueError(
                    f"first compiled step: the process timing it ({FIRST_STEP_SHAPE}, {device}) "
                    f"failed: {_child_error(out)}; allowed: --no-compile, which leaves this "
                    "line out"
                )
            times.append(float(out.stdout.strip().splitlines()[-1]))
    return times[0], times[1]


def _child_error(out: subprocess.CompletedProcess) -> str:
    """What a failed child process said last: its last line on stderr (a traceback's exception
    line), or how it ended where it said nothing (a signal: the OS's out-of-memory killer sends
    SIGKILL)."""
    lines = [line.strip() for line in (out.stderr or "").splitlines() if line.strip()]
    if lines:
        return lines[-1]
    if out.returncode < 0:
        try:
            signal_name = signal.Signals(-out.returncode).name
        except ValueError:
            signal_name = "an unknown signal"
        return f"killed by signal {-out.returncode} ({signal_name}), with no error message"
    return f"exit status {out.returncode}, with no error message"


_ALONE = """
import json, sys
from runs.bench.optim import time_alone
print(json.dumps(time_alone(**json.loads(sys.argv[1]))))
"""


def _minor_faults() -> int | None:
    """This process's minor page faults so far (pages the kernel mapped in, zeroed, on first
    touch), or None where the OS does not count them (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_alone(
    kind: str,
    name: str,
    label: str,
    model: str,
    repeat: int,
    new_grads: bool = False,
    threads: int | None = None,
) -> dict[str, list]:
    """Time one variant (``label`` of :func:`classic_variants` or, ``kind="lr-free"``, of
    :func:`lr_free_variants`) the way a training script runs it: the only optimizer of this
    process, stepped over and over (3 warm-ups, then ``repeat`` timed steps; ``new_grads``: new
    gradient tensors before each, untimed; for ``kind="lr-free"``, the gradients' values put
    back before each step, untimed, as :func:`measure_lr_free` does, so the package's
    AdamWScheduleFree, which writes into ``p.grad``, steps on the same gradients as ours).
    Returns each timed step's milliseconds and the
    minor page faults it took (None where not counted). Run by :func:`alone_ms`, each in a
    fresh process, so no other optimizer's memory keeps the allocator's heap large: a step's
    large temporaries are then handed back to the OS when freed, and the next step's touch them
    anew, page by page (glibc returns freed memory at the top of its heap to the OS once more
    than its trim threshold lies free there: twice the largest block it had mapped on its own
    and freed, at most 64 MiB), as in a script, where a round-robin of many optimizers in one
    process hides it."""
    if threads:
        torch.set_num_threads(threads)
    if kind == "lr-free":
        build, lr = lr_free_variants(name)[label], None
    else:
        build, lr = classic_variants(name, label == "ours flat+compile")[label], _bench_lr(name)
    restore = kind == "lr-free"
    times, faults = [], []
    with _out_of_memory(name, model, None):
        params = _params(parse_model(model), lr)
        optimizer = build(params)
        if new_grads:
            give = new_gradients(params, restore)
        else:
            give = same_gradients(params) if restore else _nothing
        with torch.no_grad():  # (the references' step() is not always under no_grad)
            for i in range(3 + repeat):
                give()
                before = _minor_faults()
                start = time.perf_counter()
                optimizer.step()
                elapsed = time.perf_counter() - start
                after = _minor_faults()
                if i >= 3:
                    times.append(elapsed * 1e3)
                    faults.append(None if before is None or after is None else after - before)
    return {"ms": times, "faults": faults}


def alone_ms(
    kind: str,
    name: str,
    labels: list[str],
    model: str,
    repeat: int,
    new_grads: bool = False,
    threads: int | None = None,
    instances: int = 1,
) -> dict[str, float | None]:
    """For each of ``labels``: the median step in milliseconds and the median page faults per
    step (``"<label> faults"``, None where not counted), over ``instances`` fresh processes of
    :func:`time_alone` each, their steps pooled; the processes run one at a time, every label's
    first instance before any second."""
    steps: dict[str, dict[str, list]] = {label: {"ms": [], "faults": []} for label in labels}
    for _ in range(instances):
        for label in labels:
            arguments = dict(
                kind=kind, name=name, label=label, model=model, repeat=repeat,
                new_grads=new_grads, threads=threads,
            )  # fmt: skip
            out = subprocess.run(
                [sys.executable, "-c", _ALONE, json.dumps(arguments)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                raise ValueError(
                    f"--alone: the process timing {name} {label} on {model} failed: "
                    f"{_child_error(out)}"
                )
            timed = json.loads(out.stdout.strip().splitlines()[-1])
            steps[label]["ms"] += timed["ms"]
            steps[label]["faults"] += timed["faults"]
    results: dict[str, float | None] = {}
    for label, timed in steps.items():
        results[label] = statistics.median(timed["ms"])
        counted = [f for f in timed["faults"] if f is not None]
        results[f"{label} faults"] = statistics.median(counted) if counted else None
    return results


def _classic_cells(ms: dict[str, Any]) -> list[str]:
    """A classic row's times (:data:`COLUMNS`, n/a where not measured) and its two speedups:
    our default path against torch's faster eager path, compiled against fused."""
    eager = min(ms["torch single"], ms["torch foreach"])
    times = [f"{ms[k]:.2f}" if ms.get(k) is not None else "n/a" for k in COLUMNS]
    default = _speedup(eager, ms["ours default"])
    return [*times, default, _speedup(ms.get("torch fused"), ms.get("ours flat+compile"))]


def _lr_free_cells(ms: dict[str, Any]) -> list[str]:
    """A learning-rate-free row's times (the package, our default and flat paths) and the two
    speedups over the package."""
    times = [f"{ms[k]:.2f}" for k in ("reference", "ours default", "ours flat")]
    return [*times, *(_speedup(ms["reference"], ms[k]) for k in ("ours default", "ours flat"))]


def _faults(ms: dict[str, float | None], labels: list[str]) -> str:
    """The page faults per step of ``labels``, ``a / b / c`` (n/a where not counted)."""
    cells = []
    for label in labels:
        value = ms.get(f"{label} faults")
        cells.append("n/a" if value is None else f"{value:.0f}")
    return " / ".join(cells)


def run_alone(args: argparse.Namespace, names: list[str], models: list[str]) -> int:
    """The tables of ``--alone``: each variant in a fresh process of its own (:func:`alone_ms`),
    with the page faults per step of the default paths and of torch's or the package's."""
    lr_free = getattr(args, "lr_free", False)
    print(_machine_line("cpu"))
    print(_load_line())
    print(_cache_line())
    print(f"gradients: {_gradients_line(args)}")
    print(
        f"alone: each variant the only optimizer of a fresh process, {args.instances} "
        "process(es) per variant, one at a time, their steps pooled\n"
    )
    row_cells = _lr_free_cells if lr_free else _classic_cells
    if lr_free:
        labels = ["reference", "ours default", "ours flat"]
        faulting = ["reference", "ours default"]
        header = (
            "| optimizer | model | reference | ours default | ours flat | reference / default "
            "| reference / flat | page faults per step: reference / ours default |"
        )
    else:
        faulting = ["torch single", "torch foreach", "ours default"]
        header = (
            "| optimizer | model | " + " | ".join(COLUMNS) + " | default / eager "
            "| compiled / fused | page faults per step: torch single / foreach / ours default |"
        )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in names:
        if not lr_free:
            labels = list(classic_variants(name, not args.no_compile))
        for model in models:
            ms = alone_ms(
                "lr-free" if lr_free else "classic", name, labels, model, args.repeat,
                args.new_grads, args.threads, args.instances,
            )  # fmt: skip
            cells = [*row_cells(ms), _faults(ms, faulting)]
            print(f"| {name} | {model} | {' | '.join(cells)} |", flush=True)
    print(
        "\ntimes are median ms per step(); speedups are "
        + ("the package's" if lr_free else "torch's")
        + " time over ours (> 1: ours faster); page faults: the median minor faults a step "
        "took (first touches of memory the allocator had handed back to the OS)"
    )
    return 0


def _memory(ms: dict[str, float], side: str) -> str:
    """``temporaries + kept`` in MiB for ``side`` (``ours`` or ``fused``), or n/a."""
    if f"temporaries {side}" not in ms:
        return "n/a"
    return f"{ms[f'temporaries {side}'] / 2**20:.2f} + {ms[f'kept {side}'] / 2**20:.2f}"


def _speedup(reference: float | None, ours: float | None) -> str:
    return f"{reference / ours:.2f}x" if reference and ours else "n/a"


# name: (reference "module:Class", hyperparameters); the reference packages are the
# `reference` extra (issue 12: ours >= 3x faster than each on 2000x1k)
LR_FREE: dict[str, tuple[str, dict]] = {
    "Prodigy": ("prodigyopt:Prodigy", {}),
    "DAdaptSGD": ("dadaptation:DAdaptSGD", {}),
    "DAdaptAdam": ("dadaptation:DAdaptAdam", {}),
    "DAdaptAdaGrad": ("dadaptation:DAdaptAdaGrad", {}),
    "DoG": ("dog:DoG", {}),
    "LDoG": ("dog:LDoG", {}),
    "SGDScheduleFree": ("schedulefree:SGDScheduleFree", {"lr": 0.1}),
    "AdamWScheduleFree": ("schedulefree:AdamWScheduleFree", {}),
}


# tensors of a parameter's size each class keeps per parameter (its state: Prodigy's s, p0,
# exp_avg and exp_avg_sq; DoG's and LDoG's initial parameters...), for the memory estimate
LR_FREE_STATE = {
    "Prodigy": 4,
    "DAdaptSGD": 3,
    "DAdaptAdam": 3,
    "DAdaptAdaGrad": 3,
    "DoG": 1,
    "LDoG": 1,
    "SGDScheduleFree": 1,
    "AdamWScheduleFree": 2,
}
# module: the distribution pip installs it from (pyproject.toml's `reference` extra)
REFERENCE_PACKAGES = {
    "prodigyopt": "prodigyopt",
    "dadaptation": "dadaptation",
    "dog": "dog-optimizer",
    "schedulefree": "schedulefree",
}


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported here (found, or imported already)."""
    if sys.modules.get(module) is not None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_references(names: list[str]) -> None:
    """Refuse ``--lr-free`` for the classes in ``names`` whose reference package (the optional
    ``reference`` extra) is not installed, before anything is printed or timed.

    Raises:
        ValueError: naming ``--lr-free``, the classes, their missing packages (module and pip
            distribution), and how to install them.
    """
    missing: dict[str, list[str]] = {}
    for name in names:
        module = LR_FREE[name][0].split(":")[0]
        if not _installed(module):
            missing.setdefault(module, []).append(name)
    if not missing:
        return
    listed = [name for group in missing.values() for name in group]
    classes = ", ".join(listed)
    packages = ", ".join(f"{m!r} ({REFERENCE_PACKAGES.get(m, m)})" for m in missing)
    needs, them = ("needs", "it") if len(listed) == 1 else ("need", "them")
    package, are = ("package", "is") if len(missing) == 1 else ("packages", "are")
    raise ValueError(
        f"--lr-free: {classes} {needs} the reference {package} {packages}, which {are} not "
        f'installed; allowed: install {them} with pip install -e ".[reference]" (in the '
        f"project's folder), or leave {classes} out of --optimizers"
    )


def lr_free_variants(name: str) -> dict[str, Callable[[list], Any]]:
    """The reference package's ``name`` and our default and flat paths, by column label, each a
    callable building the optimizer (in train mode, where it has one: Schedule-Free steps only
    there) with the bench's hyperparameters (:data:`LR_FREE`).

    Raises:
        ValueError: where the reference package is not installed (:func:`check_references`).
    """
    check_references([name])
    target, kwargs = LR_FREE[name]
    module, attribute = target.split(":")
    reference = getattr(importlib.import_module(module), attribute)

    def training(optimizer: Any) -> Any:
        if hasattr(optimizer, "train"):
            optimizer.train()
        return optimizer

    return {
        "reference": lambda ps: training(reference(ps, **kwargs)),
        "ours default": lambda ps: training(getattr(optim, name)(ps, **kwargs)),
        "ours flat": lambda ps: training(getattr(optim, name)(ps, impl="flat", **kwargs)),
    }


def measure_lr_free(
    name: str,
    model: str,
    repeat: int,
    new_grads: bool = False,
    instances: int = 1,
    device: str = "cpu",
) -> dict[str, float]:
    """Median ``step()`` ms of the reference package and of our default and flat paths, pooled
    over ``instances`` of each (``new_grads``: new gradient tensors before each step, see
    :func:`new_gradients`). Before each step of every variant, untimed, the gradients' values
    are put back (:func:`same_gradients`), so all columns step on the same gradients although
    the package's AdamWScheduleFree writes into ``p.grad``."""
    shape = parse_model(model)  # (groups share the learning rate: the packages require it)
    variants = lr_free_variants(name)
    optimizers, before = _build(variants, shape, None, new_grads, instances, device, restore=True)
    with torch.no_grad():  # the references' step() is not always under no_grad
        steps = {key: opt.step for key, opt in optimizers.items()}
        return _round_robin_ms(steps, repeat, before, device)


def run_lr_free(args: argparse.Namespace, models: list[str], names: list[str] | None = None) -> int:
    """The learning-rate-free table: medians and speedups against the reference packages."""
    device = getattr(args, "device", "cpu")
    print(_machine_line(device))
    if device == "cpu":
        print(_load_line())
        print(_cache_line())
    print(f"gradients: {_gradients_line(args)}")
    print(f"{_instances_line(args)}\n")
    header = (
        "| optimizer | model | reference | ours default | ours flat "
        "| reference / default | reference / flat |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in names or list(LR_FREE):
        for model in models:
            with _out_of_memory(name, model, args.instances):
                ms = measure_lr_free(
                    name, model, args.repeat, args.new_grads, args.instances, device
                )
            print(f"| {name} | {model} | {' | '.join(_lr_free_cells(ms))} |", flush=True)
    print("\ntimes are median ms per step(); speedups are the package's time over ours")
    return 0


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def check_args(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The optimizers and models asked for, once every option is checked (nothing measured yet).

    Raises:
        ValueError: naming the option, the bad value and what is allowed.
    """
    from runs.checks import MAX_REPEATS, MAX_THREADS, check_positive_int

    lr_free = getattr(args, "lr_free", False)
    allowed = LR_FREE if lr_free else OPTIMIZERS
    # without --optimizers: every optimizer of the mode (with --lr-free, the learning-rate-free)
    names = list(allowed) if args.optimizers is None else _names(args.optimizers)
    unknown = [name for name in names if name not in allowed]
    which = " with --lr-free" if lr_free else ""
    if unknown or not names:
        raise ValueError(
            f"--optimizers: unknown {', '.join(map(repr, unknown)) or 'none given'}{which}; "
            f"allowed: {', '.join(allowed)}"
        )
    models = _names(args.models)
    if not models:
        raise ValueError(
            f"--models: no shape in {args.models!r}; allowed: {', '.join(MODELS)}, "
            "COUNTxNUMEL like 8x2k, or GROUPSgCOUNTxNUMEL like 300g1x1k"
        )
    for model in models:
        parse_model(model)
    check_positive_int("--repeat", args.repeat, MAX_REPEATS)
    check_positive_int("--instances", args.instances)
    if args.threads is not None:
        check_positive_int("--threads", args.threads, MAX_THREADS)
    device = getattr(args, "device", "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(
            f"--device: {device!r} is not a device this bench runs on; allowed: cpu, cuda"
        )
    if getattr(args, "alone", False) and device != "cpu":
        raise ValueError(
            f"--alone: runs on the CPU only (page faults of a lone process), got --device "
            f"{device}; allowed: --alone with --device cpu, or --device {device} without --alone"
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device: 'cuda' is not available here (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}); allowed: cpu"
        )
    if lr_free:
        check_references(names)
    check_memory(names, models, args)
    return names, models


SAFETY = 1.5
"""The margin :func:`run_bytes` puts on the tensors a run holds at once, for what it does not
count (temporaries beyond one variant's state, the flat paths' buffers, the allocator's slack):
the peak memory of bench runs measured 1.2-1.4x under the estimate."""
TENSOR_OVERHEAD = 1024
"""Bytes a tensor costs beyond its data, for :func:`run_bytes` (the Python object, torch's
tensor and storage, an allocation of 64 bytes at least, the state dict's entry: 0.7 KiB for a
parameter with its gradient, 1.8 KiB for each of Adam's state tensors with the step count)."""
MAX_TENSORS = 10_000_000
"""The most tensors (``GROUPS x COUNT``) a ``--models`` shape may ask for, where the memory
cannot be read (:func:`_available_bytes`): building each takes Python's time one by one."""


def _floats_per_element(name: str, lr_free: bool, new_grads: bool) -> int:
    """Tensors of a parameter's size that one optimizer of ``name`` holds per parameter in the
    bench: the parameter, its gradient (two sets with ``new_grads``; with ``lr_free`` also the
    copies the bench restores them from) and the state (:data:`OPTIMIZERS`' tensors read and
    written per element, less the parameter's two and the gradient's one, halved; or
    :data:`LR_FREE_STATE`)."""
    grads = 2 if new_grads else 1
    state = LR_FREE_STATE[name] if lr_free else (OPTIMIZERS[name][1] - 3) // 2
    return 1 + grads * (2 if lr_free else 1) + state


def _alive(instances: int, lr_free: bool, alone: bool) -> int:
    """How many optimizers' worth of tensors a run holds at once: every variant's
    ``instances`` (the classic columns and the packed floor, or the package and our two
    paths), and two more for a step's temporaries and :func:`kept_bytes`'s new optimizers;
    with ``--alone``, one optimizer a process and its temporaries."""
    if alone:
        return 2
    return (3 if lr_free else len(COLUMNS) + 1) * instances + 2


def run_bytes(
    name: str,
    shape: Shape,
    instances: int,
    lr_free: bool = False,
    new_grads: bool = False,
    alone: bool = False,
) -> int:
    """An estimate, in bytes, of the memory a bench row of ``name`` on ``shape`` needs at once:
    every optimizer it holds (:func:`_alive`) with its parameters, gradients and state
    (:func:`_floats_per_element`, fp32) and each tensor's overhead (:data:`TENSOR_OVERHEAD`),
    times :data:`SAFETY`."""
    one = _optimizer_bytes(name, shape, lr_free, new_grads)
    return int(_alive(instances, lr_free, alone) * one * Fraction(SAFETY))  # (exact: huge shapes)


def _optimizer_bytes(name: str, shape: Shape, lr_free: bool, new_grads: bool) -> int:
    """Bytes one optimizer of ``name`` over its own tensors of ``shape`` holds in the bench
    (:func:`_floats_per_element` fp32 tensors per parameter, and their overhead)."""
    per = _floats_per_element(name, lr_free, new_grads)
    return shape.elements * 4 * per + shape.groups * shape.count * (per + 1) * TENSOR_OVERHEAD


def _available_bytes(device: str) -> tuple[int, str] | None:
    """The memory a run can use on ``device`` and its description: the GPU's free memory
    (``torch.cuda.mem_get_info``), or the machine's physical memory (``sysconf``, Linux and
    other POSIX systems); None where it cannot be read."""
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free, "free on the GPU"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "of physical memory"
    except (AttributeError, ValueError, OSError):  # (Windows: no sysconf)
        return None


def _size(nbytes: int) -> str:
    """``nbytes`` in GiB, for the memory refusals."""
    return f"{min(nbytes, 2**1000) / 2**30:.3g} GiB"


def check_memory(names: list[str], models: list[str], args: argparse.Namespace) -> None:
    """Refuse shapes (``--models``) and ``--instances`` whose rows would not fit in the memory
    of the machine (or the GPU): :func:`run_bytes` against :func:`_available_bytes`, before
    anything runs; where the memory cannot be read, shapes of more than :data:`MAX_TENSORS`.

    Raises:
        ValueError: naming ``--models`` or ``--instances``, the value, the estimate and what
            fits.
    """
    lr_free = getattr(args, "lr_free", False)
    alone = getattr(args, "alone", False)
    new_grads = getattr(args, "new_grads", False)
    available = _available_bytes(getattr(args, "device", "cpu"))
    if available is None:
        for model in models:
            shape = parse_model(model)
            if shape.groups * shape.count > MAX_TENSORS:
                raise ValueError(
                    f"--models: {model!r} has {shape.groups * shape.count} tensors; allowed: "
                    f"at most {MAX_TENSORS} (GROUPS x COUNT) per shape"
                )
        return
    memory, where = available
    what = f"(parameters, gradients and state of the optimizers it holds at once, {SAFETY}x that)"
    for model in models:
        shape = parse_model(model)
        tensors = shape.groups * shape.count
        for name in names:
            per = _floats_per_element(name, lr_free, new_grads)
            need = run_bytes(name, shape, 1, lr_free, new_grads, alone)
            if need > memory:
                budget = int(memory / SAFETY) // _alive(1, lr_free, alone)  # (per optimizer)
                most = (budget - tensors * (per + 1) * TENSOR_OVERHEAD) // (4 * per)
                fits = (
                    f"at most about {most:,} elements in all with {tensors} tensor(s)"
                    if most >= tensors
                    else f"at most about {budget // ((per + 1) * TENSOR_OVERHEAD + 4 * per):,} "
                    "tensors (GROUPS x COUNT) of one element"
                )
                raise ValueError(
                    f"--models: {model!r} would need about {_size(need)} for {name} {what}, "
                    f"more than the {_size(memory)} {where} here; allowed: {fits}"
                )
            need = run_bytes(name, shape, args.instances, lr_free, new_grads, alone)
            if need > memory:
                most = args.instances  # (the most instances that fit: at least 1, as checked)
                while most > 1 and run_bytes(name, shape, most, lr_free, new_grads, alone) > memory:
                    most = max(1, min(most - 1, most * memory // need))
                raise ValueError(
                    f"--instances: {args.instances} of each variant of {name} on {model!r} would "
                    f"need about {_size(need)} {what}, more than the {_size(memory)} {where} "
                    f"here; allowed: at most about {most}, or a smaller shape"
                )


def _is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure: Python's MemoryError, torch's CUDA
    ``OutOfMemoryError``, or its CPU allocator's RuntimeError ("can't allocate memory")."""
    out_of_memory = getattr(torch, "OutOfMemoryError", MemoryError)
    text = str(err)
    return (
        isinstance(err, (MemoryError, out_of_memory))
        or "can't allocate memory" in text
        or "out of memory" in text.lower()
    )


@contextlib.contextmanager
def _out_of_memory(name: str, model: str, instances: int | None) -> Iterator[None]:
    """Run the block, turning an allocation failure (:func:`_is_out_of_memory`) into one
    ValueError naming ``--models`` (and ``--instances``, where not None) and torch's words; the
    backstop of :func:`check_memory`, whose estimate cannot know what else holds memory."""
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        if not _is_out_of_memory(err):
            raise
        said = (str(err).strip().splitlines() or [type(err).__name__])[0]
        with_instances = "" if instances is None else f" with --instances {instances}"
        raise ValueError(
            f"--models: {model!r}{with_instances} ran out of memory while timing {name} "
            f"({said}); allowed: a smaller shape in --models"
            + ("" if instances is None else " or fewer --instances")
        ) from None


def run(args: argparse.Namespace) -> int:
    """Print the table: medians, speedups against torch, temporaries, bandwidth, compile time."""
    names, models = check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "alone", False):
        return run_alone(args, names, models)
    if getattr(args, "lr_free", False):
        return run_lr_free(args, models, names)
    if args.device != "cpu":
        return run_on_device(args, names, models)
    load = _load_line()  # (before the bandwidth's own load)
    bandwidth = machine_bandwidth_gbs()
    print(_machine_line("cpu"))
    print(load)
    print(_cache_line())
    print(f"gradients: {_gradients_line(args)}")
    print(_instances_line(args))
    print(
        "machine in-place bandwidth, for scale (x.add_(y), 64 MiB each, best step): "
        f"{bandwidth:.1f} GB/s\n"
    )
    header = (
        "| optimizer | model | " + " | ".join(COLUMNS) + " | default / eager "
        "| compiled / fused | packed floor | eager / floor | thread handoff "
        "| temporaries + kept, ours / fused (MiB) | GB/s (best of ours) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    # (one thread: no thread reads what another wrote, nothing to time; n/a in the column)
    handoff = ThreadHandoff() if torch.get_num_threads() > 1 else None
    for name in names:
        for model in models:
            with _out_of_memory(name, model, args.instances):
                ms = measure(
                    name, model, args.repeat, not args.no_compile, args.new_grads,
                    args.instances, handoff,
                )  # fmt: skip
            eager = min(ms["torch single"], ms["torch foreach"])
            best = min(v for k, v in ms.items() if k.startswith("ours"))
            gbs = OPTIMIZERS[name][1] * 4 * parse_model(model).elements / (best * 1e-3) / 1e9
            temporaries = f"{_memory(ms, 'ours')} / {_memory(ms, 'fused')}"
            floor = f"{ms['packed floor']:.2f}" if "packed floor" in ms else "n/a"
            print(
                f"| {name} | {model} | " + " | ".join(_classic_cells(ms))
                + f" | {floor} | {_speedup(eager, ms.get('packed floor'))}"
                + f" | {_speedup(ms.get('handoff crossed'), ms.get('handoff kept'))}"
                + f" | {temporaries} | {gbs:.1f} |",
                flush=True,
            )  # fmt: skip
    print(
        "\ntimes are median ms per step(); speedups are torch's time over ours (> 1: ours faster)"
    )
    print(
        "packed floor: where our default path packs the state, a step that only gathers every "
        "gradient and adds into every parameter (the two passes over the user's tensors it must "
        "make, no arithmetic); eager / floor: the most any such step could be faster than torch"
    )
    print(
        "thread handoff: a gather then one op, timed with each thread reading what another wrote "
        "over the same work with none (ThreadHandoff, in the same round-robin): about 1x where "
        "the threads share their caches, 2-3x where they do not, which slows our packed default "
        "path (it hands half its data between threads twice a round) and torch's far less; "
        "n/a on one thread, where no thread reads what another wrote"
    )
    _print_memory_and_first_compile(args)
    return 0


def _print_memory_and_first_compile(args: argparse.Namespace) -> None:
    """The table's closing lines: what the memory columns count, and (unless ``--no-compile``)
    the first compiled step's time on ``args.device``, cold and warm."""
    print(
        "temporaries: the most memory a step holds beyond the state; kept: scratch buffers an "
        "optimizer keeps from step to step"
    )
    if args.no_compile:
        return
    cold, warm = first_compiled_step_seconds(args.threads, args.device)
    where = "" if args.device == "cpu" else f"{args.device}, "
    print(
        f"first compiled step ({FIRST_STEP_SHAPE}, {where}fresh process): {cold:.1f} s with an "
        f"empty inductor cache, {warm:.1f} s warm"
    )


def torch_has_fused(name: str, device: str) -> bool:
    """Whether this torch has ``fused=True`` kernels for ``name`` on ``device`` (torch 2.11's
    Adagrad has CPU ones only, and says so at its first step)."""
    p = torch.zeros(1, device=device, requires_grad=True)
    p.grad = torch.zeros_like(p)
    try:
        getattr(torch.optim, name)([p], fused=True).step()
    except (RuntimeError, TypeError):
        return False
    return True


def _machine_line(device: str) -> str:
    """The header's first line: torch, and the CPU's threads, model and the instruction set
    torch's kernels use there (two machines' tables are not comparable row for row), or the
    GPU's name."""
    if device == "cpu":
        return (
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32; "
            f"{cpu_text(cpu_model(), torch_cpu_kernels())}"
        )
    return f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, fp32"


def run_on_device(args: argparse.Namespace, names: list[str], models: list[str]) -> int:
    """The table on a GPU (``--device cuda``): every implementation's median ``step()`` time
    (from one ``torch.cuda.synchronize()`` to the next) and the two speedups. The compiled path
    is Triton kernels there; torch's fused path is its CUDA kernels."""
    print(_machine_line(args.device))
    print(f"gradients: {_gradients_line(args)}")
    print(f"{_instances_line(args)}\n")
    header = (
        "| optimizer | model | " + " | ".join(COLUMNS) + " | default / eager | compiled / fused "
        "| temporaries + kept, ours / fused (MiB) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in names:
        for model in models:
            with _out_of_memory(name, model, args.instances):
                ms = measure(
                    name, model, args.repeat, not args.no_compile, args.new_grads,
                    args.instances, None, args.device,
                )  # fmt: skip
            cells = [*_classic_cells(ms), f"{_memory(ms, 'ours')} / {_memory(ms, 'fused')}"]
            print(f"| {name} | {model} | {' | '.join(cells)} |", flush=True)
    print(
        "\ntimes are median ms per step(), each between two torch.cuda.synchronize() calls; "
        "speedups are torch's time over ours (> 1: ours faster)"
    )
    _print_memory_and_first_compile(args)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m runs.bench.optim", description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
