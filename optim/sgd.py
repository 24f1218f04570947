"""Stochastic gradient descent with momentum (Polyak, 1964; Sutskever et al., 2013) and Nesterov."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import RuleOptimizer, _number, _repeats, check_nonnegative
from optim._paths import PACK_BELOW


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
    """
    if maximize:
        grads = list(torch._foreach_neg(grads))
    if ops.may_be_nonzero(weight_decay):
        grads = ops.add_scaled(grads, params, weight_decay)
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
        grads = ops.add_scaled(grads, buffers, momentum) if nesterov else buffers
    ops.add_scaled_(params, grads, ops.negated(lr))


class SGD(RuleOptimizer):
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

    State per parameter (torch's keys): ``momentum_buffer`` once momentum is used, laid out as
    its parameter (torch clones the first gradient, so its buffer takes that gradient's
    strides: the values are the same). Sparse gradients are accepted, as torch does.
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
        check_nonnegative(lr, "lr")
        check_nonnegative(momentum, "momentum")
        _number(dampening, "dampening")
        check_nonnegative(weight_decay, "weight_decay")
        momentum_value = _number(momentum, "momentum")
        if nesterov and (momentum_value <= 0 or _number(dampening, "dampening") != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening: nesterov=True needs "
                f"momentum > 0 and dampening == 0, got momentum={momentum!r}, "
                f"dampening={dampening!r}"
            )
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

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if ops.may_be_nonzero(group["momentum"]) else ()

    def _ensure_state(self, group: dict, params: list[Tensor], states: list[dict]) -> list[bool]:
        """As the base, except for a parameter given twice in one group at its buffer's first
        step: torch's SGD makes the momentum buffer inside the update, from the gradient, so
        every occurrence gets a buffer of its own and the state keeps the last one."""
        fresh = super()._ensure_state(group, params, states)
        if any(fresh) and _repeats(params):
            if self._group_impl(group) != "single" and not all(fresh):
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
        return super()._new_state(group, p, key)
