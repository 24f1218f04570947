"""Adagrad: Duchi, Hazan & Singer (2011), "Adaptive Subgradient Methods"."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import RuleOptimizer, check_nonnegative, torch_source_mentions
from optim._paths import TORCH_GRAIN


def adagrad_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[float] | list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: ops.Scalar,
    lr_decay: ops.Scalar,
    weight_decay: ops.Scalar,
    eps: ops.Scalar,
    maximize: bool,
) -> None:
    r"""One Adagrad step over lists of tensors (``steps`` already count this update).

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) + \lambda\theta_{t-1}, \qquad
        \tilde\gamma_t = \frac{\gamma}{1 + (t-1)\eta}\\
        s_t &= s_{t-1} + g_t^2, \qquad
        \theta_t = \theta_{t-1} - \tilde\gamma_t \frac{g_t}{\sqrt{s_t} + \epsilon}

    with ``eta = lr_decay``; ``state`` holds ``sum`` (s, started at ``initial_accumulator_value``).

    Example:
        >>> import torch, optim
        >>> p, g = [torch.tensor([1.0, -2.0])], [torch.tensor([0.5, 4.0])]
        >>> optim.adagrad_update(p, g, [1], {"sum": [torch.zeros(2)]}, lr=0.5, lr_decay=0.0,
        ...     weight_decay=0.0, eps=1e-10, maximize=False)
        >>> p[0].tolist()  # s = g^2, so the step is 0.5 * g / (|g| + 1e-10) = 0.5 sign(g)
        [0.5, -2.5]
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True); w.grad = g[0]  # torch's Adagrad:
        >>> torch.optim.Adagrad([w], lr=0.5).step(); w.tolist() == p[0].tolist()  # bit for bit
        True
    """
    # bfloat16 and float16 take torch's foreach order (the one-tensor path, its for-loop's)
    low_precision_order = ops.is_low_precision(params) and not ops.tensor_method_numbers_active()
    grads = ops.regularized_gradients(grads, params, maximize=maximize, weight_decay=weight_decay)
    if ops.on_device(steps):  # counters on the device: -lr / (1 + (t - 1) lr_decay) there
        negative_lr = ops.as_float64(steps)
        torch._foreach_sub_(negative_lr, 1)
        ops.mul_(negative_lr, lr_decay)
        torch._foreach_add_(negative_lr, 1)
        torch._foreach_reciprocal_(negative_lr)
        ops.mul_(negative_lr, -lr)
        (negative_lr,) = ops.computed_once(negative_lr)
    else:  # counters known on the host: torch's double arithmetic (its tensor arithmetic for a
        # tensor lr or lr_decay, whose results its foreach path keeps as tensors: held on a CPU)
        held = low_precision_order and params[0].is_cpu
        negative_lr = ops.per_count(
            lambda t, lr: -lr / (1 + (t - 1) * lr_decay), steps, lr, held=held
        )
    sums = state["sum"]
    torch._foreach_addcmul_(sums, grads, grads, value=1)
    denominators = ops.temporary(torch._foreach_sqrt, sums)
    ops.add_(denominators, eps)
    if ops.on_device(steps) or not low_precision_order:
        # torch's single-tensor arithmetic, p + value * (g / d): one op fewer than its foreach
        ops.addcdiv_(params, grads, denominators, negative_lr)
    else:  # low precision: torch's foreach order, bitwise: scale the gradient, then divide
        if maximize or ops.may_be_nonzero(weight_decay):  # grads is our copy: scale in place
            torch._foreach_mul_(grads, negative_lr)  # (for bf16, in place and out of place
            numerators = grads  # round differently in torch; this is torch's choice)
        else:
            numerators = torch._foreach_mul(grads, negative_lr)
        torch._foreach_addcdiv_(params, numerators, denominators)


class Adagrad(RuleOptimizer, torch.optim.Adagrad):
    """Adagrad (Duchi et al., 2011); drop-in for torch.optim.Adagrad.

    Args (torch.optim.Adagrad's, in its order; ``foreach`` is its 7th positional):
        params: parameters, named parameters or param-group dicts.
        lr: learning rate gamma >= 0 (default 1e-2); a float or a 1-element tensor.
        lr_decay: eta >= 0, the learning rate at step t is lr / (1 + (t - 1) * eta) (default 0).
        weight_decay: L2 penalty lambda >= 0 (default 0); not with sparse gradients.
        initial_accumulator_value: starting value >= 0 of the sum of squares (default 0). As
            in torch.optim.Adagrad, every tensor's sum starts at this constructor value
            (``self.defaults``), whatever its param group's ``initial_accumulator_value``.
        eps: epsilon >= 0 added to the denominator (default 1e-10).
        foreach, maximize, differentiable, fused: as torch.optim. Where the installed torch's
            fused Adagrad is CPU-only (torch 2.11's is, 2.13's is not), ``fused=True`` refuses
            a CUDA parameter at the step with torch's RuntimeError, as torch does.
        impl, compile: execution path, see :class:`optim._base.RuleOptimizer`.

    State per parameter (torch's keys, created at construction as torch does): ``step`` and
    ``sum``. A parameter with no state at a step (its group added by ``add_param_group``, or
    the state cleared) gets ``step`` 0 and ``sum`` at the constructor's value, as torch 2.13's
    Adagrad makes it there; torch 2.11's raised ``KeyError: 'sum'`` instead. Sparse
    gradients are accepted, with torch's sparse update (Duchi et al.'s update on the rows
    present). See :func:`adagrad_update` for the formula. ``share_memory()`` is
    torch.optim.Adagrad's own (this class is one): it moves every ``sum`` into shared memory,
    where each step then updates it in place (``optim._paths.in_fixed_memory``), so forked
    Hogwild workers accumulate into one ``sum``.

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([3.0]))
        >>> opt = optim.Adagrad([w], lr=0.5)
        >>> (w ** 2).sum().backward()
        >>> opt.step()  # the first step is lr * g / |g| = 0.5
        >>> w.detach()
        tensor([2.5000])
    """

    _rule = staticmethod(adagrad_update)
    _pack_below_on_cpu = TORCH_GRAIN  # (see RuleOptimizer._pack_below_on_cpu)
    _per_tensor_arguments = ("lr",)
    _torch_setstate_defaults: ClassVar[dict[str, Any]] = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "fused": None,
    }
    _supports_sparse = True
    _group_keys_unread = frozenset({"initial_accumulator_value"})  # (read with new state only)

    @classmethod
    @functools.cache
    def _fused_cpu_only(cls) -> bool:
        """torch's fused Adagrad ran on the CPU only in torch 2.11 (2.13's runs on CUDA too):
        its ``_init_group`` checks a fused parameter with ``cuda_unsupported=True`` there (read
        from its source; False where the source cannot be read)."""
        return torch_source_mentions("cuda_unsupported=True", [torch.optim.Adagrad._init_group])

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)
        for group in self.param_groups:
            self._ensure_state(group, group["params"], [self.state[p] for p in group["params"]])

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """torch.optim.Adagrad's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        check_nonnegative(values["lr"], "lr")
        check_nonnegative(values["lr_decay"], "lr_decay")
        check_nonnegative(values["weight_decay"], "weight_decay")
        check_nonnegative(values["initial_accumulator_value"], "initial_accumulator_value")
        check_nonnegative(values["eps"], "eps")
        super()._check_hyperparameters(values)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("sum",)

    def _new_state(self, group: dict, p: Tensor, key: str) -> Tensor:
        """torch's: ``self.defaults["initial_accumulator_value"]``, not the group's value (torch
        reads the constructor's, at construction and for state made later)."""
        value = self.defaults["initial_accumulator_value"]
        if torch.is_complex(p):
            value = complex(value, value)
        return torch.full_like(p, value, memory_format=torch.preserve_format)

    def _sparse_update(self, param, grad, step, buffers, arguments) -> None:
        """torch's sparse Adagrad: the update touches only the rows the gradient holds."""
        if ops.may_be_nonzero(arguments["weight_decay"]):
            super()._sparse_update(param, grad, step, buffers, arguments)  # raises
        if arguments["maximize"]:
            grad = -grad
        lr, lr_decay, eps = arguments["lr"], arguments["lr_decay"], arguments["eps"]
        learning_rate = lr / (1 + (step - 1) * lr_decay)
        grad = grad.coalesce()  # the update is non-linear, so indices must be unique
        indices, values = grad._indices(), grad._values()

        def sparse_like(new_values: Tensor) -> Tensor:
            return torch.sparse_coo_tensor(indices, new_values, grad.size())

        state_sum = buffers["sum"][0]
        state_sum.add_(sparse_like(values.pow(2)))
        std_values = state_sum.sparse_mask(grad)._values().sqrt_().add_(eps)
        param.add_(sparse_like(values / std_values), alpha=-learning_rate)
