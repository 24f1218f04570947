"""Adam, AdamW and AMSGrad: Kingma & Ba (2015), Loshchilov & Hutter (2019), Reddi et al. (2018)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from optim import _foreach as F
from optim._base import FusedOptimizer, check_interval, check_nonnegative


def adam_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: F.Scalar,
    beta1: F.Scalar,
    beta2: F.Scalar,
    eps: F.Scalar,
    weight_decay: F.Scalar,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    r"""One Adam / AdamW step over lists of tensors (``steps`` already count this update).

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) \;(+\, \lambda\theta_{t-1} \text{ for Adam's L2 decay})\\
        \theta_{t-1} &\leftarrow (1 - \gamma\lambda)\,\theta_{t-1}
            \quad\text{(AdamW: decoupled decay)}\\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2\\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ (AMSGrad) else } v_t\\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    The scalars (bias corrections, step size) are 0-dim float64 tensors computed from the step
    counters on the device, so nothing synchronises with the host and float64 results match
    torch's double arithmetic. The step size multiplies the numerator (never divides), so
    ``lr = 0`` is exact. ``state`` holds ``exp_avg``, ``exp_avg_sq`` and, with AMSGrad,
    ``max_exp_avg_sq``.
    """
    if maximize:
        grads = list(torch._foreach_neg(grads))
    if F.may_be_nonzero(weight_decay):
        if decoupled_weight_decay:
            F.mul_(params, 1 - lr * weight_decay)
        else:
            grads = F.add_scaled(grads, params, weight_decay)
    exp_avgs, exp_avg_sqs = state["exp_avg"], state["exp_avg_sq"]
    F.lerp_(exp_avgs, grads, 1 - beta1)
    F.mul_(exp_avg_sqs, beta2)
    F.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)

    steps = F.as_float64(steps)
    negative_step_size = F.scalar_pow(beta1, steps)  # becomes -lr / (1 - beta1^t)
    torch._foreach_sub_(negative_step_size, 1)
    torch._foreach_reciprocal_(negative_step_size)
    F.mul_(negative_step_size, lr)
    bias_correction2_sqrt = F.scalar_pow(beta2, steps)  # becomes sqrt(1 - beta2^t)
    torch._foreach_neg_(bias_correction2_sqrt)
    torch._foreach_add_(bias_correction2_sqrt, 1)
    torch._foreach_sqrt_(bias_correction2_sqrt)
    negative_step_size, bias_correction2_sqrt = F.computed_once(
        negative_step_size, bias_correction2_sqrt
    )

    if amsgrad:
        torch._foreach_maximum_(state["max_exp_avg_sq"], exp_avg_sqs)
        denominators = torch._foreach_sqrt(state["max_exp_avg_sq"])
    else:
        denominators = torch._foreach_sqrt(exp_avg_sqs)
    F.div_(denominators, bias_correction2_sqrt)
    F.add_(denominators, eps)
    F.addcdiv_(params, exp_avgs, denominators, negative_step_size)


class Adam(FusedOptimizer):
    """Adam (Kingma & Ba, 2015), AMSGrad variant (Reddi et al., 2018); drop-in for torch.optim.Adam.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate gamma >= 0 (default 1e-3); a float or a 0-dim tensor.
        betas: (beta1, beta2), each in [0, 1) (default (0.9, 0.999)).
        eps: epsilon >= 0 added to the denominator (default 1e-8).
        weight_decay: L2 penalty lambda >= 0 added to the gradient (default 0).
        amsgrad: use the running maximum of the second moment (default False).
        maximize: maximise the objective instead of minimising (default False).
        impl, compile: execution path, see :class:`optim._base.FusedOptimizer`.

    State per parameter (torch's keys): ``step`` (0-dim float tensor on the parameter's device),
    ``exp_avg``, ``exp_avg_sq`` and, with AMSGrad, ``max_exp_avg_sq``. ``step`` counts the updates
    made, so the first update uses bias corrections ``1 - beta ** 1``. See :func:`adam_update` for
    the formula.
    """

    _rule = staticmethod(adam_update)
    _decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        check_nonnegative(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got betas={betas!r}")
        check_interval(betas[0], "betas[0]", 0.0, 1.0, high_open=True)
        check_interval(betas[1], "betas[1]", 0.0, 1.0, high_open=True)
        check_nonnegative(eps, "eps")
        check_nonnegative(weight_decay, "weight_decay")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": self._decoupled_weight_decay,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)

    def _init_state(self, group: dict, p: Tensor) -> dict[str, Tensor]:
        state = {
            "step": self._new_step(p),
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _buffer_keys(self, group: dict) -> tuple[str, ...]:
        keys = ("exp_avg", "exp_avg_sq")
        return (*keys, "max_exp_avg_sq") if group["amsgrad"] else keys

    def _hyperparameters(self, group: dict, first_step: bool) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        return {
            "lr": group["lr"],
            "beta1": beta1,
            "beta2": beta2,
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
            "amsgrad": group["amsgrad"],
            "maximize": group["maximize"],
            "decoupled_weight_decay": group.get(
                "decoupled_weight_decay", self._decoupled_weight_decay
            ),
        }


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019), Adam with decoupled weight decay; drop-in for AdamW.

    Same arguments as :class:`Adam` except ``weight_decay`` (default 1e-2), which multiplies the
    parameters by ``1 - lr * weight_decay`` before the Adam step instead of entering the gradient.
    """

    _decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad,
            maximize=maximize, impl=impl, compile=compile,
        )  # fmt: skip
