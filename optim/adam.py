"""Adam, AdamW and AMSGrad: Kingma & Ba (2015), Loshchilov & Hutter (2019), Reddi et al. (2018)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import RuleOptimizer, check_betas, check_nonnegative
from optim._paths import TORCH_GRAIN


def adam_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list[float] | list[Tensor],
    state: dict[str, list[Tensor]],
    *,
    lr: ops.Scalar,
    beta1: ops.Scalar,
    beta2: ops.Scalar,
    eps: ops.Scalar,
    weight_decay: ops.Scalar,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    r"""One Adam / AdamW step over lists of tensors (``steps`` already count this update).

    torch.optim's foreach formulation, op for op (so low-precision results are bitwise torch's):

    .. math::
        g_t &= \pm\nabla f(\theta_{t-1}) \;(+\, \lambda\theta_{t-1} \text{ for Adam's L2 decay})\\
        \theta_{t-1} &\leftarrow (1 - \gamma\lambda)\,\theta_{t-1}
            \quad\text{(AdamW: decoupled decay)}\\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2\\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ (AMSGrad) else } v_t\\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    ``steps`` holds one count per tensor: Python numbers when the counters live on the host (the
    default, as in torch.optim), whose bias corrections are computed in double precision on the
    host exactly as torch does; or 0-dim tensors on the device (CUDA ``capturable=True``, the
    flat path), whose scalars are computed there in float64, so nothing synchronises. The step
    size multiplies the numerator (never divides), so ``lr = 0`` is exact. ``state`` holds
    ``exp_avg``, ``exp_avg_sq`` and, with AMSGrad, ``max_exp_avg_sq``.

    Example:
        >>> import torch, optim
        >>> p, g = [torch.tensor([1.0, -2.0])], [torch.tensor([0.5, 4.0])]
        >>> state = {"exp_avg": [torch.zeros(2)], "exp_avg_sq": [torch.zeros(2)]}
        >>> optim.adam_update(p, g, [1], state, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
        ...     weight_decay=0.0, amsgrad=False, maximize=False, decoupled_weight_decay=False)
        >>> [round(v, 6) for v in p[0].tolist()]  # m/(1-b1) = g, sqrt(v/(1-b2)) = |g|: 0.1 sign(g)
        [0.9, -2.1]
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True); w.grad = g[0]  # torch's Adam:
        >>> torch.optim.Adam([w], lr=0.1).step(); w.tolist() == p[0].tolist()  # bit for bit
        True
    """
    if decoupled_weight_decay and ops.may_be_nonzero(weight_decay):
        ops.mul_(params, ops.per_tensor(lambda lr: 1 - lr * weight_decay, lr))
    grads = ops.regularized_gradients(
        grads, params, maximize=maximize, weight_decay=0 if decoupled_weight_decay else weight_decay
    )
    exp_avgs, exp_avg_sqs = state["exp_avg"], state["exp_avg_sq"]
    ops.lerp_(exp_avgs, grads, 1 - ops.host_in_dtype_of(beta1, exp_avgs))
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    if amsgrad:
        torch._foreach_maximum_(state["max_exp_avg_sq"], exp_avg_sqs)
        denominators = ops.temporary(torch._foreach_sqrt, state["max_exp_avg_sq"])
    else:
        denominators = ops.temporary(torch._foreach_sqrt, exp_avg_sqs)

    if ops.on_device(steps):  # counters on the device: the scalars are 0-dim tensors there
        steps = ops.as_float64(steps)
        negative_step_size = ops.scalar_pow(beta1, steps)  # becomes -lr / (1 - beta1^t)
        torch._foreach_sub_(negative_step_size, 1)
        torch._foreach_reciprocal_(negative_step_size)
        ops.mul_(negative_step_size, lr)
        bias_correction2_sqrt = ops.scalar_pow(beta2, steps)  # becomes sqrt(1 - beta2^t)
        torch._foreach_neg_(bias_correction2_sqrt)
        torch._foreach_add_(bias_correction2_sqrt, 1)
        torch._foreach_sqrt_(bias_correction2_sqrt)
        negative_step_size, bias_correction2_sqrt = ops.computed_once(
            negative_step_size, bias_correction2_sqrt
        )
    else:  # counters known on the host: torch's own double arithmetic, one number per tensor
        negative_step_size = ops.per_count(lambda t, lr: (lr / (1 - beta1**t)) * -1, steps, lr)
        bias_correction2_sqrt = ops.per_count(lambda t: (1 - beta2**t) ** 0.5, steps)
    ops.div_(denominators, bias_correction2_sqrt)
    ops.add_(denominators, eps)
    ops.addcdiv_(params, exp_avgs, denominators, negative_step_size)


def _squeezed_betas(betas: Any) -> Any:
    """torch.optim.Adam's stored betas: a tensor beta squeezed to 0-dim (a 0-dim one is kept,
    the same object); anything else as given (refused by :meth:`Adam._check_hyperparameters`)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        return betas
    return tuple(
        beta.squeeze() if isinstance(beta, Tensor) and beta.dim() != 0 else beta for beta in betas
    )


def _check_tensor_lr(values: Mapping[str, Any]) -> None:
    """torch.optim.Adam's first check, its ``ValueError``: a tensor ``lr`` with
    ``foreach=True`` unless ``capturable`` (the default ``foreach=None`` accepts it)."""
    lr = values["lr"]
    if isinstance(lr, Tensor) and values["foreach"] and not values["capturable"]:
        raise ValueError(
            "lr as a Tensor is not supported for capturable=False and foreach=True "
            f"(as torch.optim.Adam; the default foreach=None accepts it), got lr={lr!r}"
        )


def _check_beta_kinds(values: Mapping[str, Any]) -> None:
    """The second half of torch.optim.Adam's betas refusals, after their ranges: both floats
    or both tensors, and tensors not with ``foreach=True`` unless ``capturable``."""
    betas = values["betas"]
    both_floats = all(isinstance(beta, float) for beta in betas)
    if not (both_floats or all(isinstance(beta, Tensor) for beta in betas)):
        raise ValueError(
            "betas must be either both floats or both Tensors (as torch.optim.Adam), got "
            f"betas={tuple(betas)!r}"
        )
    if not both_floats and values["foreach"] and not values["capturable"]:
        raise ValueError(
            "betas[0] as a Tensor is not supported for capturable=False and foreach=True "
            "(as torch.optim.Adam; the default foreach=None accepts it)"
        )


class Adam(RuleOptimizer, torch.optim.Adam):
    """Adam (Kingma & Ba, 2015), AMSGrad variant (Reddi et al., 2018); drop-in for torch.optim.Adam.

    Args (torch.optim.Adam's, in its order):
        params: parameters, named parameters or param-group dicts.
        lr: learning rate gamma >= 0 (default 1e-3); a float or a 1-element tensor.
        betas: (beta1, beta2), each in [0, 1) (default (0.9, 0.999)); both floats or both
            1-element tensors (stored squeezed to 0-dim), as torch; tensors (and a tensor lr) are
            refused with ``foreach=True``, as torch refuses them there.
        eps: epsilon >= 0 added to the denominator (default 1e-8).
        weight_decay: lambda >= 0 (default 0): an L2 penalty added to the gradient, or with
            ``decoupled_weight_decay=True`` a decay of the parameters (AdamW).
        amsgrad: use the running maximum of the second moment (default False).
        foreach, maximize, capturable, differentiable, fused: as torch.optim (see
            :class:`optim._base.RuleOptimizer`).
        decoupled_weight_decay: AdamW's decay (default False).
        impl, compile: execution path, see :class:`optim._base.RuleOptimizer`.

    State per parameter (torch's keys): ``step`` (0-dim float tensor on the host; on the device
    with ``capturable=True`` or the flat path), ``exp_avg``, ``exp_avg_sq`` and, with AMSGrad,
    ``max_exp_avg_sq``. ``step`` counts the updates made, so the first update uses bias
    corrections ``1 - beta ** 1``. See :func:`adam_update` for the formula.

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.Adam([w], lr=0.1)
        >>> (w ** 2).sum().backward()
        >>> opt.step()  # Adam's first step moves every coordinate by about lr
        >>> w.detach()
        tensor([ 0.9000, -1.9000])
    """

    _rule = staticmethod(adam_update)
    _pack_below_on_cpu = TORCH_GRAIN  # (see RuleOptimizer._pack_below_on_cpu)
    _per_tensor_arguments = ("lr",)
    _torch_setstate_defaults: ClassVar[dict[str, Any]] = {
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
        "fused": None,
    }

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": _squeezed_betas(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults, impl=impl, compile=compile)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """torch.optim.Adam's checks, in its order (see
        :meth:`RuleOptimizer._check_hyperparameters`)."""
        _check_tensor_lr(values)
        check_nonnegative(values["lr"], "lr")
        check_betas(values["betas"])
        check_nonnegative(values["eps"], "eps")
        check_nonnegative(values["weight_decay"], "weight_decay")
        _check_beta_kinds(values)
        super()._check_hyperparameters(values)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        keys = ("exp_avg", "exp_avg_sq")
        return (*keys, "max_exp_avg_sq") if group["amsgrad"] else keys

    def _torch_default_loops(self, group: dict) -> bool:
        """torch.optim.Adam refuses ``foreach=True`` with a tensor ``lr`` or ``betas`` unless
        ``capturable``, and with ``foreach`` unset runs its for-loop path there: so does the
        default path, in that path's bits (bfloat16 and float16: an ulp apart from the foreach
        order here and there). On a CPU torch's default is always that path; on a GPU it is
        for a tensor ``lr`` (``_default_to_fused_or_foreach`` is overruled), while with tensor
        ``betas`` torch 2.13's default takes its foreach path there and raises its
        ``ValueError`` at the first step, where this trains (not tested: no GPU here)."""
        tensors = isinstance(group["lr"], Tensor) or isinstance(group["betas"][0], Tensor)
        return tensors and not group["foreach"] and not group["capturable"]

    def _rule_arguments(self, group: dict) -> dict[str, Any]:
        if group["foreach"] and not group["capturable"] and isinstance(group["lr"], Tensor):
            raise RuntimeError(
                "lr as a Tensor is not supported for capturable=False and foreach=True (as "
                "torch.optim.Adam, which checks it at every step; foreach=None accepts it), got "
                f"lr={group['lr']!r}"
            )
        arguments = super()._rule_arguments(group)
        arguments["beta1"], arguments["beta2"] = group["betas"]
        return arguments


class AdamW(Adam, torch.optim.AdamW):
    """AdamW (Loshchilov & Hutter, 2019), Adam with decoupled weight decay; drop-in for AdamW.

    Same arguments as :class:`Adam` except ``weight_decay`` (default 1e-2), which multiplies the
    parameters by ``1 - lr * weight_decay`` before the Adam step instead of entering the gradient,
    and no ``decoupled_weight_decay`` (always on, as in torch.optim.AdamW).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.AdamW([w], lr=0.1, weight_decay=0.5)
        >>> (w ** 2).sum().backward()
        >>> opt.step()  # w * (1 - 0.1 * 0.5), then Adam's first step: lr against sign(grad)
        >>> w.detach()
        tensor([ 0.8500, -1.8000])
    """

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
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad,
            foreach=foreach, maximize=maximize, capturable=capturable,
            differentiable=differentiable, fused=fused, decoupled_weight_decay=True,
            impl=impl, compile=compile,
        )  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        """As torch.optim.AdamW's: a loaded group always decays decoupled."""
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
