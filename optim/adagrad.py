"""Adagrad: Duchi, Hazan & Singer (2011), "Adaptive Subgradient Methods"."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from optim import _foreach as F
from optim._base import FusedOptimizer, check_nonnegative


def adagrad_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: F.Scalar,
    lr_decay: F.Scalar,
    weight_decay: F.Scalar,
    eps: F.Scalar,
    maximize: bool,
) -> None:
    r"""One Adagrad step over lists of tensors (``steps`` already count this update).

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}, \qquad
        \tilde\gamma_t = \frac{\gamma}{1 + (t-1)\eta}\\
        s_t &= s_{t-1} + g_t^2, \qquad
        \theta_t = \theta_{t-1} - \tilde\gamma_t \frac{g_t}{\sqrt{s_t} + \epsilon}

    with ``eta = lr_decay``; ``state`` holds ``sum`` (s, started at ``initial_accumulator_value``).
    """
    if maximize:
        grads = list(torch._foreach_neg(grads))
    if F.may_be_nonzero(weight_decay):
        grads = F.add_scaled(grads, params, weight_decay)
    negative_lr = F.as_float64(steps)  # becomes -lr / (1 + (t - 1) * lr_decay)
    torch._foreach_sub_(negative_lr, 1)
    F.mul_(negative_lr, lr_decay)
    torch._foreach_add_(negative_lr, 1)
    torch._foreach_reciprocal_(negative_lr)
    F.mul_(negative_lr, -lr)
    (negative_lr,) = F.computed_once(negative_lr)
    sums = state["sum"]
    torch._foreach_addcmul_(sums, grads, grads)
    denominators = torch._foreach_sqrt(sums)
    F.add_(denominators, eps)
    F.addcdiv_(params, grads, denominators, negative_lr)


class Adagrad(FusedOptimizer):
    """Adagrad (Duchi et al., 2011); drop-in for torch.optim.Adagrad.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate gamma >= 0 (default 1e-2); a float or a 0-dim tensor.
        lr_decay: eta >= 0, the learning rate at step t is lr / (1 + (t - 1) * eta) (default 0).
        weight_decay: L2 penalty lambda >= 0 (default 0).
        initial_accumulator_value: starting value >= 0 of the sum of squares (default 0).
        eps: epsilon >= 0 added to the denominator (default 1e-10).
        maximize: maximise the objective (default False).
        impl, compile: execution path, see :class:`optim._base.FusedOptimizer`.

    State per parameter (torch's keys, created at construction as torch does): ``step`` and
    ``sum``. See :func:`adagrad_update` for the formula.
    """

    _rule = staticmethod(adagrad_update)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        check_nonnegative(lr, "lr")
        check_nonnegative(lr_decay, "lr_decay")
        check_nonnegative(weight_decay, "weight_decay")
        check_nonnegative(initial_accumulator_value, "initial_accumulator_value")
        check_nonnegative(eps, "eps")
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "maximize": maximize,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update(self._init_state(group, p))

    def _init_state(self, group: dict, p: Tensor) -> dict[str, Tensor]:
        value = group["initial_accumulator_value"]
        if torch.is_complex(p):
            value = complex(value, value)
        return {
            "step": self._new_step(p),
            "sum": torch.full_like(p, value, memory_format=torch.preserve_format),
        }

    def _buffer_keys(self, group: dict) -> tuple[str, ...]:
        return ("sum",)

    def _hyperparameters(self, group: dict, first_step: bool) -> dict[str, Any]:
        return {
            "lr": group["lr"],
            "lr_decay": group["lr_decay"],
            "weight_decay": group["weight_decay"],
            "eps": group["eps"],
            "maximize": group["maximize"],
        }
