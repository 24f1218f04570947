"""Stochastic gradient descent with momentum (Polyak, 1964; Sutskever et al., 2013) and Nesterov."""

from __future__ import annotations

import functools
import itertools
import operator
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import RuleOptimizer, _number, _repeats, check_nonnegative
from optim._paths import (
    _DEVICE,
    _DTYPE,
    FAST_DTYPES,
    PACK_BELOW,
    plain,
    run_below_autograd,
)


def sgd_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[float] | list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: ops.Scalar,
    momentum: ops.Scalar,
    dampening: ops.Scalar,
    weight_decay: ops.Scalar,
    nesterov: bool,
    maximize: bool,
    first_step: bool,
    beside_first_step: bool = False,
) -> None:
    r"""One SGD step over lists of tensors, torch.optim.SGD's formulation.

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}\\
        b_t &= g_t \text{ on the first step, else } \mu b_{t-1} + (1-\tau) g_t\\
        d_t &= g_t + \mu b_t \text{ (Nesterov) or } b_t \text{ (momentum) or } g_t
            \text{ (no momentum)}\\
        \theta_t &= \theta_{t-1} - \gamma d_t

    ``state`` holds ``momentum_buffer`` (zeros until its first step) when momentum is used;
    ``steps`` is unused (SGD keeps no counter). The first step copies the gradient into the buffer,
    as torch does: dampening does not apply to it. ``beside_first_step``: other buffers of the
    same device and dtype are born this step, so torch's foreach path updates these one tensor
    at a time, ``b.mul_(mu).add_(g, alpha=1 - tau)``, whose ``mul_`` multiplies a bfloat16 or
    float16 tensor by the number in float32, where its multi-tensor ``_foreach_mul_`` first rounds
    the number to the tensors' dtype (see ``ops.tensor_mul_``): the same op here gives its bits
    (float32 and float64 are the same either way).

    Example:
        >>> import torch, optim
        >>> p, g, b = [torch.tensor([1.0, -2.0])], [torch.tensor([0.5, 4.0])], [torch.zeros(2)]
        >>> optim.sgd_update(p, g, [1], {"momentum_buffer": b}, lr=0.25, momentum=0.9,
        ...     dampening=0.5, weight_decay=0.0, nesterov=False, maximize=False, first_step=True)
        >>> p[0].tolist(), b[0].tolist()  # b = g (not 0.5 g: no dampening yet), p - 0.25 * b
        ([0.875, -3.0], [0.5, 4.0])
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True); w.grad = g[0]  # torch's SGD:
        >>> torch.optim.SGD([w], lr=0.25, momentum=0.9, dampening=0.5).step()
        >>> w.tolist() == p[0].tolist()  # bit for bit
        True
    """
    grads = ops.regularized_gradients(grads, params, maximize=maximize, weight_decay=weight_decay)
    if "momentum_buffer" in state:
        buffers = state["momentum_buffer"]
        if first_step:  # b_1 = g_1, a copy as torch's clone (0.0 + -0.0 would be +0.0)
            if grads[0].is_sparse:  # (one at a time) into its sparse zeros: torch's sparse clone
                torch._foreach_add_(buffers, grads)
            else:  # (one copy_ each: DTensor has no sharding rule for _foreach_copy_)
                for buffer, grad in zip(buffers, grads):
                    buffer.copy_(grad)
        elif beside_first_step:
            alpha = ops.host_number(1 - dampening)
            for buffer, grad in zip(buffers, grads):
                buffer.mul_(momentum).add_(grad, alpha=alpha)
        else:
            ops.mul_(buffers, momentum)
            ops.add_scaled_(buffers, grads, 1 - dampening)
        if nesterov and grads[0].is_sparse and not buffers[0].is_sparse:
            # (a sparse gradient after dense steps, one tensor at a time) torch's own
            # ``grad.add(buf, alpha=momentum)``, which refuses sparse + dense: its RuntimeError,
            # the buffer updated and the parameter not, as torch's for-loop path leaves them
            alpha = ops.host_number(momentum)
            grads = [grad.add(buffer, alpha=alpha) for grad, buffer in zip(grads, buffers)]
        elif nesterov:
            grads = ops.temporary_add_scaled(grads, buffers, momentum)
        else:
            grads = buffers
    ops.add_scaled_(params, grads, ops.negated(lr))


KERNEL_BULK = 64
"""A tensor runs torch's fused CPU kernel (see :func:`kernel_step`) only if its size is a multiple
of this. 64 is a multiple of every SIMD width (16 float32 in a 512-bit register) and of the
64-byte cache line by which the kernel splits a tensor between threads, so each element then
takes the kernel's vectorised body. Its scalar loop, for the last ``numel % width`` elements,
rounds otherwise (a multiply-add fused by the compiler: an ulp off torch's for-loop path in about
one of those elements in three, torch 2.13, x86). Splitting a user's tensor, the kernel over its
bulk and the rule over the rest, cost more than it saved (measured on this project's 2-core
CPU): the views took 30-100 us for 4 tensors of 100000 elements, and SGD on 800 tensors of 4000
elements took 24.5 ms a step so, 6.3 ms by the rule alone. The eager flat path's few spans of
its own buffers are cut so (``cut_tails`` in :func:`kernel_step`): two slices per span."""

KERNEL_FROM = 1 << 13
"""Elements from which a tensor's momentum step runs torch's fused kernel (see :func:`kernel_step`);
a smaller one runs the rule."""

KERNEL_TOTAL_FROM = 1 << 17
"""Elements from which a list's momentum step runs torch's fused kernel at all.

The kernel reads and writes each element once where the rule's three ops stream the buffer five
times, but it runs each tensor on all threads whatever its size (a fork and join per tensor),
and a list that stays in cache saves little traffic. Measured on this project's 2-core CPU
(torch 2.13, two optimizers of each kind stepped in turn, in alternating order; step time with
the rule over step time with the kernel): 1000 tensors of 2048 elements 0.70, 100 of 4096
0.90, 32 of 8192 1.17, 16 of 8192 1.00, 2 of 8192 0.88; 1 of 16384 0.89, 8 of 16384 1.12;
1 of 65536 0.99, 2 of 65536 1.12, 1 of 131072 1.06, 4 of 32768 1.16, 1 of 262144 1.20."""


@functools.cache
def kernel_gives_rule_bits(
    dtype: torch.dtype, nesterov: bool, decays: bool, dampens: bool, maximize: bool
) -> bool:
    """Whether torch's fused CPU SGD kernel (``torch._fused_sgd_``, what ``torch.optim.SGD(...,
    fused=True)`` runs) gives :func:`sgd_update`'s bits, which are torch's for-loop and foreach
    paths' bits, in its vectorised body for this configuration of a momentum step (not the first):
    ``dtype`` (float32 or float64), Nesterov or not, a weight decay, a dampening and
    ``maximize`` or not (each a branch of the kernel). Checked once per process and
    configuration on 4096 elements spread over 16 binades, with zeros of both signs, two steps,
    parameters, gradients and buffers compared bit for bit, signs of zeros included (a formula
    that differs, a multiply-add fused where the eager ops round twice, shows in a large share
    of them); False where this torch has no such kernel.

    Why: the kernel reads each parameter, gradient and buffer once and writes each parameter and
    buffer once, where the three eager ops stream the buffer five times (torch's for-loop path:
    ``b.mul_(mu).add_(g)``, ``p.add_(b, alpha=-lr)``). Whether a C++ compiler fused a multiply
    and an add into one rounding decides its bits, so they are measured here, not assumed: with
    torch 2.13's AVX2 kernels (x86, GCC) the vectorised body gives the eager bits in all 24
    configurations of dtype and branches, and the scalar tail differs in some."""
    kernel = getattr(torch, "_fused_sgd_", None)
    if kernel is None:
        return False
    generator = torch.Generator().manual_seed(0)
    on_cpu = {"dtype": dtype, "device": "cpu"}  # (whatever the default dtype and device)
    size = 4096
    scales = torch.logspace(-4, 4, size, **on_cpu)
    start = [torch.randn(size, generator=generator, **on_cpu) * scales for _ in range(3)]
    for i, t in enumerate(start):  # zeros of both signs, in different places in each tensor
        t[i::5] = 0.0
        t[i + 1 :: 10] = -0.0
    numbers = {
        "lr": 0.1,
        "momentum": 0.9,
        "dampening": 0.25 if dampens else 0.0,
        "weight_decay": 0.01 if decays else 0.0,
    }
    flags = {"nesterov": nesterov, "maximize": maximize}
    with torch.no_grad():
        ours = [t.clone() for t in start]
        theirs = [t.clone() for t in start]
        for gradient in (start[1], start[1].flip(0)):  # two steps, each with its gradient
            ours[1].copy_(gradient)
            theirs[1].copy_(gradient)
            p, g, b = ([t] for t in ours)
            sgd_update(p, g, [None], {"momentum_buffer": b}, **numbers, **flags, first_step=False)
            kernel(*([t] for t in theirs), **numbers, **flags, is_first_step=False)
    return all(map(_same_bits, ours, theirs))


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` hold the same values with the same signs (``torch.equal`` counts
    ``-0.0`` equal to ``0.0``)."""
    return torch.equal(a, b) and torch.equal(a.signbit(), b.signbit())


def kernel_step(
    params: list[Tensor],
    grads: list[Tensor],
    state: dict[str, list[Tensor]],
    arguments: dict[str, Any],
    cut_tails: bool = False,
) -> tuple[list[Tensor], list[Tensor], dict[str, list[Tensor]]] | None:
    """One momentum step of :func:`sgd_update`, bit for bit, run by torch's fused CPU kernel
    (``torch._fused_sgd_``) where this process measured that kernel giving the rule's bits
    (:func:`kernel_gives_rule_bits`), over the tensors it pays for: the lists the rule still
    has to run (parameters, gradients, state), or None (nothing done, the rule runs them all).
    ``cut_tails``: the tensors are 1-D slices of the optimizer's own flat buffers (the eager
    flat path's spans), whose version counters no user reads: one whose size is not a multiple
    of :data:`KERNEL_BULK` is cut (:func:`_cut_tails`), the kernel taking its bulk and the rule
    the few elements after it, where a user's tensor runs the rule whole (two counts in its
    version counter, where torch's for-loop path makes one).

    The kernel takes a step with momentum that is not the buffers' first, with hyperparameters
    that are numbers on the host, in a list of float32 or float64 CPU tensors of at least
    :data:`KERNEL_TOTAL_FROM` elements, while no dispatch or ``__torch_function__`` mode is
    active (a user's mode then sees torch's eager ops, not one fused op); of that list, each
    tensor of at least :data:`KERNEL_FROM` elements whose size is a multiple of
    :data:`KERNEL_BULK`, and which is a plain, contiguous tensor whose gradient and buffer have
    its dtype, device and shape (a ``channels_last`` or transposed one runs the rule). It runs
    past autograd's layers (``optim._paths.run_below_autograd``): the parameters' and buffers'
    version counters move once, the gradients' not at all, as torch's for-loop path leaves
    them; where that shortcut does not hold (grad mode on, an inference tensor), the rule runs
    them all.

    Measured on this project's 2-core CPU (torch 2.13, two optimizers of each kind stepped in
    turn, in alternating order), the default step against torch's faster eager path with the
    kernel / with the rule alone: 4 tensors of 4M elements 1.49x / 1.16x, 400 of 40k 1.55x /
    1.18x, 64 of 65536 1.43x / 1.15x."""
    buffers = state.get("momentum_buffer")
    if buffers is None or arguments["first_step"] or arguments.get("beside_first_step"):
        return None
    device, dtype = params[0].device, params[0].dtype  # (the checks of one tensor first)
    if (
        dtype not in FAST_DTYPES
        or device.type != "cpu"
        or torch._C._len_torch_dispatch_stack()
        or torch._C._is_torch_function_mode_enabled()
    ):
        return None
    # (momentum, dampening and weight decay as tensors: the rule's tensor arithmetic, 1 - t
    # rounded in t's dtype; lr only enters negated, exact either way)
    numbers = {key: arguments[key] for key in ("momentum", "dampening", "weight_decay")}
    numbers["lr"] = ops.host_number(arguments["lr"])
    if any(type(value) not in (float, int) for value in numbers.values()):
        return None
    if cut_tails:
        params, grads, buffers = _cut_tails(params, grads, buffers)
    sizes = list(map(Tensor.numel, params))
    if sum(sizes) < KERNEL_TOTAL_FROM:  # (C-level passes)
        return None
    chosen = [size >= KERNEL_FROM and size % KERNEL_BULK == 0 for size in sizes]
    if not any(chosen):
        return None
    lists = (params, grads, buffers)
    bulk = lists if all(chosen) else _chosen(lists, chosen)
    if not _fits_the_kernel(bulk, device, dtype):  # (C-level passes; else one tensor at a time)
        chosen = [
            kept and _fits_the_kernel(tuple([t] for t in trio), device, dtype)
            for kept, trio in zip(chosen, zip(*lists))
        ]
        if not any(chosen):
            return None
        bulk = _chosen(lists, chosen)
    rest = _chosen(lists, [not kept for kept in chosen])
    flags = {"nesterov": arguments["nesterov"], "maximize": arguments["maximize"]}
    decays, dampens = numbers["weight_decay"] != 0, numbers["dampening"] != 0
    if not kernel_gives_rule_bits(dtype, flags["nesterov"], decays, dampens, flags["maximize"]):
        return None

    def kernel() -> None:
        torch._fused_sgd_(*bulk, **numbers, **flags, is_first_step=False)

    if bulk[0] and not run_below_autograd(kernel, [*bulk[0], *bulk[2]]):
        return None
    return rest[0], rest[1], {"momentum_buffer": rest[2]}


def _cut_tails(
    params: list[Tensor], grads: list[Tensor], buffers: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """The three aligned lists with each 1-D parameter, gradient and buffer of at least
    :data:`KERNEL_FROM` elements whose size is not a multiple of :data:`KERNEL_BULK` replaced
    by two slices: its bulk, the largest multiple, then its tail (the rule is elementwise:
    any cut gives its bits)."""
    cut: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for trio in zip(params, grads, buffers):
        size = trio[0].numel()
        bulk = size - size % KERNEL_BULK
        if size >= KERNEL_FROM and bulk != size and all(t.shape == (size,) for t in trio):
            for pieces, t in zip(cut, trio):
                pieces.extend((t[:bulk], t[bulk:]))
        else:
            for pieces, t in zip(cut, trio):
                pieces.append(t)
    return cut


def _chosen(lists: tuple, chosen: list[bool]) -> tuple:
    """Each of ``lists`` with only its items where ``chosen`` is true."""
    return tuple([t for t, kept in zip(ts, chosen) if kept] for ts in lists)


def _fits_the_kernel(lists: tuple, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether parameters, gradients and buffers (three aligned lists) are all plain,
    contiguous tensors of ``device`` and ``dtype``, each gradient and buffer of its parameter's
    shape: what torch's fused kernel reads as flat arrays, element for element."""
    params, grads, buffers = lists
    tensors = [*params, *grads, *buffers]
    return (
        plain(tensors)
        and all(map(operator.is_, map(_DTYPE, tensors), itertools.repeat(dtype)))
        and all(map(operator.eq, map(_DEVICE, tensors), itertools.repeat(device)))
        and all(map(Tensor.is_contiguous, tensors))
        and list(map(Tensor.size, grads)) == list(map(Tensor.size, params))
        and list(map(Tensor.size, buffers)) == list(map(Tensor.size, params))
    )


class SGD(RuleOptimizer, torch.optim.SGD):
    """Stochastic gradient descent, with momentum and Nesterov; drop-in for torch.optim.SGD.

    Args (torch.optim.SGD's, in its order):
        params: parameters, named parameters or param-group dicts.
        lr: learning rate gamma >= 0 (default 1e-3, as torch); a float or a 1-element tensor.
        momentum: momentum factor mu >= 0 (default 0); may change between steps (a momentum
            schedule): the buffer is created, from the gradient, at the first step with mu != 0.
        dampening: dampening tau for momentum (default 0).
        weight_decay: L2 penalty lambda >= 0 (default 0).
        nesterov: Nesterov momentum (Sutskever et al., 2013); needs momentum > 0 and dampening 0.
        maximize, foreach, differentiable, fused: as torch.optim.
        impl, compile: execution path, see :class:`optim._base.RuleOptimizer`.

    State per parameter (torch's keys): ``momentum_buffer`` once momentum is used, made as
    torch's, from the first gradient: of its dtype and strides (which differ from the
    parameter's only for a gradient set by hand, or kept in another dtype with torch's
    ``grad_dtype``; such a group then runs torch's lists, for its bits). Sparse gradients are
    accepted, as torch does (with Nesterov momentum, a sparse gradient after dense steps,
    whose buffer is dense, raises torch's ``RuntimeError``, "add(sparse, dense) is not
    supported", as torch's ``grad.add(buf, alpha=momentum)`` does). A ``momentum_buffer`` that
    is ``None`` (as torch <= 2.0 saved it) is made at the parameter's next step, as torch does.
    ``step()`` leaves ``p.grad`` as it was on every path, as torch's for-loop path does
    (its foreach path, with ``nesterov=True``, adds the momentum term into ``p.grad`` in
    place). See :func:`sgd_update` for the formula.

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = optim.SGD([w], lr=0.25, momentum=0.5)
        >>> for _ in range(2):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()  # gradient 2w
        ...     opt.step()
        >>> w.detach()  # 1 - 0.25 * 2 = 0.5, then 0.5 - 0.25 * (0.5 * 2 + 1) = 0
        tensor([0.])
    """

    _rule = staticmethod(sgd_update)
    _kernel_step = staticmethod(kernel_step)
    _per_tensor_arguments = ("lr",)
    _torch_setstate_defaults: ClassVar[dict[str, Any]] = {
        "nesterov": False,
        "maximize": False,
        "foreach": None,
        "differentiable": False,
        "fused": False,
    }
    _counts_steps = False
    _supports_sparse = True
    _group_keys_unread = frozenset({"differentiable"})  # (torch's SGD step never reads it)
    _complex_as_real = False  # torch.optim.SGD runs complex arithmetic on complex tensors
    _pack_below = PACK_BELOW // 8
    """A rule of one to three ops. With momentum, against torch's foreach path on this
    project's 2-core CPU, packed / blocked lists: 1.6-1.9x / 1.0x on 2000 tensors of 1k,
    0.95-1.4x / 1.14-1.16x on 800 of 4k, 0.7-1.1x / 1.19-1.25x on 400 of 10k, 0.6-0.96x /
    1.05-1.08x on 200 of 15k, when the packed step gathered the parameters too; since it applies
    torch's ``p.add_(d, alpha=-lr)`` itself (``_step_size_argument``; weight decay still
    gathers them): 2.2x / 1.6x on 2000 of 1k, 1.7x / 1.6x on 800 of 4k, 1.3x / 1.5x on 400 of
    10k, 1.25x / 1.4x on 200 of 15k, 1.2x / 1.6x on 400 of 40k (one run): packing still pays
    only for the smallest tensors."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """torch.optim.SGD's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        check_nonnegative(values["lr"], "lr")
        check_nonnegative(values["momentum"], "momentum")
        _number(values["dampening"], "dampening")
        check_nonnegative(values["weight_decay"], "weight_decay")
        momentum, dampening = values["momentum"], values["dampening"]
        if values["nesterov"] and (
            _number(momentum, "momentum") <= 0 or _number(dampening, "dampening") != 0
        ):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening: nesterov=True needs "
                f"momentum > 0 and dampening == 0, got momentum={momentum!r}, "
                f"dampening={dampening!r}"
            )
        super()._check_hyperparameters(values)

    @classmethod
    def _check_group(cls, group: Mapping[str, Any]) -> None:
        """A param group's checks: the constructor's, but for the Nesterov combination, which
        torch.optim.SGD refuses in its defaults only: a group with ``nesterov=True`` and momentum
        0 trains as plain SGD, and one with dampening as torch's step computes it."""
        super()._check_group({**group, "nesterov": False})

    _none_is_missing = frozenset({"momentum_buffer"})
    """torch's SGD reads ``state.get("momentum_buffer")`` and takes None for its first step
    (``clone(grad).detach()``): such a buffer is made at the parameter's next step, from its
    gradient, as a missing one (torch <= 2.0 saved ``momentum_buffer: None`` for every stepped
    parameter, with momentum 0 too)."""

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if ops.may_be_nonzero(group["momentum"]) else ()

    def _ensure_state(self, group: dict, params: list[Tensor], states: list[dict]) -> list[bool]:
        """As the base, except for a parameter given twice in one group at its buffer's first
        step: torch's SGD makes the momentum buffer inside the update, from the gradient, so
        every occurrence gets a buffer of its own and the state keeps the last one."""
        fresh = super()._ensure_state(group, params, states)
        if any(fresh) and _repeats(params):
            if (
                self._group_impl(group) != "single"
                and not self._default_loops(group, params)
                and not all(fresh)
            ):
                warnings.warn(
                    "SGD: a param group holds a parameter more than once and a momentum buffer "
                    "is made after the first step; torch's foreach path then updates the "
                    "buffers one parameter at a time, and this step's numbers differ from it "
                    "(foreach=False gives torch's for-loop path's); pass each parameter once",
                    UserWarning,
                    stacklevel=4,
                )
            last = {id(p): i for i, p in enumerate(params)}
            keys = self._state_keys(group)
            for i, (p, first) in enumerate(zip(params, fresh)):
                if first and last[id(p)] != i:
                    states[i] = {key: self._new_state(group, p, key) for key in keys}
        return fresh

    _step_size_argument = "lr"

    def _ends_in_fused_add(self, group: dict) -> bool:
        return not ops.is_unit(group["lr"])  # p.add_(d, alpha=-lr)

    def _new_state(self, group: dict, p: Tensor, key: str) -> Tensor:
        """Zeros; for a sparse gradient, a sparse buffer with no entries, so that its first step
        makes it the gradient's copy, sparse as torch's ``clone(grad)``: a sparse buffer then
        moves only the rows it holds, in torch's order of additions."""
        if p.grad is not None and p.grad.layout is not torch.strided:
            return torch.zeros_like(p.grad)
        if p.grad is not None and (p.grad.dtype != p.dtype or p.grad.stride() != p.stride()):
            # torch's buffer is the first gradient's clone: its dtype (a float32 gradient of a
            # bfloat16 parameter, torch's ``grad_dtype``) and its strides, which set the order
            # of torch's CPU kernels' loops (and so, in low precision, the bits)
            return torch.zeros_like(p.grad, memory_format=torch.preserve_format)
        return super()._new_state(group, p, key)
