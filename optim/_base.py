"""What every optimizer here shares: validation, state, and the three ways of executing a rule.

An algorithm is a pure *rule*: a function over lists of tensors (parameters, gradients, one list per
state buffer, step counters) built from ``torch._foreach_*`` ops (see ``optim._foreach``). The
rule is written once, in the algorithm's module; :class:`FusedOptimizer` runs it one of three ways:

``impl="single"``
    one parameter at a time (one-element lists): the readable reference.
``impl="foreach"``
    one call per (device, dtype) over the lists of a param group: multi-tensor kernels.
``impl="flat"`` (the default)
    each param group's parameters, gradients and state buffers live in one contiguous buffer per
    (device, dtype): every ``Parameter`` keeps its identity but its ``.data`` becomes a view into
    the flat parameter buffer, its ``.grad`` a view into the flat gradient buffer (autograd
    accumulates into it in place), and every state tensor a view into its flat buffer. A step is
    then the rule over one-element lists of whole buffers: a handful of kernels whatever the number
    of parameters. With ``compile=True`` the rule is compiled by ``torch.compile(fullgraph=True)``
    into one fused pass (C++/OpenMP on CPU, Triton on CUDA); every hyperparameter is then fed as a
    0-dim tensor, so a schedule changing ``lr`` never recompiles.

The optimizer's ``state_dict()`` keeps torch's per-parameter layout and keys in every path, so
state moves freely between these optimizers and torch.optim.

Conventions shared by the flat path (documented deviations from torch.optim, chosen for speed):

* ``zero_grad()`` zeroes the flat gradient buffer in one kernel and keeps ``p.grad`` as views,
  whatever ``set_to_none`` says, so a parameter that gets no gradient in a later step is updated
  with a zero gradient where torch would skip it. Use ``impl="foreach"`` for models whose
  parameters are unused in some steps. A gradient that is ``None`` or replaced
  (``model.zero_grad()``, ``backward(create_graph=True)``) is handled exactly like torch: ``None``
  is skipped (that group falls back to the foreach path, on the same buffers, from then on), and a
  replaced tensor is copied in.
* Build the optimizer after moving the model to its device and dtype: ``model.to(...)`` afterwards
  gives the parameters new storage that the flat buffers do not see.

No path synchronises with the device in ``step()``: no ``.item()``, no Python branch on a tensor
value; step counters are tensors on the parameter's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

IMPLS = ("single", "foreach", "flat")
DEFAULT_IMPL = "flat"


def step_dtype() -> torch.dtype:
    """dtype of the ``step`` counters, as torch.optim picks it (float64 if that is the default)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------
# Validation: every error names the argument, the value, and what is allowed.


def _number(value: Any, name: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            shape = tuple(value.shape)
            raise ValueError(f"{name} as a tensor must have one element, got shape {shape}")
        return float(value.detach().reshape(()).cpu())  # construction time: a read is fine
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or a 0-dim tensor, got {name}={value!r}")
    return float(value)


def check_nonnegative(value: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number >= 0 (NaN is rejected)."""
    number = _number(value, name)
    if not (number >= 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")


def check_interval(value: Any, name: str, low: float, high: float, high_open: bool) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (``< high`` when ``high_open``)."""
    number = _number(value, name)
    inside = low <= number < high if high_open else low <= number <= high
    if not inside:
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must be in [{low:g}, {high:g}{bracket}, got {name}={value!r}")


def check_impl(impl: str | None) -> str:
    """The execution path, validated; ``None`` selects the default (``"flat"``)."""
    if impl is None:
        return DEFAULT_IMPL
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or None (default), got impl={impl!r}")
    return impl


# ---------------------------------------------------------------------------------------------


class _FlatBucket:
    """The flat buffers of one param group's parameters of one (device, dtype)."""

    def __init__(self, optimizer: FusedOptimizer, group: dict, params: list[Tensor]) -> None:
        self.params = params
        self.numels = [p.numel() for p in params]
        self.flat_param = _gather(params)
        self.flat_grad = _gather([p.grad for p in params])
        self.param_views = _views(self.flat_param, params)
        self.grad_views = _views(self.flat_grad, params)
        for p, param_view, grad_view in zip(params, self.param_views, self.grad_views):
            p.data = param_view
            p.grad = grad_view
        keys = optimizer._buffer_keys(group)
        stateful = bool(keys) or optimizer._counts_steps
        states = [optimizer.state[p] for p in params] if stateful else []
        self.buffers: dict[str, Tensor] = {}
        for key in keys:
            self.buffers[key] = _gather([s[key] for s in states])
            for s, view in zip(states, _views(self.buffers[key], params)):
                s[key] = view
        self.step_vector: Tensor | None = None
        if optimizer._counts_steps:
            self.step_vector = torch.stack([s["step"] for s in states])
            for i, s in enumerate(states):
                s["step"] = self.step_vector[i]
            self.step_view = [self.step_vector[0]]
        self.hyperparameter_tensors: dict[str, Tensor] = {}

    def sync_grads(self) -> None:
        """Make every ``p.grad`` the view into the flat gradient buffer (copying a replaced one)."""
        for p, view in zip(self.params, self.grad_views):
            grad = p.grad
            if grad is not view:
                view.copy_(grad)
                p.grad = view


def _gather(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _views(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    views, offset = [], 0
    for t in like:
        views.append(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return views


def _real(tensors: list[Tensor]) -> list[Tensor]:
    """Complex tensors as real views with a trailing dimension of 2, as torch.optim treats them."""
    return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]


class FusedOptimizer(Optimizer):
    """Base of every optimizer here; subclasses give validation, state and the rule.

    A subclass defines:

    * ``_rule``: the update function ``rule(params, grads, steps, state, **hyperparameters)``
      over lists, where ``state`` maps each torch state key to its list (a staticmethod);
    * ``_counts_steps``: whether the state holds a ``step`` counter (SGD does not);
    * ``_init_state(group, p)``: the per-parameter state tensors, as torch.optim creates them;
    * ``_buffer_keys(group)``: the state tensors (other than ``step``) the rule updates;
    * ``_hyperparameters(group, first_step)``: the rule's keyword arguments for that group.

    Args (besides the algorithm's own):
        impl: ``"single"``, ``"foreach"`` or ``"flat"`` (default ``None``: ``"flat"``).
        compile: with ``impl="flat"``, compile the rule into one fused kernel per buffer set with
            ``torch.compile(fullgraph=True)``. The first step pays the compilation (seconds).
    """

    _counts_steps: ClassVar[bool] = True
    _rule: ClassVar[Callable[..., None]]

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        *,
        impl: str | None = None,
        compile: bool = False,
    ) -> None:
        self.impl = check_impl(impl)
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be a bool, got compile={compile!r}")
        if compile and self.impl != "flat":
            raise ValueError(f"compile=True needs impl='flat', got impl={self.impl!r}")
        self.compile = compile
        self._buckets: dict[int, list[_FlatBucket]] = {}
        self._foreach_groups: set[int] = set()  # flat groups that fell back to the foreach path
        self._compiled_rule: Callable[..., None] | None = None
        super().__init__(params, defaults)

    # --- what subclasses provide -------------------------------------------------------------

    def _init_state(self, group: dict, p: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def _buffer_keys(self, group: dict) -> tuple[str, ...]:
        raise NotImplementedError

    def _hyperparameters(self, group: dict, first_step: bool) -> dict[str, Any]:
        raise NotImplementedError

    # --- state -------------------------------------------------------------------------------

    def _new_step(self, p: Tensor) -> Tensor:
        return torch.zeros((), dtype=step_dtype(), device=p.device)

    def _params_with_grad(self, group: dict, group_index: int) -> list[Tensor]:
        params = []
        for i, p in enumerate(group["params"]):
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise TypeError(
                    f"{type(self).__name__} does not support sparse gradients: parameter {i} "
                    f"of param group {group_index} (shape {tuple(p.shape)}) has a sparse gradient"
                )
            params.append(p)
        return params

    def _ensure_state(self, group: dict, params: list[Tensor]) -> list[bool]:
        """Create missing state; return, per parameter, whether this is its first step."""
        first = []
        for p in params:
            fresh = not self.state.get(p)
            if fresh:
                initial = self._init_state(group, p)
                if initial:  # like torch, keep no entry for stateless updates (plain SGD)
                    self.state[p].update(initial)
            first.append(fresh)
        return first

    # --- step --------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one update of every param group; returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            params = self._params_with_grad(group, index)
            if not params:
                continue
            if self.impl == "flat" and index not in self._foreach_groups:
                self._flat_step(index, group, params)
            elif self.impl == "single":
                first = self._ensure_state(group, params)
                for p, fresh in zip(params, first):
                    self._run(group, [p], fresh)
            else:
                self._foreach_step(group, params)
        return loss

    def _foreach_step(self, group: dict, params: list[Tensor]) -> None:
        first = self._ensure_state(group, params)
        lists: dict[tuple, list[Tensor]] = {}
        for p, fresh in zip(params, first):
            lists.setdefault((p.device, p.dtype, fresh), []).append(p)
        for (_, _, fresh), same in lists.items():
            self._run(group, same, fresh)

    def _run(self, group: dict, params: list[Tensor], first_step: bool) -> None:
        """The rule over per-parameter lists (the single and foreach paths)."""
        states = [self.state.get(p, {}) for p in params]
        steps = []
        if self._counts_steps:
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
        type(self)._rule(
            _real(params),
            _real([p.grad for p in params]),
            steps,
            {key: _real([s[key] for s in states]) for key in self._buffer_keys(group)},
            **self._hyperparameters(group, first_step),
        )

    def _flat_step(self, index: int, group: dict, params: list[Tensor]) -> None:
        buckets = self._buckets.get(index)
        if buckets is None:
            first = self._ensure_state(group, params)
            if len(set(first)) > 1:  # some parameters already stepped: counters may differ
                self._foreach_groups.add(index)
                self._foreach_step(group, params)
                return
            by_key: dict[tuple, list[Tensor]] = {}
            for p in params:
                by_key.setdefault((p.device, p.dtype), []).append(p)
            buckets = [_FlatBucket(self, group, same) for same in by_key.values()]
            self._buckets[index] = buckets
            first_step = first[0]
        else:
            first_step = False
            if sum(len(b.params) for b in buckets) != len(params):
                # A parameter got no gradient: skip it as torch does; counters now differ, so
                # this group runs the foreach path (on the same flat-backed tensors) from now on.
                self._foreach_groups.add(index)
                self._foreach_step(group, params)
                return
        for bucket in buckets:
            bucket.sync_grads()
            self._run_flat(group, bucket, first_step)

    def _run_flat(self, group: dict, bucket: _FlatBucket, first_step: bool) -> None:
        steps = []
        if bucket.step_vector is not None:
            bucket.step_vector.add_(1)
            steps = bucket.step_view
        hyperparameters = self._hyperparameters(group, first_step)
        rule = type(self)._rule
        if self.compile:
            hyperparameters = self._as_tensors(bucket, hyperparameters)
            if self._compiled_rule is None:
                self._compiled_rule = torch.compile(rule, fullgraph=True, dynamic=False)
            rule = self._compiled_rule
        state = {key: _real([flat]) for key, flat in bucket.buffers.items()}
        rule(_real([bucket.flat_param]), _real([bucket.flat_grad]), steps, state, **hyperparameters)

    @staticmethod
    def _as_tensors(bucket: _FlatBucket, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        """Numbers as 0-dim float64 tensors on the bucket's device, refilled in place each step."""
        converted = {}
        for name, value in hyperparameters.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
                converted[name] = value
                continue
            held = bucket.hyperparameter_tensors.get(name)
            if held is None:
                held = torch.zeros((), dtype=torch.float64, device=bucket.flat_param.device)
                bucket.hyperparameter_tensors[name] = held
            if isinstance(value, Tensor):
                held.copy_(value.reshape(()))
            else:
                held.fill_(value)
            converted[name] = held
        return converted

    # --- torch.optim API ---------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset gradients; see the module docstring for the flat path's convention."""
        flat_params = set()
        for index, buckets in self._buckets.items():
            if index in self._foreach_groups:
                continue
            for bucket in buckets:
                bucket.flat_grad.zero_()
                for p, view in zip(bucket.params, bucket.grad_views):
                    if p.grad is not view:
                        p.grad = view
                flat_params.update(map(id, bucket.params))
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in flat_params or p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load torch's layout (from this class or its torch.optim namesake).

        Step counters are moved to the parameter's device and dtype of this package's convention.
        The flat buffers are rebuilt from the loaded tensors at the next step.
        """
        super().load_state_dict(state_dict)
        self._buckets.clear()
        self._foreach_groups.clear()
        for index, group in enumerate(self.param_groups):
            steps = []
            for p in group["params"]:
                state = self.state.get(p)
                if state and "step" in state:
                    step = state["step"]
                    if not isinstance(step, Tensor):
                        step = torch.tensor(float(step))
                    state["step"] = step.to(device=p.device, dtype=step_dtype()).clone()
                    steps.append(state["step"])
            # Loading is not a step: reading values here to decide the path is allowed.
            if steps and len({float(s.cpu()) for s in steps}) > 1:
                self._foreach_groups.add(index)
