"""SGD's default path on large tensors, and its eager flat path, run torch's fused CPU kernel
(``torch._fused_sgd_``) where this process measured it giving the rule's bits
(``optim.sgd.kernel_step``): beside
torch.optim's for-loop path, bit for bit, signs of zeros included; the kernel really runs; a
kernel that rounds otherwise, or none at all, leaves the rule; a user's dispatch mode sees
torch's eager ops; version counters move where torch's catch a parameter saved for backward."""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import optim
from optim import sgd

# Two tensors the kernel takes (sizes multiples of 64, at least KERNEL_FROM elements, in a list
# of at least KERNEL_TOTAL_FROM), two the rule keeps (a size not a multiple of 64; a small one).
SHAPES = [(256, 512), (sgd.KERNEL_FROM,), (sgd.KERNEL_FROM + 3,), (64, 3, 3, 3)]
TAKEN = (0, 1)

OPTIONS = [
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True},
    {"lr": 0.05, "momentum": 0.5, "nesterov": True, "weight_decay": 0.1},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "maximize": True},
]


@pytest.fixture(autouse=True)
def fresh_probe():
    """The kernel's probe runs anew in each test (its answer is cached per process)."""
    sgd.kernel_gives_rule_bits.cache_clear()
    yield
    sgd.kernel_gives_rule_bits.cache_clear()


@pytest.fixture
def kernel_calls(monkeypatch) -> list[list[torch.Tensor]]:
    """The parameter lists ``torch._fused_sgd_`` is called with (the probe's too)."""
    calls: list[list[torch.Tensor]] = []
    kernel = torch._fused_sgd_

    def recorded(params, *args, **kwargs):
        calls.append(list(params))
        return kernel(params, *args, **kwargs)

    monkeypatch.setattr(torch, "_fused_sgd_", recorded)
    return calls


def _with_signed_zeros(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[::7] = 0.0
    t.view(-1)[3::11] = -0.0
    return t


def _run(make, dtype: torch.dtype, steps: int = 5, tensor_lr: bool = False):
    """``steps`` steps of a non-convex loss, with exact zeros of both signs in the parameters
    and gradients: the parameters and momentum buffers after each step, and the parameters."""
    generator = torch.Generator().manual_seed(0)
    params = [
        _with_signed_zeros(torch.randn(s, generator=generator, dtype=dtype)).requires_grad_()
        for s in SHAPES
    ]
    optimizer = make(params)
    if tensor_lr:
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(group["lr"])
    history = []
    for t in range(steps):
        optimizer.zero_grad()
        generator = torch.Generator().manual_seed(100 + t)
        loss = sum(
            ((p - torch.randn(p.shape, generator=generator, dtype=dtype)) ** 2).sum()
            + 0.1 * torch.sin(3 * p).sum()
            for p in params
        )
        loss.backward()
        for p in params:  # exact zeros of both signs in the gradients too
            p.grad = _with_signed_zeros(p.grad)
        optimizer.step()
        buffers = [optimizer.state[p]["momentum_buffer"].clone() for p in params]
        history.append([p.detach().clone() for p in params] + buffers)
    return history, params


def _torch_sgd(**options):
    return lambda ps: torch.optim.SGD(ps, foreach=False, **options)


def _our_sgd(**options):
    return lambda ps: optim.SGD(ps, **options)


def _stepping(make, before=None, context=contextlib.nullcontext):
    """``make`` whose optimizer's ``step()`` first calls ``before(optimizer)``, then steps
    inside ``context()``."""

    def run(ps):
        optimizer = make(ps)
        step = optimizer.step

        def wrapped():
            if before is not None:
                before(optimizer)
            with context():
                return step()

        optimizer.step = wrapped
        return optimizer

    return run


def _assert_same_bits(actual, expected) -> None:
    for step, (ours, theirs) in enumerate(zip(actual, expected)):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert torch.equal(a, b), f"step {step}, tensor {i}"
            assert torch.equal(a.signbit(), b.signbit()), f"step {step}, tensor {i}: zero signs"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_large_tensors_run_torchs_fused_kernel_with_torchs_bits(dtype, options, kernel_calls):
    """Fails before the kernel path: no call of ``torch._fused_sgd_`` with our parameters."""
    expected, _ = _run(_torch_sgd(**options), dtype)
    assert not kernel_calls  # (torch's for-loop path: no fused kernel)
    actual, params = _run(_our_sgd(**options), dtype)
    _assert_same_bits(actual, expected)
    taken = [call for call in kernel_calls if any(t is params[0] for t in call)]
    assert len(taken) == 4  # every step but the buffers' first
    for call in taken:
        assert [id(t) for t in call] == [id(params[i]) for i in TAKEN]


@pytest.mark.parametrize("tensor_lr", [False, True])
def test_a_momentum_schedule_and_a_tensor_lr_keep_torchs_bits(tensor_lr, kernel_calls):
    """The momentum switched off, on again and changed between steps (a momentum schedule):
    the buffer's first step, each later one by the kernel, the off steps by the rule; with a
    0-dim tensor ``lr`` too (torch's for-loop path reads it as a number)."""
    options = {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}

    def schedule():  # (one per run)
        momenta = iter([0.9, 0.9, 0.0, 0.5, 0.5, 0.9])

        def before(optimizer):
            momentum = next(momenta)
            for group in optimizer.param_groups:
                group["momentum"] = momentum

        return before

    expected, _ = _run(_stepping(_torch_sgd(**options), schedule()), torch.float32, 6, tensor_lr)
    actual, params = _run(_stepping(_our_sgd(**options), schedule()), torch.float32, 6, tensor_lr)
    _assert_same_bits(actual, expected)
    assert sum(any(t is params[0] for t in call) for call in kernel_calls) == 4


def test_a_kernel_that_rounds_otherwise_is_never_used(monkeypatch, kernel_calls):
    """A kernel an ulp off the rule in one element (as one whose compiler fused a multiply and
    an add would be) fails the probe: every step runs the rule, with torch's bits."""
    recorded = torch._fused_sgd_

    def an_ulp_off(params, *args, **kwargs):
        recorded(params, *args, **kwargs)
        for p in params:
            up = torch.tensor(float("inf"), dtype=p.dtype)
            p.view(-1)[5] = torch.nextafter(p.view(-1)[5], up)

    monkeypatch.setattr(torch, "_fused_sgd_", an_ulp_off)
    options = {"lr": 0.05, "momentum": 0.9}
    expected, _ = _run(_torch_sgd(**options), torch.float32)
    actual, params = _run(_our_sgd(**options), torch.float32)
    _assert_same_bits(actual, expected)
    assert kernel_calls  # the probe ran the kernel ...
    assert not any(any(t is p for p in params for t in call) for call in kernel_calls)  # only it
    assert not sgd.kernel_gives_rule_bits(torch.float32, False, False, False, False)


def test_a_torch_without_the_kernel_runs_the_rule(monkeypatch):
    monkeypatch.delattr(torch, "_fused_sgd_")
    options = {"lr": 0.05, "momentum": 0.9, "nesterov": True}
    expected, _ = _run(_torch_sgd(**options), torch.float64)
    actual, _ = _run(_our_sgd(**options), torch.float64)
    _assert_same_bits(actual, expected)
    assert not sgd.kernel_gives_rule_bits(torch.float64, True, False, False, False)


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_dispatch_mode_sees_torchs_eager_ops_not_the_kernel():
    """Under a user's dispatch mode (an op logger, a FLOP counter) the step runs the rule: the
    mode sees the eager multiply and adds torch's path runs, and the numbers are torch's."""
    options = {"lr": 0.05, "momentum": 0.9}
    log = _OpLog()
    expected, _ = _run(_stepping(_torch_sgd(**options), context=lambda: log), torch.float32)
    log.ops.clear()
    actual, _ = _run(_stepping(_our_sgd(**options), context=lambda: log), torch.float32)
    _assert_same_bits(actual, expected)
    assert not any("_fused_sgd" in op for op in log.ops)
    assert any("mul_" in op for op in log.ops)


def test_versions_move_as_torch_needs_them_to():
    """After a kernel step each parameter's and buffer's version counter has moved, so a graph
    that saved a parameter refuses its backward, as torch's; the gradient's has not (torch's
    for-loop path leaves it alone)."""
    results = {}
    for library in (torch.optim, optim):
        params = [torch.ones(s).requires_grad_() for s in SHAPES]
        optimizer = library.SGD(params, lr=0.1, momentum=0.9)
        for _ in range(2):  # the buffers' first step, then the kernel's
            for p in params:
                p.grad = torch.full_like(p, 0.5)
            saved = (params[0] * params[0]).sum()  # saves params[0]
            versions = [t._version for t in (params[0], params[0].grad)]
            buffer = optimizer.state.get(params[0], {}).get("momentum_buffer")
            buffer_version = None if buffer is None else buffer._version
            optimizer.step()
        with pytest.raises(RuntimeError, match="modified by an inplace operation") as raised:
            saved.backward()
        results[library.__name__] = (
            params[0]._version > versions[0],
            params[0].grad._version == versions[1],
            buffer._version > buffer_version,
            type(raised.value),
        )
    assert results["optim"] == results["torch.optim"] == (True, True, True, RuntimeError)


def test_steps_inside_inference_mode_keep_torchs_bits():
    """Steps inside ``torch.inference_mode()`` over parameters made outside it (an evaluation
    loop that also steps): torch's for-loop path changes them in place there, and so does the
    kernel."""
    options = {"lr": 0.05, "momentum": 0.9}
    inside = {"context": torch.inference_mode}
    expected, _ = _run(_stepping(_torch_sgd(**options), **inside), torch.float32)
    actual, _ = _run(_stepping(_our_sgd(**options), **inside), torch.float32)
    _assert_same_bits(actual, expected)


def test_a_subclass_with_a_rule_of_its_own_keeps_its_rule(kernel_calls):
    """The kernel was measured against ``sgd_update``: a subclass that replaces ``_rule`` (here
    one that halves every gradient) runs its own rule, with no kernel call on its tensors."""

    @functools.wraps(sgd.sgd_update)  # (its signature: the keywords the optimizer passes)
    def halved(params, grads, steps, state, **arguments):
        sgd.sgd_update(params, [g * 0.5 for g in grads], steps, state, **arguments)

    class HalvedSGD(optim.SGD):
        _rule = staticmethod(halved)

    def torch_halved(ps):
        optimizer = torch.optim.SGD(ps, foreach=False, lr=0.05, momentum=0.9)
        step = optimizer.step

        def halved_step():
            for p in ps:
                p.grad.mul_(0.5)
            return step()

        optimizer.step = halved_step
        return optimizer

    expected, _ = _run(torch_halved, torch.float32)
    actual, params = _run(lambda ps: HalvedSGD(ps, lr=0.05, momentum=0.9), torch.float32)
    _assert_same_bits(actual, expected)
    assert not any(any(t is p for p in params for t in call) for call in kernel_calls)


def test_a_tensor_the_kernel_cannot_read_leaves_the_others_to_it(kernel_calls):
    """A ``channels_last`` parameter and a transposed one, of sizes the kernel would take, are
    not contiguous: they run the rule, and the contiguous tensors of the same list still run
    the kernel (before, one such tensor sent the whole list to the rule), with torch's bits."""

    shapes = [(256, 512), (sgd.KERNEL_FROM,), (64 * 64 * 32,), (128 * 64,)]

    def run(make):
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(s, generator=generator).requires_grad_() for s in shapes]
        params[2].data = params[2].data.view(64, 64, 2, 16).to(memory_format=torch.channels_last)
        params[3].data = params[3].data.view(64, 128).t()
        optimizer = make(params)
        history = []
        for t in range(4):
            generator = torch.Generator().manual_seed(100 + t)
            for p in params:  # (each gradient laid out as its parameter, as autograd's)
                p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=generator))
            optimizer.step()
            history.append([p.detach().clone() for p in params])
        return history, params

    options = {"lr": 0.05, "momentum": 0.9}
    expected, _ = run(_torch_sgd(**options))
    actual, params = run(_our_sgd(**options))
    _assert_same_bits(actual, expected)
    assert not params[2].is_contiguous()
    assert not params[3].is_contiguous()
    taken = [call for call in kernel_calls if any(t is params[0] for t in call)]
    assert len(taken) == 3
    for call in taken:
        assert [id(t) for t in call] == [id(params[0]), id(params[1])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_the_eager_flat_path_runs_the_kernel_over_its_buffers_bulk(dtype, options, kernel_calls):
    """``impl="flat"`` (not compiled): the kernel over the flat buffers' largest multiple of
    ``KERNEL_BULK`` elements, the rule over the 3 after them, with torch's bits. Fails before:
    the flat path ran the rule alone (no kernel call on a slice of its buffer)."""
    expected, _ = _run(_torch_sgd(**options), dtype)
    actual, params = _run(lambda ps: optim.SGD(ps, impl="flat", **options), dtype)
    _assert_same_bits(actual, expected)
    total = sum(p.numel() for p in params)
    bulk = total - total % sgd.KERNEL_BULK
    assert total - bulk == 3
    flat = params[0].untyped_storage().data_ptr()  # (the parameters lie in the flat buffer)
    taken = [
        call for call in kernel_calls if all(t.untyped_storage().data_ptr() == flat for t in call)
    ]
    assert [[t.numel() for t in call] for call in taken] == [[bulk]] * 4


@pytest.mark.parametrize("set_to_none", [False, True])
def test_the_eager_flat_path_with_gradients_in_place_or_new(set_to_none, kernel_calls):
    """The flat path's gradients accumulated in its own buffer (``zero_grad(set_to_none=False)``)
    or new each step (read where autograd left them, or copied in): the kernel runs and the
    bits are torch's either way."""

    def run(make):
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(s, generator=generator).requires_grad_() for s in SHAPES]
        optimizer = make(params)
        history = []
        for t in range(4):
            optimizer.zero_grad(set_to_none=set_to_none)
            generator = torch.Generator().manual_seed(100 + t)
            targets = [torch.randn(p.shape, generator=generator) for p in params]
            sum(((p - x) ** 2 * torch.cos(p)).sum() for p, x in zip(params, targets)).backward()
            optimizer.step()
            history.append([p.detach().clone() for p in params])
        return history, optimizer

    options = {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}
    expected, _ = run(_torch_sgd(**options))
    actual, optimizer = run(lambda ps: optim.SGD(ps, impl="flat", **options))
    _assert_same_bits(actual, expected)
    flat = optimizer.param_groups[0]["params"][0].untyped_storage().data_ptr()
    assert sum(all(t.untyped_storage().data_ptr() == flat for t in c) for c in kernel_calls) == 3
