"""Prodigy: Mishchenko & Defazio (2023), "Prodigy: An Expeditiously Adaptive Parameter-Free
Learner" (arXiv:2306.06101; ICML 2024), matched to the ``prodigyopt`` 1.1.2 package."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import _number, check_betas, check_interval, check_nonnegative
from optim._base import as_tuple as _as_tuple
from optim._global import (
    Chunk,
    FairseqFlags,
    ReducingOptimizer,
    Work,
    abs_sums,
    active,
    check_at_least,
    check_count,
    check_positive,
    choose,
    chunk_roots_plus,
    common_lr,
    d_times_lr,
    differences,
    dots,
    host_numbers,
    known_zero,
    parameter_order,
    py_max,
    py_min,
    total,
    with_coupled_decay,
)


def _sliced(tensors: list[Tensor], slice_p: int) -> list[Tensor]:
    """Every ``slice_p``-th element of each tensor, flat in its logical order, as the package's
    ``t.flatten()[::slice_p]`` (the tensor itself where it is flat already: a packed round)."""
    if slice_p == 1:
        return [t if t.dim() == 1 else t.reshape(-1) for t in tensors]
    return [t.reshape(-1)[::slice_p] for t in tensors]


def decayed_gradients(chunk: Chunk, weight_decay: float, coupled_decay: bool) -> list[Tensor]:
    """The gradients with the coupled (L2) decay, g + wd * x, when ``coupled_decay``; as they are
    otherwise. The package adds it to every gradient in place before it tests a group's lr, so
    a group at lr 0 takes it too (its update reads the gradient when beta1 = 0). A strided
    gradient (``p.grad = buffer[::2]``) takes it in a copy with its strides, whose flat view the
    dot then reads as the package's ``torch.dot`` reads its gradient, with the same bits (see
    :func:`optim._global.copies_in_their_strides`)."""
    if coupled_decay and ops.may_be_nonzero(weight_decay):
        return with_coupled_decay(chunk.grads, chunk.params, weight_decay)
    return chunk.grads


def prodigy_statistics(
    chunk: Chunk,
    *,
    d: Tensor,
    dlr: Tensor,
    d0: float,
    beta1: float,
    beta2: float,
    beta3: float,
    weight_decay: float,
    coupled_decay: bool,
    safeguard_warmup: bool,
    slice_p: int,
    scratch: Tensor | None = None,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    r"""Prodigy's moment updates and its two sums over one chunk (Algorithm 4 of the paper).

    .. math::
        \Delta r &= \tfrac{d}{d_0}\, d\lambda\, \langle g, x_0 - x\rangle, \qquad
        m = \beta_1 m + d(1-\beta_1) g, \qquad v = \beta_2 v + d^2(1-\beta_2) g^2\\
        s &= \beta_3 s + \tfrac{d}{d_0}\, d\lambda\, g
            \;(\tfrac{d}{d_0}\, d\, g \text{ with safeguard\_warmup}), \qquad
        \Delta\text{denom} = \|s\|_1

    with ``dlr`` = d * lr * bias correction (``scratch``: see :func:`optim._global.abs_sums`).
    Returns (Δ numerator, ||s||_1), each one value per tensor, and the gradients used.
    """
    params, state = chunk.params, chunk.state
    grads = decayed_gradients(chunk, weight_decay, coupled_decay)
    ratio = d / d0
    sliced_grads = _sliced(grads, slice_p)
    p0, s = _sliced(state["p0"], 1), _sliced(state["s"], 1)  # (flat; 2-D: a complex one's pairs)
    sliced_params = _sliced(params, slice_p)
    # a chunk of one tensor: its difference in ``scratch``, dotted at once (as its root, see
    # chunk_roots_plus); a list of smaller tensors: the multi-tensor op
    if len(p0) == 1:
        difference = differences(p0, sliced_params, scratch)
    else:
        difference = torch._foreach_sub(p0, sliced_params)
    numerator = ratio * dlr * dots(sliced_grads, difference, chunk.segments)
    if beta1 > 0:
        ops.tensor_mul_(state["exp_avg"], beta1)
        ops.add_scaled_(state["exp_avg"], grads, d * (1 - beta1))
    ops.tensor_mul_(state["exp_avg_sq"], beta2)
    ops.addcmul_(state["exp_avg_sq"], grads, grads, d * d * (1 - beta2))
    ops.tensor_mul_(s, beta3)
    ops.add_scaled_(s, sliced_grads, ratio * (d if safeguard_warmup else dlr))
    # (s is flat, a channels_last tensor's in logical order, as the package sums it: a packed or
    # flat layout holds it only for a row-major parameter, see _flat_state_keys)
    return numerator, abs_sums(state["s"], scratch, chunk.segments), grads


def prodigy_update(
    chunk: Chunk,
    grads: list[Tensor],
    *,
    d: Tensor,
    dlr: Tensor,
    eps: float,
    beta1: float,
    weight_decay: float,
    decoupled_decay: bool,
    scratch: Tensor | None = None,
) -> None:
    r"""Prodigy's parameter update over one chunk, with the new ``d`` and this step's ``dlr``
    (``scratch``: where a chunk of one tensor writes its denominator, see
    :func:`optim._global.chunk_roots_plus`).

    .. math::
        x \leftarrow x - d\lambda\,\mathrm{wd}\, x \text{ (decoupled)}, \qquad
        x \leftarrow x - d\lambda\, \frac{m}{\sqrt{v} + d\epsilon}
        \;\Bigl(d\lambda\, d\,\frac{g}{\sqrt{v} + d\epsilon} \text{ when } \beta_1 = 0\Bigr)
    """
    params, state = chunk.params, chunk.state
    denominators = chunk_roots_plus(state["exp_avg_sq"], d * eps, scratch)
    if decoupled_decay and ops.may_be_nonzero(weight_decay):
        ops.add_scaled_(params, params, -weight_decay * dlr)
    if beta1 > 0:
        ops.addcdiv_(params, state["exp_avg"], denominators, -dlr)
    else:
        ops.addcdiv_(params, grads, denominators, -dlr * d)


class Prodigy(FairseqFlags, ReducingOptimizer):
    r"""Prodigy (Mishchenko & Defazio, 2023): Adam whose step size estimates the distance to a
    solution; a drop-in for ``prodigyopt.Prodigy`` 1.1.2 (same arguments, defaults, group keys).

    The estimate (the paper's Algorithm 4, "Prodigy (Adam version)", with the package's
    weighting by d/d0) is shared by all param groups:

    .. math::
        r_k &= \beta_3 r_{k-1} + \tfrac{d_k}{d_0} d_k\lambda_k \langle g_k, x_0 - x_k\rangle,
        \qquad s_k = \beta_3 s_{k-1} + \tfrac{d_k}{d_0} d_k\lambda_k g_k\\
        \hat d_{k+1} &= c\, \frac{r_k}{\|s_k\|_1}, \qquad
        d_{k+1} = \min\bigl(\max(d_{\max}, \hat d_{k+1}), d_k\, \text{growth\_rate}\bigr)

    (the first increase, taken while d equals ``d0``, is taken in full; as in the package, the
    ``d0`` compared is the last param group's), and every parameter takes Adam's step with
    learning rate ``d_k * lr`` (times Adam's bias correction if ``use_bias_correction``) and
    moments weighted by ``d_k``: :func:`prodigy_statistics`, :func:`prodigy_update`. The
    key lemma of the paper (Lemma 1 for D-Adaptation, its analogue for Prodigy: the estimate
    never exceeds the true distance, ``d_k <= ||x0 - x*||``, for convex problems) is certified
    in ``theory.lr_free_bounds.d_estimate_bound``.

    Args (``prodigyopt.Prodigy``'s, in its order):
        params: parameters or param-group dicts; every group's ``lr`` must be the same or 0.
        lr: multiplier of the estimated step size (default 1.0; a schedule goes here).
        betas: Adam's (beta1, beta2), each in [0, 1) (default (0.9, 0.999)).
        beta3: decay of the estimate's sums (default None: sqrt(beta2)).
        eps: added to the denominator, times d (default 1e-8); > 0.
        weight_decay: decay >= 0 (default 0), decoupled (AdamW's) unless ``decouple=False``.
        decouple: AdamW-style weight decay (default True).
        use_bias_correction: Adam's bias correction in the step size (default False).
        safeguard_warmup: leave lr out of the estimate's denominator (default False).
        d0: initial estimate > 0 (default 1e-6).
        d_coef: multiplier c of the estimate (default 1.0).
        growth_rate: cap >= 1 on d's growth per step (default inf).
        fsdp_in_use: each rank holds a shard of the parameters (FSDP): the estimate's sums are
            summed over the default process group (default False; on whenever a parameter is
            one FSDP marked, as in the package; see ``optim._global.sum_over_ranks``).
        slice_p: estimate from every slice_p-th element (default 1); not with ``impl="flat"``,
            nor with complex parameters (which the package fails on, and ours update as their
            real pairs, as the other learning-rate-free methods here).
        foreach, impl: execution path (``"single"``, ``"foreach"``, ``"flat"``).

    Global scalars live in every param group under the package's names (``d``, ``d_max``,
    ``d_numerator``, ``d_denom``, ``d_hat``, ``k``); on a GPU ``d`` and its companions become
    0-dim float64 tensors on the parameters' device at the first step, so ``step()`` never
    synchronises; on a CPU they are Python floats, as in the package
    (:func:`optim._global.host_scalars`: the same bits, and 27 aten ops a step on one tensor
    where the tensors took 58; the package's step runs 24).
    State per parameter: ``step`` (an int, the updates it received), ``s``, ``p0``, ``exp_avg``
    (if beta1 > 0), ``exp_avg_sq``: the package's keys, in its order and shapes (``s`` and ``p0``
    flat, ``p.flatten()[::slice_p]``), so that a checkpoint moves either way and code that reads
    or replaces the live state finds the package's tensors (``p0`` is always a copy, never the
    package's 0-dim zero for all-zero tensors; a checkpoint's 0-dim ``p0`` loads as zeros).
    Differences from the package: the gradient tensors are not modified in place; a step the
    package returns early from (this step's sum of |s| is 0) changes nothing where that is known
    without a device read, and otherwise leaves ``d`` unchanged; sharded sums are reduced in
    float64 (the package: float32, on CUDA only), and a step whose sum is 0 on every rank
    changes nothing there too (the package divides by it); a NumPy float narrower than float64
    among a group's values (``d0=np.float32(1e-5)``), with which the package computes d in
    NumPy's float32 arithmetic, raises ``TypeError`` (ours computes in float64).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.Prodigy([w])
        >>> for _ in range(50):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).sum().backward()
        ...     opt.step()
        >>> d = opt.param_groups[0]["d"]  # the estimated distance, grown from d0 = 1e-6
        >>> bool(1e-3 < d < 10)
        True
    """

    _sparse_refusal = (
        "as prodigyopt, whose step fails on them; dense gradients: nn.Embedding(sparse=False)"
    )
    _package_computing_in_numbers = "prodigyopt"
    _frozen_group_lr = True  # (the package's "lr the same or 0" in every group)
    _counts_updates = True

    _pickled_attributes = (*ReducingOptimizer._pickled_attributes, "d0")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = float("inf"),
        fsdp_in_use: bool = False,
        slice_p: int = 1,
        *,
        foreach: bool | None = None,
        impl: str | None = None,
    ) -> None:
        defaults = {
            "lr": lr, "betas": _as_tuple(betas), "beta3": beta3, "eps": eps,
            "weight_decay": weight_decay, "d": d0, "d0": d0, "d_max": d0, "d_numerator": 0.0,
            "d_coef": d_coef, "k": 0, "growth_rate": growth_rate,
            "use_bias_correction": use_bias_correction, "decouple": decouple,
            "safeguard_warmup": safeguard_warmup, "fsdp_in_use": fsdp_in_use, "slice_p": slice_p,
        }  # fmt: skip
        super().__init__(params, defaults, impl=impl, foreach=foreach)
        if self.impl == "flat" and slice_p != 1:
            raise ValueError(
                f"slice_p={slice_p!r} needs per-tensor slices: use impl='foreach' or 'single' "
                "(impl='flat' supports slice_p=1 only)"
            )
        self.d0 = d0

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`): ``d0``
        (the group's key; ``d``, the estimate it starts, is not checked), ``lr``, ``eps``,
        ``betas``, ``beta3`` (None: sqrt(beta2)), ``weight_decay``, ``d_coef``,
        ``growth_rate``, ``slice_p``."""
        check_positive(values["d0"], "d0", finite=True)
        check_positive(values["lr"], "lr", finite=True)
        check_positive(values["eps"], "eps")
        check_betas(values["betas"])
        if values["beta3"] is not None:
            check_interval(values["beta3"], "beta3", 0.0, 1.0, high_open=False)
        check_nonnegative(values["weight_decay"], "weight_decay")
        check_positive(values["d_coef"], "d_coef", finite=True)
        check_at_least(values["growth_rate"], "growth_rate", 1.0)
        check_count(values["slice_p"], "slice_p", 1)
        super()._check_hyperparameters(values)

    _step_size = staticmethod(d_times_lr)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        """The package's state keys: ``exp_avg`` when the FIRST group's beta1 > 0, for every
        group (its step reads ``betas`` from ``param_groups[0]`` alone, as for its update)."""
        first = self.param_groups[0] if self.param_groups else group  # (the first group added)
        if first["betas"][0] > 0:
            return ("s", "p0", "exp_avg", "exp_avg_sq")
        return ("s", "p0", "exp_avg_sq")

    def _new_state(self, group: dict, p: Tensor, key: str) -> Tensor:
        """The package's: ``s`` and ``p0`` flat, ``p``'s elements in their logical (row-major)
        order, every ``slice_p``-th (its sum of |s| adds them in that order: a channels_last
        ``s`` summed in memory order put float32 d 1e-7 apart at the first step); the moments
        shaped as ``p``."""
        if p.is_complex() and group["slice_p"] != 1:
            raise TypeError(
                f"Prodigy with slice_p={group['slice_p']!r} takes real parameters, got a "
                f"{p.dtype} one of shape {tuple(p.shape)}: a complex parameter is updated as "
                "its real pairs, which slices would cut (slice_p=1 takes it; prodigyopt fails "
                "on complex parameters)"
            )
        if key == "p0":
            return p.detach().flatten()[:: group["slice_p"]].clone()
        if key == "s":
            return torch.zeros_like(p.detach().flatten()[:: group["slice_p"]])
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def _flat_state_keys(self, group: dict) -> frozenset[str]:
        """``s`` and ``p0`` hold all of their parameter's elements, flat, when ``slice_p`` is 1:
        packed and flat layouts then hold them beside their parameter's other state."""
        return frozenset(("s", "p0")) if group["slice_p"] == 1 else frozenset()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``; the package's 0-dim ``p0`` of an all-zero tensor loads as
        that many zeros, and an ``s``/``p0`` saved in the parameter's shape (a checkpoint of
        this class before its state took the package's flat layout) is flattened."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            if group["slice_p"] != 1:
                continue
            for p in group["params"]:
                state = self.state.get(p, {})
                for key in ("s", "p0"):
                    value = state.get(key)
                    if value is not None and value.shape != (p.numel(),):
                        state[key] = value.expand(p.shape).flatten().clone()

    def _update(self, work: list[Work]) -> bool | None:
        device = self._device_of(work)
        first = self.param_groups[0]
        beta1, beta2 = (_number(b, "betas") for b in first["betas"])
        beta3 = first["beta3"] if first["beta3"] is not None else math.sqrt(beta2)
        k = first["k"]
        d = self.number(first, "d", device)
        d_max = self.number(first, "d_max", device)
        lr = common_lr(self.param_groups, device)
        bias_correction = 1.0
        if first["use_bias_correction"]:
            bias_correction = ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1))
        dlr = d * lr * bias_correction
        d_numerator = self.number(first, "d_numerator", device) * beta3
        decouple = first["decouple"]
        numerators, denominators, used = [], [], {}
        for item in work:
            group = item.group
            if not active(group):
                continue
            for i, chunk in enumerate(item.chunks):
                numerator, l1, grads = prodigy_statistics(
                    chunk, d=d, dlr=dlr, d0=group["d0"], beta1=beta1, beta2=beta2, beta3=beta3,
                    weight_decay=group["weight_decay"], coupled_decay=not decouple,
                    safeguard_warmup=group["safeguard_warmup"], slice_p=group["slice_p"],
                    scratch=self.whole_scratch(chunk),
                )  # fmt: skip
                numerators.append(numerator)
                denominators.append(l1)
                used[id(group), i] = grads
        order = parameter_order(work, active)
        delta, d_denom = host_numbers(
            device,
            *self.over_ranks(
                total(numerators, device, order=order), total(denominators, device, order=order)
            ),
        )
        if known_zero(lr) or known_zero(d_denom):  # (lr 0: nothing was summed)
            return False  # the package's early return: nothing stored or updated, k unchanged
        global_numerator = d_numerator + delta
        d_hat = first["d_coef"] * global_numerator / d_denom
        new_d, new_d_max = d, d_max
        # The package returns early when the sum is 0 (no gradient was ever nonzero); a NaN sum
        # (a NaN or infinite gradient) goes on there, and loses in its max and min.
        progress = d_denom != 0
        # (the package compares d with the d0 of its loop's last group, the last param group)
        d_first = choose(d == self.param_groups[-1]["d0"], py_max(d, d_hat), d)
        new_d_max = py_max(d_max, d_hat)
        new_d = py_min(new_d_max, d_first * first["growth_rate"])
        if isinstance(lr, Tensor):
            progress = progress & (lr > 0)
        elif not lr > 0:
            progress = False  # (every value below keeps its old one, tensor or number)
        new_d = choose(progress, new_d, d)
        new_d_max = choose(progress, new_d_max, d_max)
        d_hat = choose(progress, d_hat, d)
        for item in work:
            group = item.group
            group.update(
                d_numerator=global_numerator, d_denom=d_denom, d=new_d, d_max=new_d_max,
                d_hat=d_hat,
            )  # fmt: skip
            for i, chunk in enumerate(item.chunks):
                grads = used.get((id(group), i))
                if grads is None:  # a group at lr 0: out of the sums; with beta1 = 0, its
                    # update still reads its gradient (at the common d * lr), decayed as the
                    # package's in-place decay leaves it
                    grads = chunk.grads
                    if beta1 == 0:
                        grads = decayed_gradients(chunk, group["weight_decay"], not decouple)
                prodigy_update(
                    chunk, grads, d=new_d, dlr=dlr, eps=group["eps"], beta1=beta1,
                    weight_decay=group["weight_decay"], decoupled_decay=decouple,
                    scratch=self.whole_scratch(chunk),
                )  # fmt: skip
                self.updated(chunk)
            group["k"] = group["k"] + 1
