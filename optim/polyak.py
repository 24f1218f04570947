"""Step sizes from the loss: the stochastic Polyak step (SPS_max; Loizou, Vaswani, Laradji &
Lacoste-Julien, AISTATS 2021, arXiv:2002.10542) and the stochastic Armijo line search (SLS;
Vaswani, Mishkin, Laradji, Schmidt, Gidel & Lacoste-Julien, NeurIPS 2019, arXiv:1905.09997).

Both need the loss of the mini-batch at the current point: ``step(closure)``, the closure
zeroing the gradients, computing the loss, calling ``backward()`` and returning the loss, as for
``torch.optim.LBFGS``. SPS may instead be given the loss: ``loss.backward(); opt.step(loss=loss)``.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optim import _ops as ops
from optim._base import _number, check_interval, check_nonnegative, without_grad
from optim._global import (
    ReducingOptimizer,
    Work,
    check_count,
    check_finite,
    check_positive,
    sum_of_squares,
    total,
)


def _loss_tensor(loss: Any, device: torch.device) -> Tensor:
    """The mini-batch loss (what the closure returned, or ``step(loss=...)``) as a 0-dim float64
    tensor on ``device``; a real number (``numbers.Real``, NumPy's included, not a bool), a
    1-element tensor or a 1-element NumPy array of integers or floats, else a TypeError."""
    if isinstance(loss, Tensor) and loss.numel() == 1:
        return loss.detach().reshape(()).to(device=device, dtype=torch.float64)
    number = isinstance(loss, numbers.Real) and not isinstance(loss, (bool, np.bool_))
    if isinstance(loss, np.ndarray) and loss.size == 1 and loss.dtype.kind in "iuf":
        loss, number = loss.item(), True
    if number:
        return torch.tensor(float(loss), dtype=torch.float64, device=device)
    if isinstance(loss, (Tensor, np.ndarray)):
        got = f"{type(loss).__name__} of shape {tuple(loss.shape)} and dtype {loss.dtype}"
    else:
        got = f"{loss!r} ({type(loss).__name__})"
    raise TypeError(
        "the loss must be a number or a 1-element tensor or NumPy array (a real number, not a "
        f"bool; reduce it, e.g. .mean()), got {got}"
    )


_last_step_size = operator.itemgetter("step_size")  # (SPS's and SLS's _step_size)


def _check_backward_called(optimizer: torch.optim.Optimizer, closure: Any, loss: Any) -> None:
    """A ValueError where the closure's first call returned a loss that requires grad while no
    parameter of ``optimizer`` has a gradient: a closure that does not call ``backward()`` (the
    authors' convention, whose optimizers call it), which made the step a silent no-op. Frozen
    or unused parameters are no sign of it, while another parameter has its gradient."""
    if not (isinstance(loss, Tensor) and loss.requires_grad):
        return
    if any(p.grad is not None for group in optimizer.param_groups for p in group["params"]):
        return
    raise ValueError(
        f"{type(optimizer).__name__}.step(closure): the closure must call loss.backward() before "
        "returning the loss (as for torch.optim.LBFGS): it returned a loss that requires grad, "
        f"and no parameter of this optimizer has a gradient; got closure={closure!r}"
    )


def sps_step_size(
    loss: Tensor, grad_sq: Tensor, *, c: float, gamma_b: float, f_star: float, eps: float
) -> Tensor:
    r"""SPS_max's step (Loizou et al. 2021, eq. (5)), clipped below at 0:

    .. math::
        \gamma_k = \min\Bigl(\frac{f_i(x_k) - f_i^*}{c\,\|\nabla f_i(x_k)\|^2 + \epsilon},
        \gamma_b\Bigr)

    Where the quotient is not finite (the gradient and eps are 0, or it overflows; at a zero
    denominator it is taken as +inf, its limit where f_i > f_i^*), the step is ``gamma_b``
    where that is finite (the capped value; the gradient being 0 or tiny, x barely moves), and
    0 where ``gamma_b`` is inf (plain SPS): an infinite step is none, as the authors' code
    (IssamLaradji/sps) takes none where ||grad|| < 1e-8; inf * 0 made every parameter NaN.
    A NaN loss gives a NaN step. A 0-dim float64 tensor; nothing is read (``torch.where``).
    """
    denominator = c * grad_sq + eps
    ratio = (loss - f_star) / torch.where(denominator > 0, denominator, 1.0)
    ratio = torch.where(denominator > 0, ratio, math.inf)
    bound = torch.as_tensor(gamma_b, dtype=ratio.dtype, device=ratio.device)
    step = torch.clamp(torch.minimum(ratio, bound), min=0)
    return torch.where(torch.isinf(step), 0.0, step)  # (only with gamma_b = inf)


class SPS(ReducingOptimizer):
    r"""Stochastic Polyak step, SPS_max (Loizou et al., AISTATS 2021, eq. (5)).

    .. math::
        \gamma_k = \min\Bigl(\frac{f_i(x_k) - f_i^*}{c\,\|\nabla f_i(x_k)\|^2 + \epsilon},
        \gamma_b\Bigr), \qquad x_{k+1} = x_k - \gamma_k \nabla f_i(x_k)

    with f_i the mini-batch loss and ||.|| over every parameter of every group (one step size;
    ``c``, ``gamma_b``, ``f_star``, ``eps`` are read from the first param group), and over
    every rank's shard when FSDP shards the parameters (``optim._global.sum_over_ranks``).
    With c = 1, gamma_b = inf and the full loss it is Polyak's (1987) step, whose rates on convex
    and strongly convex problems are certified in ``theory.lr_free_bounds.polyak_bound``;
    Lemma 1 of the paper gives gamma_k >= min(1 / (2 c L_max), gamma_b) for L_i-smooth f_i
    (``theory.lr_free_bounds.sps_step_bound``). The step never reads a value on the host.

    Against the authors' code (IssamLaradji/sps, ``Sps``), which gives these numbers to
    rounding with ``eps=0, adapt_flag="constant", eta_max=gamma_b`` (one group): its default
    ``eps`` is 1e-8 (the paper's formula, and ours, 0); it skips the update where
    ||grad|| < 1e-8 (ours applies the formula, bounded by ``gamma_b``, and takes no step where
    that is infinite: ``gamma_b=math.inf`` at a zero gradient, see ``sps_step_size``); its default
    ``adapt_flag="smooth_iter"`` caps each step at 2^(1/n) times the last (set
    ``param_groups[0]["gamma_b"]`` before each step for that), and its per-batch f_i* is
    ``f_star`` set before each step.

    Args:
        params: parameters or param-group dicts.
        c: > 0 (default 0.5, the paper's theory value).
        gamma_b: the cap > 0 of SPS_max (default 1.0; ``math.inf``: plain SPS).
        f_star: lower bound f_i* of every mini-batch loss (default 0: interpolation).
        eps: >= 0 added to the denominator (default 0).
        foreach, impl: execution path (``"single"``, ``"foreach"``, ``"flat"``).

    ``step(closure)`` (the closure returns the loss after ``backward()``) or ``step(loss=...)``.
    Under data parallelism give the global batch's loss, the same on every rank (the runner's
    closure does): each rank's own share would give each replica its own step size.
    The step size of the last update is ``param_groups[0]["step_size"]`` (a 0-dim tensor).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.SPS([w], c=1.0, gamma_b=10.0)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((w - 3) ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> _ = opt.step(closure)  # f = 29, g = 2 (w - 3), ||g||^2 = 116: gamma = 29 / 116
        >>> w.detach(), round(float(opt.param_groups[0]["step_size"]), 6)
        (tensor([2.0000, 0.5000]), 0.25)
    """

    _sparse_refusal = "dense gradients: nn.Embedding(sparse=False)"
    _blocks_large_tensors = True  # (no package to match: sums over blocks are within rounding)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        c: float = 0.5,
        gamma_b: float = 1.0,
        f_star: float = 0.0,
        eps: float = 0.0,
        *,
        foreach: bool | None = None,
        impl: str | None = None,
    ) -> None:
        defaults = {"c": c, "gamma_b": gamma_b, "f_star": f_star, "eps": eps, "step_size": 0.0}
        super().__init__(params, defaults, impl=impl, foreach=foreach)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`)."""
        check_positive(values["c"], "c")
        check_finite(values["c"], "c", "an infinite c makes every step 0")
        check_positive(values["gamma_b"], "gamma_b")
        check_finite(values["f_star"], "f_star", "a lower bound of every mini-batch loss")
        check_nonnegative(values["eps"], "eps")
        super()._check_hyperparameters(values)

    _step_size = staticmethod(_last_step_size)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ()

    @without_grad
    def step(self, closure: Callable[[], Any] | None = None, *, loss: Any = None) -> Any:
        """One SPS update; ``closure`` (returning the loss after backward) or ``loss`` needed."""
        if (closure is None) == (loss is None):
            raise ValueError(
                "SPS.step needs the loss: give step(closure) (a closure that zeroes the "
                "gradients, computes the loss, calls backward() and returns it) or step(loss=...)"
                f", got closure={closure!r}, loss={loss!r}"
            )
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            _check_backward_called(self, closure, loss)
        self._loss = loss
        try:
            super().step()
        finally:
            self._loss = None  # not kept past the step (nor what it references)
        return loss

    def _update(self, work: list[Work]) -> None:
        device = self._device_of(work)
        first = self.param_groups[0]
        squares = [sum_of_squares(c.grads) for item in work for c in item.chunks]
        (grad_sq,) = self.over_ranks(total(squares, device))  # (FSDP shards: over all of them)
        grad_sq = torch.as_tensor(grad_sq, dtype=torch.float64, device=device)  # (a host total)
        step = sps_step_size(
            _loss_tensor(self._loss, device),
            grad_sq,
            c=first["c"],
            gamma_b=first["gamma_b"],
            f_star=first["f_star"],
            eps=first["eps"],
        )
        for item in work:
            item.group["step_size"] = step
            for chunk in item.chunks:
                ops.add_scaled_(chunk.params, chunk.grads, -step)
                self.updated(chunk)


class _RandomStreams:
    """The global random states a closure may draw from: the CPU's, and each CUDA device's that
    holds a parameter (``get`` returns them, ``set`` puts them back; host reads of the
    generators' states, no kernel)."""

    def __init__(self, param_groups: list[dict]) -> None:
        self.cuda = sorted(
            {p.device.index or 0 for g in param_groups for p in g["params"] if p.is_cuda}
        )

    def get(self) -> list[Tensor]:
        return [torch.get_rng_state()] + [torch.cuda.get_rng_state(i) for i in self.cuda]

    def set(self, states: list[Tensor]) -> None:
        torch.set_rng_state(states[0])
        for index, state in zip(self.cuda, states[1:]):
            torch.cuda.set_rng_state(state, index)


SLS_SEARCHES_FROM = 1e-8
"""``SLS`` searches only where ||grad|| is at least this; below it the step is skipped (the
authors' code, IssamLaradji/sls ``sls.py``: ``if grad_norm >= 1e-8``)."""
SLS_FALLBACK_STEP = 1e-6
"""The step ``SLS`` takes when every trial fails the Armijo test (the authors' code:
``try_sgd_update(params, 1e-6, ...)``)."""


class SLS(ReducingOptimizer):
    r"""Stochastic line search: SGD with the Armijo condition on each mini-batch, backtracking and
    a step-size reset (Vaswani et al., NeurIPS 2019, Algorithms 1 and 2).

    .. math::
        \eta \leftarrow \text{reset}(\eta_{k-1}), \qquad
        \text{while } f_i(x_k - \eta \nabla f_i(x_k)) > f_i(x_k) - c\,\eta\,\|\nabla f_i(x_k)\|^2:
        \ \eta \leftarrow \beta_b\, \eta, \qquad x_{k+1} = x_k - \eta_k \nabla f_i(x_k)

    reset (the resets of the paper's Algorithm 2, numbered as the authors' ``reset_option``,
    IssamLaradji/sls ``utils.reset_step``): 0 keeps eta_{k-1}; 1 grows it, eta_{k-1}
    gamma^(1 / n_batches_per_epoch) (the paper's gamma^(b/n)); 2 restarts at
    ``init_step_size``; the trial step is capped at ``eta_max`` (the authors' first code capped
    growth at 10; their current code does not cap Armijo steps: ``eta_max=math.inf``). The
    first step starts at ``init_step_size``, unreset (the paper's k = 1; the authors' code grows
    it once first with option 1). Two safeguards of the authors' code, not in the paper (whose
    search always ends in exact arithmetic): where ||grad f_i(x_k)|| < 1e-8 nothing is searched
    and x stays (the reset step is kept), and where every one of ``max_backtracks`` trials
    fails, x moves by 1e-6 grad and the step size kept is eta beta_b^max_backtracks. One step
    size for all param groups, the paper's single vector (the authors' code searches each group
    on its own). Every accepted step is at least
    eta_min = min(eta_0, eta_max, 2 beta_b (1 - c) / L) on an L-smooth loss (given backtracks
    enough, eta_max beta_b^(max_backtracks - 1) <= 2 (1 - c) / L, so that a trial passes), and
    with c >= 1/2 the full-batch method
    satisfies f(x_k) - f* <= ||x0 - x*||² / (2 k eta_min) on a convex problem
    (``theory.lr_free_bounds.armijo_bound``).

    The backtracking decides on the host: each trial compares two loss values there (one read
    per trial, a deliberate sync: the line search cannot be decided on the device), so unlike
    the other optimizers here ``step()`` synchronises.

    Args:
        params: parameters or param-group dicts (one step size for all of them; ||grad||² is
            summed over every rank's shard when FSDP shards them, as in ``SPS``).
        n_batches_per_epoch: n/b of the reset (default 500).
        init_step_size: eta_0 > 0 (default 1). c: Armijo constant in (0, 1) (default 0.1).
        beta_b: backtracking factor in (0, 1) (default 0.9). gamma: reset growth >= 1 (default 2).
        reset_option: 0, 1 or 2 (default 1). eta_max: cap > 0 (default 10).
        max_backtracks: most trials per step (default 100; then the fallback above).
        foreach, impl: execution path.

    ``step(closure)``: the closure zeroes the gradients, computes the mini-batch loss, calls
    ``backward()`` and returns it (as for LBFGS); it is called again at every trial point, on the
    same mini-batch. ``param_groups[0]["step_size"]`` holds the accepted step (a float). A
    closure that returns a loss requiring grad while no parameter got a gradient (it did not call
    ``backward()``) is refused with a ValueError. A closure that raises in a trial (a
    KeyboardInterrupt too) leaves the parameters at x_k, the step not counted.

    Each trial runs the closure with gradients enabled, so it costs a forward and a backward
    pass, where the authors' code evaluates trials under ``torch.no_grad()`` (forward only):
    the same step sizes (the Armijo test needs the loss at a trial point and only x_k's
    gradient, which the step copies first), about twice the time per trial. Side effects of
    that: after the step ``p.grad`` holds the gradient at the last point the closure saw, the
    accepted x_{k+1} when a trial passes (at a rejected trial when all fail; x_k's where
    nothing is searched), not x_k's as in the authors' code; under DDP each trial's backward
    all-reduces the gradients. A model in train mode also sees each trial's forward (BatchNorm's
    running statistics are updated once per closure call, 1 + trials per step; so in the
    authors' code, whose trials are forwards too). Trials are not run under ``no_grad`` here:
    a closure calling ``backward()`` unconditionally, as LBFGS's do, would raise there.

    Every call of the closure in one step starts from the same global random state (the CPU's
    and each CUDA device of the parameters'), so dropout and any other draw in the model are the
    same at x_k and at every trial point: the Armijo test compares one function f_i, as the
    paper's condition requires and the authors' code ensures (it reseeds each call). After the
    step the random state is the one the first call left, so the stream advances once per
    step, as in a loop that calls the closure once (the authors' code restores it instead).

    Example:
        >>> import torch, optim
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optim.SLS([w], init_step_size=1.0, c=0.5, beta_b=0.5, reset_option=0)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((w - 3) ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> _ = opt.step(closure)  # eta = 1 fails Armijo's test (29 > 29 - 58), 0.5 passes
        >>> opt.param_groups[0]["step_size"], w.detach()
        (0.5, tensor([3., 3.]))
    """

    _sparse_refusal = "dense gradients: nn.Embedding(sparse=False)"
    _packs = False  # each trial point is written into the parameters before the closure runs
    _blocks_large_tensors = True  # (no package to match: sums over blocks are within rounding)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        n_batches_per_epoch: int = 500,
        init_step_size: float = 1.0,
        c: float = 0.1,
        beta_b: float = 0.9,
        gamma: float = 2.0,
        reset_option: int = 1,
        eta_max: float = 10.0,
        max_backtracks: int = 100,
        *,
        foreach: bool | None = None,
        impl: str | None = None,
    ) -> None:
        defaults = {
            "n_batches_per_epoch": n_batches_per_epoch, "init_step_size": init_step_size,
            "c": c, "beta_b": beta_b, "gamma": gamma, "reset_option": reset_option,
            "eta_max": eta_max, "max_backtracks": max_backtracks, "step_size": init_step_size,
            "k": 0,
        }  # fmt: skip
        super().__init__(params, defaults, impl=impl, foreach=foreach)

    @classmethod
    def _check_hyperparameters(cls, values: Mapping[str, Any]) -> None:
        """The constructor's checks (see :meth:`RuleOptimizer._check_hyperparameters`).
        (A group's ``step_size``, the last step's, is not checked: it starts at
        ``init_step_size``.)"""
        check_count(values["n_batches_per_epoch"], "n_batches_per_epoch", 1)
        check_count(values["max_backtracks"], "max_backtracks", 1)
        init_step_size = values["init_step_size"]
        check_positive(init_step_size, "init_step_size")
        check_finite(init_step_size, "init_step_size", "an infinite first trial never passes")
        c, beta_b, reset_option = values["c"], values["beta_b"], values["reset_option"]
        if not 0 < _number(c, "c") < 1:
            raise ValueError(f"c must be in (0, 1), got c={c!r}")
        if not 0 < _number(beta_b, "beta_b") < 1:
            raise ValueError(
                f"beta_b (the backtracking factor) must be in (0, 1), got beta_b={beta_b!r}"
            )
        check_interval(values["gamma"], "gamma", 1.0, math.inf, high_open=True)
        if isinstance(reset_option, bool) or reset_option not in (0, 1, 2):
            raise ValueError(f"reset_option must be 0, 1 or 2, got reset_option={reset_option!r}")
        check_positive(values["eta_max"], "eta_max")
        super()._check_hyperparameters(values)

    _step_size = staticmethod(_last_step_size)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ()

    def _reset(self, group: dict) -> float:
        """The trial step of Algorithm 2 (before backtracking)."""
        if group["k"] == 0:
            return min(group["init_step_size"], group["eta_max"])
        eta = group["step_size"]
        if group["reset_option"] == 1:
            eta = eta * group["gamma"] ** (1 / group["n_batches_per_epoch"])
        elif group["reset_option"] == 2:
            eta = group["init_step_size"]
        return min(eta, group["eta_max"])

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SLS update: evaluates ``closure`` at x_k (with backward) and at each trial."""
        if closure is None:
            raise ValueError(
                "SLS.step needs step(closure): a closure that zeroes the gradients, computes the "
                "mini-batch loss, calls backward() and returns it, got closure=None"
            )
        streams = _RandomStreams(self.param_groups)
        self._start_states = streams.get()  # each trial draws as the first call did
        with torch.enable_grad():
            loss = closure()
        _check_backward_called(self, closure, loss)
        self._closure, self._loss, self._streams = closure, loss, streams
        try:
            ReducingOptimizer.step(self)
        finally:  # not kept past the step: the closure holds the mini-batch
            self._closure = self._loss = self._streams = self._start_states = None
        return loss

    @torch.no_grad()
    def _update(self, work: list[Work]) -> None:
        device = self._device_of(work)
        first = self.param_groups[0]
        chunks = [c for item in work for c in item.chunks]
        grads = [[g.clone() for g in c.grads] for c in chunks]
        starts = [[p.clone() for p in c.params] for c in chunks]
        # note: host reads, the line search's decisions (documented)
        (grad_sq,) = self.over_ranks(total([sum_of_squares(g) for g in grads], device))
        grad_sq = float(grad_sq)  # (FSDP shards: ||g||^2 over all of them, above)
        loss = float(_loss_tensor(self._loss, device))
        eta = self._reset(first)
        streams, after_first_call = self._streams, self._streams.get()

        def move_to(step_size: float) -> None:
            for chunk, start, grad in zip(chunks, starts, grads):
                torch._foreach_copy_(chunk.params, start)
                ops.add_scaled_(chunk.params, grad, -step_size)

        try:
            # the authors' guard (sls.py): below it the Armijo test fails on rounding alone
            if math.sqrt(grad_sq) >= SLS_SEARCHES_FROM:
                for _ in range(first["max_backtracks"]):
                    move_to(eta)
                    streams.set(self._start_states)
                    with torch.enable_grad():
                        trial_loss = float(_loss_tensor(self._as_callers(self._closure), device))
                    if trial_loss <= loss - first["c"] * eta * grad_sq:
                        break
                    eta *= first["beta_b"]
                else:  # no trial passed: the authors' tiny step, not a failed one
                    move_to(SLS_FALLBACK_STEP)
        except BaseException:  # (KeyboardInterrupt too) a search cut short: back to x_k
            for chunk, start in zip(chunks, starts):
                torch._foreach_copy_(chunk.params, start)
            raise
        finally:  # (a closure that raises leaves the stream as after the first call too)
            streams.set(after_first_call)
        for item in work:
            item.group["step_size"] = eta
            item.group["k"] = item.group["k"] + 1
