"""Stochastic gradient descent with momentum (Polyak, 1964; Sutskever et al., 2013) and Nesterov."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from optim import _foreach as F
from optim._base import FusedOptimizer, _number, check_nonnegative


def sgd_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: F.Scalar,
    momentum: F.Scalar,
    dampening: F.Scalar,
    weight_decay: F.Scalar,
    nesterov: bool,
    maximize: bool,
    first_step: bool,
) -> None:
    r"""One SGD step over lists of tensors, torch.optim.SGD's formulation.

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}\\
        b_t &= g_t \text{ on the first step, else } \mu b_{t-1} + (1-\tau) g_t\\
        d_t &= g_t + \mu b_t \text{ (Nesterov) or } b_t \text{ (momentum) or } g_t
            \text{ (no momentum)}\\
        \theta_t &= \theta_{t-1} - \gamma d_t

    ``state`` holds ``momentum_buffer`` (zeros until its first step) when momentum is used;
    ``steps`` is empty (SGD keeps no counter). The first step copies the gradient into the buffer,
    as torch does: dampening does not apply to it.
    """
    if maximize:
        grads = list(torch._foreach_neg(grads))
    if F.may_be_nonzero(weight_decay):
        grads = F.add_scaled(grads, params, weight_decay)
    if "momentum_buffer" in state:
        buffers = state["momentum_buffer"]
        if first_step:
            torch._foreach_copy_(buffers, grads)
        else:
            F.mul_(buffers, momentum)
            F.add_scaled_(buffers, grads, 1 - dampening)
        grads = F.add_scaled(grads, buffers, momentum) if nesterov else buffers
    F.add_scaled_(params, grads, -lr)


class SGD(FusedOptimizer):
    """Stochastic gradient descent, with momentum and Nesterov; drop-in for torch.optim.SGD.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate gamma >= 0 (default 1e-3, as torch); a float or a 0-dim tensor.
        momentum: momentum factor mu >= 0 (default 0).
        dampening: dampening tau for momentum (default 0).
        weight_decay: L2 penalty lambda >= 0 (default 0).
        nesterov: Nesterov momentum (Sutskever et al., 2013); needs momentum > 0 and dampening 0.
        maximize: maximise the objective (default False).
        impl, compile: execution path, see :class:`optim._base.FusedOptimizer`.

    State per parameter (torch's keys): ``momentum_buffer`` when momentum is used. See
    :func:`sgd_update` for the formula.
    """

    _rule = staticmethod(sgd_update)
    _counts_steps = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
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
                "nesterov=True needs momentum > 0 and dampening == 0, "
                f"got momentum={momentum!r}, dampening={dampening!r}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)

    def _init_state(self, group: dict, p: Tensor) -> dict[str, Tensor]:
        if not F.may_be_nonzero(group["momentum"]):
            return {}
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _buffer_keys(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if F.may_be_nonzero(group["momentum"]) else ()

    def _hyperparameters(self, group: dict, first_step: bool) -> dict[str, Any]:
        return {
            "lr": group["lr"],
            "momentum": group["momentum"],
            "dampening": group["dampening"],
            "weight_decay": group["weight_decay"],
            "nesterov": group["nesterov"],
            "maximize": group["maximize"],
            "first_step": first_step,
        }
