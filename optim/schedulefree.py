"""Schedule-Free SGD and AdamW: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road
Less Scheduled", NeurIPS 2024 (arXiv:2405.15682), matched to the ``schedulefree`` 1.4.1 package.

Three sequences: z (the base SGD/Adam iterates), x (their weighted average, the point to
evaluate) and y = (1 - beta) z + beta x (where the gradient is taken). The parameters hold y in
train mode and x in eval mode: call ``optimizer.train()`` before training steps and
``optimizer.eval()`` before evaluating or saving, as with the package. With batch norm, the
running statistics were collected at y: recompute them at x (a few forward passes in train mode
of the model after ``optimizer.eval()``) before evaluating, as the package's README says;
``torch.optim.swa_utils.update_bn(train_loader, model)`` does exactly that, and ``stepsize run``
does it at every evaluation (``runs.build.evaluation_mode``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import (
    RuleOptimizer,
    _number,
    as_tuple,
    check_interval,
    check_nonnegative,
    without_grad,
)
from optim._global import check_finite, copies_in_their_strides, py_max, with_coupled_decay
from optim._paths import PACK_BELOW


def schedulefree_sgd_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list,
    state: dict[str, list[Tensor]],
    *,
    lr: ops.Scalar,
    ckp1: ops.Scalar,
    momentum: ops.Scalar,
    weight_decay: ops.Scalar,
) -> None:
    r"""One Schedule-Free SGD step on y (the parameters), without forming x (eq. (1)-(3)).

    .. math::
        g &= \nabla f(y_t) + \lambda y_t, \qquad
        y_{t+1} = (1 - c_{t+1}) y_t + c_{t+1} z_t + \gamma\,(\beta(1 - c_{t+1}) - 1)\, g\\
        z_{t+1} &= z_t - \gamma g

    which is x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}, y = (1 - beta) z + beta x.
    """
    if ops.may_be_nonzero(weight_decay):
        grads = with_coupled_decay(grads, params, weight_decay)
    ops.lerp_(params, state["z"], ckp1)
    ops.add_scaled_(params, grads, lr * (momentum * (1 - ckp1) - 1))
    ops.add_scaled_(state["z"], grads, -lr)


def schedulefree_adamw_update(
    params: list[Tensor],
    grads: list[Tensor],
    steps: list,
    state: dict[str, list[Tensor]],
    *,
    lr: ops.Scalar,
    ckp1: ops.Scalar,
    beta1: ops.Scalar,
    beta2: ops.Scalar,
    bias_correction2: ops.Scalar,
    eps: float,
    weight_decay: ops.Scalar,
) -> None:
    r"""One Schedule-Free AdamW step on y (the paper's Algorithm 1).

    .. math::
        v_t &= \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
        \hat g = \frac{g_t}{\sqrt{v_t / (1 - \beta_2^{t})} + \epsilon} + \lambda y_t\\
        y_{t+1} &= (1 - c_{t+1}) y_t + c_{t+1} z_t + \gamma(\beta_1(1 - c_{t+1}) - 1)\hat g,
        \qquad z_{t+1} = z_t - \gamma \hat g
    """
    exp_avg_sq = state["exp_avg_sq"]
    ops.mul_(exp_avg_sq, beta2)
    ops.addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
    denominators = torch._foreach_div(exp_avg_sq, bias_correction2)
    torch._foreach_sqrt_(denominators)
    ops.add_(denominators, eps)
    # The package divides p.grad in place. For complex tensors in place and out of place round
    # differently (in 270 of 800 draws of 4 elements): a clone is divided in place. A strided
    # gradient (p.grad = buffer[::2]) is divided in a copy with its strides, whose loop rounds
    # complex and bf16 elements as the package's (see copies_in_their_strides).
    normalized = copies_in_their_strides(grads)
    if normalized is not None:
        torch._foreach_div_(normalized, denominators)
    elif grads[0].is_complex():
        normalized = [g.clone() for g in grads]
        torch._foreach_div_(normalized, denominators)
    else:
        normalized = list(torch._foreach_div(grads, denominators))
    if ops.may_be_nonzero(weight_decay):
        ops.add_scaled_(normalized, params, weight_decay)
    ops.lerp_(params, state["z"], ckp1)
    ops.add_scaled_(params, normalized, lr * (beta1 * (1 - ckp1) - 1))
    ops.add_scaled_(state["z"], normalized, -lr)


class _ScheduleFree(RuleOptimizer):
    """What both Schedule-Free optimizers share: the weights c_t, warmup, train and eval."""

    _counts_steps = False
    _repeats_as_reference = False  # (the package's per-parameter loop differs: we warn)
    _group_keys_unread = None  # (not checked: the package writes scheduled_lr, never reads it)
    _complex_as_real = False  # the package runs complex arithmetic on complex tensors
    _per_step_arguments = ("ckp1", "bias_correction2")  # (c_{k+1}; AdamW's 1 - beta2^(k+1))

    def _beta(self, group: dict) -> float | Tensor:
        """beta (SGD's ``momentum``, AdamW's ``betas[0]``) as the package computes with it
        (:func:`_as_given`)."""
        raise NotImplementedError

    def _path_keywords(
        self, defaults: dict[str, Any], impl: str | None, compile: bool
    ) -> tuple[bool | None, bool | None]:
        """``foreach`` as the package reads it, ``if group['foreach']``: True (its default) the
        default path, False and None its per-parameter loop (``impl="single"``, whose float16 and
        bfloat16 bits differ from the multi-tensor path's). Where ``impl`` or ``compile`` names
        the path, only an explicit False can contradict it (the default True cannot be told
        from a True given)."""
        foreach = defaults["foreach"]
        if impl is not None or compile:
            return (False if foreach is False else None), None
        return bool(foreach), None

    def _reads_params(self, group: dict) -> bool:
        return True

    def _new_state(self, group: dict, p: Tensor, key: str) -> Tensor:
        if key == "z":
            return torch.clone(p.detach(), memory_format=torch.preserve_format)
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def _schedule(self, group: dict) -> dict[str, Any]:
        """This step's scheduled lr and averaging weight c_{k+1}; updates the group's sums.

        The package's arithmetic, exactly, when lr is a number or a tensor on the host (a
        tensor's in its dtype, as the package's: a float32 ``lr`` rounds ``c`` to float32);
        0-dim float64 tensors when lr is a device tensor (a schedule), so nothing is read back.
        """
        k, warmup_steps = group["k"], group["warmup_steps"]
        sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
        lr = group["lr"]
        if isinstance(lr, Tensor):
            lr = lr.detach().reshape(())
            lr = lr if lr.device.type == "cpu" else lr.to(torch.float64)
        lr = lr * sched
        group["scheduled_lr"] = lr
        if _on_device(lr) or _on_device(group["lr_max"]):
            device = (lr if _on_device(lr) else group["lr_max"]).device
            lr_t = torch.as_tensor(lr, dtype=torch.float64, device=device)
            lr_max = torch.as_tensor(group["lr_max"], dtype=torch.float64, device=device)
            lr_max = py_max(lr_t, lr_max)
            weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
            weight_sum = group["weight_sum"] + weight
            ckp1 = torch.where(weight_sum != 0, weight / weight_sum, 0.0)
        else:
            lr_max = max(lr, group["lr_max"])
            weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
            weight_sum = group["weight_sum"] + weight
            try:
                ckp1 = weight / weight_sum
            except ZeroDivisionError:
                ckp1 = 0
        group["lr_max"], group["weight_sum"] = lr_max, weight_sum
        return {"lr": lr, "ckp1": ckp1, "weight_decay": group["weight_decay"]}

    @without_grad
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every param group (in train mode); returns the closure's loss."""
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError(
                "Optimizer was not in train mode when step is called: call optimizer.train() "
                "before training steps and optimizer.eval() before evaluation (as schedulefree)"
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._arguments = {id(g): self._schedule(g) for g in self.param_groups}
        super().step()
        for group in self.param_groups:
            group["k"] = group["k"] + 1
        return loss

    def step_sizes(self) -> list[Tensor | float]:
        """Each param group's learning rate of its last update, after warmup (``scheduled_lr``;
        0 before the first update), as ``ReducingOptimizer.step_sizes`` gives the others'."""
        return [group["scheduled_lr"] for group in self.param_groups]

    def _rule_arguments(self, group: dict) -> dict[str, Any]:
        return dict(self._arguments[id(group)])

    def _switch(self, to_train: bool) -> None:
        self._internally(lambda: self._switch_groups(to_train))

    def _switch_groups(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta = self._beta(group)
            weight = 1 - beta if to_train else 1 - 1 / beta
            pairs = [(p, self.state[p]["z"]) for p in group["params"] if "z" in self.state[p]]
            if pairs:
                ps, zs = zip(*pairs)
                zs = [z.to(p.device) for p, z in zip(ps, zs)]
                # (the package's p.lerp_(z, weight=w): a tensor w as one weight per tensor, the
                # overload with Tensor.lerp_'s bits, which rounds w to a bfloat16 p's dtype)
                weights = [weight] * len(ps) if isinstance(weight, Tensor) else weight
                torch._foreach_lerp_(list(ps), zs, weights)
            group["train_mode"] = to_train

    @torch.no_grad()
    def eval(self) -> None:
        """Parameters to x, the averaged point to evaluate: x = y + (1 - 1/beta)(z - y)."""
        self._switch(False)

    @torch.no_grad()
    def train(self) -> None:
        """Parameters to y, where gradients are taken: y = x + (1 - beta)(z - x)."""
        self._switch(True)


def _as_given(value: float | Tensor) -> float | Tensor:
    """A hyperparameter as the package computes with it: a number as it is (a ``np.float32``
    keeps NumPy's float32 arithmetic, as in the package), a 1-element tensor as a 0-dim one
    (tensor arithmetic in its dtype, and a tensor where the package hands one to torch)."""
    return value.detach().reshape(()) if isinstance(value, Tensor) else value


def _on_device(value: Any) -> bool:
    return isinstance(value, Tensor) and value.device.type != "cpu"


def _common(values: Mapping[str, Any]) -> None:
    """The checks both classes' constructors share: ``lr``, ``weight_decay``, ``warmup_steps``,
    ``r``, ``weight_lr_power``."""
    check_nonnegative(values["lr"], "lr")
    check_nonnegative(values["weight_decay"], "weight_decay")
    warmup_steps = values["warmup_steps"]
    if (
        isinstance(warmup_steps, bool | np.bool_)
        or not isinstance(warmup_steps, numbers.Real)
        or not 0 <= warmup_steps < math.inf
    ):  # (a real number, as the package: 500.0 from a computed fraction of the run works, and
        # so does NumPy's np.int64(500) or np.float32(500.0), computed with as they are)
        raise ValueError(
            "warmup_steps must be a finite number >= 0 (an int, or a float such as "
            f"0.05 * total_steps), got warmup_steps={warmup_steps!r}"
        )
    check_finite(values["r"], "r", "the power of the averaging weights (k + 1)^r")
    check_nonnegative(values["weight_lr_power"], "weight_lr_power")


class SGDScheduleFree(_ScheduleFree):
    r"""Schedule-Free SGD (Defazio et al., 2024, eq. (1)-(3) with the weights of section 4.1);
    drop-in for ``schedulefree.SGDScheduleFree`` 1.4.1.

    .. math::
        y_t &= (1-\beta) z_t + \beta x_t, \qquad z_{t+1} = z_t - \gamma_t \nabla f(y_t), \qquad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}\\
        c_{t+1} &= \frac{w_{t+1}}{\sum_{i \le t+1} w_i}, \qquad
        w_{t+1} = (t+1)^r\, \bigl(\max_{i \le t+1} \gamma_i\bigr)^{\text{weight\_lr\_power}}

    with gamma_t = lr * min(1, (t + 1) / warmup_steps). Defazio et al.'s Theorem 1, for the
    package's x after k updates (the average of z_1..z_k, c = 1 at the first update): on a
    convex G-Lipschitz problem, f(x_k) - f* <= (D^2 + gamma^2 G^2) / (2 gamma k) + gamma G^2 / 2,
    about D G / sqrt(T) at gamma = D / (G sqrt(T)) (certified in
    ``theory.lr_free_bounds.schedulefree_sgd_bound``).

    Args (the package's, in its order): params; lr >= 0 (default 1.0); momentum beta in (0, 1)
    (default 0.9); weight_decay >= 0 (default 0, at y); warmup_steps >= 0, an int or a float as
    in the package (default 0); r (default 0); weight_lr_power >= 0 (default 2); foreach
    (default True, the package's: the default path; False, or None as the package's loop
    reads it: ``impl="single"``); impl, compile as :class:`optim._base.RuleOptimizer`.

    Group keys (the package's): ``k``, ``train_mode``, ``weight_sum``, ``lr_max``,
    ``scheduled_lr``; state: ``z``. Call :meth:`train` before training, :meth:`eval` before
    evaluating (``step()`` in eval mode raises ``RuntimeError``).
    Unlike the package, ``step()`` leaves ``p.grad`` as it was: the package adds the weight
    decay to it in place, which code reading ``p.grad`` after ``step()``, or accumulating
    gradients over steps without zeroing them, would see. Sparse gradients
    (``nn.Embedding(sparse=True)``) step as in the package, each such parameter through the
    package's own ops; with weight decay both raise ``RuntimeError``.

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.SGDScheduleFree([w], lr=0.1)
        >>> opt.train()
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).sum().backward()
        ...     opt.step()
        >>> opt.eval()  # the parameters now hold x, the average
        >>> bool(((w - 3).norm() < 0.5).item())  # from 5.4
        True
    """

    _rule = staticmethod(schedulefree_sgd_update)
    _supports_sparse = True  # (as the package, without weight decay)
    _pack_below = PACK_BELOW // 4
    """A rule of a few ops that reads the parameters (gathered and copied back when packed), as
    SGD's (see :attr:`optim.SGD._pack_below`). Against the package on this project's 2-core
    CPU (2026-12-03, one process, packed / blocked lists): 1.27x / 1.09x on 8000 tensors of
    2.5k, 1.11x / 1.14x on 5000 of 4k, 1.13x / 1.11x on 4000 of 5k, 1.05x / 1.11x on 2800 of
    7k, 0.99x / 1.17x on 1600 of 10k, 0.96x / 1.23x on 800 of 20k and 0.91-1.02x / 1.21-1.30x
    on 400 of 40k (0.61x packed in a bench run in the thread-handoff regime)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0,
        warmup_steps: float = 0,
        r: float = 0.0,
        weight_lr_power: float = 2,
        foreach: bool | None = True,
        *,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        defaults = {
            "lr": lr, "momentum": momentum, "r": r, "k": 0, "warmup_steps": warmup_steps,
            "train_mode": False, "weight_sum": 0.0, "lr_max": -1.0, "scheduled_lr": 0.0,
            "weight_lr_power": weight_lr_power, "weight_decay": weight_decay,
            "foreach": foreach,
        }  # fmt: skip
        super().__init__(params, defaults, impl=impl, compile=compile)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        _common(values)
        momentum = values["momentum"]
        if not 0 < _number(momentum, "momentum") < 1:  # (one message for both ends)
            raise ValueError(
                f"Invalid momentum value: {momentum!r} (momentum must be in (0, 1): eval() "
                f"moves the parameters to x = y + (1 - 1/momentum)(z - y), got "
                f"momentum={momentum!r})"
            )
        super()._check_hyperparameters(values)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("z",)

    def _beta(self, group: dict) -> float | Tensor:
        return _as_given(group["momentum"])

    def _schedule(self, group: dict) -> dict[str, Any]:
        return {**super()._schedule(group), "momentum": self._beta(group)}


class AdamWScheduleFree(_ScheduleFree):
    r"""Schedule-Free AdamW (Defazio et al., 2024, Algorithm 1); drop-in for
    ``schedulefree.AdamWScheduleFree`` 1.4.1.

    The iterates of :class:`SGDScheduleFree` with beta = beta1 and the step on z taken along
    g / (sqrt(v_t / (1 - beta2^t)) + eps) + weight_decay * y, v_t Adam's second moment (no first
    moment: the averaging is the momentum). See :func:`schedulefree_adamw_update`.

    Args (the package's, in its order): params; lr >= 0 (default 0.0025); betas (default
    (0.9, 0.999); beta1 in (0, 1)); eps >= 0 (default 1e-8); weight_decay >= 0 (default 0);
    warmup_steps (default 0); r (default 0); weight_lr_power (default 2); foreach (as
    :class:`SGDScheduleFree`'s); impl, compile.

    Complex parameters take the package's complex arithmetic (its second moment is ``g * g``,
    not ``|g|^2`` per real pair as in torch.optim's AdamW): its bits, except on the flat path
    (to rounding); ``compile=True`` refuses them (TypeError), since inductor would run the
    kernel on real pairs.

    Group keys as :class:`SGDScheduleFree`; state: ``z``, ``exp_avg_sq``. ``step()`` leaves
    ``p.grad`` as it was (the package divides it by its denominator in place, and adds the
    weight decay to the result, see :class:`SGDScheduleFree`).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.AdamWScheduleFree([w], lr=0.1)
        >>> opt.train()
        >>> for _ in range(200):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).sum().backward()
        ...     opt.step()
        >>> opt.eval()
        >>> bool(((w - 3).norm() < 0.5).item())
        True
    """

    _sparse_refusal = (
        "as schedulefree's AdamWScheduleFree, whose step fails on them; dense gradients: "
        "nn.Embedding(sparse=False)"
    )
    _rule = staticmethod(schedulefree_adamw_update)
    _linear = False  # (g * g, a square root: complex arithmetic is not its real pairs')

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: float = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = True,
        *,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        defaults = {
            "lr": lr, "betas": as_tuple(betas), "eps": eps, "r": r, "k": 0,
            "warmup_steps": warmup_steps, "train_mode": False, "weight_sum": 0.0,
            "lr_max": -1.0, "scheduled_lr": 0.0, "weight_lr_power": weight_lr_power,
            "weight_decay": weight_decay, "foreach": foreach,
        }  # fmt: skip
        super().__init__(params, defaults, impl=impl, compile=compile)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        _common(values)
        betas = values["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got betas={betas!r}")
        if not 0 < _number(betas[0], "betas[0]") < 1:
            raise ValueError(
                "betas[0] must be in (0, 1): eval() moves the parameters to "
                f"x = y + (1 - 1/beta1)(z - y), got betas[0]={betas[0]!r}"
            )
        check_interval(betas[1], "betas[1]", 0.0, 1.0, high_open=True)
        check_nonnegative(values["eps"], "eps")
        super()._check_hyperparameters(values)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("z", "exp_avg_sq")

    def _beta(self, group: dict) -> float | Tensor:
        return _as_given(group["betas"][0])

    def _schedule(self, group: dict) -> dict[str, Any]:
        beta2 = _as_given(group["betas"][1])
        return {
            **super()._schedule(group),
            "beta1": self._beta(group),
            "beta2": beta2,
            "bias_correction2": 1 - beta2 ** (group["k"] + 1),
            "eps": group["eps"],
        }
