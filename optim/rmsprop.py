"""RMSprop: Hinton's lecture 6e (2012); centered variant of Graves (2013)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import RuleOptimizer, check_interval, check_nonnegative
from optim._paths import TORCH_GRAIN


def rmsprop_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[float] | list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: ops.Scalar,
    alpha: ops.Scalar,
    eps: ops.Scalar,
    weight_decay: ops.Scalar,
    momentum: ops.Scalar,
    centered: bool,
    maximize: bool,
) -> None:
    r"""One RMSprop step over lists of tensors, torch.optim.RMSprop's formulation.

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}, \qquad
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2\\
        \tilde v_t &= v_t - \bar g_t^2,\ \bar g_t = \alpha\bar g_{t-1} + (1-\alpha) g_t
            \text{ (centered) else } v_t\\
        b_t &= \mu b_{t-1} + \frac{g_t}{\sqrt{\tilde v_t} + \epsilon},\quad \theta_t = \theta_{t-1}
            - \gamma b_t \text{ (momentum) else } \theta_{t-1} - \gamma\frac{g_t}{\sqrt{\tilde v_t}
            + \epsilon}

    ``state`` holds ``square_avg`` (v), ``grad_avg`` (centered) and ``momentum_buffer``
    (momentum > 0). The step counter is kept (torch keeps it) but does not enter the formula.

    Example:
        >>> import torch, optim
        >>> p, g = [torch.tensor([1.0, -2.0])], [torch.tensor([0.5, 4.0])]
        >>> optim.rmsprop_update(p, g, [1], {"square_avg": [torch.zeros(2)]}, lr=0.01, alpha=0.75,
        ...     eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False)
        >>> [round(v, 6) for v in p[0].tolist()]  # v = 0.25 g^2: 0.01 g / (0.5 |g|) = 0.02 sign(g)
        [0.98, -2.02]
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True); w.grad = g[0]  # torch's RMSprop:
        >>> torch.optim.RMSprop([w], lr=0.01, alpha=0.75).step(); w.tolist() == p[0].tolist()
        True
    """
    grads = ops.regularized_gradients(grads, params, maximize=maximize, weight_decay=weight_decay)
    square_avgs = state["square_avg"]
    ops.mul_(square_avgs, alpha)
    ops.addcmul_(square_avgs, grads, grads, 1 - alpha)
    if centered:
        grad_avgs = state["grad_avg"]
        ops.lerp_(grad_avgs, grads, 1 - alpha)
        denominators = ops.temporary(
            torch._foreach_addcmul, square_avgs, grad_avgs, grad_avgs, value=-1
        )
        torch._foreach_sqrt_(denominators)
    else:
        denominators = ops.temporary(torch._foreach_sqrt, square_avgs)
    ops.add_(denominators, eps)
    if "momentum_buffer" in state:
        buffers = state["momentum_buffer"]
        ops.mul_(buffers, momentum)
        torch._foreach_addcdiv_(buffers, grads, denominators)
        ops.add_scaled_(params, buffers, ops.negated(lr))
    else:
        ops.addcdiv_(params, grads, denominators, ops.negated(lr))


class RMSprop(RuleOptimizer, torch.optim.RMSprop):
    """RMSprop (Hinton, 2012; centered: Graves, 2013); drop-in for torch.optim.RMSprop.

    Args (torch.optim.RMSprop's, in its order):
        params: parameters, named parameters or param-group dicts.
        lr: learning rate gamma >= 0 (default 1e-2); a float or a 1-element tensor.
        alpha: smoothing constant in [0, 1] (default 0.99).
        eps: epsilon >= 0 added to the denominator (default 1e-8).
        weight_decay: L2 penalty lambda >= 0 (default 0).
        momentum: momentum factor mu >= 0 (default 0).
        centered: normalise by the estimated variance of the gradient (default False).
        capturable, foreach, maximize, differentiable: as torch.optim.
        impl, compile: execution path, see :class:`optim._base.RuleOptimizer`.

    State per parameter (torch's keys): ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0)
    and ``grad_avg`` (centered). See :func:`rmsprop_update` for the formula.

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = optim.RMSprop([w], lr=0.01, alpha=0.75)
        >>> (w ** 2).sum().backward()
        >>> opt.step()  # v = 0.25 g^2, so the step is lr * g / (0.5 |g|) = 0.02
        >>> w.detach()
        tensor([0.9800])
    """

    _rule = staticmethod(rmsprop_update)
    _pack_below_on_cpu = TORCH_GRAIN  # (see RuleOptimizer._pack_below_on_cpu)
    _per_tensor_arguments = ("lr",)
    _torch_setstate_defaults: ClassVar[dict[str, Any]] = {
        "momentum": 0,
        "centered": False,
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """torch.optim.RMSprop's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        check_nonnegative(values["lr"], "lr")
        check_interval(values["alpha"], "alpha", 0.0, 1.0, high_open=False)
        check_nonnegative(values["eps"], "eps")
        check_nonnegative(values["weight_decay"], "weight_decay")
        check_nonnegative(values["momentum"], "momentum")
        super()._check_hyperparameters(values)

    _step_size_argument = "lr"

    def _ends_in_fused_add(self, group: dict) -> bool:
        # with momentum p.add_(buf, alpha=-lr); without, addcdiv_ (which splits exactly)
        return ops.may_be_nonzero(group["momentum"]) and not ops.is_unit(group["lr"])

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        keys = ["square_avg"]
        if ops.may_be_nonzero(group["momentum"]):
            keys.append("momentum_buffer")
        if group["centered"]:
            keys.append("grad_avg")
        return tuple(keys)
