"""D-Adaptation: Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation", ICML 2023
(arXiv:2301.07733), matched to the ``dadaptation`` 3.2 package (``DAdaptSGD``, ``DAdaptAdam``,
``DAdaptAdaGrad``).

The three share the paper's idea: keep the weighted gradient sum s_k and an estimate of the
distance D = ||x0 - x*|| built from it, and take the step d_k * lr, d_k never decreasing. The
paper's Lemma 1 (for convex problems the dual-averaging estimate stays below D) covers the
package's DAdaptSGD with momentum 0, whose estimate is twice the paper's: d_k <= 2 D,
certified in ``theory.lr_free_bounds.d_estimate_bound``. The Adam and AdaGrad variants'
estimates are not of the lemma's form, and no bound is certified for them (DAdaptAdam's d
reaches 2.02 D on a 2-D quadratic, DAdaptAdaGrad's 1.03 D on |x|). All scalars are
shared by every param group (the references' design): on a GPU they stay on the device as
0-dim tensors; on a CPU they are Python floats, as in the package
(:func:`optim._global.host_scalars`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import _number, check_betas, check_interval, check_nonnegative
from optim._base import as_tuple as _as_tuple
from optim._global import (
    FSDP_FLATTENED,
    Chunk,
    FairseqFlags,
    ReducingOptimizer,
    Work,
    abs_sums,
    active,
    add_products_,
    check_at_least,
    check_count,
    check_positive,
    choose,
    chunk_roots_plus,
    common_lr,
    d_times_lr,
    dots,
    host_numbers,
    ieee_divide,
    known_zero,
    parameter_order,
    py_max,
    py_min,
    python_sqrt,
    quotient_sums,
    roots_plus,
    squared_sums_per_tensor,
    total,
    with_coupled_decay,
)

logger = logging.getLogger(__name__)


def _grow(d: Tensor, d_hat: Tensor, growth_rate: float) -> Tensor:
    """The references' ``max(d, min(d_hat, d * growth_rate))`` (NaN as Python treats it)."""
    return py_max(d, py_min(d_hat, d * growth_rate))


def _common_checks(values: Mapping[str, Any]) -> None:
    """The checks the three classes' constructors share: ``d0`` (which a param group keeps as
    ``d``, the estimate it starts), ``lr``, ``growth_rate``, ``log_every``."""
    d0 = values["d"]
    check_positive(d0, "d0", finite=True)  # (a param group's d: the estimate it starts from)
    check_positive(values["lr"], "lr", finite=True)
    check_at_least(values["growth_rate"], "growth_rate", 1.0)
    check_count(values["log_every"], "log_every", 0)


def _process_rank() -> int:
    """This process's rank in the default process group, 0 outside one (``dadaptation``'s
    ``DAdaptSGD.rank``)."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank()
    return 0


def _log(optimizer: ReducingOptimizer, group: dict, k: int, **values: Any) -> None:
    every = group.get("log_every", 0)
    if every and k % every == 0:
        # note: a CPU-GPU sync point, only when the user asked for logging (log_every > 0)
        text = ", ".join(f"{name}={float(value):.6g}" for name, value in values.items())
        logger.info("%s (k=%d): %s", type(optimizer).__name__, k, text)


# ---------------------------------------------------------------------------------------------
# DAdaptSGD


def dadapt_sgd_statistics(
    chunk: Chunk, *, dlr: Tensor, weight_decay: float, scratch: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""D-Adapted SGD's sums over one chunk (the paper's Algorithm 1, dual averaging form).

    .. math::
        \Delta\text{num} = d\lambda \langle g, s\rangle, \qquad s \leftarrow s + d\lambda\, g,
        \qquad \Delta\|s\|^2

    with ``dlr`` = d * lr / ||g_0|| and g including the L2 term. Returns (Δ numerator, ||s||²),
    each one value per tensor (``scratch``: see :func:`optim._global.squared_sums_per_tensor`).
    """
    params, grads, state = chunk.params, chunk.grads, chunk.state
    if ops.may_be_nonzero(weight_decay):
        grads = with_coupled_decay(grads, params, weight_decay)
    numerator = dlr * dots(grads, state["s"], chunk.segments)
    ops.add_scaled_(state["s"], grads, dlr)
    return numerator, squared_sums_per_tensor(state["s"], chunk.segments, scratch)


def dadapt_sgd_update(chunk: Chunk, *, momentum: float) -> None:
    r"""z = x0 - s; x = (1 - c) x + c z with c = 1 - momentum (the primal averaging form)."""
    params, state = chunk.params, chunk.state
    ops.difference_into(state["z"], state["x0"], state["s"])
    ck = 1 - momentum
    ops.tensor_mul_(params, 1 - ck)
    ops.add_scaled_(params, state["z"], ck)


class DAdaptSGD(ReducingOptimizer):
    r"""SGD with D-Adaptation (Defazio & Mishchenko, 2023, Algorithm 1 with the package's
    momentum by primal averaging); drop-in for ``dadaptation.DAdaptSGD`` 3.2.

    .. math::
        \lambda_k &= d_k\, \mathrm{lr} / \|g_0\|, \qquad
        \text{num}_{k+1} = \text{num}_k + \lambda_k \langle g_k, s_k\rangle, \qquad
        s_{k+1} = s_k + \lambda_k g_k\\
        \hat d_{k+1} &= \frac{2\,\text{num}_{k+1}}{\|s_{k+1}\|}, \qquad
        d_{k+1} = \max\bigl(d_k, \min(\hat d_{k+1}, d_k\, \text{growth\_rate})\bigr)\\
        z_{k+1} &= x_0 - s_{k+1}, \qquad
        x_{k+1} = \text{momentum}\; x_k + (1-\text{momentum}) z_{k+1}

    Lemma 1 of the paper, for the package's estimate (twice the paper's), gives
    d_k <= 2 ||x0 - x*|| for convex f with momentum 0, certified in
    ``theory.lr_free_bounds.d_estimate_bound``.

    Args (the package's, in its order):
        params: parameters or param-group dicts; every group's ``lr`` must be the same or 0.
        lr: multiplier of the adapted step (default 1.0). momentum: in [0, 1) (default 0).
        weight_decay: L2 penalty >= 0 (default 0). log_every: log d every k steps (0: never;
            logging reads d, a deliberate sync). d0: initial estimate > 0 (default 1e-6).
        growth_rate: cap >= 1 on d's growth per step (default inf). fsdp_in_use: sharded
            parameters, the sums reduced over the ranks (see ``Prodigy``; default False).
        foreach, impl: execution path (``"single"``, ``"foreach"``, ``"flat"``).

    As in the package, ``weight_decay`` and ``momentum`` of the *first* param group apply to
    every group, and ||g_0|| (the first step's gradient norm, without weight decay) is kept as
    ``g0_norm``. Group keys (the package's): ``d``, ``numerator_weighted``, ``g0_norm``, ``k``;
    state: ``z``, ``s``, ``x0``. A first step with g0 = 0, or a step whose ||s||^2 is 0 with
    lr > 0 (float16 at the default d0, every ``s * s`` rounding to 0), raises the package's
    ``ZeroDivisionError`` where the value is in host memory (on a GPU it is not read).
    Unlike the package, ``step()`` leaves ``p.grad`` as it was: the package adds the weight
    decay to it in place, which code reading ``p.grad`` after ``step()``, or accumulating
    gradients over steps without zeroing them, would see. A step in which no parameter has a
    gradient changes nothing, as in torch.optim; the package raises ``ZeroDivisionError``.
    A step after the first with every group's lr at 0 runs the rule (s and the sums unchanged,
    x moving toward z with momentum, ``k`` counted), where the package raises
    ``UnboundLocalError`` (its ``global_sk_sq`` is set only when lr > 0). A NumPy float
    narrower than float64 among a group's values (``lr=np.float32(0.5)``), with which the
    package computes d in NumPy's float32 arithmetic, raises ``TypeError`` (the same in
    DAdaptAdam, DAdaptAdaGrad and Prodigy; ``optim._global.refuse_narrow_numpy_numbers``).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.DAdaptSGD([w])
        >>> for _ in range(30):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).sum().backward()
        ...     opt.step()
        >>> bool(opt.param_groups[0]["d"] > 1e-3)  # d grew from 1e-6 towards ||x0 - x*||
        True
    """

    _sparse_refusal = (
        "as dadaptation's DAdaptSGD, whose step fails on them; dense gradients: "
        "nn.Embedding(sparse=False)"
    )
    _package_computing_in_numbers = "dadaptation"
    _frozen_group_lr = True  # (the package's "lr the same or 0" in every group)
    _pickled_attributes = (*ReducingOptimizer._pickled_attributes, "rank", "loggables")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1.0,
        momentum: float = 0.0,
        weight_decay: float = 0,
        log_every: int = 0,
        d0: float = 1e-6,
        growth_rate: float = float("inf"),
        fsdp_in_use: bool = False,
        *,
        foreach: bool | None = None,
        impl: str | None = None,
    ) -> None:
        defaults = {
            "lr": lr, "momentum": momentum, "weight_decay": weight_decay, "k": 0,
            "log_every": log_every, "numerator_weighted": 0.0, "d": d0,
            "growth_rate": growth_rate, "fsdp_in_use": fsdp_in_use,
        }  # fmt: skip
        super().__init__(params, defaults, impl=impl, foreach=foreach)
        self.loggables: dict[str, Any] = {}  # (the package's attributes: it never fills this)
        self.rank = _process_rank()

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        _common_checks(values)
        check_interval(values["momentum"], "momentum", 0.0, 1.0, high_open=True)
        check_nonnegative(values["weight_decay"], "weight_decay")
        super()._check_hyperparameters(values)

    def _step_size(self, group: dict) -> Tensor | float | None:
        """``d * lr / ||g_0||``, the step the update takes (the package's ``dlr``, this class's
        lambda_k; ``d * lr`` alone is in the units of a distance, ||x_0 - x*||), with the
        ||g_0|| the next update reads (the first group's); None before the first update; inf
        after a first step that raised on ||g_0|| = 0, whose 0 the group keeps, as the package's
        does."""
        g0_norm = self.param_groups[0].get("g0_norm")
        return None if g0_norm is None else ieee_divide(d_times_lr(group), g0_norm)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("z", "s", "x0")

    def _new_state(self, group: dict, p: Tensor, key: str) -> Tensor:
        if key == "s":
            return torch.zeros_like(p, memory_format=torch.preserve_format)
        return p.detach().clone(memory_format=torch.preserve_format)

    def _update(self, work: list[Work]) -> None:
        device = self._device_of(work)
        first = self.param_groups[0]
        lr = common_lr(self.param_groups, device)
        decay, momentum, k = (
            first["weight_decay"],
            _number(first["momentum"], "momentum"),
            first["k"],
        )
        d = self.number(first, "d", device)
        numerator = self.number(first, "numerator_weighted", device)
        order = parameter_order(work, active)
        if k == 0:
            squares = [
                squared_sums_per_tensor(chunk.grads, chunk.segments, self.whole_scratch(chunk))
                for item in work
                if active(item.group)
                for chunk in item.chunks
            ]
            (g_sq,) = host_numbers(device, *self.over_ranks(total(squares, device, order=order)))
            self.param_groups[-1]["g0_norm"] = python_sqrt(g_sq)
        # The package's loop variable: the last group on the first step, the first one after
        # (the same value, unless a group was added since: then the first group's, as there).
        g0_norm = self.number(self.param_groups[-1 if k == 0 else 0], "g0_norm", device)
        if k == 0:
            _check_first_gradient_norm(g0_norm, lr)
        dlr = d * lr / g0_norm
        numerators, squares = [], []
        for item in work:
            if not active(item.group):
                continue
            for chunk in item.chunks:
                n, s2 = dadapt_sgd_statistics(
                    chunk, dlr=dlr, weight_decay=decay, scratch=self.whole_scratch(chunk)
                )
                numerators.append(n)
                squares.append(s2)
        numerator = total(numerators, device, numerator, order)  # (kept per rank, as the package)
        global_numerator, sk_sq = self.over_ranks(numerator, total(squares, device, order=order))
        numerator, global_numerator, sk_sq = host_numbers(
            device, numerator, global_numerator, sk_sq
        )
        _check_sum_of_squares(sk_sq, lr)
        d_hat = ieee_divide(2 * global_numerator, python_sqrt(sk_sq))  # (inf or NaN at lr 0)
        new_d = _grow(d, d_hat, first["growth_rate"])
        new_d = _keep_unless(new_d, d, lr, sk_sq != 0)  # (a NaN sum goes on, as there)
        _log(self, first, k, dlr=dlr, d_hat=d_hat, d=new_d)
        for item in work:
            item.group.update(numerator_weighted=numerator, d=new_d, g0_norm=g0_norm)
            for chunk in item.chunks:
                self.fill(chunk)
                dadapt_sgd_update(chunk, momentum=momentum)
                self.updated(chunk)
            item.group["k"] = k + 1

    def _late_params(self, group: dict) -> bool:
        """Without weight decay (the first group's, which applies to every group) the sums read
        only the gradients and s, and the parameters are read once, by the update after d is
        known: the steady packed path gathers each round's just before its update
        (:meth:`ReducingOptimizer.fill`), so they are still in cache when it is copied back. (A
        gather of the whole model before the step had left it in memory by then.)"""
        return not ops.may_be_nonzero(self.param_groups[0]["weight_decay"])


def _check_first_gradient_norm(g0_norm: float | Tensor, lr: float | Tensor) -> None:
    """DAdaptSGD divides d * lr by g0, the first step's gradient norm, at every step; the package
    raises ``ZeroDivisionError`` when g0 is 0 (a first step with lr = 0, as
    ``torch.distributed.checkpoint``'s ``get_optimizer_state_dict`` takes to create the state,
    or with zero gradients), where dividing tensors would silently make every parameter NaN.
    Raised as there whenever it is known without a device read: lr = 0 as a host number, or g0
    in host memory (on a GPU, a zero first gradient goes undetected)."""
    if known_zero(lr) or known_zero(g0_norm):
        raise ZeroDivisionError(
            "DAdaptSGD's first step measures g0, the norm of the gradients of the groups with "
            "lr > 0, and every step divides d * lr by it (as dadaptation does, which raises "
            f"ZeroDivisionError here too); got g0 = 0 with lr={lr!r}: take the first step with "
            "lr > 0 and a nonzero gradient (torch.distributed.checkpoint's "
            "get_optimizer_state_dict creates the state with a zero-lr step: take a real step "
            "before it)"
        )


def _check_sum_of_squares(sk_sq: float | Tensor, lr: float | Tensor) -> None:
    """DAdaptSGD's estimate divides by ||s||: the package computes ``2 * numerator /
    math.sqrt(sk_sq)`` whenever lr > 0 and raises ``ZeroDivisionError`` when ||s||^2 is 0,
    after s was updated and before anything else is stored. That happens when every square
    ``s * s`` rounds to 0 in the parameters' dtype: float16 at the default ``d0=1e-6``, whose
    first step adds about 1e-7 * g / ||g_0|| to s. Raised as there where the sum is known
    without a device read (a CPU sum under a host lr > 0); on a GPU the step runs on, keeping
    d (which the package cannot, since it reads every sum)."""
    if not known_zero(lr) and known_zero(sk_sq):
        raise ZeroDivisionError(
            "DAdaptSGD's estimate d_hat = 2 * numerator / ||s|| needs ||s|| > 0 (as dadaptation "
            "computes it, which raises ZeroDivisionError here too); got ||s||^2 = 0 with "
            f"lr={lr!r}: every s * s rounded to 0 in the parameters' dtype (float16 at "
            "d0=1e-6 does); train in float32 or bfloat16, or with a larger d0"
        )


def _keep_unless(
    new: float | Tensor, old: float | Tensor, lr: float | Tensor, progress: bool | Tensor
) -> float | Tensor:
    """``new`` where lr > 0 and the step made progress, else ``old`` (host numbers, or 0-dim
    tensors read nowhere: :func:`optim._global.choose`)."""
    if isinstance(lr, Tensor):
        progress = progress & (lr > 0)
    elif not lr > 0:
        return old
    return choose(progress, new, old)


# ---------------------------------------------------------------------------------------------
# DAdaptAdam


def dadapt_adam_statistics(
    chunk: Chunk,
    *,
    dlr: Tensor,
    layer_scale: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    coupled_decay: bool,
    scratch: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""D-Adapted Adam's moments and sums over one chunk (the paper's Algorithm 4 as packaged).

    .. math::
        \Delta\text{num} &= r\, d\lambda \Bigl\langle g, \frac{s}{\sqrt{v} + \epsilon}\Bigr\rangle,
        \qquad m = \beta_1 m + r\, d\lambda (1 - \beta_1) g, \qquad
        v = \beta_2 v + (1-\beta_2) g^2\\
        s &= \sqrt{\beta_2}\, s + d\lambda (1 - \sqrt{\beta_2}) g, \qquad
        \Delta\|s\|_1 = r \|s\|_1

    (old s and v in the numerator; r = ``layer_scale``; ``scratch``: see
    :func:`optim._global.abs_sums`). Returns (Δ numerator, r ||s||_1), each one value per tensor.
    """
    params, grads, state = chunk.params, chunk.grads, chunk.state
    if coupled_decay and ops.may_be_nonzero(weight_decay):
        grads = with_coupled_decay(grads, params, weight_decay)
    sqrt_beta2 = beta2**0.5
    quotients = (  # (s.div(denominator), written over it; each dotted before the next is made)
        torch.div(s, d, out=d)
        for s, d in zip(state["s"], roots_plus(state["exp_avg_sq"], eps, scratch))
    )
    numerator = layer_scale * dlr * dots(grads, quotients, chunk.segments)
    ops.tensor_mul_(state["exp_avg"], beta1)
    ops.add_scaled_(state["exp_avg"], grads, layer_scale * dlr * (1 - beta1))
    ops.tensor_mul_(state["exp_avg_sq"], beta2)
    ops.addcmul_(state["exp_avg_sq"], grads, grads, 1 - beta2)
    ops.tensor_mul_(state["s"], sqrt_beta2)
    ops.add_scaled_(state["s"], grads, dlr * (1 - sqrt_beta2))
    return numerator, layer_scale * abs_sums(state["s"], scratch, chunk.segments)


def dadapt_adam_update(
    chunk: Chunk,
    *,
    dlr: Tensor,
    eps: float,
    weight_decay: float,
    decoupled_decay: bool,
    scratch: Tensor | None = None,
) -> None:
    r"""x -= wd d\lambda x (decoupled); x -= m / (\sqrt{v} + \epsilon) (m holds d\lambda);
    each denominator written into ``scratch`` where it fits (:func:`optim._global.roots_plus`)."""
    params, state = chunk.params, chunk.state
    if decoupled_decay and ops.may_be_nonzero(weight_decay):
        ops.add_scaled_(params, params, -weight_decay * dlr)
    for p, m, d in zip(params, state["exp_avg"], roots_plus(state["exp_avg_sq"], eps, scratch)):
        p.addcdiv_(m, d, value=-1)


class DAdaptAdam(FairseqFlags, ReducingOptimizer):
    r"""Adam with D-Adaptation (Defazio & Mishchenko, 2023, Algorithm 4 as in the package);
    drop-in for ``dadaptation.DAdaptAdam`` 3.2.

    .. math::
        \lambda_k &= d_k\,\mathrm{lr}\,\frac{\sqrt{1-\beta_2^{k+1}}}{1-\beta_1^{k+1}}
            \text{ (bias correction if asked, else } d_k\,\mathrm{lr}),\\
        \text{num}_{k+1} &= \sqrt{\beta_2}\,\text{num}_k + (1-\sqrt{\beta_2})
            \textstyle\sum r \lambda_k \langle g_k, s_k / (\sqrt{v_k} + \epsilon)\rangle,\\
        \hat d_{k+1} &= \frac{\text{num}_{k+1}}{(1-\sqrt{\beta_2}) \sum r \|s_{k+1}\|_1}, \qquad
        d_{k+1} = \max\bigl(d_k, \min(\hat d_{k+1}, d_k\, \text{growth\_rate})\bigr)

    and each parameter takes x -= m / (sqrt(v) + eps), its first moment m accumulating
    r lambda_k (1 - beta1) g (:func:`dadapt_adam_statistics`, :func:`dadapt_adam_update`).

    Args (the package's, in its order):
        params: parameters or param-group dicts (a group may set ``layer_scale`` r; every
            group's ``lr`` must be the same or 0).
        lr: multiplier (default 1.0). betas: each in [0, 1) (default (0.9, 0.999)).
        eps: > 0 (default 1e-8). weight_decay: >= 0 (default 0). log_every: see DAdaptSGD.
        decouple: AdamW-style decay (default False). use_bias_correction: (default False).
        d0: initial estimate > 0 (default 1e-6). growth_rate: >= 1 (default inf).
        fsdp_in_use: sharded parameters (see ``Prodigy``). foreach, impl: execution path.

    Group keys (the package's): ``d``, ``numerator_weighted``, ``k``, ``layer_scale``; state
    (the package's keys, in its order, so that a checkpoint moves either way): ``step`` (an int,
    the updates the parameter received), ``s``, ``exp_avg``, ``exp_avg_sq``. ``betas``,
    ``decouple`` and ``use_bias_correction`` of the first group apply to all, as in the package.
    ``step()`` leaves ``p.grad`` as it was (the package adds a coupled decay to it in place, see
    :class:`DAdaptSGD`).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.DAdaptAdam([w])
        >>> for _ in range(50):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).sum().backward()
        ...     opt.step()
        >>> bool(opt.param_groups[0]["d"] > 1e-3)
        True
    """

    _sparse_refusal = (
        "as dadaptation's DAdaptAdam, whose step fails on them; dense gradients: "
        "nn.Embedding(sparse=False)"
    )
    _package_computing_in_numbers = "dadaptation"
    _frozen_group_lr = True  # (the package's "lr the same or 0" in every group)
    _counts_updates = True

    _pickled_attributes = (*ReducingOptimizer._pickled_attributes, "d0")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        log_every: int = 0,
        decouple: bool = False,
        use_bias_correction: bool = False,
        d0: float = 1e-6,
        growth_rate: float = float("inf"),
        fsdp_in_use: bool = False,
        *,
        foreach: bool | None = None,
        impl: str | None = None,
    ) -> None:
        defaults = {
            "lr": lr, "betas": _as_tuple(betas), "eps": eps, "weight_decay": weight_decay, "d": d0,
            "k": 0, "layer_scale": 1.0, "numerator_weighted": 0.0, "log_every": log_every,
            "growth_rate": growth_rate, "use_bias_correction": use_bias_correction,
            "decouple": decouple, "fsdp_in_use": fsdp_in_use,
        }  # fmt: skip
        super().__init__(params, defaults, impl=impl, foreach=foreach)
        self.d0 = d0

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        _common_checks(values)
        check_positive(values["eps"], "eps")
        check_betas(values["betas"])
        check_nonnegative(values["weight_decay"], "weight_decay")
        super()._check_hyperparameters(values)

    _step_size = staticmethod(d_times_lr)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("s", "exp_avg", "exp_avg_sq")

    def _update(self, work: list[Work]) -> bool | None:
        device = self._device_of(work)
        first = self.param_groups[0]
        beta1, beta2 = (_number(b, "betas") for b in first["betas"])
        k = first["k"]
        d = self.number(first, "d", device)
        lr = common_lr(self.param_groups, device)
        bias_correction = 1.0
        if first["use_bias_correction"]:
            bias_correction = ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1))
        dlr = d * lr * bias_correction
        decouple = first["decouple"]
        sqrt_beta2 = beta2**0.5
        numerators, l1s = [], []
        for item in work:
            group = item.group
            if not active(group):
                continue
            for chunk in item.chunks:
                n, l1 = dadapt_adam_statistics(
                    chunk, dlr=dlr, layer_scale=group["layer_scale"], beta1=beta1, beta2=beta2,
                    eps=group["eps"], weight_decay=group["weight_decay"],
                    coupled_decay=not decouple, scratch=self.whole_scratch(chunk),
                )  # fmt: skip
                numerators.append(n)
                l1s.append(l1)
        old_numerator = self.number(first, "numerator_weighted", device)
        order = parameter_order(work, active)
        numerator = sqrt_beta2 * old_numerator + (1 - sqrt_beta2) * total(
            numerators, device, order=order
        )
        # (numerator is kept per rank; the package tests its own rank's sum for its early return)
        global_numerator, sk_l1 = self.over_ranks(numerator, total(l1s, device, order=order))
        numerator, global_numerator, sk_l1 = host_numbers(
            device, numerator, global_numerator, sk_l1
        )
        if known_zero(lr) or known_zero(sk_l1):  # (lr 0: nothing was summed)
            return False  # the package's early return: nothing stored or updated, k unchanged
        d_hat = global_numerator / ((1 - sqrt_beta2) * sk_l1)
        progress = sk_l1 != 0  # (a NaN sum goes on, as the package's early return is on 0 only)
        new_d = _keep_unless(_grow(d, d_hat, first["growth_rate"]), d, lr, progress)
        numerator = choose(progress, numerator, old_numerator)
        _log(self, first, k, lr=lr, dlr=dlr, d_hat=d_hat, d=new_d)
        for item in work:
            group = item.group
            group.update(numerator_weighted=numerator, d=new_d)
            for chunk in item.chunks:
                dadapt_adam_update(
                    chunk, dlr=dlr, eps=group["eps"], weight_decay=group["weight_decay"],
                    decoupled_decay=decouple, scratch=self.whole_scratch(chunk),
                )  # fmt: skip
                self.updated(chunk)
            group["k"] = group["k"] + 1


# ---------------------------------------------------------------------------------------------
# DAdaptAdaGrad


def dadapt_adagrad_statistics(
    chunk: Chunk,
    *,
    dlr: Tensor,
    eps: float,
    weight_decay: float,
    scratch: Tensor | None = None,
    root_scratch: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""D-Adapted AdaGrad's accumulators over one chunk (the paper's Algorithm 3 as packaged).

    .. math::
        \alpha &\leftarrow \alpha + g^2, \qquad
        \Delta G = \sum \frac{g^2}{\sqrt{\alpha} + \epsilon}, \qquad s \leftarrow s + d\lambda g\\
        \Delta\|s\|^2_{A} &= \sum \frac{s^2}{\sqrt{\alpha}+\epsilon}\Big|_{\text{new}}
            - \sum \frac{s^2}{\sqrt{\alpha}+\epsilon}\Big|_{\text{old}}, \qquad
        \Delta\|s\|_1 = \|s\|_1^{\text{new}} - \|s\|_1^{\text{old}}

    Returns (ΔG, Δ weighted ||s||², Δ ||s||_1), each one value per tensor (``scratch``: see
    :func:`optim._global.abs_sums`; ``root_scratch``, another buffer as large, where the
    denominators of a chunk of one tensor are written: see :func:`optim._global.chunk_roots_plus`).
    """
    params, grads, state = chunk.params, chunk.grads, chunk.state
    if ops.may_be_nonzero(weight_decay):
        grads = with_coupled_decay(grads, params, weight_decay)
    alphak, sk, segments = state["alphak"], state["sk"], chunk.segments

    def weighted_sq(denominators: list[Tensor]) -> Tensor:
        return quotient_sums(sk, sk, denominators, scratch, segments)

    old_weighted = weighted_sq(chunk_roots_plus(alphak, eps, root_scratch))
    old_l1 = abs_sums(sk, scratch, segments)
    add_products_(alphak, grads, grads, scratch)
    # (the package takes alphak.sqrt().add(eps) again for each of the two sums below: the same
    # values, one pass over alphak fewer)
    denominators = chunk_roots_plus(alphak, eps, root_scratch)
    grad_sq = quotient_sums(grads, grads, denominators, scratch, segments)
    ops.add_scaled_(sk, grads, dlr)
    new_weighted = weighted_sq(denominators)
    return grad_sq, new_weighted - old_weighted, abs_sums(sk, scratch, segments) - old_l1


def dadapt_adagrad_update(
    chunk: Chunk, *, eps: float, momentum: float, scratch: Tensor | None = None
) -> None:
    r"""z = x0 - s / (\sqrt{\alpha} + \epsilon); x = z, or (1-c) x + c z with c = 1 - momentum.

    For a chunk of one tensor, z is written over its denominator, in ``scratch`` where it fits
    (see :func:`optim._global.chunk_roots_plus`): the same ops, no further temporary."""
    params, state = chunk.params, chunk.state
    denominators = chunk_roots_plus(state["alphak"], eps, scratch)
    if len(denominators) == 1:
        (x0,), (s,), (d,) = state["x0"], state["sk"], denominators
        z = [torch.sub(x0, torch.div(s, d, out=d), out=d)]
    else:
        z = torch._foreach_sub(state["x0"], torch._foreach_div(state["sk"], denominators))
    if momentum != 0:
        ck = 1 - momentum
        ops.tensor_mul_(params, 1 - ck)
        ops.add_scaled_(params, z, ck)
    else:
        torch._foreach_copy_(params, z)


class DAdaptAdaGrad(ReducingOptimizer):
    r"""AdaGrad with D-Adaptation (Defazio & Mishchenko, 2023, Algorithm 3 as in the package);
    drop-in for ``dadaptation.DAdaptAdaGrad`` 3.2 (dense gradients).

    .. math::
        \alpha_{k+1} &= \alpha_k + g_k^2, \qquad s_{k+1} = s_k + d_k\,\mathrm{lr}\, g_k, \qquad
        G_{k+1} = G_k + (d_k\,\mathrm{lr})^2 \sum \frac{g_k^2}{\sqrt{\alpha_{k+1}} + \epsilon}\\
        \hat d_{k+1} &= \frac{\sum s_{k+1}^2 / (\sqrt{\alpha_{k+1}} + \epsilon) - G_{k+1}}
            {\|s_{k+1}\|_1}, \qquad
        d_{k+1} = \max\bigl(d_k, \min(\hat d_{k+1}, d_k\,\text{growth\_rate})\bigr)\\
        x_{k+1} &= x_0 - \frac{s_{k+1}}{\sqrt{\alpha_{k+1}} + \epsilon}
            \quad\text{(averaged with momentum if momentum > 0)}

    Args (the package's, in its order): params; lr (default 1.0, the first group's applies);
    momentum in [0, 1) (default 0; the package takes any momentum >= 0, with which the
    parameters never move at 1 and the averaging extrapolates above it); log_every (default
    0); weight_decay >= 0 (default 0); eps > 0 (default 1e-6); d0 > 0 (default 1e-6);
    growth_rate >= 1 (default inf); foreach, impl. lr and d0 must be finite (the package takes
    infinite ones, which reach every parameter as NaN).

    Group keys: ``d``, ``gsq_weighted``, ``sksq_weighted``, ``skl1``, ``k``; state: ``alphak``
    (starts at 1e-6), ``sk``, ``x0``. A step in which no parameter has a gradient goes on as in
    the package after the first: d is recomputed from the groups' sums and ``k`` counted.
    Sparse gradients (which the package accepts) are refused,
    and so are parameters FSDP sharded, with the package's ``RuntimeError`` (which it raises at
    the first step; here the param group is taken back at once).
    ``step()`` leaves ``p.grad`` as it was (the package adds the weight decay to it in place,
    see :class:`DAdaptSGD`).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.DAdaptAdaGrad([w])
        >>> for _ in range(50):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).sum().backward()
        ...     opt.step()
        >>> bool(opt.param_groups[0]["d"] > 1e-6)
        True
    """

    _steps_without_gradients = True  # (see ReducingOptimizer; the package goes on)
    _sparse_refusal = (
        "dadaptation's DAdaptAdaGrad takes them, this port does not; dense gradients: "
        "nn.Embedding(sparse=False)"
    )
    _package_computing_in_numbers = "dadaptation"
    _frozen_group_lr = True  # (the package's "lr the same or 0" in every group)
    _pickled_attributes = (*ReducingOptimizer._pickled_attributes, "d0")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1.0,
        momentum: float = 0,
        log_every: int = 0,
        weight_decay: float = 0.0,
        eps: float = 1e-6,
        d0: float = 1e-6,
        growth_rate: float = float("inf"),
        *,
        foreach: bool | None = None,
        impl: str | None = None,
    ) -> None:
        defaults = {
            "lr": lr, "momentum": momentum, "eps": eps, "weight_decay": weight_decay,
            "gsq_weighted": 0.0, "log_every": log_every, "d": d0, "growth_rate": growth_rate,
            "k": 0, "sksq_weighted": 0.0, "skl1": 0.0,
        }  # fmt: skip
        super().__init__(params, defaults, impl=impl, foreach=foreach)
        self.d0 = d0

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        _common_checks(values)
        check_interval(values["momentum"], "momentum", 0.0, 1.0, high_open=True)
        check_positive(values["eps"], "eps")
        check_nonnegative(values["weight_decay"], "weight_decay")
        super()._check_hyperparameters(values)

    _step_size = staticmethod(d_times_lr)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if self._fsdp_marked:
            group = self.param_groups.pop()
            self._fsdp_marked = False  # (an earlier group would have raised)
            position = next(
                i for i, p in enumerate(group["params"]) if getattr(p, FSDP_FLATTENED, False)
            )
            raise RuntimeError(
                "D-Adapt AdaGrad doesn't currently support fully-sharded data parallel. Use D-Adapt"
                f" Adam instead (as the dadaptation package says; parameter {position} of param "
                f"group {len(self.param_groups)} is an FSDP shard, marked {FSDP_FLATTENED})"
            )

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("alphak", "sk", "x0")

    def _new_state(self, group: dict, p: Tensor, key: str) -> Tensor:
        if key == "alphak":
            return torch.full_like(p, 1e-6, memory_format=torch.preserve_format)
        if key == "x0":
            return p.detach().clone(memory_format=torch.preserve_format)
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, work: list[Work]) -> bool | None:
        device = self._device_of(work)
        first = self.param_groups[0]
        lr = self.number_or_tensor(first["lr"], device)
        momentum = _number(first["momentum"], "momentum")
        d = self.number(first, "d", device)
        dlr = d * lr
        grad_sqs, weighted, l1s = [], [], []
        for item in work:
            group = item.group
            for chunk in item.chunks:
                g_sq, w, l1 = dadapt_adagrad_statistics(
                    chunk, dlr=dlr, eps=group["eps"], weight_decay=group["weight_decay"],
                    scratch=self.whole_scratch(chunk), root_scratch=self.whole_scratch(chunk, 1),
                )  # fmt: skip
                grad_sqs.append(g_sq)
                weighted.append(w)
                l1s.append(l1)
        old = {
            name: self.number(first, name, device)
            for name in ("gsq_weighted", "sksq_weighted", "skl1")
        }
        order = parameter_order(work)
        sums = host_numbers(
            device, *(total(values, device, order=order) for values in (weighted, l1s, grad_sqs))
        )
        sksq_weighted = old["sksq_weighted"] + sums[0]
        skl1 = old["skl1"] + sums[1]
        if known_zero(skl1):
            return False  # the package's early return: nothing stored or updated, k unchanged
        gsq_weighted = old["gsq_weighted"] + dlr * dlr * sums[2]
        d_hat = (sksq_weighted - gsq_weighted) / skl1
        progress = skl1 != 0
        new_d = _keep_unless(_grow(d, d_hat, first["growth_rate"]), d, lr, progress)
        gsq_weighted = choose(progress, gsq_weighted, old["gsq_weighted"])
        k = first["k"]
        _log(self, first, k, d_hat=d_hat, d=new_d, skl1=skl1, gsq_weighted=gsq_weighted)
        for item in work:
            group = item.group
            group.update(gsq_weighted=gsq_weighted, skl1=skl1, sksq_weighted=sksq_weighted, d=new_d)
            for chunk in item.chunks:
                dadapt_adagrad_update(
                    chunk, eps=group["eps"], momentum=momentum, scratch=self.whole_scratch(chunk)
                )
                self.updated(chunk)
            group["k"] = group["k"] + 1


__all__ = [
    "DAdaptAdaGrad",
    "DAdaptAdam",
    "DAdaptSGD",
    "dadapt_adagrad_statistics",
    "dadapt_adagrad_update",
    "dadapt_adam_statistics",
    "dadapt_adam_update",
    "dadapt_sgd_statistics",
    "dadapt_sgd_update",
]
