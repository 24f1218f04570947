"""A small random problem on which ours and torch.optim run side by side."""

from __future__ import annotations

import functools
import math
import os
import threading
import traceback
from collections.abc import Callable

import pytest
import torch
from hypothesis import reject
from torch.optim.optimizer import _get_scalar_dtype

import optim
from optim import _paths

SHAPES = [(5, 3), (7,), (2, 2, 2), (4,)]

# Every option named in the issue, for every optimizer: (torch name, constructor kwargs).
CASES = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True}),
    ("Adam", {"lr": 0.02}),
    ("Adam", {"lr": 0.02, "amsgrad": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.9), "eps": 1e-6, "maximize": True}),
    ("AdamW", {"lr": 0.02}),
    ("AdamW", {"lr": 0.02, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.01}),
    ("Adagrad", {"lr": 0.1, "eps": 1e-6, "maximize": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "centered": True, "maximize": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "weight_decay": 0.01, "maximize": True}),
]
IMPLS = ["single", "foreach", "flat"]
NAMES = sorted({name for name, _ in CASES})


def case_id(case: tuple[str, dict]) -> str:
    name, kwargs = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def make_params(dtype: torch.dtype, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=dtype, generator=generator).requires_grad_() for s in SHAPES]


def loss_fn(params: list[torch.Tensor], sign: float = 1.0) -> torch.Tensor:
    """A smooth non-quadratic loss with a different curvature per tensor; bounded below:
    :func:`squares_and_cosines` with targets spaced evenly from -1 to 1, times ``sign``."""
    return sign * squares_and_cosines(params, made_once(_spaced_targets, params))


def made_once(make: Callable[..., list[torch.Tensor]], params: list[torch.Tensor], *args):
    """``make(signature, *args)``: a loss's constant targets for tensors of ``params``' shapes
    and dtypes (``signature``), made once per worker and shared, never written to (a loss reads
    its targets only). Keyed by the default device and inference mode too, under which they
    were made as they are made at each call."""
    signature = tuple((tuple(p.shape), p.dtype) for p in params)
    mode = (torch.get_default_device(), torch.is_inference_mode_enabled())
    return _made_once(make, signature, mode, *args)


@functools.lru_cache(maxsize=4096)
def _made_once(make, signature, mode, *args) -> list[torch.Tensor]:
    return make(signature, *args)


def _spaced_targets(signature: tuple) -> list[torch.Tensor]:
    """:func:`loss_fn`'s targets: spaced evenly from -1 to 1."""
    return [
        torch.linspace(-1, 1, math.prod(shape), dtype=dtype).reshape(shape)
        for shape, dtype in signature
    ]


def squares_and_cosines(params: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """``sum_i (i + 1) ||p_i - target_i||^2 + 0.1 sum cos(3 p_i)`` (the tests' losses), as one
    autograd node whose backward is the gradient written out (:func:`squares_and_cosines_gradient`):
    the chain of about 30 nodes of the loss's own ops made its backward about twice the cost of
    an optimizer step on these tensors. Its values are those ops' bits; both sides of a
    comparison get the same gradient, and autograd still accumulates it into ``p.grad`` (layout,
    in-place accumulation, casts before the loss)."""
    return _SquaresAndCosines.apply(len(params), *params, *targets)


def squares_and_cosines_gradient(
    i: int, difference: torch.Tensor, tripled: torch.Tensor
) -> torch.Tensor:
    """The gradient of :func:`squares_and_cosines`'s term ``i`` at ``p``, from
    ``difference = p - target`` and ``tripled = 3 p``: ``2 (i + 1) (p - target) - 0.3 sin(3 p)``."""
    return 2 * (i + 1) * difference - 0.3 * torch.sin(tripled)


class _SquaresAndCosines(torch.autograd.Function):
    """:func:`squares_and_cosines`. As the ops' own nodes, it keeps ``p - target`` and ``3 p``,
    not ``p``, which may change in place before the backward."""

    @staticmethod
    def forward(ctx, count: int, *tensors: torch.Tensor) -> torch.Tensor:
        params, targets = tensors[:count], tensors[count:]
        differences = torch._foreach_sub(params, targets)  # (each op's bits: one call per op)
        tripled = torch._foreach_mul(params, 3)
        ctx.save_for_backward(*differences, *tripled)
        ctx.count = count
        total = 0
        squares, cosines = torch._foreach_pow(differences, 2), torch._foreach_cos(tripled)
        for i, (square, cosine) in enumerate(zip(squares, cosines)):
            total = total + (i + 1) * square.sum() + 0.1 * cosine.sum()
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple:
        saved = ctx.saved_tensors
        differences, tripled = saved[: ctx.count], saved[ctx.count :]
        needed = ctx.needs_input_grad[1 : 1 + ctx.count]
        grads = [
            grad_output * squares_and_cosines_gradient(i, difference, three_p) if need else None
            for i, (difference, three_p, need) in enumerate(zip(differences, tripled, needed))
        ]
        return (None, *grads, *(None for _ in range(ctx.count)))


def two_groups(params: list[torch.Tensor], kwargs: dict) -> list[dict]:
    """Two param groups, the second with its own learning rate (and weight decay)."""
    second = {"params": params[2:]}
    if "lr" in kwargs:
        second["lr"] = kwargs["lr"] * 0.5
    if "weight_decay" in kwargs:
        second["weight_decay"] = kwargs["weight_decay"] * 2
    return [{"params": params[:2]}, second]


def train(
    make_optimizer: Callable[[list], torch.optim.Optimizer],
    params: list[torch.Tensor],
    steps: int,
    sign: float = 1.0,
) -> torch.optim.Optimizer:
    optimizer = make_optimizer(params)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(params, sign).backward()
        optimizer.step()
    return optimizer


def runs_or_the_same_error(
    reference_run: Callable[[], list], our_run: Callable[[], list], dropped: tuple = ()
) -> tuple[list, list] | None:
    """(ours, the reference's): the results of two runs of one scenario; None where the
    reference raised, after checking that ours raises the same exception type (a package's
    refusal is ours too). An exception of a type in ``dropped`` rejects the hypothesis example
    instead (the reference's own failure, which ours need not share)."""
    try:
        expected = reference_run()
    except dropped:
        reject()
    except Exception as error:
        with pytest.raises(type(error)):
            our_run()
        return None
    return our_run(), expected


def relative_error(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """max over tensors of max|ours - ref| / max|ref| (normwise, so near-zero entries are fair)."""
    return max(
        ((a.detach() - b.detach()).abs().max() / b.detach().abs().max()).item()
        for a, b in zip(ours, reference)
    )


TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}

_REFERENCE_RUNS: dict[tuple, object] = {}


def reference_once(key: tuple, run: Callable[[], object]) -> object:
    """``run()``, the reference's side of a comparison (torch.optim's or a package's run),
    computed once per ``key`` in this process and kept: a test parametrized over our paths
    (``IMPLS``) compares each path with the same reference run, which does not depend on the
    path. ``key`` names everything the run depends on (the test, the case, the dtype); the kept
    tensors are only read."""
    if key not in _REFERENCE_RUNS:
        _REFERENCE_RUNS[key] = run()
    return _REFERENCE_RUNS[key]


@pytest.fixture(params=CASES, ids=case_id)
def case(request):
    return request.param


def ours(name: str) -> type:
    return getattr(optim, name)


def theirs(name: str) -> type:
    """torch.optim's class ``name`` (its Adagrad as torch 2.13 makes state: see
    :func:`_adagrad_making_missing_state`)."""
    if name == "Adagrad":
        return _adagrad_making_missing_state()
    return getattr(torch.optim, name)


@functools.cache
def _adagrad_making_missing_state() -> type:
    """torch.optim.Adagrad, or where it makes its state in the constructor only (torch 2.11's,
    whose step then raises ``KeyError: 'sum'`` for a group added by ``add_param_group``
    or a cleared state) a subclass that makes a missing state at the step as torch 2.13's
    ``_init_group`` does: ``step`` 0 and ``sum`` at the constructor's
    ``initial_accumulator_value``. The arithmetic is the installed torch's."""
    p, added = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    probe = torch.optim.Adagrad([p])
    probe.add_param_group({"params": [added]})
    added.grad = torch.zeros(1)
    try:
        probe.step()
        return torch.optim.Adagrad
    except KeyError:
        pass

    class Adagrad(torch.optim.Adagrad):
        def _init_group(self, group, *lists):
            for p in group["params"]:
                if p.grad is not None and len(self.state[p]) == 0:
                    initial = self.defaults["initial_accumulator_value"]
                    self.state[p]["step"] = (
                        torch.zeros((), dtype=torch.float32, device=p.device)
                        if group["fused"]
                        else torch.tensor(0.0, dtype=_get_scalar_dtype())
                    )
                    self.state[p]["sum"] = torch.full_like(
                        p,
                        complex(initial, initial) if torch.is_complex(p) else initial,
                        memory_format=torch.preserve_format,
                    )
            return super()._init_group(group, *lists)

    return Adagrad


@pytest.fixture(params=["guard", "passes"])
def metadata_check(request, monkeypatch):
    """Layouts check their parameters' metadata with torch.compile's tensor guard, and with
    Python-level passes where it fails or another torch lacks it (``optim._paths.Metadata``):
    a scenario taking this fixture runs once each way."""
    if request.param == "passes":
        monkeypatch.setattr(_paths, "tensor_guard", lambda tensors: None)
    return request.param


@pytest.fixture
def fresh_process_caches(monkeypatch):
    """The module-level caches a process's first steps fill (the kept operand tensors, the
    padded rows of the dots, the tensor guard's and SGD kernel's probes), empty as in a new
    process, so that a test's own steps fill them."""
    from optim import _global, _ops

    monkeypatch.setattr(_ops, "_kept_operands", _ops.KeptOperands())
    monkeypatch.setattr(_global, "_PADDED", threading.local())
    _paths._tensor_guard_notices_metadata.cache_clear()
    optim.sgd.kernel_gives_rule_bits.cache_clear()
    yield
    _paths._tensor_guard_notices_metadata.cache_clear()
    optim.sgd.kernel_gives_rule_bits.cache_clear()


def steps_around_inference_mode(optimizer, late_optimizer, late: list[torch.Tensor], t: int):
    """Step ``t`` of the inference-mode scenario: ``optimizer`` steps inside
    ``torch.inference_mode()`` at every step; ``late_optimizer`` outside it, but at step 1 inside
    it, after its parameters' data was replaced (so its state is laid out anew there)."""
    with torch.inference_mode():
        optimizer.step()
        if t == 1:
            for p in late:
                p.data = p.data.clone()
            late_optimizer.step()
    if t != 1:
        late_optimizer.step()


def in_a_forked_child(work: Callable[[], object]) -> int:
    """``work()`` run in a forked process, as Hogwild's processes train a model in shared
    memory (``model.share_memory()``); the child's exit code (0: it returned; 1: it raised, its
    traceback printed to stderr).

    ``work`` must not call ``backward()``: on a machine with a GPU, torch refuses it in a
    process forked after the parent ran one ("Unable to handle autograd's threading in
    combination with fork-based multiprocessing": autograd's device threads, which a CPU-only
    torch never starts). The callers hand their gradients over written out. The child is a
    CPU worker and sees no GPU: torch's own steps ask the CUDA driver whether a graph is being
    captured (``Optimizer._accelerator_graph_capture_health_check``), which raises "CUDA error:
    initialization error" in a child of a process that initialised CUDA (an earlier torch
    step did, through that same check)."""
    pid = os.fork()
    if pid == 0:  # (the child: exits here, whatever happens)
        code = 1
        try:
            torch.cuda.is_available = lambda: False  # (this process only: it exits below)
            torch.set_num_threads(1)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
