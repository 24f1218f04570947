"""step() never reads a value back from the parameters' device; flat op counts do not grow with N.

Step counters live on the host, as in torch.optim (reading them is not a device sync), so the
check runs the parameters on the ``meta`` device, which has no values at all: any read of a
parameter, gradient, state or device hyperparameter there fails, and the dispatch mode below names
every value read of a tensor that is not on the host.
"""

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import optim
from optim import _ops as ops
from tests.optim.conftest import IMPLS, make_params, ours

SYNCING_OPS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.item.default,
    torch.ops.aten.is_nonzero.default,
}


class FailOnHostSync(TorchDispatchMode):
    """Raise on any aten op that reads the value of a tensor that is not on the host."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNCING_OPS and args[0].device.type != "cpu":
            raise AssertionError(f"host synchronisation inside step(): {func} on {args[0].device}")
        return func(*args, **(kwargs or {}))


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _prepare(name, kwargs, impl, lr_as_tensor):
    params = [p.detach().to("meta").requires_grad_() for p in make_params(torch.float32)]
    optimizer = ours(name)(params, impl=impl, **kwargs)
    if lr_as_tensor:  # a schedule writing a device tensor into the group
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(kwargs.get("lr", 1.0), device="meta")
    for p in params:
        p.grad = torch.empty_like(p)
    return optimizer


@pytest.mark.parametrize("lr_as_tensor", [False, True], ids=["lr-float", "lr-tensor"])
@pytest.mark.parametrize("impl", IMPLS)
def test_step_does_not_synchronise(case, impl, lr_as_tensor):
    name, kwargs = case
    optimizer = _prepare(name, kwargs, impl, lr_as_tensor)
    if impl == "flat":  # building a flat layout from existing counters compares them once
        optimizer.step()
    for _ in range(3):
        with FailOnHostSync():
            optimizer.step()


def test_the_detector_detects():
    with pytest.raises(AssertionError, match="host synchronisation"), FailOnHostSync():
        torch.ones(1, device="meta").item()
    with FailOnHostSync():  # a host tensor's value is in host memory: no sync
        assert torch.ones(1).item() == 1.0


def _flat_step_ops(name, kwargs, tensors):
    # the same history of number operands for both runs (optim._ops.operand keeps the tensors
    # it made for numbers seen before, process-wide)
    ops._kept_operands = ops.KeptOperands()
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
