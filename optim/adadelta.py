"""Adadelta: Zeiler (2012), "ADADELTA: An Adaptive Learning Rate Method"."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from optim import _foreach as F
from optim._base import FusedOptimizer, check_interval, check_nonnegative


def adadelta_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: F.Scalar,
    rho: F.Scalar,
    eps: F.Scalar,
    weight_decay: F.Scalar,
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
    """
    if maximize:
        grads = list(torch._foreach_neg(grads))
    if F.may_be_nonzero(weight_decay):
        grads = F.add_scaled(grads, params, weight_decay)
    square_avgs, acc_deltas = state["square_avg"], state["acc_delta"]
    F.mul_(square_avgs, rho)
    F.addcmul_(square_avgs, grads, grads, 1 - rho)
    std = F.add(square_avgs, eps)
    torch._foreach_sqrt_(std)
    deltas = F.add(acc_deltas, eps)
    torch._foreach_sqrt_(deltas)
    torch._foreach_div_(deltas, std)
    torch._foreach_mul_(deltas, grads)
    F.mul_(acc_deltas, rho)
    F.addcmul_(acc_deltas, deltas, deltas, 1 - rho)
    F.add_scaled_(params, deltas, -lr)


class Adadelta(FusedOptimizer):
    """Adadelta (Zeiler, 2012); drop-in for torch.optim.Adadelta.

    Args:
        params: parameters or param-group dicts.
        lr: coefficient gamma >= 0 scaling the delta (default 1.0); a float or a 0-dim tensor.
        rho: decay of the running averages, in [0, 1] (default 0.9).
        eps: epsilon >= 0 for numerical stability (default 1e-6).
        weight_decay: L2 penalty lambda >= 0 (default 0).
        maximize: maximise the objective (default False).
        impl, compile: execution path, see :class:`optim._base.FusedOptimizer`.

    State per parameter (torch's keys): ``step``, ``square_avg``, ``acc_delta``. See
    :func:`adadelta_update` for the formula.
    """

    _rule = staticmethod(adadelta_update)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        check_nonnegative(lr, "lr")
        check_interval(rho, "rho", 0.0, 1.0, high_open=False)
        check_nonnegative(eps, "eps")
        check_nonnegative(weight_decay, "weight_decay")
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)

    def _init_state(self, group: dict, p: Tensor) -> dict[str, Tensor]:
        return {
            "step": self._new_step(p),
            "square_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "acc_delta": torch.zeros_like(p, memory_format=torch.preserve_format),
        }

    def _buffer_keys(self, group: dict) -> tuple[str, ...]:
        return ("square_avg", "acc_delta")

    def _hyperparameters(self, group: dict, first_step: bool) -> dict[str, Any]:
        return {
            "lr": group["lr"],
            "rho": group["rho"],
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
            "maximize": group["maximize"],
        }
