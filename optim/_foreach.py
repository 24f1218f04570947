"""Multi-tensor arithmetic whose scalar may be a Python number or a 0-dim tensor.

Every update rule in this package is written once, over lists of tensors, with these helpers and
``torch._foreach_*`` ops. A hyperparameter given as a Python number goes straight into the fused
``value=``/``alpha=`` argument of the op (the fastest eager form); one given as a 0-dim tensor
(a schedule writing ``lr`` in place, or the compiled path, which passes every hyperparameter as a
tensor so a new value never recompiles) is applied by tensor broadcasting. Neither form reads a
tensor's value on the host, so nothing here synchronises with the device.
"""

from __future__ import annotations

import torch
from torch import Tensor

Scalar = float | Tensor
TensorList = list[Tensor]


def may_be_nonzero(value: Scalar) -> bool:
    """True unless ``value`` is a Python number equal to zero.

    A tensor's value is never inspected (that would synchronise with the device), so a tensor
    hyperparameter always takes the general branch; the result is the same, since adding
    ``0 * x`` changes nothing finite.
    """
    return isinstance(value, Tensor) or value != 0


def as_float64(steps: TensorList) -> TensorList:
    """Step counters promoted to float64, so bias corrections match torch's double arithmetic."""
    if steps[0].dtype == torch.float64:
        return steps
    one = torch.ones((), dtype=torch.float64, device=steps[0].device)
    return list(torch._foreach_mul(steps, one))


def scalar_pow(base: Scalar, exponents: TensorList) -> TensorList:
    """``[base ** e for e in exponents]``."""
    if isinstance(base, Tensor):
        return list(torch._foreach_pow([base] * len(exponents), exponents))
    return list(torch._foreach_pow(base, exponents))


def mul_(xs: TensorList, factor: Scalar) -> None:
    """``x *= factor`` for every x."""
    torch._foreach_mul_(xs, factor)


def add_scaled(xs: TensorList, ys: TensorList, scale: Scalar) -> TensorList:
    """New list ``x + scale * y``."""
    if isinstance(scale, Tensor):
        return list(torch._foreach_add(xs, torch._foreach_mul(ys, scale)))
    return list(torch._foreach_add(xs, ys, alpha=scale))


def add_scaled_(xs: TensorList, ys: TensorList, scale: Scalar) -> None:
    """``x += scale * y`` for every pair."""
    if isinstance(scale, Tensor):
        torch._foreach_add_(xs, torch._foreach_mul(ys, scale))
    else:
        torch._foreach_add_(xs, ys, alpha=scale)


def lerp_(xs: TensorList, ys: TensorList, weight: Scalar) -> None:
    """``x += weight * (y - x)`` for every pair (torch.lerp)."""
    if isinstance(weight, Tensor):
        torch._foreach_lerp_(xs, ys, [weight] * len(xs))
    else:
        torch._foreach_lerp_(xs, ys, weight)


def addcmul_(xs: TensorList, ys: TensorList, zs: TensorList, value: Scalar) -> None:
    """``x += value * y * z`` for every triple."""
    if isinstance(value, Tensor):
        torch._foreach_add_(xs, torch._foreach_mul(torch._foreach_mul(ys, zs), value))
    else:
        torch._foreach_addcmul_(xs, ys, zs, value)


def addcdiv_(xs: TensorList, numerators: TensorList, denominators: TensorList, value) -> None:
    """``x += value * n / d`` for every triple.

    ``value`` is a Python number, a 0-dim tensor, or a list with one 0-dim tensor per x. A tensor
    value scales the numerators (it never divides), so a zero value leaves ``x`` unchanged.
    """
    if isinstance(value, (Tensor, list)):
        torch._foreach_addcdiv_(xs, torch._foreach_mul(numerators, value), denominators)
    else:
        torch._foreach_addcdiv_(xs, numerators, denominators, value)
