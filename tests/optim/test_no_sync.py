"""step() never synchronises with the device; the flat step's op count does not grow with N."""

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import optim
from tests.optim.conftest import IMPLS, loss_fn, make_params, ours

SYNCING_OPS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.item.default,
    torch.ops.aten.is_nonzero.default,
}


class FailOnHostSync(TorchDispatchMode):
    """Raise on any aten op that reads a tensor's value back to the host."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNCING_OPS:
            raise AssertionError(f"host synchronisation inside step(): {func}")
        return func(*args, **(kwargs or {}))


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _prepare(name, kwargs, impl, lr_as_tensor):
    params = make_params(torch.float32)
    if lr_as_tensor:
        kwargs = {**kwargs, "lr": torch.tensor(kwargs.get("lr", 1.0))}
    optimizer = ours(name)(params, impl=impl, **kwargs)
    loss_fn(params).backward()
    return optimizer


@pytest.mark.parametrize("lr_as_tensor", [False, True], ids=["lr-float", "lr-tensor"])
@pytest.mark.parametrize("impl", IMPLS)
def test_step_does_not_synchronise(case, impl, lr_as_tensor):
    name, kwargs = case
    optimizer = _prepare(name, kwargs, impl, lr_as_tensor)
    for _ in range(3):  # the first step builds state (and flat buffers); check later ones too
        with FailOnHostSync():
            optimizer.step()


def test_the_detector_detects():
    with pytest.raises(AssertionError, match="host synchronisation"), FailOnHostSync():
        torch.ones(1).item()


def _flat_step_ops(name, kwargs, tensors):
    params = [torch.randn(3, requires_grad=True) for _ in range(tensors)]
    optimizer = getattr(optim, name)(params, impl="flat", **kwargs)
    for p in params:
        p.grad = torch.randn(3)
    optimizer.step()  # builds the flat buffers
    with CountOps() as counter:
        optimizer.step()
    return counter.counts


def test_flat_step_op_count_does_not_grow_with_the_number_of_parameters(case):
    name, kwargs = case
    few, many = _flat_step_ops(name, kwargs, 3), _flat_step_ops(name, kwargs, 300)
    assert sum(few.values()) > 0
    assert few == many
