"""Adadelta: Zeiler (2012), "ADADELTA: An Adaptive Learning Rate Method"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import RuleOptimizer, check_interval, check_nonnegative


def adadelta_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[float] | list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: ops.Scalar,
    rho: ops.Scalar,
    eps: ops.Scalar,
    weight_decay: ops.Scalar,
    maximize: bool,
) -> None:
    r"""One Adadelta step over lists of tensors, torch.optim.Adadelta's formulation.

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}, \qquad
        v_t = \rho v_{t-1} + (1-\rho) g_t^2\\
        \Delta x_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t, \qquad
        u_t = \rho u_{t-1} + (1-\rho)\Delta x_t^2, \qquad
        \theta_t = \theta_{t-1} - \gamma\Delta x_t

    ``state`` holds ``square_avg`` (v) and ``acc_delta`` (u). The step counter is kept (torch keeps
    it) but does not enter the formula.

    Example:
        >>> import torch, optim
        >>> p, g = [torch.tensor([1.0, -2.0])], [torch.tensor([1.0, -1.0])]
        >>> state = {"square_avg": [torch.zeros(2)], "acc_delta": [torch.zeros(2)]}
        >>> optim.adadelta_update(p, g, [1], state, lr=1.0, rho=0.5, eps=0.28125,
        ...     weight_decay=0.0, maximize=False)  # eps = 9/32, v = 0.5 g^2 = 16/32, u = 0
        >>> [round(v, 6) for v in p[0].tolist()]  # delta = sqrt(9/32) / sqrt(25/32) g = 0.6 g
        [0.4, -1.4]
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True); w.grad = g[0]  # torch's Adadelta:
        >>> torch.optim.Adadelta([w], rho=0.5, eps=0.28125).step(); w.tolist() == p[0].tolist()
        True
    """
    grads = ops.regularized_gradients(grads, params, maximize=maximize, weight_decay=weight_decay)
    square_avgs, acc_deltas = state["square_avg"], state["acc_delta"]
    ops.mul_(square_avgs, rho)
    ops.addcmul_(square_avgs, grads, grads, 1 - rho)
    std = ops.temporary_add(square_avgs, eps)
    torch._foreach_sqrt_(std)
    deltas = ops.temporary_add(acc_deltas, eps)
    torch._foreach_sqrt_(deltas)
    torch._foreach_div_(deltas, std)
    torch._foreach_mul_(deltas, grads)
    ops.mul_(acc_deltas, rho)
    ops.addcmul_(acc_deltas, deltas, deltas, 1 - rho)
    ops.add_scaled_(params, deltas, ops.negated(lr))


class Adadelta(RuleOptimizer, torch.optim.Adadelta):
    """Adadelta (Zeiler, 2012); drop-in for torch.optim.Adadelta.

    Args (torch.optim.Adadelta's, in its order):
        params: parameters, named parameters or param-group dicts.
        lr: coefficient gamma >= 0 scaling the delta (default 1.0); a float or a 1-element tensor.
        rho: decay of the running averages, in [0, 1] (default 0.9).
        eps: epsilon >= 0 for numerical stability (default 1e-6).
        weight_decay: L2 penalty lambda >= 0 (default 0).
        foreach, capturable, maximize, differentiable: as torch.optim.
        impl, compile: execution path, see :class:`optim._base.RuleOptimizer`.

    State per parameter (torch's keys): ``step``, ``square_avg``, ``acc_delta``. See
    :func:`adadelta_update` for the formula.

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = optim.Adadelta([w], rho=0.0, eps=0.0625)
        >>> (w ** 2).sum().backward()  # g = 2, v = 4: delta = sqrt(0.0625) / sqrt(4.0625) * 2
        >>> opt.step()
        >>> round(w.item(), 4)
        0.7519
    """

    _rule = staticmethod(adadelta_update)
    _per_tensor_arguments = ("lr",)
    _complex_update_added_as_complex = True  # (torch's for-loop path: param.add_ on complex)
    _torch_setstate_defaults: ClassVar[dict[str, Any]] = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """torch.optim.Adadelta's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        check_nonnegative(values["lr"], "lr")
        check_interval(values["rho"], "rho", 0.0, 1.0, high_open=False)
        check_nonnegative(values["eps"], "eps")
        check_nonnegative(values["weight_decay"], "weight_decay")
        super()._check_hyperparameters(values)

    _step_size_argument = "lr"

    def _ends_in_fused_add(self, group: dict) -> bool:
        return not ops.is_unit(group["lr"])  # p.add_(delta, alpha=-lr); the default lr=1 splits

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("square_avg", "acc_delta")
