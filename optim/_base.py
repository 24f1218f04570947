"""What every optimizer here shares: torch's constructor options, state, and the step.

Design. An algorithm is a pure *rule*: a function over aligned lists of tensors (parameters,
gradients, one list per state buffer, one step count per tensor) built from ``torch._foreach_*``
ops (see ``optim._ops``), written once in the algorithm's module as torch.optim's foreach path
writes it. :class:`RuleOptimizer` validates, keeps torch's state, and hands the rule its lists by
one of the paths in ``optim._paths``:

``impl="foreach"`` (the default; ``foreach=True``)
    the parameters' own storage, exactly torch.optim's semantics: a parameter with no gradient is
    skipped, state tensors are read from ``optimizer.state`` at every step (replace or reset them,
    move one's data with ``.data = t`` or ``.set_(t)``, or reshape it in place with ``.t_()``,
    and the next step uses yours), ``p.data = ...`` (``p.data.view(...)``, ``p.data.t()``
    included) and ``model.to(...)`` are followed, memory
    formats are kept, a module's ``state_dict`` is its own tensors. It is also faster than torch's
    eager paths on many small tensors, and on large ones where torch's for-loop path leaves
    the cache (4 tensors of 4M elements on an Intel Xeon, 2026-12-06, two full bench runs:
    1.09-1.62x, since a step writes its rule's temporaries into memory it keeps,
    ``optim._paths.RoundTemporaries``; 0.66-0.94x before, after the bench's earlier rows, for
    the five classes of several ops: the README's Intel section). On a CPU whose L2 holds a
    40k-element tensor's arrays, Adagrad, AdamW and RMSprop on 400 such tensors measured 0.72-0.99x,
    and Adam in two runs of three (``docs/performance-notes.md``, the Intel table of 2026-12-05);
    with the blocked lists' 256k-element rounds, ``optim._paths.LIST_ROUNDS_PER_BLOCK``, Adam
    0.99-1.02x, RMSprop 0.97-1.02x, Adagrad 0.95-0.96x, AdamW 0.91x packed and 0.98-1.01x on those
    lists, which it takes there since: :attr:`RuleOptimizer._pack_below_on_cpu`; 2026-12-06's full
    runs: 0.93-1.16x, then 0.90-1.09x; with such tensors grouped in rounds of 128k,
    ``optim._paths.LIST_GROUPS_PER_BLOCK``, six runs: 0.94-1.03x, Adagrad 0.97-1.00x). This
    comes from two execution strategies that give the
    same numbers: on a CPU, large tensors are updated a cache-sized block at a time (every op of
    the rule over one block before the next, so memory is streamed about once instead of once
    per op; on a GPU the lists run whole, each op one of torch's multi-tensor kernels, and
    packed state in one round: ``optim._paths.caches_in_blocks``), and many small tensors (a
    group of 16 or more, each under ``_pack_below`` elements, on a CPU ``_pack_below_on_cpu``
    where set) keep their state in optimizer-owned flat buffers, gathered and applied round by
    round with one ``torch.cat`` or multi-tensor copy and one multi-tensor add (torch's own
    fused ``p.add_(d, alpha=-lr)`` where the rule ends in it), or copy where the rule reads the
    parameters (float32 and float64; other dtypes run torch's op sequence unchanged). Such a
    parameter's state tensors are views into those buffers (the live state, as torch's): saved
    alone (``torch.save(state["exp_avg"])``, or some entries of ``state_dict()["state"]``), one
    writes its whole buffer, as ``torch.save`` writes any view's storage; one parameter's
    entry saved or deep-copied (``torch.save(optimizer.state[p])``) holds its own state alone
    (``optim._state.StateEntry``), and ``state_dict()`` as a whole is torch's size. Where one
    of torch's own fused CPU kernels gives the rule's bits, measured once per process and
    configuration, a rule may hand it the large tensors (:attr:`RuleOptimizer._kernel_step`:
    SGD's momentum step, whose kernel streams memory once where the three eager ops stream the
    buffer five times; torch's fused Adam and Adagrad kernels round otherwise). Every one
    of these gives torch's foreach path's bits, the signs of zeros included (but where torch
    disagrees with itself, see ``optim._paths.FAST_DTYPES``; and where torch has no foreach
    path, Adam's tensor ``lr`` or ``betas``, its default's, the for-loop path's:
    :meth:`RuleOptimizer._torch_default_loops`). Only plain tensors take these
    strategies (``optim._paths.plain``): a tensor subclass (``DTensor``, FSDP2's parameters)
    cannot mix with plain buffers, so it runs torch's lists as they are, whose ops it
    dispatches itself.
    A group run as plain lists keeps them for the next step while its parameters and state
    are unchanged (:class:`SteadyLists`), so a group of a few tiny tensors pays little
    bookkeeping. Two fixed costs torch pays are avoided: the step's profiler label is entered
    only while a profiler runs (:func:`hooked_step`), and a number multiplying a list is passed
    as a kept 0-dim tensor (``optim._ops.operand``). A model of a few tiny tensors then steps
    faster than torch's for-loop path. Param groups that ran as such lists and differ only in
    ``lr`` (per-layer learning rates) run as one rule call with one ``lr`` per tensor, kept as
    a plan that the next step checks by identity (:meth:`RuleOptimizer._merged_steps`).
``impl="single"`` (``foreach=False``, or a param group's own ``foreach=False``)
    torch.optim reads ``foreach`` per group, and so does this (:meth:`RuleOptimizer._group_impl`).
    One parameter at a time: the readable reference, torch's for-loop path (the same rule; in
    float32 and float64 torch's two paths agree bit for bit; in bfloat16 and float16 they differ
    by an ulp here and there, and this path gives the for-loop path's: its rules run inside
    ``ops.tensor_method_numbers``, where a number multiplies as ``Tensor.mul_`` does, in
    float32, not rounded to the tensors' dtype first as by torch's ``_foreach_mul_``; for complex
    parameters they differ where the for-loop path adds the weight decay, and Adadelta's update,
    in complex arithmetic before or after viewing the tensors as real pairs, and this path does
    the same, see :func:`_complex_decay_first`). A steady group keeps its lists for the next
    step as the default path does (:class:`OneByOne`, run a tensor at a time), so one optimizer
    per parameter, as torch's optimizer-in-backward tutorial builds them with
    ``foreach=False``, pays little more bookkeeping than torch's for-loop path.
``impl="flat"`` (``fused=True`` or ``compile=True``)
    the parameters themselves move into one buffer per param group, device and dtype (their
    ``.data`` become views), the layout that ``compile=True`` fuses into a single kernel with
    ``torch.compile`` (eager, the rule runs over one cache-sized block of the buffers at a
    time on a CPU). On CUDA a compiled step that repeats is replayed as a CUDA graph, since the
    buffers never move (``optim._paths.ReplayedCalls``): Dynamo's and Inductor's host time had
    made it half as fast as torch's fused kernels on large tensors. The layout is checked
    before every step and rebuilt from the current tensors when anything was replaced (a state
    tensor's data moved, a step counter edited in place where
    the counters live on the host; the state views themselves are passed over only when
    something outside the optimizer may hold one, see :meth:`RuleOptimizer._storage_holds`
    and ``optim._state``); a parameter without a gradient, or state of another dtype
    or shape than its parameter's, runs that group on the foreach path (state of another dtype
    with ``fused=True``: the RuntimeError of torch's fused kernels), and so does one that
    must stay where it lies (shared or pinned memory, memory another tensor holds, overlapping
    elements: :func:`_kept_where_they_lie`), or whose state must (in shared memory, as Hogwild
    shares an optimizer's state: ``optim._paths.in_fixed_memory``, which the default path's
    packing asks too).
    Each ``p.grad`` becomes a view into a flat gradient buffer, which autograd accumulates
    into while the loop keeps its gradients (so after the first step ``p.grad`` is that view,
    not the tensor it was: a gradient that was a view into memory of the user's, a bucket
    as DDP's ``gradient_as_bucket_view=True`` makes, stops being ``p.grad``, and later
    gradients land in the flat buffer, not there; see ``optim._paths.Flat``); the new ones
    that torch's default
    ``zero_grad()`` leaves autograd to allocate are copied in with one multi-tensor op, or,
    for a tensor of ``BLOCK`` elements or more, read where they lie (see
    ``optim._paths.Flat.gradient_spans``), and ``p.grad`` is left as the loop set it, as
    torch.optim leaves it. What it cannot hide is in its name: a parameter's ``.data`` is a view
    into a larger buffer, so ``torch.save(module.state_dict())`` writes the whole buffer, and a
    parameter whose memory another tensor holds is left where it lies
    (:func:`_kept_where_they_lie`). Its bits:
    torch's foreach path's in float32 and float64 when eager; to rounding when compiled, and in
    bfloat16 and float16, where torch's CPU kernels round an element differently in a tensor's
    vectorised body and in its scalar tail (``add_(u, alpha=a)`` on 30 bf16 elements alone and
    inside a 96-element tensor: 425 of 9000 elements differ), so one op over a buffer is not
    bitwise one op per tensor. A tensor subclass cannot join the buffer: refused (TypeError).
    Under ``torch.amp.GradScaler``, ``fused=True`` on a CPU takes the scaler's handover where
    torch's fused class does (``RuleOptimizer._step_supports_amp_scaling``): the step unscales
    ``p.grad`` in place, or is skipped with ``p.grad`` left scaled, the step hooks run either
    way. On a GPU the scaler unscales ``p.grad`` itself before the step (the same parameters),
    so after a skipped step a finite ``p.grad`` is left unscaled there.
    Opt in for speed with many small tensors or a compiled kernel; the default never needs a
    caveat.

Why each classic class subclasses its torch.optim namesake (``optim.Adam`` is a
``torch.optim.Adam``; our AdamW is a torch AdamW and so an Adam, as torch's is): training code
branches on ``isinstance(optimizer, torch.optim.Adam)`` to pick a scheduler, a checkpoint
format or a memory estimate, and a drop-in must take the same branch. The torch class comes
after :class:`RuleOptimizer` in the method order, so every method of ours wins; its constructor
is not run (:class:`RuleOptimizer` calls ``Optimizer.__init__`` itself), and of its methods only
``__setstate__`` is reached, through ours, filling torch's own defaults into a loaded state
as torch does. The learning-rate-free classes have no torch namesake.

Why not flat by default (the first version's choice): a drop-in must not change what the user's
own tensors are. Measured on this project's 2-core CPU, the blocked and packed foreach path is
within reach of flat's speed without moving a single parameter.

Why the packed passes run on the calling thread only: on many small tensors a step's floor is the
passes over the user's tensors (a ``torch.cat`` of the gradients, a multi-tensor add or copy into
the parameters), about 1 us per tensor whatever the op; torch's foreach SGD with momentum makes
three such passes and ours at least two, which caps that ratio near 3x. Splitting the rounds
between the calling thread and a second Python thread (the ops release the GIL) was measured on
2000 tensors of 1k elements, 2 threads: SGD 9.3 -> 7.7 ms, the bits unchanged, but torch's own
foreach Adagrad in the same process went from 49 to 192 ms (and ours from 9.7 to 11.3 ms) once
that thread had run, so a background thread would slow the rest of a user's program. Not taken.

Step counters follow torch: 0-dim tensors on the host (``float32``, or ``float64`` when that is
the default dtype), so a step reads them without synchronising with any device, and bias
corrections are torch's double-precision host arithmetic. With ``capturable=True`` (CUDA) and on
the flat path they live on the parameter's device and every scalar is computed there: no step
reads a value back from the device. Hyperparameters may be floats or 1-element tensors. A
tensor takes part in the rule's scalar arithmetic as a tensor, in its own dtype, as in torch.optim:
``torch.tensor(0.01) / (1 - 0.9 ** t)`` rounds to float32 even for float64 parameters, in torch's
for-loop path (its default on a CPU) and here. On the host, the result is then read as a number
for the op's ``value=``/``alpha=``, as torch's op reads it; on the device it is used as a tensor.
"""

from __future__ import annotations

import collections
import functools
import inspect
import itertools
import math
import numbers
import operator
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import _default_to_fused_or_foreach, _device_dtype_check_for_fused
from torch.optim.optimizer import _global_optimizer_post_hooks as _GLOBAL_POST_HOOKS
from torch.optim.optimizer import _global_optimizer_pre_hooks as _GLOBAL_PRE_HOOKS

from optim import _ops as ops
from optim import _paths
from optim._paths import (
    _DEVICE,
    _DTYPE,
    _LAYOUT,
    FAST_DTYPES,
    PACK_AT_LEAST,
    Flat,
    OwnedState,
    Packed,
    _identical,
    blocked_rounds,
    call_rule,
    dense,
    dispatches_itself,
    packs_alike,
    plain,
    states_fit,
)
from optim._state import HandedList, StateEntry, TrackedState

IMPLS = ("single", "foreach", "flat")
DEFAULT_IMPL = "foreach"


def _holds_containers(group: dict) -> bool:
    """Whether a hyperparameter of ``group`` is a mutable container (``betas`` as a list, say),
    which could change in place while staying the same object: a merge plan, checked by the
    values' identity (:meth:`RuleOptimizer._still_merged`), would not see it."""
    return any(
        isinstance(value, list | dict | set) for key, value in group.items() if key != "params"
    )


def step_dtype(fused: bool = False) -> torch.dtype:
    """dtype of new ``step`` counters, as torch.optim picks it (``_get_scalar_dtype``): float32
    for its fused kernels (``fused``), else float64 if that is the default dtype."""
    if fused:
        return torch.float32
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------
# Validation: every error names the argument, the value, and what is allowed.


_TORCH_WORDING = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "betas[0]": "beta parameter at index 0",
    "betas[1]": "beta parameter at index 1",
}


def _invalid(name: str, value: Any, allowed: str) -> ValueError:
    """The error for a bad ``value`` of ``name``: torch.optim's words first ("Invalid learning
    rate: -1", so code matching torch's messages keeps matching), then what is allowed."""
    wording = _TORCH_WORDING.get(name, f"{name} value")
    return ValueError(
        f"Invalid {wording}: {value} ({name} must be {allowed}, got {name}={value!r})"
    )


class UnsupportedOptionError(ValueError, RuntimeError):
    """An option that cannot be honoured, or two that contradict each other. Both a
    ``ValueError`` (this project's convention) and a ``RuntimeError`` (the type torch.optim
    raises for ``fused`` with ``foreach`` or ``differentiable``), so either ``except`` catches it.

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> try:
        ...     optim.Adam([w], foreach=True, fused=True)
        ... except RuntimeError as err:  # what torch.optim raises here
        ...     print(type(err).__name__, isinstance(err, ValueError))
        UnsupportedOptionError True
    """


def _number(value: Any, name: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            shape = tuple(value.shape)
            raise ValueError(f"Tensor {name} must be 1-element, got a tensor of shape {shape}")
        return float(value.detach().reshape(()).cpu())  # construction time: a read is fine
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or a 1-element tensor, got {name}={value!r}")
    return float(value)  # (numpy's scalars too, as torch.optim; the group keeps the value given)


def check_nonnegative(value: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number >= 0 (NaN is rejected)."""
    number = _number(value, name)
    if not (number >= 0 and math.isfinite(number)):
        raise _invalid(name, value, "a finite number >= 0")


def check_interval(value: Any, name: str, low: float, high: float, high_open: bool) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (``< high`` when ``high_open``)."""
    number = _number(value, name)
    inside = low <= number < high if high_open else low <= number <= high
    if not inside:
        bracket = ")" if high_open else "]"
        raise _invalid(name, value, f"in [{low:g}, {high:g}{bracket}")


def check_betas(betas: Any) -> None:
    """Raise ``ValueError`` unless ``betas`` is a pair, each in [0, 1) (Adam's and its kin's)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got betas={betas!r}")
    check_interval(betas[0], "betas[0]", 0.0, 1.0, high_open=True)
    check_interval(betas[1], "betas[1]", 0.0, 1.0, high_open=True)


def as_tuple(values: Any) -> Any:
    """``values`` as a tuple where it is a tuple or a list (``betas`` as the defaults keep it),
    anything else as given, for the checks to refuse
    (:meth:`RuleOptimizer._check_hyperparameters`)."""
    return tuple(values) if isinstance(values, (tuple, list)) else values


def _optional_bool(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be True, False or None, got {name}={value!r}")


def check_path_flags(foreach: Any, fused: Any) -> None:
    """Raise unless torch's ``foreach`` and ``fused`` are each True, False or None (TypeError),
    and not both True (:class:`UnsupportedOptionError`, as torch.optim's RuntimeError)."""
    _optional_bool(foreach, "foreach")
    _optional_bool(fused, "fused")
    if fused and foreach:
        raise UnsupportedOptionError(
            "`fused` and `foreach` cannot be `True` together. (fused=True runs the flat path "
            "compiled, foreach=True the foreach path; as torch.optim, which raises RuntimeError)"
        )


def _in_group(error: Exception, index: int) -> Exception:
    """``error`` of the same type, its message followed by the param group it was found in."""
    try:
        return type(error)(f"{error} (in param group {index})")
    except Exception:  # (an exception type that takes other arguments: as it is)
        return error


def resolve_impl(
    impl: str | None, compile: bool, foreach: bool | None, fused: bool | None
) -> tuple[str, bool]:
    """The execution path and whether to compile it, from ours and torch's keywords.

    ``foreach=True`` is ``impl="foreach"``, ``foreach=False`` is ``impl="single"``, ``fused=True``
    is ``impl="flat", compile=True`` (the rule fused into one kernel); ``None`` everywhere gives
    the default, ``"foreach"``. Contradictions raise ``ValueError``.
    """
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or None (default), got impl={impl!r}")
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be a bool, got compile={compile!r}")
    check_path_flags(foreach, fused)
    wanted = {"foreach" if foreach else "single"} if foreach is not None else set()
    if fused:
        wanted.add("flat")
        compile = True
    if compile:
        wanted.add("flat")
    if impl is not None:
        wanted.add(impl)
    if len(wanted) > 1:
        raise ValueError(
            f"contradictory execution options: impl={impl!r}, compile={compile!r}, "
            f"foreach={foreach!r}, fused={fused!r} ask for {sorted(wanted)}; compile=True and "
            "fused=True run impl='flat', foreach=True impl='foreach', foreach=False impl='single'"
        )
    return (wanted.pop() if wanted else DEFAULT_IMPL), compile


def without_grad(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` run as under ``torch.no_grad()``, which costs 5 of a tiny step's 40 us (a new
    context object and its checks at every call); this sets and restores the grad mode directly
    (under ``torch.compile``, where Dynamo traces the mode: ``torch.no_grad()`` itself)."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            with torch.no_grad():
                return step(*args, **kwargs)
        previous = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            return step(*args, **kwargs)
        finally:
            torch._C._set_grad_enabled(previous)

    return run


def hooked_step(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` wrapped as ``torch.optim.Optimizer.profile_hook_step`` wraps it: the global and
    the optimizer's step pre-hooks (which may replace the arguments), the step, the profiler's
    ``_optimizer_step_code`` entry point, then the post-hooks, all inside the profiler label
    ``Optimizer.step#<class>.step``. The label is entered only while a profiler runs (or under
    ``torch.compile``, which traces torch's form), as torch's own datapipes do: entering a
    ``record_function`` costs about 6 us on a CPU whether or not anything records it, a third
    of a tiny model's step."""

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling() or torch.autograd._profiler_enabled():
            label = f"Optimizer.step#{type(args[0]).__name__}.step"
            with torch.autograd.profiler.record_function(label):
                return _with_step_hooks(step, args, kwargs)
        return _with_step_hooks(step, args, kwargs)

    return wrapper


def _with_step_hooks(step: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """``step(*args, **kwargs)`` between the step hooks, in torch's order."""
    optimizer = args[0]
    for pre_hook in itertools.chain(
        _GLOBAL_PRE_HOOKS.values(), optimizer._optimizer_step_pre_hooks.values()
    ):
        result = pre_hook(optimizer, args, kwargs)
        if result is not None:
            if not (isinstance(result, tuple) and len(result) == 2):
                raise RuntimeError(
                    f"{step} must return None or a tuple of (new_args, new_kwargs), but got "
                    f"{result}."
                )
            args, kwargs = result
    out = step(*args, **kwargs)
    optimizer._optimizer_step_code()
    for post_hook in itertools.chain(
        optimizer._optimizer_step_post_hooks.values(), _GLOBAL_POST_HOOKS.values()
    ):
        post_hook(optimizer, args, kwargs)
    return out


_SCALAR_TYPE_NAMES = {
    torch.float64: "Double",
    torch.float32: "Float",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
}


def _fused_dtype_error(expected: torch.dtype, found: torch.dtype, detail: str) -> RuntimeError:
    """torch's fused kernels' error for a tensor of dtype ``found`` beside a parameter of dtype
    ``expected`` ("expected scalar type BFloat16 but found Float"), then ``detail``."""
    names = (_SCALAR_TYPE_NAMES.get(dtype, str(dtype)) for dtype in (expected, found))
    return RuntimeError("expected scalar type {} but found {} ({})".format(*names, detail))


def _refuse_fused_grad_dtypes(params: list[Tensor]) -> None:
    """torch's ``RuntimeError`` where a ``fused=True`` step meets a gradient of another dtype
    than its parameter's (``p.grad_dtype = None``, then a float32 gradient of a bfloat16
    parameter), which torch's fused kernels refuse at the step, leaving the parameters where
    they were (this path trained on, or failed later with another message). Checked as a
    layout is built, before any update (torch counts the step first: see
    :func:`_refuse_fused_state_dtypes`)."""
    for position, p in enumerate(params):
        grad = p.grad
        if grad is not None and grad.dtype != p.dtype:
            raise _fused_dtype_error(
                p.dtype,
                grad.dtype,
                f"fused=True: the gradient of parameter {position} of its group is "
                f"{grad.dtype} and the parameter {p.dtype}, which torch's fused kernels refuse; "
                "use the default path, which gives torch's numbers for mixed-dtype gradients",
            )


def _refuse_fused_state_dtypes(params: list[Tensor], states: list[dict], keys: tuple) -> None:
    """torch's ``RuntimeError`` where a ``fused=True`` step meets state of another dtype than
    its parameter's (``model.double()`` after the first step), which torch's fused kernels
    refuse at the step, leaving the parameters where they were (the other paths take it, and
    so did this one: its numbers were the foreach path's). Checked as a layout is built."""
    for position, (p, state) in enumerate(zip(params, states)):
        for key in keys:
            value = state.get(key)
            if isinstance(value, Tensor) and value.dtype != p.dtype:
                raise _fused_dtype_error(
                    p.dtype,
                    value.dtype,
                    f"fused=True: the state {key!r} of parameter {position} of its group is "
                    f"{value.dtype} and the parameter {p.dtype}, which torch's fused kernels "
                    "refuse; convert the model before the optimizer is built, or load a state "
                    "dict, which casts the state to the parameters' dtype",
                )


def _held(states: list[dict], key: str, none_is_missing: bool) -> bool:
    """Whether every one of ``states`` holds ``key`` (with a value that is not None, where
    ``none_is_missing``): C-level passes."""
    if none_is_missing:
        values = map(dict.get, states, itertools.repeat(key))
        return not any(map(operator.is_, values, itertools.repeat(None)))
    return all(map(dict.__contains__, states, itertools.repeat(key)))


def _all_tensors(states: list[dict], key: str) -> bool:
    """Whether every one of ``states`` holds a tensor under ``key`` (so holds ``key``): one
    C-level pass (the steady step's counters, :meth:`RuleOptimizer._ensure_state`)."""
    values = map(dict.get, states, itertools.repeat(key))
    return all(map(isinstance, values, itertools.repeat(Tensor)))


def _grads_of_another_dtype(params: list[Tensor]) -> bool:
    """Whether a parameter's gradient has another dtype than the parameter (torch 2.13 allows
    it with ``p.grad_dtype = None``: float32 gradients of bfloat16 weights, say)."""
    return any(p.grad is not None and p.grad.dtype != p.dtype for p in params)


def _repeats(params: list[Tensor]) -> bool:
    """Whether a parameter occurs more than once in ``params`` (torch warns, and updates it
    once per occurrence)."""
    return len(set(map(id, params))) < len(params)


def _updated_over_one_another(params: list[Tensor]) -> bool:
    """Whether a parameter occurs more than once (:func:`_repeats`), or two share memory
    (``p1.data = p0.data``; overlapping views of one tensor, ``base[:6]`` and ``base[4:]``):
    torch then updates that memory once per occurrence, each of its paths in its own order,
    which only its lists as they are reproduce (a packed or flat layout holds a copy per tensor,
    so one view's update of the shared elements was lost; a blocked one reorders the ops).
    Views of one storage are told apart by the span of memory each reaches, so interleaved
    views (``base[::2]``, ``base[1::2]``) run on lists too, with the same numbers; a tensor
    subclass (``DTensor``), whose storage is not its data, and a step traced by
    ``torch.compile``, by data pointers alone. Memory shared only after the layout was made is
    not looked for."""
    if _repeats(params):
        return True
    if torch.compiler.is_compiling() or not _paths.plain(params):  # (Dynamo cannot trace a
        # storage's data_ptr; a subclass's storage is not its data, DTensor's): pointers alone
        pointers = [p.data_ptr() for p in params if p.numel()]
        return len(set(pointers)) < len(pointers)
    storages = [p.untyped_storage().data_ptr() for p in params]
    if len(set(storages)) == len(storages):
        return False
    held = collections.Counter(storages)
    spans: dict[int, list[tuple[int, int]]] = {}  # storage address -> (first byte, end byte)
    for p, storage in zip(params, storages):
        if held[storage] > 1 and p.numel():  # (empty: no data)
            start = p.data_ptr()
            reach = sum((n - 1) * stride for n, stride in zip(p.shape, p.stride()))
            spans.setdefault(storage, []).append((start, start + (reach + 1) * p.element_size()))
    for shared in spans.values():
        if len(shared) > 1:
            shared.sort()
            end = shared[0][1]
            for first, last in shared[1:]:
                if first < end:
                    return True
                end = max(end, last)
    return False


def _kept_where_they_lie(params: list[Tensor], groups: list[dict]) -> bool:
    """Whether the flat path must leave ``params`` (of one of ``groups``, the param groups)
    where they lie, and run them on lists instead, with torch's foreach bits, which are the
    eager flat path's. It must where moving a parameter into a buffer of its own would change
    what other code sees, or what torch does:

    - a CPU parameter in shared memory (``model.share_memory()``, as in Hogwild, where several
      processes train one model): moved, it would no longer be shared, and neither the other
      processes nor the one that shared it would see this one's updates (before, a Hogwild
      run with ``fused=True`` left the shared model as it was, without a word). On CUDA
      ``is_shared()`` is always True, so sharing with another process cannot be told there;
    - a CPU parameter in pinned memory (``p.data = p.data.pin_memory()``, as CPU offloading
      keeps parameters for fast copies to a GPU): moved into an unpinned buffer, its next
      ``p.to("cuda", non_blocking=True)`` would be a synchronous copy, with the same numbers
      (both: ``optim._paths.in_fixed_memory``, which ``states_fit`` asks of the state too);
    - a parameter whose memory another tensor holds besides the optimizer's parameters (those
      of ``groups``) and this library's live flat buffers (``optim._paths.LIVE_FLAT_BUFFERS``),
      counted as its storage's users: FSDP's ``FlatParameter``, whose ``_local_shard`` FSDP
      all-gathers from at the next forward (before, those updates were lost), a view into a
      parameter buffer of the user's, or a ``model.state_dict()`` kept without a copy, which
      torch's in-place updates change too. (An autograd graph still alive that saved a view of
      a parameter counts as well: that group then runs on lists until the graph is freed);
    - a parameter whose elements overlap (``torch.randn(1).expand(5)``): torch's in-place ops
      refuse to write it ("more than one element of the written-to tensor refers to a single
      memory location"), and so do the lists; moved, it became five independent elements that
      trained apart.

    Users are counted by ``torch._C._storage_Use_Count``, only when a layout is built. A group
    kept on lists is checked again at the next step. What it cannot tell apart runs on lists
    too: a new optimizer over some of the parameters of a flat layout no longer alive (the
    layout's other parameters still view that memory) keeps them where they lie.
    """
    ours: dict[int, int] = {}  # memory address -> how many of the optimizer's parameters use it
    for p in itertools.chain.from_iterable(group["params"] for group in groups):
        if p.numel():
            address = p.data_ptr() - p.storage_offset() * p.element_size()  # (its storage's)
            ours[address] = ours.get(address, 0) + 1
    for p in params:
        if torch._debug_has_internal_overlap(p) == 1:
            return True
        if not p.numel():
            continue
        if _paths.in_fixed_memory(p):
            return True
        storage = p.untyped_storage()
        address = storage.data_ptr()
        if address in _paths.LIVE_FLAT_BUFFERS:
            continue
        # users: each tensor on this memory, and the storage object held here
        if torch._C._storage_Use_Count(storage._cdata) - 1 > ours.get(address, 0):
            return True
    return False


def _by_kind(params: list[Tensor], fresh: list[bool]) -> dict[tuple, list[int]]:
    """The positions of ``params`` by (device, dtype, state new this step): one list each."""
    lists: dict[tuple, list[int]] = {}
    for i, (p, first) in enumerate(zip(params, fresh)):
        lists.setdefault((p.device, p.dtype, first), []).append(i)
    return lists


def _starting(lists: dict[tuple, list[int]]) -> set[tuple]:
    """The (device, dtype) of the lists of :func:`_by_kind` that hold state new this step: a
    list of the same kind whose state is not new is updated *beside* them (see
    ``RuleOptimizer._host_arguments``)."""
    return {(device, dtype) for device, dtype, first in lists if first}


def rule_over_spans(rule: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """``rule(*args, **kwargs)``: compiled apart from ``rule`` itself for the lists of a flat
    layout's spans (see ``RuleOptimizer._compiled``)."""
    rule(*args, **kwargs)


def _spans_of(spans: list[tuple[int, int, Tensor]], flat: Tensor) -> list[Tensor]:
    """``flat[begin:end]`` for each span ``(begin, end, _)``."""
    return [flat[begin:end] for begin, end, _ in spans]


def _complex_decay_first(
    p: Tensor, grad: Tensor, arguments: dict[str, Any]
) -> tuple[Tensor, dict[str, Any]]:
    """The gradient and rule arguments of torch's for-loop path for a complex parameter: its
    ``-grad`` (maximize) plus ``weight_decay * p`` taken in complex arithmetic before the tensors
    are viewed as real pairs, where its foreach path, and the rules here, add them on the pairs
    (``g.add(p, alpha=0.1)`` on complex64 and on its pairs differ by an ulp in 9% of the real
    elements, 100k random ones). Anything else, and decoupled (AdamW) decay, is returned as it
    is."""
    weight_decay = arguments.get("weight_decay", 0)
    if (
        not p.is_complex()
        or arguments.get("decoupled_weight_decay", False)
        or not isinstance(weight_decay, numbers.Real)
        or weight_decay == 0
    ):
        return grad, arguments
    if arguments.get("maximize", False):
        grad = -grad
    decayed = grad.add(p, alpha=weight_decay)
    return decayed, {**arguments, "weight_decay": 0, "maximize": False}


def _decays_complex(group: dict, params: list[Tensor]) -> bool:
    """Whether ``group`` adds a weight decay into the gradient of a complex parameter among
    ``params``: torch's for-loop path takes it in complex arithmetic before the pairs
    (:func:`_complex_decay_first`), which lists of real pairs do not give, so where the default
    path must give that path's bits (:meth:`RuleOptimizer._torch_default_loops`) such a group
    runs it one parameter after another. (Adam with a tensor ``lr``, complex64, decay 0.1: its
    moments an ulp apart from the first step, the parameters 3e-8 after 30.)"""
    weight_decay = group.get("weight_decay", 0)
    return (
        isinstance(weight_decay, numbers.Real)
        and weight_decay != 0
        and not group.get("decoupled_weight_decay", False)
        and any(map(Tensor.is_complex, params))
    )


def _is_sparse(grad: Tensor) -> bool:
    """Whether ``grad`` is not a dense (strided) tensor: COO, CSR and the other sparse layouts."""
    return grad.layout is not torch.strided


class SteadyLists(NamedTuple):
    """A param group's lists as the default path ran them, neither packed nor split: kept for
    the next step, which reuses them when :meth:`RuleOptimizer._steady` finds them current
    (so a group of a few tensors, where Python bookkeeping costs as much as the arithmetic,
    skips the state lookups and the choice of a strategy)."""

    params: list[Tensor]
    keys: tuple[str, ...]
    counters: list[Tensor] | None
    buffers: dict[str, list[Tensor]]
    blocked: bool
    real: bool
    stamp: tuple[int, int]
    plain: bool  # no tensor subclass (see optim._paths.plain): may run with other groups


class OneByOne(SteadyLists):
    """The one-tensor path's lists (``foreach=False``), kept and checked as the default path's
    :class:`SteadyLists` are (:meth:`RuleOptimizer._steady`), but run a tensor at a time, as
    torch's for-loop path runs them: a type of its own, so that neither the default path nor
    its merged groups take them for theirs."""

    __slots__ = ()


class MergedBatch(NamedTuple):
    """Param groups run as one rule call (see :meth:`RuleOptimizer._merged_steps`): their
    concatenated lists, and what the next step checks before it runs them so again."""

    indices: list[int]
    groups: list[dict]
    params: list[Tensor]
    counts: list[int]  # tensors per group
    counters: list[Tensor] | None
    buffers: dict[str, list[Tensor]]
    arguments: dict[str, Any]  # the rule's arguments but the per-tensor ones
    fingerprints: list[tuple]  # per group: its keys but the per-tensor ones, their values, size


class MergePlan(NamedTuple):
    """Last step's :class:`MergedBatch` es, for the state stamp and number of groups they were
    made with, and the indices of the groups they hold."""

    stamp: tuple[int, int]
    groups: int
    batches: list[MergedBatch]
    merged: set[int]


def torch_source_mentions(text: str, functions: Iterable[Callable[..., Any]]) -> bool:
    """Whether the installed torch's source of any of ``functions`` contains ``text`` (False
    where a source cannot be read): how a class here follows a behaviour of ``torch.optim``
    that differs between torch versions (2.11's CPU-only fused Adagrad, for one)."""
    try:
        return any(text in inspect.getsource(function) for function in functions)
    except (OSError, TypeError):
        return False


class RuleOptimizer(Optimizer):
    """Base of every optimizer here; subclasses give validation, defaults and the rule.

    A subclass defines:

    * ``_rule``: the update ``rule(params, grads, steps, state, **arguments)`` over lists (a
      staticmethod); its keyword arguments are read from the param group under the same names,
      except those :meth:`_rule_arguments` maps otherwise (Adam's ``betas``);
    * ``_counts_steps``: whether the state holds a ``step`` counter (SGD does not);
    * ``_state_keys(group)``: the state tensors (other than ``step``) the rule updates, created as
      ``zeros_like`` unless :meth:`_new_state` says otherwise;
    * ``_supports_sparse``: whether sparse gradients are accepted (torch: SGD and Adagrad);
    * ``_complex_as_real``: whether the rule sees complex tensors as real pairs (torch's Adam,
      Adagrad, RMSprop, Adadelta) or runs complex arithmetic on them (torch's SGD);
    * ``_per_tensor_arguments``: rule arguments the rule also takes one per tensor (``"lr"``),
      so that param groups differing only in them run as one rule call.

    Args (besides the algorithm's own, all as in torch.optim):
        foreach: ``True`` or ``None`` runs the default ``"foreach"`` path, ``False`` ``"single"``.
        fused: ``True`` runs the flat path compiled into one kernel.
        capturable: keep step counters on the device (CUDA graphs); parameters must be on CUDA
            unless fused=True (as torch.optim).
        differentiable: not supported (steps run under ``torch.no_grad``): raises
            :class:`UnsupportedOptionError`, as ``fused=True`` with ``foreach=True`` does.
        impl: ``"single"``, ``"foreach"`` or ``"flat"`` (default ``None``: ``"foreach"``).
        compile: with the flat path, fuse the rule into one kernel with ``torch.compile``.

    Bad values raise ``ValueError`` whose message starts with torch.optim's words ("Invalid
    learning rate: -1") and goes on with what is allowed: as constructor arguments, and in a
    param group (the constructor's or ``add_param_group``'s, which torch does not check), with
    the group's index (:meth:`_check_hyperparameters`).

    A state dict saved by an older torch (param groups without the flags added since) loads as
    in torch: each missing key of ``_torch_setstate_defaults`` takes torch's default.

    Example:
        >>> import torch, optim
        >>> def first_step(impl):  # one SGD step on sum(w ** 2) from w = (1, -2): w - 0.25 * 2 w
        ...     w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        ...     (w ** 2).sum().backward()
        ...     optim.SGD([w], lr=0.25, impl=impl).step()
        ...     return w.detach().tolist()
        >>> [first_step(impl) for impl in ("single", "foreach", "flat")]  # one rule, three paths
        [[0.5, -1.0], [0.5, -1.0], [0.5, -1.0]]
        >>> opt = optim.SGD([torch.zeros(1, requires_grad=True)], foreach=False)
        >>> isinstance(opt, optim.RuleOptimizer), opt.impl  # foreach=False: "single"
        (True, 'single')
        >>> optim.FusedOptimizer is optim.RuleOptimizer  # the first version's name
        True
    """

    _counts_steps: ClassVar[bool] = True
    _torch_setstate_defaults: ClassVar[dict[str, Any]] = {}
    """The param-group keys torch.optim's ``__setstate__`` fills in when a loaded (older) state
    dict lacks them, with torch's values; any other missing key stays missing, as in torch."""
    _group_keys_unread: ClassVar[frozenset[str] | None] = frozenset()
    """The keys of ``defaults`` the reference's step does not read (SGD's ``differentiable``,
    Adagrad's ``initial_accumulator_value`` once its state exists): any other one missing from a
    param group (deleted, or absent from a trimmed checkpoint, which torch's ``__setstate__``
    does not refill) raises its ``KeyError`` at that group's turn, as torch.optim's steps do
    (ours ran into the rule's ``TypeError``, a missing keyword, or trained on without
    ``foreach`` or ``fused``). None: not checked."""
    _supports_sparse: ClassVar[bool] = False
    _sparse_refusal: ClassVar[str] = "as torch.optim; SGD and Adagrad accept them"
    """What the refusal of a sparse gradient says of the reference (where it is not torch)."""
    _complex_as_real: ClassVar[bool] = True
    _complex_update_added_as_complex: ClassVar[bool] = False
    """Whether torch's for-loop path adds the update to a complex parameter in complex
    arithmetic (Adadelta's ``param.add_(delta, alpha=-lr)``, the delta viewed back as complex:
    the product and the sum rounded apart, where on real pairs they fuse): the one-tensor path
    then has its rule, which must not read the parameter (its weight decay is added before, see
    :func:`_complex_decay_first`), add the update into a scratch, added to the parameter after."""
    _linear: ClassVar[bool] = True
    """With ``_complex_as_real`` False: whether the rule's complex arithmetic is the same on real
    pairs (sums and real multiples only, as SGD's), as the compiled path runs it (inductor has no
    complex kernels); a rule that is not (a product of two tensors, a square root) refuses
    complex parameters under ``compile=True``."""
    _elementwise: ClassVar[bool] = True
    """Whether the rule treats every element on its own, so that it may run on any split of the
    tensors (blocks, packed buffers). A rule with a reduction over the whole group (a global norm,
    a distance estimate) sets False and always sees the group's complete lists."""
    _pack_below: ClassVar[int] = 1 << 16
    """The default path packs a group whose tensors all have fewer elements than this (and are
    ``PACK_AT_LEAST`` or more; on a CPU, :attr:`_pack_below_on_cpu` where a class sets one).
    Measured on an earlier 2-core CPU of this project's with torch's own bench shapes and more:
    a rule of several ops (Adam, Adagrad, RMSprop, Adadelta) gained 1.2-1.75x over the blocked
    lists with packing on 400 tensors of 40k and 800 of 20k elements, and nothing from 100k
    elements on; SGD, one to three ops that must also gather the parameters (see
    ``_ends_in_fused_add``), packs only tensors under 2k elements, and a group without state
    (plain SGD) is never packed. On a GPU, where a packed group is one round (a few kernels
    over the whole group) and torch's multi-tensor kernels over 400 tensors are bound by the
    host: measured on an NVIDIA H100 (2026-12-05, the README's table: 400 tensors of 40k
    elements, torch 2.11, against torch's foreach path), AdamW and Adadelta packed 3.45x and
    3.31x, Adam, Adagrad and RMSprop on lists 1.31x, 1.54x and 1.11x. (Those three pack there
    too since 2026-12-06, which has not yet been measured on a GPU.)"""
    _pack_below_on_cpu: ClassVar[int | None] = None
    """Where a class packs fewer tensors on a CPU than :attr:`_pack_below` (None: the same).
    Adam, AdamW, Adagrad and RMSprop pack only tensors under ``optim._paths.TORCH_GRAIN``
    elements (32k) there, from which torch runs each op of a tensor on two threads, each on its
    own half. A packed round is gathered with per-tensor copies (each tensor split between the
    threads) and updated by ops over the whole round (split once, at its middle), so about half
    of what each thread reads the other wrote; on this project's 2-core virtual machine that
    costs 2-3x in the regime the bench's ``thread handoff`` column shows. Measured 2026-12-03 on
    400 tensors of 40k elements, 2 threads, against torch's for-loop path in one process, packed
    / blocked lists: outside that regime Adam 1.11-1.34x / 1.05-1.19x, Adagrad 1.01-1.18x /
    0.93-1.22x, RMSprop 1.14-1.32x / 1.04-1.18x; in it Adam 0.88-1.05x / 0.97-1.18x, Adagrad
    0.60-0.76x / 0.94-1.18x, RMSprop 0.68-0.85x / 0.91-1.15x. The lists lose about a tenth
    outside it and stay at or above torch in it. AdamW (which gathers the parameters too) then
    gained from packing in both regimes; since the blocked lists run in rounds of 256k elements
    (``optim._paths.LIST_ROUNDS_PER_BLOCK``; smaller tensors in groups of 128k since 723d290,
    ``LIST_GROUPS_PER_BLOCK``) they are faster for it too: measured 2026-12-06 in
    ``stepsize bench optim`` on 400x40k (Intel Xeon, 2 MiB of L2 per core, 2 threads, shared
    caches), four alternating runs a side, lists 1.00x, 1.01x, 0.98x, 1.00x torch's for-loop
    path, packed 0.91x, 0.91x, 0.95x, 0.95x. Adadelta (more ops) still gains from packing
    there (packed 1.02x and 1.05x, lists 0.93x and 0.95x) and keeps :attr:`_pack_below`."""

    @classmethod
    def _packs_below(cls, device: torch.device) -> int:
        """Tensors with fewer elements than this are packed on ``device`` (see
        :attr:`_pack_below` and :attr:`_pack_below_on_cpu`)."""
        if cls._pack_below_on_cpu is not None and device.type == "cpu":
            return cls._pack_below_on_cpu
        return cls._pack_below

    _repeats_as_reference: ClassVar[bool] = True
    """Whether a parameter given twice in a group (deprecated in torch, which warns) is updated
    as the reference does: once per occurrence, each of torch's paths in its own order (the
    for-loop path one parameter after another; the foreach path each op over the whole list;
    the fused kernels every count first, then one parameter after another). False: a warning
    of ours says the numbers differ."""
    _rule: ClassVar[Callable[..., None]]

    def _torch_default_loops(self, group: dict) -> bool:
        """Whether torch's default path (``foreach`` unset) for this group is its for-loop path
        on every device, so that the default path takes that path's bits: in bfloat16 and
        float16 they differ from its foreach path's by an ulp here and there (see
        ``impl="single"`` in this module's docstring). False here; Adam's says when (torch never
        runs its foreach path with a tensor ``lr`` or ``betas`` unless ``capturable``)."""
        return False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        *,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        type(self)._check_hyperparameters(defaults)
        keywords = self._path_keywords(defaults, impl, compile)
        self.impl, self.compile = resolve_impl(impl, compile, *keywords)
        # whether a path was asked for (impl=, compile=, foreach=, fused=), not the default's
        self._path_given = impl is not None or compile or keywords != (None, None)
        self._reset_caches()
        # torch's base class directly: a class here that is also its torch.optim namesake
        # (``optim.Adam`` a ``torch.optim.Adam``) has that class next in its method order, whose
        # constructor takes the options one by one, and which ours has already checked
        Optimizer.__init__(self, params, defaults)
        self.state = TrackedState(dict, self.state)
        _paths.keep_freed_temporaries()

    def _reset_caches(self) -> None:
        """Everything derived from the state: rebuilt on demand, never pickled."""
        self._layouts: dict[int, list] = {}  # param group index -> its Packed or Flat layouts
        self._merge_plan: MergePlan | None = None  # param groups run together last step
        # counters created here on a device, not yet counted: id -> (the counter, its version)
        self._unstepped: dict[int, tuple[weakref.ref, int]] = {}
        self._compiled_rule: Callable[..., None] | None = None
        self._round_temporaries = _paths.RoundTemporaries()  # (see optim._paths)
        self._compiled_spans: Callable[..., None] | None = None
        self._rule_keywords = tuple(
            name
            for name, parameter in inspect.signature(type(self)._rule).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        )

    _pickled_attributes: ClassVar[tuple[str, ...]] = ("impl", "compile", "_path_given")
    """The instance attributes a pickle or ``copy.deepcopy`` keeps beside torch's three keys:
    the execution path, and those a class sets as its reference package does (Prodigy's and
    D-Adaptation's ``d0``, DAdaptSGD's ``rank`` and ``loggables``), so that a copy has every
    public attribute the class made, as torch's ``test_deepcopy_copies_all_public_attrs`` asks
    (the packages' copies lose them). An attribute a user's subclass sets is dropped, as torch
    drops it."""

    def __getstate__(self) -> dict[str, Any]:
        """torch's pickled state plus :attr:`_pickled_attributes`."""
        kept = {key: vars(self)[key] for key in self._pickled_attributes if key in vars(self)}
        return {**kept, **super().__getstate__()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "impl" in state:  # unpickling; load_state_dict passes only state and param_groups
            self.impl, self.compile = state.pop("impl"), state.pop("compile")
            _paths.keep_freed_temporaries()
        elif "defaults" in state and "impl" not in vars(self):
            # a torch.optim optimizer pickled whole, unpickled as this class: the path its
            # keywords pick, as the constructor would (torch's own class trains on from it)
            keywords = self._path_keywords(state["defaults"], None, False)
            self.impl, self.compile = resolve_impl(None, False, *keywords)
            self._path_given = keywords != (None, None)
            _paths.keep_freed_temporaries()
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self._torch_setstate_defaults.items():
                group.setdefault(key, value)
        if not isinstance(self.state, TrackedState):
            self.state = TrackedState(dict, self.state)
        self._reset_caches()

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict``, each parameter's state a plain ``dict`` and each list a
        group keeps (DoG's ``init_buffer``, a :class:`~optim._state.HandedList`) a plain
        ``list`` of the same tensors, before the post-hooks see it: as torch's and the
        packages' are, so that ``torch.load`` (``weights_only=True``, its default) reads them
        (the subclasses pickle as calls of ``dict`` and ``list``, which it refuses). Any other
        entry of ``optimizer.state`` (a pre-hook's ``state["note"] = 1``) passes as it is, and
        a post-hook's result replaces the dict, as in torch. The per-parameter dicts are copies
        holding the live tensors: torch hands out its live dicts, so a key replaced, added or
        popped in the returned ``state`` (by code, or by a post-hook that returns None) reaches
        torch's optimizer but not this one; the tensors, changed in place, reach both."""
        post_hooks = self._optimizer_state_dict_post_hooks
        self._optimizer_state_dict_post_hooks = collections.OrderedDict()
        try:
            saved = super().state_dict()
        finally:
            self._optimizer_state_dict_post_hooks = post_hooks
        saved["state"] = {
            key: dict(value) if isinstance(value, StateEntry) else value
            for key, value in saved["state"].items()
        }
        saved["param_groups"] = [
            {
                key: list(value) if isinstance(value, HandedList) else value
                for key, value in group.items()
            }
            for group in saved["param_groups"]
        ]
        for hook in post_hooks.values():
            result = hook(self, saved)
            if result is not None:
                saved = result
        self._add_package_entries(saved)
        return saved

    def _add_package_entries(self, saved: dict[str, Any]) -> None:
        """Where a reference package adds entries to torch's ``state_dict`` after it returned
        (DoG's ``state["_first_step"]``), a class adds them here, to the dict the post-hooks
        left, as the package's ``state_dict`` does after torch's. Default: nothing."""

    def _still_valid(self, layout: OwnedState, params: list[Tensor], group: dict) -> bool:
        """Whether ``layout`` still describes these parameters and their state.

        When ``optimizer.state`` has not changed since the layout was last verified (its
        :class:`~optim._state.TrackedState` count), only the parameters are checked; otherwise
        every state entry is, and a success is stamped for the next step.
        """
        if layout.keys != self._state_keys(group) or not layout.params_hold(params):
            return False
        if not layout.counts_hold():
            return False
        stamp = self.state.stamp() if isinstance(self.state, TrackedState) else None
        if stamp is not None and stamp == layout.stamp:
            return self._storage_holds(layout, group)
        if not layout.state_holds(params, self._states(group, params)):
            return False
        layout.stamp = stamp
        return True

    def _storage_holds(self, layout: OwnedState, group: dict) -> bool:
        """``layout.storage_holds()`` (every state view at its address, with its metadata), or
        True with no pass over the views while nothing outside the optimizer's own code has read
        or written a state entry's value since that last held with no reference to a view but
        its entry's and the layout's (``optimizer.state`` a :class:`TrackedState` whose
        ``exposures`` count is unchanged since: see :mod:`optim._state`). A state tensor's
        data or metadata can be moved only through a reference to it, and every way to one from
        outside counts: an entry's value read or assigned, ``state_dict()``, a loaded one.

        The checks had cost most of some steps over many small tensors: measured in the bench's
        round-robin (2000 tensors of 1k elements, 2 threads), Adam's default step 20.9 ms with
        them and 12.7 ms without, its compiled one 9.3 and 5.5 ms (torch foreach 83 ms, fused
        35 ms there), DAdaptSGD's 22.6 and 17.7 ms."""
        exposures = self.state.exposures
        if layout.trusted_at == exposures:
            return True
        if not layout.storage_holds():
            return False
        also_held = self._views_also_held(layout, group)
        if also_held is not None and layout.only_own_references(also_held):
            layout.trusted_at = exposures
        return True

    def _views_also_held(self, layout: OwnedState, group: dict) -> int | None:
        """How many references to ``layout``'s state views this optimizer keeps besides the
        layout's lists and ``optimizer.state``'s entries, each in a place whose reads from
        outside are counted as handed out (see :meth:`_storage_holds`); None where views are
        kept somewhere uncounted, so that the layout is checked at every step. Default: 0."""
        return 0

    def _path_keywords(
        self, defaults: dict[str, Any], impl: str | None, compile: bool
    ) -> tuple[bool | None, bool | None]:
        """The ``foreach`` and ``fused`` that pick the path with ``impl`` and ``compile`` (see
        :func:`resolve_impl`): torch's keywords as given."""
        return defaults.get("foreach"), defaults.get("fused")

    def _patch_step_function(self) -> None:
        """torch's, with :func:`hooked_step` in place of its wrapper: the same hooks and label,
        the label entered only while a profiler runs. Each class's ``step`` is wrapped once."""
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"
        cls = type(self)
        if not getattr(cls.step, "hooked", None):
            cls.step = hooked_step(cls.step)
            cls.step.hooked = True

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` or ``TypeError`` (naming the key and the value, torch.optim's
        words first) for a bad hyperparameter among ``values``: the constructor's ``defaults``,
        or a param group with the defaults filled in (:meth:`add_param_group`, which the
        constructor's groups go through too). Every check a class's constructor makes on its
        arguments lives in its override of this method, so that a value refused as a default is
        refused in a group with the same error (and its group's index); torch.optim checks the
        defaults only. It runs at construction and in ``add_param_group`` only, where reading a
        tensor's value to the host is no cost to a step: a value changed in ``param_groups``
        between steps (a scheduler's) is not checked, as in torch.optim, and
        ``load_state_dict``, which replaces the groups as torch's does, checks none. An
        override checks its own keys, then calls this one: the options every class shares,
        ``differentiable`` (refused: steps run under ``torch.no_grad``), ``foreach`` and
        ``fused``."""
        if values.get("differentiable"):
            raise UnsupportedOptionError(
                "differentiable=True is not supported: steps run under torch.no_grad, so no "
                "gradient flows through the update; use torch.optim with differentiable=True"
            )
        check_path_flags(values.get("foreach"), values.get("fused"))

    _frozen_group_lr: ClassVar[bool] = False
    """Whether a param group may hold ``lr`` 0 where the constructor needs ``lr > 0``: the
    learning-rate-free packages (prodigyopt, dadaptation, dog) check ``lr > 0`` on the
    constructor's argument only, and their step takes the groups' largest lr and skips a group at
    0 (a frozen group; "every group's lr the same or 0")."""

    @classmethod
    def _check_group(cls, group: Mapping[str, Any]) -> None:
        """A param group's checks (:meth:`add_param_group`): the constructor's
        (:meth:`_check_hyperparameters`) on its values, but for what the reference takes in a
        group and not as a default: ``lr`` 0 where :attr:`_frozen_group_lr` (its other values
        are checked as a trainable group's)."""
        if cls._frozen_group_lr and _number(group["lr"], "lr") == 0:
            group = {**group, "lr": 1.0}
        cls._check_hyperparameters(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``; ``capturable=True`` needs every parameter on CUDA, unless
        ``fused=True`` (torch's fused kernels accept it on a CPU), in the classes whose torch
        namesake takes ``capturable`` (SGD and Adagrad ignore the key, as torch's).

        The group's hyperparameters, the defaults filled in, get the constructor's checks
        (:meth:`_check_group`: what the reference refuses as a default and trains with in a
        group, a frozen group's ``lr`` 0 or SGD's Nesterov flag without momentum, is taken): a
        bad one raises the error the same value raises as
        a constructor argument, naming the group's index, and the group is not added (the
        optimizer is as it was). The constructor's own groups are checked so too.

        A group holding a parameter more than once gets torch's deprecation warning, and the
        parameter is updated once per occurrence as torch's path of the same name does it (see
        ``_repeats_as_reference``); where a class cannot promise that, a warning of ours too.
        """
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            type(self)._check_group(group)
        except (ValueError, TypeError) as error:
            self.param_groups.pop()  # (taken back: the optimizer is as it was)
            raise _in_group(error, len(self.param_groups)) from None
        self._check_tensor_subclasses(group)
        seen: set[int] = set()
        for position, p in enumerate([] if self._repeats_as_reference else group["params"]):
            if id(p) in seen:
                warnings.warn(
                    f"param group {len(self.param_groups) - 1} holds parameter {position} (shape "
                    f"{tuple(p.shape)}) more than once: {type(self).__name__}'s update of it "
                    "differs from its reference's (which updates it once per occurrence; torch "
                    "warns that this will become an error); pass each parameter once",
                    UserWarning,
                    stacklevel=3,
                )
                break
            seen.add(id(p))
        if "capturable" in self.defaults and group.get("capturable") and not group.get("fused"):
            for p in group["params"]:
                if p.device.type != "cuda":
                    self.param_groups.pop()  # (taken back: the optimizer is as it was)
                    raise ValueError(
                        "capturable=True keeps step counters on the device for CUDA graphs and "
                        f"needs parameters on CUDA, got a parameter on {p.device} (torch.optim "
                        "refuses it too, at the first step; with fused=True, whose counters "
                        "live on the parameters' device anyway, both accept it)"
                    )

    _accepts_tensor_subclasses: ClassVar[bool] = True
    """Whether parameters of a tensor subclass that dispatches its own ops (``DTensor``, ...) are
    accepted on the default and single paths, which run torch's multi-tensor lists on them (see
    ``optim._paths.plain`` and ``dispatches_itself``)."""

    def _check_tensor_subclasses(self, group: dict) -> None:
        """Refuse a new param group holding a tensor subclass that dispatches its own ops where
        it cannot be honoured: the flat path (one plain buffer), or a class that reduces
        through plain buffers. The group is taken back before the error, so the optimizer is
        as it was."""
        if self._accepts_tensor_subclasses and self.impl != "flat":
            return
        found = next(
            (item for item in enumerate(group["params"]) if dispatches_itself(item[1])), None
        )
        if found is None:
            return
        position, p = found
        self.param_groups.pop()
        where = (
            f"parameter {position} of param group {len(self.param_groups)} is a "
            f"{type(p).__name__} (a tensor subclass, as FSDP2 and tensor parallelism make)"
        )
        if self._accepts_tensor_subclasses:
            raise TypeError(
                f"{type(self).__name__}(impl='flat') moves parameters into one plain buffer "
                f"(fused=True and compile=True too), which a tensor subclass cannot join: {where};"
                " the default path runs torch's multi-tensor lists on it, as torch.optim does"
            )
        raise TypeError(
            f"{type(self).__name__} reduces through plain buffers and does not support tensor "
            f"subclass parameters: {where}; give it plain tensors"
        )

    # --- what subclasses provide -------------------------------------------------------------

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        raise NotImplementedError

    def _new_state(self, group: dict, p: Tensor, key: str) -> Tensor:
        """A new state tensor for ``key`` (zeros shaped and strided like ``p``, as torch)."""
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def _rule_arguments(self, group: dict) -> dict[str, Any]:
        """The rule's keyword arguments: the group's values under the rule's keyword names."""
        return {name: group[name] for name in self._rule_keywords if name in group}

    def _reads_params(self, group: dict) -> bool:
        """Whether a packed step runs the rule on the gathered parameters (and copies them back)
        rather than on zeros, adding the result to them: the rule reads the parameters besides
        adding its update (weight decay), or its last op cannot be split in two (see
        :meth:`_ends_in_fused_add`)."""
        return self._decays_weights(group) or self._ends_in_fused_add(group)

    @staticmethod
    def _decays_weights(group: dict) -> bool:
        """Whether the rule reads the parameters for weight decay (not known to be 0)."""
        return ops.may_be_nonzero(group.get("weight_decay", 0))

    _per_tensor_arguments: ClassVar[tuple[str, ...]] = ()
    """Rule arguments the rule also takes as a list with one number per tensor (``"lr"`` for the
    classic optimizers, whose rules compute with it through ``optim._ops.per_tensor`` and
    ``per_count``). Param groups that differ in nothing else run as one rule call on the
    default path (:meth:`_merged_steps`), as per-layer learning rates make them."""

    _per_step_arguments: ClassVar[tuple[str, ...]] = ()
    """Rule arguments computed anew from the step count at every step (Schedule-Free's averaging
    weight ``ckp1``): 0-dim tensors in a compiled call, never compiled in as constants (see
    ``optim._paths.CompiledNumbers``), which would recompile the rule at the second step."""

    _kernel_step: ClassVar[Callable[..., tuple | None] | None] = None
    """The rule run by one of torch's own fused CPU kernels where this process has measured that
    kernel giving the rule's bits, for the default path's lists of one device and dtype, in a
    rule with no step counter (SGD's momentum step: ``optim.sgd.kernel_step``): called with the
    parameters, gradients, state lists and rule arguments, it returns the lists it left to the
    rule (parameters, gradients, state), or None (nothing done). The eager flat path (on a CPU)
    calls it too, over its spans as slices of its buffers, with ``cut_tails=True``: a slice's
    size may then be cut where the kernel needs it (no user reads those slices' version
    counters; ``optim._paths.Flat.params_updated`` counts the step in the parameters').
    None: the rule always, and so in a subclass that replaces :attr:`_rule` without giving its
    own (:meth:`__init_subclass__`: a kernel is measured against the rule of the class that
    names it)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_rule" in vars(cls) and "_kernel_step" not in vars(cls):
            cls._kernel_step = None

    _step_size_argument: ClassVar[str | None] = None
    """The rule argument ``a`` (``"lr"``) of a rule whose last op is ``p.add_(d, alpha=-a)`` and
    that uses ``a`` nowhere else (SGD, RMSprop with momentum, Adadelta), if any: see
    :meth:`_packed_arguments`."""

    def _packed_arguments(self, group: dict) -> tuple[dict[str, Any], bool, float]:
        """The rule's arguments for a packed step, whether it reads the parameters, and the scale
        of the update it leaves (see ``optim._paths.Packed.step``).

        A rule ending in torch's fused ``p.add_(d, alpha=-lr)`` (:meth:`_ends_in_fused_add`)
        would have to run on the gathered parameters: ``-lr * d`` computed apart and added after
        rounds twice. If it reads them for nothing else (no weight decay) and ``lr`` is a number
        on the host, it runs instead with ``lr = -1``, which leaves exactly ``d`` (``-0.0 + 1.0 *
        d``), and the packed step applies torch's op itself, ``p.add_(d, alpha=-lr)``: the same
        bits without reading the parameters into a buffer and copying them back (SGD with
        momentum on 2000 tensors of 1k: one pass over the parameters less per step).
        """
        arguments = self._host_arguments(group, first_step=False)
        key = self._step_size_argument
        if key is not None and self._ends_in_fused_add(group) and not self._decays_weights(group):
            scale = ops.host_number(-arguments[key])  # the rule's own alpha=-lr
            if not isinstance(scale, Tensor):  # (a device tensor: read the parameters)
                arguments[key] = -1.0
                return arguments, False, scale
        return arguments, self._reads_params(group), 1.0

    def _ends_in_fused_add(self, group: dict) -> bool:
        """Whether the rule's last op on the parameters is ``p.add_(u, alpha=a)`` with ``a`` not
        +-1. torch's CPU kernel computes it as one fused multiply-add (one rounding); computing
        ``a * u`` into zeros and adding it after would round twice, an ulp off torch's bits.
        (``addcdiv_``, Adam's and Adagrad's last op, rounds ``value * m / d`` before it adds:
        split in two it gives the same bits.) Default: False."""
        return False

    # --- state -------------------------------------------------------------------------------

    def _step_device(self, group: dict, p: Tensor) -> torch.device:
        """Where ``p``'s step counter lives: on its device with ``capturable=True`` or the flat
        path, else on the host (torch.optim's default)."""
        return p.device if group.get("capturable") or self.impl == "flat" else torch.device("cpu")

    def _new_step(self, group: dict, p: Tensor) -> Tensor:
        dtype = step_dtype(bool(group.get("fused")))
        step = torch.zeros((), dtype=dtype, device=self._step_device(group, p))
        if self.impl == "flat" and step.device.type != "cpu":
            self._unstepped[id(step)] = (weakref.ref(step), step._version)
        return step

    def _known_unstepped(self, step: Tensor | None) -> bool:
        """Whether ``step`` is a counter created here on a device and never counted since, so
        that a flat layout built from it may take it as 0 without reading it back (a device
        sync; on ``meta``, no value at all). Counted means any in-place op on it (its version
        counter moved: ``+= 1`` by this optimizer or by another that loaded this one's state
        and shares its counters, as torch's ``load_state_dict`` does, or a user's ``fill_``);
        an edit through ``.data`` moves no version and is not seen. Counters on the host are
        never taken as known: reading them costs no sync, and torch reads them (Adagrad makes
        them at construction, and one edited in place before the first step, ``fill_(10)``, had
        been taken as 0 by the eager flat path: its learning-rate decay restarted)."""
        held = self._unstepped.get(id(step))
        return held is not None and held[0]() is step and step._version == held[1]

    _none_is_missing: ClassVar[frozenset[str]] = frozenset()
    """State keys whose value ``None`` means "not made yet", as the reference's step reads them:
    SGD's ``momentum_buffer``, which torch reads with ``state.get("momentum_buffer")`` and makes
    from the gradient when that is None (torch <= 2.0 saved ``None`` for every stepped
    parameter, momentum or not, so such checkpoints hold them). Such state is made at the
    parameter's next step, as missing state is, in its place in the entry (as torch assigns it)."""

    def _ensure_state(self, group: dict, params: list[Tensor], states: list[dict]) -> list[bool]:
        """Create missing state (and state of :attr:`_none_is_missing` that is None); return,
        per parameter, whether any of it was new. A step counter that is not a tensor raises
        torch's ``RuntimeError`` (:meth:`_check_counters`). Called wherever a step reads the
        state afresh (not while a kept layout still holds: an entry assigned since, a counter
        set to ``0`` say, makes the next step read it afresh)."""
        keys = self._state_keys(group)
        nullable = self._none_is_missing
        compiling = torch.compiler.is_compiling()
        if (
            not compiling
            and (not self._counts_steps or _all_tensors(states, "step"))
            and all(_held(states, key, key in nullable) for key in keys)
        ):
            return [False] * len(params)  # the steady state, checked in C-level passes
        fresh = []
        for p, state in zip(params, states):
            new = False
            if self._counts_steps and "step" not in state:
                state["step"] = self._new_step(group, p)
                new = True
            for key in keys:
                if key not in state or (key in nullable and state.get(key) is None):
                    state[key] = self._new_state(group, p, key)
                    new = True
            fresh.append(new)
        if self._counts_steps and not compiling:
            self._check_counters(group, params, states)
        if any(fresh) and _repeats(params):
            # A parameter given twice is new at every occurrence: torch reads the whole group's
            # state before it updates any of it.
            created = {id(p) for p, new in zip(params, fresh) if new}
            fresh = [id(p) in created for p in params]
        return fresh

    def _check_counters(self, group: dict, params: list[Tensor], states: list[dict]) -> None:
        """torch's ``RuntimeError`` where a step counter is not a tensor (``state["step"] = 0``
        set by hand to restart the bias corrections), which torch.optim raises on every path
        before it updates any parameter of the group (ours had run into an ``AttributeError``
        of its own). The message is torch's, then which parameter and what was found. (A
        C-level pass, where a step reads the state afresh; torch skips it when compiling.)"""
        if _all_tensors(states, "step"):
            return
        position, step = next(
            (i, state.get("step"))
            for i, state in enumerate(states)
            if not isinstance(state.get("step"), Tensor)
        )
        p = params[position]
        where = next((i for i, q in enumerate(group["params"]) if q is p), position)
        index = next((i for i, g in enumerate(self.param_groups) if g is group), None)
        raise RuntimeError(
            "API has changed, `state_steps` argument must contain a list of singleton tensors "
            f"(as torch.optim: state['step'] of parameter {where} of param group {index} is "
            f"{step!r}, a {type(step).__name__}; the step counter is a 0-dim tensor: to restart "
            "it, state['step'].zero_(), or assign torch.tensor(0.0))"
        )

    def _host_arguments(
        self, group: dict, first_step: bool, beside_first_step: bool = False
    ) -> dict[str, Any]:
        """The rule's arguments, 1-element tensors as 0-dim ones: the rule's scalar arithmetic
        on them is tensor arithmetic, as torch's, and a host tensor becomes a number in the op
        that uses it (``optim._ops.host_number``). A rule may take ``first_step`` (its lists'
        state is new this step) and ``beside_first_step`` (it is not, but other tensors of the
        same device and dtype start theirs this step, where torch's foreach SGD updates its
        buffers one tensor at a time)."""
        arguments = self._rule_arguments(group)
        for name, value in arguments.items():
            if isinstance(value, Tensor):
                arguments[name] = value.detach().reshape(())
        if "first_step" in self._rule_keywords:
            arguments["first_step"] = first_step
        if "beside_first_step" in self._rule_keywords:
            arguments["beside_first_step"] = beside_first_step
        return arguments

    # --- step --------------------------------------------------------------------------------

    @without_grad
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one update of every param group; returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._amp_skips():
            return loss
        self._internally(self._step_groups)
        return loss

    @property
    def _step_supports_amp_scaling(self) -> bool:
        """Whether ``torch.amp.GradScaler`` hands this optimizer its scale and its inf check
        (``optimizer.grad_scale``, ``optimizer.found_inf``) instead of unscaling ``p.grad``
        itself first, as it does for torch's ``fused=True`` classes: here with ``fused=True``
        when every parameter is on the CPU and the installed torch's class takes it too
        (:meth:`_amp_skips`). On a GPU the skip would read ``found_inf`` back in the step, so
        the scaler unscales and decides itself there (the same parameters; a skipped step
        leaves ``p.grad`` unscaled, where torch's fused kernels leave it scaled)."""
        return (
            bool(self.defaults.get("fused"))
            and self._torch_fused_takes_amp_handover()
            and all(p.device.type == "cpu" for group in self.param_groups for p in group["params"])
        )

    @classmethod
    @functools.cache
    def _torch_fused_takes_amp_handover(cls) -> bool:
        """Whether the installed torch's namesake class declares ``_step_supports_amp_scaling``
        with ``fused=True`` (read from its constructors' sources, once; False where there is
        no namesake or a source cannot be read): torch 2.13's SGD, Adam, AdamW and Adagrad do,
        torch 2.11's Adagrad does not, and there the scaler unscales ``p.grad`` itself, for
        ours as for torch's."""
        constructors = [
            c.__init__
            for c in cls.__mro__
            if c.__module__.startswith("torch.optim") and c is not torch.optim.Optimizer
        ]  # (torch's AdamW declares it in its base class Adam's constructor)
        return torch_source_mentions("_step_supports_amp_scaling", constructors)

    def _amp_skips(self) -> bool:
        """GradScaler's handover to a ``fused=True`` step, as torch's fused kernels take it:
        True (skip the step: no parameter, state or step count changes, and ``p.grad`` stays
        scaled) where ``found_inf`` is nonzero; else ``p.grad /= grad_scale`` in place (the
        kernels' division, written back to ``p.grad``), then the step runs on the unscaled
        gradients. ``found_inf`` lies in host memory (:attr:`_step_supports_amp_scaling`), so
        reading it synchronises nothing. Nothing to do outside a scaler's step."""
        found_inf = getattr(self, "found_inf", None)
        grad_scale = getattr(self, "grad_scale", None)
        if (found_inf is None and grad_scale is None) or not self._step_supports_amp_scaling:
            return False
        if found_inf is not None and bool(found_inf):  # note: a read of host memory
            return True
        if grad_scale is not None:
            grads = [
                p.grad
                for group in self.param_groups
                for p in group["params"]
                if p.grad is not None and p.grad.layout == torch.strided
            ]  # (a sparse one: the step raises torch fused's error)
            if grads:
                torch._foreach_div_(grads, grad_scale.to(grads[0].device))
        return False

    def _internally(self, body: Callable[[], Any]) -> Any:
        """``body()`` as the optimizer's own code: its reads and writes of ``optimizer.state``'s
        entries are not counted as handed out (:meth:`TrackedState.enter`). In a step traced by
        ``torch.compile`` there is nothing to mark, and the state is not reached here: reached
        before the parameters, its keys became their source in the trace, dynamo then guarded
        each gradient by identity, and the trace recompiled at every step's new gradients.
        Eager, the rules' temporaries go into the optimizer's kept memory
        (``optim._paths.RoundTemporaries``)."""
        if torch.compiler.is_compiling():
            return body()
        state = self.state if isinstance(self.state, TrackedState) else None
        outer = None if state is None else state.enter()
        try:
            with _paths.temporaries_kept_in(self._round_temporaries):
                return body()
        finally:
            if state is not None:
                state.leave(outer)

    def _as_callers(self, call: Callable[[], Any]) -> Any:
        """``call()`` as code outside the optimizer's own, though run inside it (a closure
        called again in a step): its reads of ``optimizer.state``'s entries count as handed
        out (see :meth:`_internally`)."""
        state = self.state if isinstance(self.state, TrackedState) else None
        if state is None:
            return call()
        own = state.inside
        state.leave(None)
        try:
            return call()
        finally:
            state.leave(own)

    def _step_groups(self) -> None:
        """The body of :meth:`step`, after the closure."""
        unread = self._group_keys_unread
        keys = set() if unread is None else self.defaults.keys() - unread
        short = None  # (one pass: the first group missing a key torch's step reads, if any)
        if keys:
            groups = enumerate(self.param_groups)
            short = next((i for i, group in groups if not keys <= group.keys()), None)
        merged = (
            self._merged_steps()
            if self._per_tensor_arguments and len(self.param_groups) > 1 and short is None
            else ()
        )
        for index, group in enumerate(self.param_groups):
            if index == short:  # torch's KeyError at this group's turn, those before updated
                raise KeyError(next(key for key in keys if key not in group))
            params = group["params"]
            if index in merged or not params:  # (a group emptied in place: nothing, as torch)
                continue
            grads = [p.grad for p in params]  # (a listcomp: a user's torch.compile(step) traces it)
            compiling = torch.compiler.is_compiling()  # a user's torch.compile(step): plain lists
            impl = self._group_impl(group)
            steady_flat = impl == "flat" and not compiling
            if steady_flat and self._steady_flat_step(index, group, grads):
                continue  # (every gradient the layout's own view: none is None or sparse)
            if any(map(operator.is_, grads, itertools.repeat(None))):  # (a C-level pass)
                params = [p for p, g in zip(params, grads) if g is not None]
                grads = [g for g in grads if g is not None]
                if not params:
                    continue
            if (
                impl == "foreach"
                and not compiling
                and self._packed_step(index, group, params, grads)
            ):
                continue
            if any(map(_is_sparse, grads)):
                sparse = next(p for p, g in zip(params, grads) if _is_sparse(g))
                self._check_sparse(group, index, sparse)
                self._single_step(group, params)
            elif impl == "flat" and not compiling:  # (compiling: plain lists, below)
                self._flat_step(index, group, params)
            elif impl == "single" and compiling:  # (a ContextVar cannot be traced)
                self._single_step(group, params)
            elif impl == "single":
                with ops.tensor_method_numbers():  # (torch's for-loop path: Tensor.mul_'s bits)
                    self._single_step(group, params, keep_as=index)
            elif self._torch_default_loops(group) and not compiling:
                with ops.tensor_method_numbers():  # (the lists of the default path, those bits)
                    if self._complex_as_real and _decays_complex(group, params):
                        self._single_step(group, params, keep_as=index)  # (see its docstring)
                    else:
                        self._foreach_step(index, group, params)
            else:
                self._foreach_step(index, group, params)

    def _group_impl(self, group: dict) -> str:
        """The path of ``group``. torch.optim reads ``foreach`` per group (a group added with
        ``add_param_group({"params": ..., "foreach": False})`` runs its for-loop path), and
        so does this: a group's own ``foreach`` picks ``"foreach"`` or ``"single"`` when this
        optimizer runs one of those two (in float32 and float64 they give the same bits; in
        bfloat16 and float16, or complex with weight decay, torch's two paths differ by an ulp
        here and there). ``None``, or the constructor's own value, keeps this optimizer's path
        (``impl=`` may have named it: Schedule-Free's default ``foreach=True`` cannot be told
        from a True given). The flat path is the whole optimizer's."""
        if self.impl == "flat":
            return "flat"
        foreach = group.get("foreach")
        if foreach is None or foreach == self.defaults.get("foreach"):
            return self.impl
        return "foreach" if foreach else "single"

    def _check_sparse(self, group: dict, index: int, p: Tensor) -> None:
        position = next(i for i, q in enumerate(group["params"]) if q is p)
        where = f"parameter {position} of param group {index} (shape {tuple(p.shape)})"
        if not self._supports_sparse:
            raise RuntimeError(
                f"{type(self).__name__} does not support sparse gradients: {where} has one "
                f"({self._sparse_refusal})"
            )
        if group.get("fused"):
            raise RuntimeError(
                f"{type(self).__name__} with fused=True does not support sparse gradients: "
                f"{where} has one (as torch.optim's fused kernels, at the step); the default "
                "path, foreach=True or foreach=False accept them"
            )

    def _counted_steps(self, group: dict, states: list[dict]) -> list:
        """Count this update in every counter; the counts (numbers if they live on the host)."""
        if not self._counts_steps:
            return [None] * len(states)
        return self._count(group, [s["step"] for s in states])

    def _count(self, group: dict, counters: list[Tensor]) -> list:
        """Add one to every counter; the counts (numbers if they live on the host)."""
        if len(counters) == 1:  # (the one-tensor path, at every parameter: its own op is cheaper)
            counters[0].add_(1)
        else:
            torch._foreach_add_(counters, 1)
        if self.impl == "flat":
            for counter in counters:
                self._unstepped.pop(id(counter), None)
        on_host = counters[0].device.type == "cpu" and not group.get("capturable")
        if on_host and not torch.compiler.is_compiling():  # compiled: tensors, as torch's
            return [c.item() for c in counters]  # host-resident: reading is not a device sync
        return counters

    def _single_step(
        self,
        group: dict,
        params: list[Tensor],
        count_first: bool = False,
        keep_as: int | None = None,
    ) -> None:
        """torch's for-loop path: each parameter counted and updated in turn. ``count_first``:
        every counter is counted before the first update, as torch's fused kernels do (which
        is visible only for a parameter given twice: both its updates see the second count).
        ``keep_as``: the group's index, under which a steady group's lists are kept for the
        next step (:class:`OneByOne`), which then skips the state lookups and bookkeeping: a
        third of a one-tensor optimizer's step (torch's optimizer-in-backward pattern)."""
        if keep_as is not None:
            kept = self._layouts.get(keep_as)
            if kept and type(kept[0]) is OneByOne and self._steady(kept[0], group, params):
                self._run_one_by_one(group, kept[0])
                return
        states = self._states(group, params)
        fresh = self._ensure_state(group, params, states)
        keys = self._state_keys(group)
        counted = self._counted_steps(group, states) if count_first else None
        starting = _starting(_by_kind(params, fresh))
        besides = [not first and (p.device, p.dtype) in starting for p, first in zip(params, fresh)]
        by_kind = {
            kind: self._host_arguments(group, *kind) for kind in set(zip(fresh, besides))
        }  # (the group's values: the same for every parameter of a kind)
        for i, (p, state, first, beside) in enumerate(zip(params, states, fresh, besides)):
            steps = [counted[i]] if counted is not None else self._counted_steps(group, [state])
            arguments = by_kind[first, beside]
            buffers = {key: [state[key]] for key in keys}
            if _is_sparse(p.grad):
                self._sparse_update(p, p.grad, steps[0], buffers, arguments)
            else:
                grad, own_arguments = (
                    _complex_decay_first(p, p.grad, arguments)
                    if self._complex_as_real
                    else (p.grad, arguments)
                )
                if self._complex_update_added_as_complex and p.is_complex():
                    # the rule adds its update into -0.0s (-0.0 + u is u): then added as complex
                    update = torch.full_like(torch.view_as_real(p), -0.0)
                    call_rule(type(self)._rule, [update], [grad], steps, buffers, own_arguments)
                    p.add_(torch.view_as_complex(update))
                    continue
                call_rule(
                    type(self)._rule,
                    [p],
                    [grad],
                    steps,
                    buffers,
                    own_arguments,
                    self._complex_as_real,
                )
        if keep_as is None or any(fresh) or count_first:
            return
        stamp = self.state.stamp() if isinstance(self.state, TrackedState) else None
        if stamp is not None and all(p.dtype.is_floating_point for p in params):  # (no complex)
            counters, buffers = self._state_lists(states, keys)
            held = list(params)  # a copy: params may be the group's own list, reordered later
            kept = OneByOne(held, keys, counters, buffers, False, True, stamp, plain(held))
            self._layouts[keep_as] = [kept]

    def _run_one_by_one(self, group: dict, lists: OneByOne) -> None:
        """A step of :meth:`_single_step` over its kept lists (real tensors, dense gradients,
        state made before, none starting this step): each parameter counted and updated in
        turn, with the same arguments and ops."""
        arguments = self._host_arguments(group, False)
        rule, counters = type(self)._rule, lists.counters
        for i, p in enumerate(lists.params):
            steps = [None] if counters is None else self._count(group, [counters[i]])
            buffers = {key: [tensors[i]] for key, tensors in lists.buffers.items()}
            call_rule(rule, [p], [p.grad], steps, buffers, arguments, False)

    def _sparse_update(self, param, grad, step, buffers, arguments) -> None:
        """The update for a sparse gradient: the rule itself, unless the algorithm needs more.

        Weight decay would make the gradient dense; torch refuses it, and so does this.
        """
        weight_decay = arguments.get("weight_decay", 0)
        if ops.may_be_nonzero(weight_decay):
            raise RuntimeError(
                "weight_decay option is not compatible with sparse gradients, got "
                f"weight_decay={weight_decay!r}; use weight_decay=0 (as torch.optim)"
            )
        # torch's kernel adding a coalesced sparse tensor (a gradient from autograd, or
        # to_sparse()) into a dense one that starts at a storage offset applies the offset twice
        # (torch 2.13, CPU: zeros(200)[30:40].add_(sparse) writes elements 60-69; uncoalesced,
        # 30-39), so a view into a flat buffer (the flat path's parameters, the packed path's
        # state) would corrupt another tensor: such tensors are updated through copies of their
        # own, then copied back. (Adagrad's own sparse update adds uncoalesced tensors only.)
        dense = [param, *(tensors[0] for tensors in buffers.values())]
        offset = any(map(Tensor.storage_offset, dense))
        own = [t.clone(memory_format=torch.preserve_format) for t in dense] if offset else dense
        own_buffers = {key: [t] for key, t in zip(buffers, own[1:])} if offset else buffers
        try:
            call_rule(
                type(self)._rule,
                own[:1],
                [grad],
                [step],
                own_buffers,
                arguments,
                self._complex_as_real,
            )
        finally:  # (torch's error midway, SGD's Nesterov sum: what the rule did before it, kept
            # as torch's in-place ops keep it)
            if offset:
                torch._foreach_copy_(dense, own)

    def _states(self, group: dict, params: list[Tensor]) -> list[dict]:
        """Each parameter's state dict; a stateless update (plain SGD) keeps no entry, as torch."""
        if self._counts_steps or self._state_keys(group):
            return [self.state[p] for p in params]
        return [{} for _ in params]

    def _packed_step(
        self, index: int, group: dict, params: list[Tensor], grads: list[Tensor]
    ) -> bool:
        """The common case: the same small tensors as last step, their state still packed."""
        layouts = self._layouts.get(index)
        if not layouts or len(layouts) != 1 or not isinstance(layouts[0], Packed):
            return False
        packed = layouts[0]
        if any(map(operator.is_not, map(_LAYOUT, grads), itertools.repeat(torch.strided))):
            return False  # a sparse gradient: torch's error, or its sparse update, one by one
        if not self._still_valid(packed, params, group):
            return False
        return packed.step(type(self)._rule, params, grads, *self._packed_arguments(group))

    def _steady_flat_step(self, index: int, group: dict, grads: list[Tensor]) -> bool:
        """The flat path's common case: every parameter of the group laid out as last step, with
        a dense gradient: the layout's own view (nothing to copy) or a new one (torch's default
        ``zero_grad()``), copied into the flat gradient buffer. False (nothing done) otherwise."""
        layouts = self._layouts.get(index)
        if not layouts or len(layouts) != 1 or not isinstance(layouts[0], Flat):
            return False
        layout = layouts[0]
        views = layout.grads_in_place(grads)  # (dense by construction)
        if not views and not dense(grads):
            return False
        if not self._still_valid(layout, group["params"], group):
            return False
        self._run_flat(group, layout, False, None if views else self._spans(layout, grads))
        return True

    def _spans(self, layout: Flat, grads: list[Tensor]) -> list[tuple[int, int, Tensor]] | None:
        """The gradients of ``layout`` as spans of its buffers (see ``Flat.gradient_spans``);
        for a rule that is not elementwise, copied into the flat gradient buffer (None)."""
        if self._elementwise:
            return layout.gradient_spans(grads)
        layout.sync_grads(grads)
        return None

    def _foreach_step(self, index: int, group: dict, params: list[Tensor]) -> None:
        layouts = self._layouts.get(index)
        if layouts and type(layouts[0]) is SteadyLists and self._steady(layouts[0], group, params):
            steady = layouts[0]
            self._run_prepared(
                group,
                params,
                steady.counters,
                steady.buffers,
                False,
                steady.blocked,
                steady.real,
                kernel=True,
            )
            return
        repeats = _updated_over_one_another(params)  # (once per occurrence, on torch's lists)
        if (repeats or _grads_of_another_dtype(params)) and self._default_loops(group, params):
            self._layouts.pop(index, None)
            with ops.tensor_method_numbers():
                self._single_step(group, params, keep_as=index)
            return
        if repeats:
            self._layouts.pop(index, None)
            states = self._states(group, params)
            self._plain_step(group, params, states, self._ensure_state(group, params, states))
            return
        states = self._states(group, params)
        keys = self._state_keys(group)
        fresh = self._ensure_state(group, params, states)
        kind = (params[0].device, params[0].dtype)
        if (
            not torch.compiler.is_compiling()
            and not any(fresh)
            and all(map(operator.is_, map(_DTYPE, params), itertools.repeat(kind[1])))
            and all(map(operator.eq, map(_DEVICE, params), itertools.repeat(kind[0])))
        ):  # the common case, checked in C-level passes: one list
            lists = {(*kind, False): list(range(len(params)))}
        else:
            lists = _by_kind(params, fresh)
        layouts = []
        starting = _starting(lists)
        for (device, dtype, first), indices in lists.items():
            whole = len(indices) == len(params)
            ps = params if whole else [params[i] for i in indices]
            ss = states if whole else [states[i] for i in indices]
            fast = dtype in FAST_DTYPES and not first and not ps[0].is_complex()
            fast = fast and not torch.compiler.is_compiling() and plain(ps)
            packable = fast and len(lists) == 1 and len(ps) >= PACK_AT_LEAST
            packable = packable and bool(keys)  # no state to keep (plain SGD): one op per pass
            packable = packable and self._elementwise
            packable = packable and max(map(Tensor.numel, ps)) < self._packs_below(device)
            # (state of another shape: torch's error from the plain lists)
            packable = packable and packs_alike(ps, ss, keys)
            # (inference-mode state, made by a step under torch.inference_mode(): packing would
            # copy it into normal tensors, where torch's next step outside that mode raises)
            packable = packable and not any(
                s[key].is_inference() for s in ss for key in keys if isinstance(s[key], Tensor)
            )
            if packable and self._counts_steps:
                # Packing needs one count for every tensor, read from host-resident counters
                # (with capturable=True they live on the device, and nothing is packed).
                on_host = ss[0]["step"].device.type == "cpu" and not group.get("capturable")
                counts = torch.stack([s["step"] for s in ss]) if on_host else None
                packable = counts is not None and bool(counts.unique().numel() == 1)
            if packable:
                layout = Packed(ps, ss, keys)
                layouts.append(layout)
                grads = [p.grad for p in ps]
                if layout.step(type(self)._rule, ps, grads, *self._packed_arguments(group)):
                    continue
            # (a stateless rule, plain SGD, is one or two ops, and lists within one block are a
            # single round: blocks would only add overhead)
            blocked = fast and self._elementwise and bool(keys)
            blocked = blocked and sum(map(Tensor.numel, ps)) > _paths.list_round()
            blocked = blocked and _paths.caches_in_blocks(device)  # (a GPU: torch's lists)
            counters, buffers = self._state_lists(ss, keys)
            beside = not first and (device, dtype) in starting
            self._run_prepared(
                group, ps, counters, buffers, first, blocked, beside=beside, kernel=fast
            )
            if whole and not first and not layouts and not torch.compiler.is_compiling():
                stamp = self.state.stamp() if isinstance(self.state, TrackedState) else None
                if stamp is not None:  # kept, checked and reused by the next step
                    real = dtype.is_floating_point  # (one dtype: no complex tensor)
                    held = list(ps)  # a copy: ps may be the group's own list, reordered later
                    steady = SteadyLists(
                        held, keys, counters, buffers, blocked, real, stamp, plain(held)
                    )
                    layouts.append(steady)
        self._layouts[index] = layouts

    def _merged_steps(self) -> set[int]:
        """Run together, as one rule call, the param groups whose rule arguments differ only in
        :attr:`_per_tensor_arguments`; the indices of the groups it updated.

        Many param groups of a few small tensors each (per-layer learning rates, with weight
        decay on some tensors of each layer and not on others) spend most of a step in
        per-group overhead: each group is a rule call of several multi-tensor ops over a one-
        or two-tensor list. torch's foreach path also runs one group at a time; its for-loop
        path one tensor at a time. Here the groups that ran last step as plain lists
        (:class:`SteadyLists`: dense gradients, state unchanged, one device and dtype, real,
        plain tensors, not blocked, host counters) and whose other rule arguments are equal
        host numbers are concatenated into one list, up to ``optim._paths.list_round()`` elements
        a call, and ``lr`` goes in as one number per tensor. Each tensor's arithmetic is its
        group's: the rule's scalars are computed per tensor from its own ``lr``
        (``optim._ops.per_count``), and a scalar-list op is torch's op on each tensor
        (``_foreach_add_`` has no scalar list: it runs once per run of equal ``lr``), so the
        bits are those of one call per group. (Arguments are compared as numbers, so a
        hyperparameter of ``-0.0`` runs with groups of ``0.0``: in these rules both give the
        same bits, since each such zero is added to a term that is never ``-0.0``, multiplies
        a term that a non-negative one is added to after, or is tested ``!= 0``.) The
        groups are disjoint (torch refuses a parameter in two groups), so their order does not
        matter. Everything else runs group by group.
        """
        if self.impl != "foreach" or torch.compiler.is_compiling():
            return set()
        if any(self._group_impl(group) != "foreach" for group in self.param_groups):
            return set()  # (a group of its own path, foreach=False: each group on its own path)
        state = self.state
        if not isinstance(state, TrackedState):
            return set()
        stamp = state.stamp()
        plan = self._merge_plan
        if plan is not None and plan.stamp == stamp and plan.groups == len(self.param_groups):
            prepared = [self._still_merged(batch) for batch in plan.batches]
            if all(item is not None for item in prepared):
                for batch, (grads, per_tensor) in zip(plan.batches, prepared):
                    self._run_merged(batch, grads, per_tensor)
                return plan.merged
        self._merge_plan = None
        candidates: dict[tuple, tuple[list, list[int]]] = {}  # (groups, [elements]) by signature
        batches: list[MergedBatch] = []

        def run(candidate: list) -> None:
            if len(candidate) < 2:
                return
            batch = self._merged_batch(candidate)
            self._run_merged(batch, [p.grad for p in batch.params], self._per_tensor(batch))
            batches.append(batch)

        for index, group in enumerate(self.param_groups):
            layouts = self._layouts.get(index)
            steady = layouts[0] if layouts and len(layouts) == 1 else None
            if (
                type(steady) is not SteadyLists
                or steady.blocked
                or not steady.real
                or not steady.plain
                or group.get("capturable")
                or not self._steady(steady, group, group["params"])
                or _holds_containers(group)
            ):
                continue
            grads = [p.grad for p in steady.params]
            if any(map(operator.is_, grads, itertools.repeat(None))) or any(map(_is_sparse, grads)):
                continue
            arguments = self._host_arguments(group, first_step=False)
            if any(map(isinstance, arguments.values(), itertools.repeat(Tensor))):
                continue  # (compared as numbers only: a device tensor's value is never read)
            for name in self._per_tensor_arguments:
                del arguments[name]
            first = steady.params[0]
            try:
                signature = (first.device, first.dtype, *arguments.items())
                candidate, size = candidates.setdefault(signature, ([], [0]))
            except TypeError:  # (an unhashable argument: run on its own)
                continue
            elements = sum(map(Tensor.numel, steady.params))
            if size[0] + elements > _paths.list_round():  # (a call's temporaries: a round)
                run(candidate)
                candidate.clear()
                size[0] = 0
            candidate.append((index, steady, arguments))
            size[0] += elements
        for candidate, _ in candidates.values():
            run(candidate)
        merged = {index for batch in batches for index in batch.indices}
        if batches:
            self._merge_plan = MergePlan(stamp, len(self.param_groups), batches, merged)
        return merged

    def _merged_batch(self, candidate: list[tuple[int, SteadyLists, dict]]) -> MergedBatch:
        """The lists of the groups in ``candidate`` concatenated, and what :meth:`_still_merged`
        checks at the next step: the groups' dicts and their values but the per-tensor ones."""
        indices = [index for index, _, _ in candidate]
        groups = [self.param_groups[index] for index in indices]
        fingerprints = []
        for group in groups:
            skipped = ("params", *self._per_tensor_arguments)
            keys = tuple(key for key in group if key not in skipped)
            fingerprints.append((keys, tuple(map(group.__getitem__, keys)), len(group)))
        counters = None
        if self._counts_steps:
            counters = [c for _, steady, _ in candidate for c in steady.counters]
        return MergedBatch(
            indices,
            groups,
            [p for _, steady, _ in candidate for p in steady.params],
            [len(steady.params) for _, steady, _ in candidate],
            counters,
            {
                key: [t for _, steady, _ in candidate for t in steady.buffers[key]]
                for key in candidate[0][1].keys
            },
            candidate[0][2],
            fingerprints,
        )

    def _still_merged(self, batch: MergedBatch) -> tuple[list, dict] | None:
        """This step's gradients and per-tensor arguments of a batch of groups that ran
        together last step, if nothing that decided it changed (the state is checked by the
        caller): the same group dicts holding the same values (identity: a value assigned
        again, even an equal one, sends the step through the full check), the same parameters,
        dense gradients, and per-tensor arguments that are numbers. None otherwise."""
        param_groups = self.param_groups
        groups = [param_groups[index] for index in batch.indices]
        if not all(map(operator.is_, groups, batch.groups)):
            return None
        try:
            for group, (keys, values, size) in zip(groups, batch.fingerprints):
                if len(group) != size or not all(
                    map(operator.is_, map(group.__getitem__, keys), values)
                ):
                    return None
        except KeyError:  # (a key replaced by another)
            return None
        params = [p for group in groups for p in group["params"]]
        if not _identical(params, batch.params):
            return None
        grads = [p.grad for p in params]
        if any(map(operator.is_, grads, itertools.repeat(None))) or any(map(_is_sparse, grads)):
            return None
        per_tensor = self._per_tensor(batch)
        return (grads, per_tensor) if per_tensor is not None else None

    def _per_tensor(self, batch: MergedBatch) -> dict[str, list] | None:
        """Each per-tensor argument of the batch's groups, one value per tensor; None if one
        is not a number."""
        groups = batch.groups
        per_tensor = {}
        for name in self._per_tensor_arguments:
            values = [group[name] for group in groups]
            if any(map(isinstance, values, itertools.repeat(Tensor))):
                return None
            if len(values) != len(batch.params):  # (a group of several tensors)
                values = [v for v, n in zip(values, batch.counts) for _ in range(n)]
            per_tensor[name] = values
        return per_tensor

    def _run_merged(self, batch: MergedBatch, grads: list[Tensor], per_tensor: dict) -> None:
        """One rule call over the lists of the groups in ``batch`` (see :meth:`_merged_steps`)."""
        group = batch.groups[0]
        counters = batch.counters
        steps = [None] * len(batch.params) if counters is None else self._count(group, counters)
        arguments = {**batch.arguments, **per_tensor}
        call_rule(type(self)._rule, batch.params, grads, steps, batch.buffers, arguments, False)

    def _steady(self, lists: SteadyLists, group: dict, params: list[Tensor]) -> bool:
        """Whether last step's lists (or the learning-rate-free optimizers' kept chunks,
        ``optim._global.KeptChunks``, which hold the same ``params``, ``keys`` and ``stamp``)
        still describe this group: the same parameter objects, the same state keys, and no state
        entry assigned, added or removed since (the :class:`~optim._state.TrackedState` count).
        (A parameter whose ``.data`` changed dtype or device no longer matches its state:
        torch's error, from the same lists either way; the kept chunks also check each
        parameter's dtype and device.)"""
        state = self.state
        return (
            not torch.compiler.is_compiling()
            and isinstance(state, TrackedState)
            and state.stamp() == lists.stamp
            and _identical(params, lists.params)
            and self._state_keys(group) == lists.keys
        )

    def _default_loops(self, group: dict, params: list[Tensor]) -> bool:
        """Whether the default path (``foreach`` unset) runs ``params`` one after another, as
        torch's for-loop path, where they are a case whose numbers differ between torch's two
        paths: parameters that update the same memory more than once
        (:func:`_updated_over_one_another`; Adam over ``[p, q, p]``: 3e-3 apart after two
        steps), and gradients of another dtype than their parameters (torch's ``grad_dtype``:
        its foreach path refuses some and rounds others otherwise,
        :func:`_grads_of_another_dtype`). That is where torch's default is its for-loop path: on
        a CPU, or for a tensor subclass (``torch.optim.optimizer._default_to_fused_or_foreach``).
        Elsewhere (CUDA), and where a path was asked for (``impl="foreach"`` as
        ``foreach=True``), torch's foreach path's."""
        return (
            self._repeats_as_reference
            and group.get("foreach") is None
            and not getattr(self, "_path_given", False)  # (a pickle of an older version: unset)
            and not torch.compiler.is_compiling()
            and not _default_to_fused_or_foreach(params, differentiable=False)[1]
        )

    def _plain_step(
        self, group: dict, params: list[Tensor], states: list[dict], fresh: list[bool]
    ) -> None:
        """torch's foreach path over the lists as given, no layout or block of ours: one list
        per device, dtype and first step (so that an SGD buffer born this step is the gradient).
        For a group holding a parameter twice (torch updates it once per occurrence, each op over
        the list seeing the one before it) or parameters whose state starts at different steps."""
        keys = self._state_keys(group)
        lists = _by_kind(params, fresh)
        starting = _starting(lists)
        for (device, dtype, first), indices in lists.items():
            ps, ss = [params[i] for i in indices], [states[i] for i in indices]
            beside = not first and (device, dtype) in starting
            self._run_lists(group, ps, ss, keys, first, blocked=False, beside=beside)

    def _state_lists(self, states: list[dict], keys: tuple[str, ...]) -> tuple:
        """The step counters (None if not counted) and one list per state key, from ``states``."""
        counters = [s["step"] for s in states] if self._counts_steps else None
        return counters, {key: [s[key] for s in states] for key in keys}

    def _run_lists(self, group, params, states, keys, first, blocked, beside=False) -> None:
        counters, buffers = self._state_lists(states, keys)
        self._run_prepared(group, params, counters, buffers, first, blocked, beside=beside)

    def _run_prepared(
        self,
        group,
        params,
        counters,
        buffers,
        first,
        blocked,
        real=False,
        beside=False,
        kernel=False,
    ) -> None:
        """The rule over these lists (``counters``: the step counters, None if not counted;
        ``real``: known to hold no complex tensor; ``beside``: see :meth:`_host_arguments`;
        ``kernel``: the lists of one device and dtype that the default path runs, which
        :attr:`_kernel_step` may take)."""
        steps = [None] * len(params) if counters is None else self._count(group, counters)
        arguments = self._host_arguments(group, first, beside)
        grads = [p.grad for p in params]
        by_kernel = type(self)._kernel_step
        if kernel and by_kernel is not None and counters is None:
            rest = by_kernel(params, grads, buffers, arguments)
            if rest is not None:  # (what the kernel left to the rule)
                params, grads, buffers = rest
                if not params:
                    return
                steps = [None] * len(params)
                blocked = blocked and sum(map(Tensor.numel, params)) > _paths.list_round()
        as_real = self._complex_as_real and not real
        if not blocked:
            call_rule(type(self)._rule, params, grads, steps, buffers, arguments, as_real)
            return
        for round_ in blocked_rounds(params, grads, steps, buffers):
            call_rule(type(self)._rule, *round_, arguments, as_real)

    # --- the flat path -----------------------------------------------------------------------

    @classmethod
    def _fused_cpu_only(cls) -> bool:
        """Whether the installed torch's ``fused=True`` kernels of this class are CPU-only, so
        that its check at the step (``_device_dtype_check_for_fused``) refuses a CUDA parameter
        and its message lists no ``'cuda'``; ours then checks alike. Only Adagrad's were (torch
        2.11's)."""
        return False

    def _refuse_compiled_complex(self, params: list[Tensor]) -> None:
        """TypeError for a complex parameter under ``compile=True`` when the rule's complex
        arithmetic is not its real pairs' (see :attr:`_linear`)."""
        p = next((p for p in params if p.is_complex()), None)
        if p is not None:
            raise TypeError(
                f"{type(self).__name__}(compile=True) takes real parameters, got a {p.dtype} "
                f"one of shape {tuple(p.shape)}: its rule runs complex arithmetic on complex "
                "tensors, as its reference does, and the compiled kernel (no complex kernels in "
                "inductor) would run it on real pairs, another update; use compile=False"
            )

    def _flat_step(self, index: int, group: dict, params: list[Tensor]) -> None:
        keys = self._state_keys(group)
        layouts = self._layouts.get(index)
        by_kind: dict[tuple, list[int]] = {}
        if not (  # the common case: one device and dtype, laid out as last step
            layouts
            and len(layouts) == 1
            and isinstance(layouts[0], Flat)
            and self._still_valid(layouts[0], params, group)
        ):
            states = self._states(group, params)
            for i, p in enumerate(params):
                by_kind.setdefault((p.device, p.dtype), []).append(i)
            if (
                layouts is None
                or len(layouts) != len(by_kind)
                or len(layouts) == 1
                or not all(
                    isinstance(layout, Flat)
                    and layout.holds(
                        [params[i] for i in indices], [states[i] for i in indices], keys
                    )
                    for layout, indices in zip(layouts, by_kind.values())
                )
            ):
                layouts = None
        if layouts is None:
            if group.get("fused"):  # torch's RuntimeError for a parameter its fused kernels
                cpu_only = {"cuda_unsupported": True} if self._fused_cpu_only() else {}
                for p in params:  # refuse (meta, complex), checked as a layout is built
                    _device_dtype_check_for_fused(p, **cpu_only)  # (the keyword only where
                    # it is needed: a torch whose check lacks it still runs the rest)
                _refuse_fused_grad_dtypes(params)
                _refuse_fused_state_dtypes(params, states, keys)
            if self.compile and not self._complex_as_real and not self._linear:
                self._refuse_compiled_complex(params)
            if _updated_over_one_another(params):  # no layout holds a tensor twice: torch's
                self._layouts.pop(index, None)
                if self.compile:  # torch's fused kernels: all counted, then one by one
                    self._single_step(group, params, count_first=True)
                else:  # eager flat gives torch's foreach path's bits
                    fresh = self._ensure_state(group, params, states)
                    self._plain_step(group, params, states, fresh)
                return
            if _kept_where_they_lie(params, self.param_groups):  # torch's foreach bits, in place
                self._layouts.pop(index, None)
                self._plain_step(group, params, states, self._ensure_state(group, params, states))
                return
            fresh = self._ensure_state(group, params, states)
            if any(fresh) and not all(fresh):  # some started later: their counts differ
                self._layouts.pop(index, None)
                self._plain_step(group, params, states, fresh)
                return
            counts = {0.0}
            if self._counts_steps and not all(self._known_unstepped(s.get("step")) for s in states):
                # note: a CPU-GPU sync point, only when a layout is rebuilt after its tensors were
                # replaced (load_state_dict, p.data = ...), never in a steady-state step
                counts = {float(s["step"]) for s in states}
            if (
                len(counts) > 1
                or not states_fit(params, states, keys)
                or _grads_of_another_dtype(params)  # (a flat gradient buffer has one dtype)
            ):
                self._layouts.pop(index, None)  # torch's numbers (or error) from its lists
                self._run_lists(group, params, states, keys, first=False, blocked=False)
                return
            layouts = []
            for indices in by_kind.values():
                ps = [params[i] for i in indices]
                ss = [states[i] for i in indices]
                layouts.append(Flat(ps, ss, keys, self._counts_steps))
                layouts[-1].count = next(iter(counts))
            for counter in itertools.chain.from_iterable(lay.step_views for lay in layouts):
                self._unstepped.pop(id(counter), None)  # (laid in a layout: counted there)
            self._layouts[index] = layouts
            first_step = fresh[0]
        else:
            first_step = False
        for layout in layouts:
            spans = self._spans(layout, list(map(_paths._GRAD, layout.params)))
            self._run_flat(group, layout, first_step, spans)

    def _run_flat(
        self,
        group: dict,
        layout: Flat,
        first_step: bool,
        spans: list[tuple[int, int, Tensor]] | None = None,
    ) -> None:
        """The rule over ``layout``'s buffers, span by span of ``spans`` (see
        :meth:`~optim._paths.Flat.gradient_spans`; None: the flat gradient buffer, whole), and
        the update counted in the parameters' version counters (``Flat.params_updated``)."""
        self._flat_rule(group, layout, first_step, spans)
        layout.params_updated()

    def _flat_rule(
        self,
        group: dict,
        layout: Flat,
        first_step: bool,
        spans: list[tuple[int, int, Tensor]] | None,
    ) -> None:
        """The rule of :meth:`_run_flat`."""
        if layout.step_vector is not None:
            if not self.compile:  # (compiled: counted in the call, so a replay counts too)
                layout.step_vector.add_(1)
            # the host's copy of the count (eager scalars are host arithmetic), as torch's counter
            layout.count = _paths.next_count(layout.count, layout.step_vector.dtype)
        size = layout.flat_param.numel()
        if spans is None:
            spans = [(0, size, layout.flat_grad)]
        if self.compile:  # numbers as tensors or constants (optim._paths.CompiledNumbers)
            arguments = self._rule_arguments(group)
            if "first_step" in self._rule_keywords:
                arguments["first_step"] = first_step
            compiled_in = _paths.compiled_numbers(
                type(self)._rule, layout.flat_param.device, type(self)._per_step_arguments
            )
            self._compiled_call(layout, spans, layout.compiled_arguments(arguments, compiled_in))
            return
        rule = type(self)._rule
        arguments = self._host_arguments(group, first_step)
        steps = [None if layout.step_vector is None else layout.count]
        blocks = _paths.caches_in_blocks(layout.flat_param.device)
        if not blocks and len(spans) > 1:
            # A GPU: one call over the spans as lists, which each multi-tensor op takes in one
            # launch, where a call per span launched every op once more per new large gradient
            # (AdamWScheduleFree on 4x4M with new gradients, H200: 0.74 ms a step against the
            # default path's 0.46).
            state = {key: _spans_of(spans, flat) for key, flat in layout.buffers.items()}
            grads = [grad for _, _, grad in spans]
            params = _spans_of(spans, layout.flat_param)
            call_rule(
                rule, params, grads, steps * len(spans), state, arguments, self._complex_as_real
            )
            return
        by_kernel = type(self)._kernel_step
        if blocks and by_kernel is not None and layout.step_vector is None:
            params = [layout.flat_param[begin:end] for begin, end, _ in spans]
            state = {
                key: [flat[begin:end] for begin, end, _ in spans]
                for key, flat in layout.buffers.items()
            }
            grads = [grad for _, _, grad in spans]
            rest = by_kernel(params, grads, state, arguments, cut_tails=True)
            if rest is not None:  # (what the kernel left to the rule, in blocks)
                params, grads, state = rest
                if params:
                    for round_ in blocked_rounds(params, grads, [None] * len(params), state):
                        call_rule(rule, *round_, arguments, self._complex_as_real)
                return
        # Eager: the rule over one cache-sized block of a span at a time, as the blocked default
        # path (every op over a block before the next; temporaries a block in size).
        block_size = _paths.BLOCK if blocks and self._elementwise else size
        for begin, end, grad in spans:
            for start in range(begin, end, block_size):
                stop = min(start + block_size, end)
                whole = start == 0 and stop == size
                block = slice(start, stop)
                state = {
                    key: [flat if whole else flat[block]] for key, flat in layout.buffers.items()
                }
                in_span = slice(start - begin, stop - begin)
                call_rule(
                    rule,
                    [layout.flat_param if whole else layout.flat_param[block]],
                    [grad if stop - start == end - begin else grad[in_span]],
                    steps,
                    state,
                    arguments,
                    self._complex_as_real,
                )

    def _compiled_call(
        self, layout: Flat, spans: list[tuple[int, int, Tensor]], arguments: dict[str, Any]
    ) -> None:
        """The step counted in ``layout.step_vector`` (if it counts) and the compiled rule over
        ``layout``'s buffers: one kernel over the whole buffers, or, with several ``spans``, one
        call over the spans as lists (see :meth:`_compiled`). On CUDA the two are replayed as a
        graph once the same call repeats (``Flat.replayed``, which states why); the tensors of
        the call are the layout's own, which never move, but for the gradients, so these and
        the other arguments' values key it. Complex tensors go in as real pairs (inductor has
        no complex kernels)."""
        counter = layout.step_vector
        steps = [None] if counter is None else [counter[0]]
        if len(spans) > 1:
            spans_of = functools.partial(_spans_of, spans)
            rule = functools.partial(self._compiled(over_spans=True), type(self)._rule)
            params, grads = spans_of(layout.flat_param), [grad for _, _, grad in spans]
            state = {key: spans_of(flat) for key, flat in layout.buffers.items()}
            steps = steps * len(spans)
        else:
            rule, params, grads = self._compiled(), [layout.flat_param], [spans[0][2]]
            state = {key: [flat] for key, flat in layout.buffers.items()}

        def run() -> None:
            if counter is not None:
                counter.add_(1)
            call_rule(rule, params, grads, steps, state, arguments)

        values = [value for value in arguments.values() if not isinstance(value, Tensor)]
        layout.replayed(run, grads, (*values, *arguments))

    def _compiled(self, over_spans: bool = False) -> Callable[..., None]:
        """The rule compiled for this optimizer's buffers, for any later size too.

        The first buffer size gets a kernel specialised to it (30% faster than a dynamic-shape
        kernel for Adagrad on 16M elements, measured); a second size recompiles once with
        dynamic shapes, which then serve every size (Dynamo's automatic dynamic shapes). Dynamo
        caches one graph per dtype and static options; a process that builds many optimizers (a
        learning-rate grid over several models) needs more entries than its default limit of 8,
        so the limit is raised for this function's calls only. The compiled function is the
        process's :class:`~optim._paths.CompiledRule` of the rule, shared by every optimizer
        with that rule (Adam and AdamW share one), which on a CPU calls a graph it has seen
        compiled without Dynamo.

        ``over_spans``: :func:`rule_over_spans` compiled instead, called with the rule first.
        A layout holding tensors of ``BLOCK`` elements or more runs on its spans as lists, one
        span per large tensor and per run of smaller ones between them, when a large tensor has
        a new gradient (``Flat.gradient_spans``): one call, over the same lists at every step.
        It is another function, so Dynamo keeps its sizes apart from the whole buffers' (its
        first spans get a static graph; other spans, of another layout or optimizer class,
        recompile it once with dynamic shapes, as for the whole buffers): a call of the rule
        on spans after the whole buffer recompiled it with dynamic shapes, and Adam on 4
        tensors of 4M elements with new gradients ran at 0.74x torch fused's speed, where the
        list call gives 0.87-0.90x. That graph costs a compile of its own, longer with more
        spans (SGD, cold cache, this project's CPU: 21 s for 40 spans, 109 s for 400, which is
        why only tensors of ``BLOCK`` elements or more, few in any model, get spans).
        """
        if over_spans:
            if self._compiled_spans is None:
                self._compiled_spans = _paths.compiled_rule(rule_over_spans)
            return self._compiled_spans
        if self._compiled_rule is None:
            self._compiled_rule = _paths.compiled_rule(type(self)._rule)
        return self._compiled_rule

    # --- torch.optim API ---------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load torch's layout (from this class or its torch.optim namesake).

        Step counters end where this optimizer keeps them: on the host by default, on the
        parameter's device with ``capturable=True`` or the flat path (in :func:`step_dtype`
        there: float32 with ``fused`` or ``capturable``, as torch's). A counter on the host is
        kept as saved, in its dtype, as torch keeps it (a float64 counter of a process whose
        default dtype was float64 stays float64; an integer counter counts on as an integer).
        As in torch.optim, a loaded tensor already of the right device and dtype is kept, not
        copied: the state tensors of ``opt2.load_state_dict(opt1.state_dict())`` are
        ``opt1``'s own, the counters too, and a step of either advances both (the counters had
        been copied, so ``opt2``'s bias corrections fell behind its shared moments once
        ``opt1`` stepped again).
        """
        super().load_state_dict(state_dict)
        self._layouts.clear()
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if self._counts_steps and state and "step" in state:
                    step = state["step"]
                    if not isinstance(step, Tensor):
                        step = torch.tensor(float(step), device="cpu")
                    device = self._step_device(group, p)
                    on_host = device.type == "cpu" and step.device.type == "cpu"
                    if on_host:
                        state["step"] = step  # torch's: as saved (float64, an integer dtype)
                    else:
                        fused = group.get("fused") or group.get("capturable")  # (torch's)
                        state["step"] = step.to(device=device, dtype=step_dtype(bool(fused)))


FusedOptimizer = RuleOptimizer  # the first version's name, kept for existing imports
