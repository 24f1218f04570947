"""torch.compile: a user-compiled step(fullgraph=True), and the flat path's own compiled rule."""

import gc
import itertools
import sys

import pytest
import torch
import torch._dynamo
import torch._dynamo.testing

import optim
from optim import _paths
from tests.optim.conftest import (
    CASES,
    NAMES,
    TOLERANCE,
    loss_fn,
    make_params,
    ours,
    relative_error,
    theirs,
)

# The case with the most options switched on, per optimizer.
RICHEST = {name: max((k for n, k in CASES if n == name), key=len) for name in NAMES}


def _train(step_fn, optimizer, params, steps, sign):
    for _ in range(steps):
        for p in params:
            p.grad = None
        loss_fn(params, sign).backward()
        step_fn()
    return optimizer


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_user_compiled_step_fullgraph_matches_torch(name):
    kwargs = RICHEST[name]
    sign = -1.0 if kwargs.get("maximize") else 1.0
    torch._dynamo.reset()
    params, reference = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours(name)(params, impl="foreach", **kwargs)
    _train(torch.compile(optimizer.step, fullgraph=True), optimizer, params, 8, sign)
    torch_optimizer = theirs(name)(reference, **kwargs)
    _train(torch_optimizer.step, torch_optimizer, reference, 8, sign)
    assert relative_error(params, reference) <= TOLERANCE[torch.float64]


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["foreach", "flat"])
def test_user_compiled_sgd_step_makes_a_none_momentum_buffer_as_torch(impl):
    """A ``momentum_buffer: None`` entry (torch <= 2.0's checkpoints) under a user's
    ``torch.compile(step)``: the buffer is made at the next step from the gradient, with the
    bits of torch's step compiled the same way (ours raised ``AttributeError`` eager and
    compiled)."""
    results = []
    for make in (torch.optim.SGD, lambda ps, **kw: optim.SGD(ps, impl=impl, **kw)):
        torch._dynamo.reset()
        params = make_params(torch.float64)
        optimizer = make(params, lr=0.05, momentum=0.9, nesterov=True)
        groups = optimizer.state_dict()["param_groups"]
        state = {i: {"momentum_buffer": None} for i in range(len(params))}
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        _train(torch.compile(optimizer.step), optimizer, params, 4, 1.0)
        buffers = [optimizer.state[p]["momentum_buffer"] for p in params]
        results.append([p.detach() for p in params] + buffers)
    assert all(map(torch.equal, *results))


@pytest.mark.parametrize("impl", ["foreach", "flat"])
@pytest.mark.parametrize("name", NAMES)
def test_user_compiled_step_compiles_twice_not_at_every_step(name, impl):
    """A user's ``torch.compile(step)`` as torch's tutorial writes it, the gradients new at each
    step (``p.grad = None``, as ``zero_grad`` leaves them): the step is traced twice, before the
    state exists and after, as torch's is at most, and then runs that trace. Before, it was
    traced again at every step until dynamo's recompile limit (8) made it run eagerly: the
    state's count of handed-out values was read in the trace (a guard on its value), and the
    state reached before the parameters made dynamo guard each gradient by identity. Traced
    with a counting backend that runs the graph as it is (no inductor), beside torch eager."""
    kwargs = RICHEST[name]
    sign = -1.0 if kwargs.get("maximize") else 1.0
    torch._dynamo.reset()
    params, reference = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours(name)(params, impl=impl, **kwargs)
    counter = torch._dynamo.testing.CompileCounter()
    _train(torch.compile(optimizer.step, backend=counter), optimizer, params, 12, sign)
    torch_optimizer = theirs(name)(reference, **kwargs)
    _train(torch_optimizer.step, torch_optimizer, reference, 12, sign)
    assert counter.frame_count == 2
    assert relative_error(params, reference) <= TOLERANCE[torch.float64]


@pytest.mark.slow
@pytest.mark.parametrize("eager_steps", [0, 2], ids=["compiled from the first", "after eager"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad"])
def test_user_compiled_flat_step_runs_plain_lists_and_matches_torch(name, eager_steps):
    """A user's torch.compile(step, fullgraph=True) over ``impl="flat"``: the step runs the rule
    over plain lists (a layout cannot be built in a traced step: before, dynamo refused it,
    "Unsupported"), from the first step or over the views of a layout built by eager steps
    before, and gives torch's numbers."""
    kwargs = RICHEST[name]
    sign = -1.0 if kwargs.get("maximize") else 1.0
    torch._dynamo.reset()
    params, reference = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours(name)(params, impl="flat", **kwargs)
    _train(optimizer.step, optimizer, params, eager_steps, sign)
    _train(torch.compile(optimizer.step, fullgraph=True), optimizer, params, 6, sign)
    torch_optimizer = theirs(name)(reference, **kwargs)
    _train(torch_optimizer.step, torch_optimizer, reference, eager_steps + 6, sign)
    assert relative_error(params, reference) <= TOLERANCE[torch.float64]


def _packing_from_two_tensors(monkeypatch) -> list[tuple[int, int]]:
    """``PACK_AT_LEAST`` set to 2 in every module of ``optim`` that holds it, and the shapes of
    two small tensors, so that a test of "many small tensors" compiles a graph over two (its
    compile time grows with the number of tensors: a user-compiled Prodigy step over the 16 of
    the real threshold cost 20 s more cold than warm on this project's CPU). The rule that
    decides packing is the same at any threshold; :func:`_packed_eagerly` checks that eager
    steps do pack these tensors, so the traced step is tested where packing would apply."""
    threshold = _paths.PACK_AT_LEAST
    for module in list(sys.modules.values()):
        is_ours = getattr(module, "__name__", "").partition(".")[0] == "optim"
        if is_ours and getattr(module, "PACK_AT_LEAST", None) == threshold:
            monkeypatch.setattr(module, "PACK_AT_LEAST", 2)
    return [(3, 2), (2, 3)]


def _packed_eagerly(optimizer) -> bool:
    """Whether ``optimizer``'s eager steps packed its tensors (a packed layout, or a reducing
    optimizer's packed buffers)."""
    layouts = [layout for held in optimizer._layouts.values() for layout in held]
    return any(isinstance(layout, _paths.Packed) for layout in layouts) or bool(
        getattr(optimizer, "_packed", None)
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Prodigy"])
def test_user_compiled_learning_rate_free_step_runs_plain_lists_and_matches_the_package(
    name, monkeypatch
):
    """A user's torch.compile(step, fullgraph=True) over tensors that eager steps pack: the step
    runs the rule over plain lists, no layout built in the trace (before, dynamo refused the
    packed layout, "Unsupported"), with the package's numbers. Prodigy here; DAdaptSGD,
    DAdaptAdam, SGDScheduleFree and AdamWScheduleFree passed too when written. DoG, LDoG and
    DAdaptAdaGrad still stop the trace in their own host-side code, as before."""
    reference = {
        "Prodigy": pytest.importorskip("prodigyopt").Prodigy,
        "DAdaptSGD": pytest.importorskip("dadaptation").DAdaptSGD,
        "DAdaptAdam": pytest.importorskip("dadaptation").DAdaptAdam,
        "SGDScheduleFree": pytest.importorskip("schedulefree").SGDScheduleFree,
        "AdamWScheduleFree": pytest.importorskip("schedulefree").AdamWScheduleFree,
    }[name]
    kwargs = {"lr": 0.05} if "ScheduleFree" in name else {}
    torch._dynamo.reset()
    shapes = _packing_from_two_tensors(monkeypatch)
    params = [torch.randn(s, dtype=torch.float64).requires_grad_() for s in shapes]
    expected = [p.detach().clone().requires_grad_() for p in params]
    eager = [p.detach().clone().requires_grad_() for p in params]
    optimizer = getattr(optim, name)(params, **kwargs)
    package = reference(expected, **kwargs)
    eager_optimizer = getattr(optim, name)(eager, **kwargs)
    if "ScheduleFree" in name:
        for opt in (optimizer, package, eager_optimizer):
            opt.train()
    _train(torch.compile(optimizer.step, fullgraph=True), optimizer, params, 4, 1.0)
    _train(package.step, package, expected, 4, 1.0)
    _train(eager_optimizer.step, eager_optimizer, eager, 4, 1.0)
    assert _packed_eagerly(eager_optimizer)
    assert relative_error(params, expected) <= 1e-10


def _scaled(value, factor: float):
    """A hyperparameter's number (or each number of a tuple, ``betas``) times ``factor``."""
    if isinstance(value, tuple):
        return tuple(_scaled(v, factor) for v in value)
    is_number = isinstance(value, float | int) and not isinstance(value, bool)
    return value * factor if is_number else value


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_flat_compiled_rule_matches_torch_and_never_recompiles_for_new_hyperparameters(name):
    """Every number of the group (``lr``, ``eps``, ``betas``, ``weight_decay``, ...) rescaled
    between steps, as a schedule would: one graph after the first steps, torch's numbers.
    ``eps`` used to recompile at every new value (an eps added as one 0-dim tensor made
    inductor read its value at compile time), and torch's on-disk cache then served a kernel
    with another process's eps (see ``test_compiled_kernels_cached_by_another_process...``).
    float64: in float32 centered RMSprop at alpha 0.2475 amplifies rounding to 5e-5 in 30 steps
    (the same steps agree to 3e-15 in float64)."""
    kwargs = dict(RICHEST[name])
    sign = -1.0 if kwargs.get("maximize") else 1.0
    torch._dynamo.reset()
    params, reference = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours(name)(params, impl="flat", compile=True, **kwargs)
    torch_optimizer = theirs(name)(reference, **kwargs)
    initial = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    schedule = [0.5, 1.0, 0.25]  # multipliers, as a schedule would write them
    graphs_after_first = None
    for i in range(30):
        for opt, ps in ((optimizer, params), (torch_optimizer, reference)):
            for group in opt.param_groups:
                group.update({k: _scaled(v, schedule[i % 3]) for k, v in initial.items()})
            _train(opt.step, opt, ps, 1, sign)
        if i == 1:  # SGD's first step has its own graph (the momentum buffer's first fill)
            graphs_after_first = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs_after_first
    assert relative_error(params, reference) <= TOLERANCE[torch.float64]


class _RerunGraph:
    """A stand-in on a CPU for a captured CUDA graph: its replay reruns the call it captured (a
    graph's kernels, on the tensors and the values they were captured with), not the call made
    at that step, so anything the call of a later step hands in anew is not seen."""

    def __init__(self, run) -> None:
        self.run = run

    def replay(self) -> None:
        self.run()


def _replay_on_the_cpu(monkeypatch, captured: list) -> None:
    """``optim._paths.ReplayedCalls`` capturing and replaying on a CPU, with :class:`_RerunGraph`
    (None, a failed capture, where ``captured`` says so by holding None first)."""
    monkeypatch.setattr(_paths.ReplayedCalls, "replayable", staticmethod(lambda device: True))

    def capture(run, device):
        graph = None if captured[:1] == [None] else _RerunGraph(run)
        captured.append(graph)
        return graph

    monkeypatch.setattr(_paths, "_captured", capture)


def test_replayed_calls_capture_a_call_seen_before_keyed_by_its_gradients_and_values(
    monkeypatch,
):
    """The policy of the compiled path's CUDA-graph replay, on a CPU with a stand-in graph: a
    call is captured the second time its key (its gradients' address and layout, its other
    values) is seen, then replayed, not run; another gradient tensor or value, or another
    Dynamo stance (``force_eager``, to debug a compiled step), runs as it is; a failed capture
    is not retried; at most ``LIMIT`` graphs are kept."""
    captured: list = []
    _replay_on_the_cpu(monkeypatch, captured)
    replayed = _paths.ReplayedCalls()
    ran: list = []
    grads = [torch.zeros(3)]
    replayed(lambda: ran.append("a"), grads, (False,))
    assert (ran, len(captured)) == (["a"], 0)
    replayed(lambda: ran.append("b"), grads, (False,))  # seen before: captured, then replayed
    assert (ran, len(captured), replayed.replays) == (["a", "b"], 1, 1)
    replayed(lambda: ran.append("c"), grads, (False,))  # the graph's call, not this one
    assert (ran[-1], len(captured), replayed.replays) == ("b", 1, 2)
    replayed(lambda: ran.append("d"), grads, (True,))  # another value: run
    replayed(lambda: ran.append("e"), [torch.zeros(3)], (False,))  # another tensor: run
    replayed(lambda: ran.append("f"), [torch.zeros(3, dtype=torch.float64)], (False,))
    assert (ran[-3:], replayed.replays) == (["d", "e", "f"], 2)
    with torch.compiler.set_stance("force_eager"):  # another stance: run as it says
        replayed(lambda: ran.append("g"), grads, (False,))
        assert (ran[-1], replayed.replays) == ("g", 2)
        replayed(lambda: ran.append("h"), grads, (False,))  # seen under it: its own graph
        replayed(lambda: ran.append("i"), grads, (False,))
        assert (ran[-1], len(captured), replayed.replays) == ("h", 2, 4)
    replayed(lambda: ran.append("j"), grads, (False,))  # back: the first graph's call
    assert (ran[-1], len(captured), replayed.replays) == ("b", 2, 5)
    for value in range(2 * _paths.ReplayedCalls.LIMIT):
        for _ in range(2):
            replayed(lambda: None, grads, (value,))
    assert len(replayed.graphs) == _paths.ReplayedCalls.LIMIT

    failing: list = [None]
    _replay_on_the_cpu(monkeypatch, failing)
    replayed = _paths.ReplayedCalls()
    for letter in "xyz":
        replayed(lambda letter=letter: ran.append(letter), grads, (False,))
    assert (ran[-3:], failing, replayed.replays) == (["x", "y", "z"], [None, None], 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_compiled_steps_replayed_from_their_capture_keep_torchs_numbers(name, monkeypatch):
    """The compiled path's CUDA-graph replay run on a CPU with a stand-in graph that reruns the
    captured call (:class:`_RerunGraph`): every number of the group rescaled at every step and
    ``maximize`` switched at step 6, torch's numbers. A number the replayed call held as it was
    at its capture (a host count, a hyperparameter not refilled in place), or an option missing
    from its key, would replay the old step."""
    _replay_on_the_cpu(monkeypatch, [])
    kwargs = dict(RICHEST[name])
    sign = -1.0 if kwargs.get("maximize") else 1.0
    torch._dynamo.reset()
    params, reference = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours(name)(params, compile=True, **kwargs)
    torch_optimizer = theirs(name)(reference, **kwargs)
    initial = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    schedule = [0.5, 1.0, 0.25]
    for i in range(12):
        if i == 6:
            initial["maximize"] = not initial["maximize"]
        for opt, ps in ((optimizer, params), (torch_optimizer, reference)):
            for group in opt.param_groups:
                group.update({k: _scaled(v, schedule[i % 3]) for k, v in initial.items()})
            _train(opt.step, opt, ps, 1, sign)
    assert relative_error(params, reference) <= TOLERANCE[torch.float64]
    layouts = [layout for held in optimizer._layouts.values() for layout in held]
    assert sum(layout.replayed.replays for layout in layouts) >= 6


_ADADELTA_BESIDE_TORCH = """
import sys, torch, optim


def gap(eps):
    generator = torch.Generator().manual_seed(0)
    initial = [torch.randn(7, dtype=torch.float64, generator=generator) for _ in range(3)]
    results = []
    for make in (lambda ps: torch.optim.Adadelta(ps, eps=eps),
                 lambda ps: optim.Adadelta(ps, eps=eps, compile=True)):
        params = [t.clone().requires_grad_() for t in initial]
        optimizer = make(params)
        for _ in range(3):
            optimizer.zero_grad()
            sum(((p - 0.3) ** 2).sum() for p in params).backward()
            optimizer.step()
        results.append(torch.cat([p.detach() for p in params]))
    return ((results[1] - results[0]).abs().max() / results[0].abs().max()).item()


if __name__ == "__main__":
    print(gap(float(sys.argv[1])))
"""


@pytest.mark.slow
def test_compiled_kernels_cached_by_another_process_use_this_processs_hyperparameters(
    monkeypatch,
):
    """Two processes sharing torch's on-disk compile cache (the machine's own, as every run on
    it does), the second with another ``eps``: each gives torch's numbers. The second used to
    get the first's kernel with the first's eps baked in (Adadelta eps 1e-6 after 1e-3: 0.29
    apart after three steps). The first is this process, its compiled-in numbers emptied as in
    a new one (so eps is baked in; a process of its own cost about 10 s more); the second a
    new process. A cache of its own would make the second probe the CPU's instruction sets
    with a dozen C++ builds that the machine's cache already holds; kernels an earlier run
    left there are served the same way."""
    import subprocess
    import sys

    monkeypatch.setattr(_paths, "_COMPILED_NUMBERS", {})
    namespace = {"__name__": "first process"}
    exec(_ADADELTA_BESIDE_TORCH, namespace)  # (this module's own script)
    assert namespace["gap"](1e-3) <= 1e-10  # (this process: its kernel goes to the disk cache)
    ran = subprocess.run(
        [sys.executable, "-c", _ADADELTA_BESIDE_TORCH, "1e-6"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(ran.stdout.strip().splitlines()[-1]) <= 1e-10, ran.stdout


_WARNINGS_OF_A_FUSED_STEP = """
import sys, warnings
import torch
import optim
module = torch.optim if sys.argv[1] == "torch" else optim
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in ("SGD", "Adam", "AdamW", "Adagrad"):
        parameter = torch.nn.Parameter(torch.randn(10))
        parameter.grad = torch.randn(10)
        optimizer = getattr(module, name)([parameter], lr=0.1, fused=True)
        optimizer.step()
        optimizer.step()
print(sorted({f"{w.category.__name__}: {w.message}" for w in caught}))
"""


@pytest.mark.slow
def test_a_fused_step_warns_as_torchs_fused_step():
    """The first ``fused=True`` steps of a process, ours beside torch's: the same warnings (none
    with torch 2.13). Ours compile, and importing inductor imports ``torch.utils.mkldnn``, which
    used to show 14 ``DeprecationWarning``s that ``torch.jit.script_method`` is deprecated
    (an error under ``-W error``)."""
    import subprocess
    import sys

    caught = {
        side: subprocess.run(
            [sys.executable, "-c", _WARNINGS_OF_A_FUSED_STEP, side],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[-1]
        for side in ("torch", "ours")
    }
    assert caught["ours"] == caught["torch"], caught


@pytest.mark.slow
def test_compile_has_no_limit_on_shapes_groups_and_optimizers():
    """A sweep that builds 20 models of different sizes (and a 9-group model) in one process.

    Dynamo's default limit of 8 graphs per function used to fail with FailOnRecompileLimitHit
    from the 9th distinct buffer shape; every one of these must compile, run and match torch.
    """
    torch._dynamo.reset()
    for size in range(20):
        shapes = [(size + 2, 3), (size * 7 + 1,)]
        params = [torch.randn(s, dtype=torch.float64).requires_grad_() for s in shapes]
        reference = [p.detach().clone().requires_grad_() for p in params]
        for opt, ps in (
            (ours("Adam")(params, lr=0.01, compile=True), params),
            (theirs("Adam")(reference, lr=0.01), reference),
        ):
            _train(opt.step, opt, ps, 2, 1.0)
        assert relative_error(params, reference) <= TOLERANCE[torch.float64]
    groups = [{"params": [torch.randn(i + 1, requires_grad=True)], "lr": 0.01 * (i + 1)}
              for i in range(9)]  # fmt: skip
    optimizer = ours("SGD")(groups, lr=0.1, momentum=0.9, compile=True)
    params = [p for group in groups for p in group["params"]]
    _train(optimizer.step, optimizer, params, 2, 1.0)


@pytest.mark.slow
def test_user_compiled_step_with_many_small_tensors_runs_plain_lists(monkeypatch):
    """Under a user's torch.compile(step, fullgraph=True) nothing is packed or read on the host,
    over tensors that eager steps pack (:func:`_packing_from_two_tensors`)."""
    torch._dynamo.reset()
    shapes = _packing_from_two_tensors(monkeypatch)
    params = [torch.randn(s, dtype=torch.float64).requires_grad_() for s in shapes]
    reference = [p.detach().clone().requires_grad_() for p in params]
    eager = [p.detach().clone().requires_grad_() for p in params]
    optimizer = ours("Adam")(params, lr=0.01)
    _train(torch.compile(optimizer.step, fullgraph=True), optimizer, params, 4, 1.0)
    torch_optimizer = theirs("Adam")(reference, lr=0.01)
    _train(torch_optimizer.step, torch_optimizer, reference, 4, 1.0)
    eager_optimizer = ours("Adam")(eager, lr=0.01)
    _train(eager_optimizer.step, eager_optimizer, eager, 4, 1.0)
    assert _packed_eagerly(eager_optimizer)
    assert relative_error(params, reference) <= TOLERANCE[torch.float64]


def test_compiled_numbers_are_constants_until_a_second_value_and_zeros_always():
    """The policy of :class:`optim._paths.CompiledNumbers`: on a CPU a number other than ``lr``
    is compiled in while every call passes it one value, a tensor after a second (and for
    good: one recompile, not one per value), and a zero always; on a GPU only a zero."""
    numbers = _paths.CompiledNumbers(torch.device("cpu"))
    assert not numbers.holds("lr", 0.1)
    assert not numbers.holds("lr", 0.0)
    assert numbers.holds("eps", 1e-8)
    assert numbers.holds("eps", 1e-8)
    assert not numbers.holds("eps", 1e-6)
    assert not numbers.holds("eps", 1e-8)
    assert numbers.holds("weight_decay", 0.0)
    assert numbers.holds("weight_decay", 0.1)
    assert not numbers.holds("weight_decay", 0.2)
    assert numbers.holds("weight_decay", 0.0)
    assert not numbers.holds("momentum", torch.tensor(0.9))
    on_gpu = _paths.CompiledNumbers(torch.device("cuda"))  # (a device object: no GPU needed)
    assert not on_gpu.holds("eps", 1e-8)
    assert on_gpu.holds("weight_decay", 0.0)


COMPILED_PEERS = {  # torch's fastest path for each: fused where torch has one
    "Adadelta": {},
    "Adagrad": {"fused": True},
    "Adam": {"fused": True},
    "AdamW": {"fused": True},
    "RMSprop": {},
    "SGD": {"fused": True, "momentum": 0.9},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_compiled_rule_keeps_an_infinite_parameter_infinite_as_torch_does(name, monkeypatch):
    """A parameter with an infinite element and the default ``weight_decay=0``: torch skips the
    decay term (``if weight_decay != 0``) and the element stays infinite. The compiled rule took
    every number as a 0-dim tensor and added ``0 * p``, NaN there (Adam, Adagrad, SGD, RMSprop,
    Adadelta); now a zero is compiled in and the term dropped. (The conftest's float32 tensors
    and default numbers, as in the compile-once test below: the same graph, which torch's
    compile cache then serves to that test.)"""
    monkeypatch.setattr(_paths, "_COMPILED_NUMBERS", {})
    torch._dynamo.reset()
    kwargs = {"lr": 0.1, **COMPILED_PEERS[name]}
    ours_kwargs = {k: v for k, v in kwargs.items() if k != "fused"}
    params, reference = make_params(torch.float32), make_params(torch.float32)
    with torch.no_grad():
        for p in (params[0], reference[0]):
            p.view(-1)[0] = float("inf")
    optimizer = ours(name)(params, compile=True, **ours_kwargs)
    torch_optimizer = theirs(name)(reference, **kwargs)
    for step in range(3):
        generator = torch.Generator().manual_seed(step)
        gradients = [torch.randn(p.shape, generator=generator) for p in params]
        for opt, ps in ((optimizer, params), (torch_optimizer, reference)):
            for p, gradient in zip(ps, gradients, strict=True):
                p.grad = gradient.clone()
            opt.step()
    mine, theirs_ = params[0].detach().view(-1), reference[0].detach().view(-1)
    assert torch.isinf(mine[0])
    assert torch.isinf(theirs_[0])
    assert not any(p.isnan().any() for p in params)
    assert (
        relative_error([mine[1:], *params[1:]], [theirs_[1:], *reference[1:]])
        <= TOLERANCE[torch.float32]
    )


@pytest.mark.slow
def test_a_grid_over_compiled_in_numbers_recompiles_once_per_number(monkeypatch):
    """A grid over ``betas`` and ``weight_decay`` in one process, each optimizer compiled: a
    number compiled in at the first point becomes a tensor at its second value, so the grid's
    later points reuse a graph instead of compiling one each (1.2-1.8 s apiece here), and every
    point gives torch's numbers."""
    monkeypatch.setattr(_paths, "_COMPILED_NUMBERS", {})
    torch._dynamo.reset()
    grid = [((0.9, 0.999), 0.0), ((0.9, 0.99), 0.0), ((0.8, 0.98), 0.0), ((0.7, 0.95), 0.0),
            ((0.9, 0.999), 0.1), ((0.9, 0.999), 0.2), ((0.8, 0.9), 0.3),
            ((0.9, 0.9), 0.0)]  # fmt: skip
    graphs = []
    for betas, weight_decay in grid:
        kwargs = {"lr": 0.01, "betas": betas, "weight_decay": weight_decay}
        params, reference = make_params(torch.float64), make_params(torch.float64)
        optimizer = ours("Adam")(params, compile=True, **kwargs)
        torch_optimizer = theirs("Adam")(reference, **kwargs)
        _train(optimizer.step, optimizer, params, 2, 1.0)
        _train(torch_optimizer.step, torch_optimizer, reference, 2, 1.0)
        assert relative_error(params, reference) <= TOLERANCE[torch.float64], (betas, weight_decay)
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    # One graph per number at its second value (beta2 at the 2nd point, beta1 at the 3rd) and
    # for weight decay's first value other than 0 (5th) and its second (6th); then none.
    new_graphs = [later - earlier for earlier, later in itertools.pairwise(graphs)]
    assert sum(new_graphs) <= 4
    assert new_graphs[2] == 0
    assert new_graphs[5:] == [0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("name", [*NAMES, "SGDScheduleFree", "AdamWScheduleFree"])
def test_compiled_rule_compiles_once_for_a_run_with_fixed_hyperparameters(name, monkeypatch):
    """Six steps with the defaults: every graph is made at the first step. Schedule-Free hands
    its rule a new averaging weight (and AdamW's bias correction) at every step; compiled in
    as constants, they recompiled the rule at the second step (1.2 s here)."""
    monkeypatch.setattr(_paths, "_COMPILED_NUMBERS", {})
    torch._dynamo.reset()
    params = make_params(torch.float32)
    optimizer = getattr(optim, name)(params, lr=0.01, compile=True)
    if "ScheduleFree" in name:
        optimizer.train()
    graphs = []
    for _ in range(6):
        _train(optimizer.step, optimizer, params, 1, 1.0)
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs[1:] == [graphs[0]] * 5


@pytest.mark.slow
def test_compiled_in_numbers_of_several_rules_share_the_spans_function(monkeypatch):
    """Tensors of ``BLOCK`` elements or more with new gradients at every step run through one
    compiled function for every rule (``rule_over_spans``), so Dynamo sees another class's
    ``eps`` and ``betas`` as other values of the same arguments and makes them dynamic: each
    class, and a second Adam with other numbers, still compiles with ``fullgraph=True`` and
    gives torch's numbers."""
    monkeypatch.setattr(_paths, "_COMPILED_NUMBERS", {})
    torch._dynamo.reset()
    size = _paths.BLOCK + 3
    for name, kwargs in [
        ("Adam", {}),
        ("Adagrad", {}),
        ("Adam", {"eps": 1e-6, "betas": (0.8, 0.99)}),
    ]:
        generator = torch.Generator().manual_seed(0)
        start = [
            torch.randn(size, generator=generator, dtype=torch.float64),
            torch.randn(5, dtype=torch.float64),
        ]
        params = [t.clone().requires_grad_() for t in start]
        reference = [t.clone().requires_grad_() for t in start]
        optimizer = ours(name)(params, compile=True, **kwargs)
        torch_optimizer = theirs(name)(reference, **kwargs)
        for _ in range(3):
            for p, q in zip(params, reference, strict=True):
                gradient = torch.randn(p.shape, generator=generator, dtype=torch.float64)
                p.grad, q.grad = gradient.clone(), gradient.clone()  # (new tensors: the spans)
            optimizer.step()
            torch_optimizer.step()
        assert relative_error(params, reference) <= TOLERANCE[torch.float64], (name, kwargs)
        assert optimizer._compiled_spans is not None  # (the spans' function ran)


def _through_dynamo(optimizer):
    """``optimizer`` with its compiled rule called through Dynamo at every step, as
    ``torch.compile(rule)`` runs it for a user (inductor's backend by its name), the reference
    for the direct calls of ``optim._paths.CompiledRule``."""
    optimizer._compiled_rule = _paths.limited(
        torch.compile(type(optimizer)._rule, fullgraph=True, dynamic=None)
    )
    return optimizer


def _states(optimizer):
    return [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]


def _direct_calls_beside_dynamo(compiled, optimizer, params, reference, twin, label):
    """Five training steps of ``optimizer`` and of ``reference``, its twin whose rule runs
    through Dynamo (:func:`_through_dynamo`): the parameters and state agree bit for bit, and
    the direct calls ``compiled`` made are returned."""
    before = compiled.direct_calls
    _train(optimizer.step, optimizer, params, 5, 1.0)
    _train(reference.step, reference, twin, 5, 1.0)
    for mine, theirs_ in zip([*params, *_states(optimizer)], [*twin, *_states(reference)]):
        assert torch.equal(mine, theirs_), label
    return compiled.direct_calls - before


@pytest.mark.slow
@pytest.mark.parametrize("name", [*NAMES, "SGDScheduleFree", "AdamWScheduleFree"])
def test_compiled_rule_repeats_its_graph_without_dynamo_bit_for_bit(name):
    """Once a compiled call repeats, the flat path calls inductor's graph directly, not through
    Dynamo (whose frame and guards cost about 65 us a call): the parameters, the state and the
    parameters' version counters are those of the same rule called through Dynamo at every
    step, bit for bit, for every class with a compiled rule (a rule that changed a Python
    object it is handed would differ here: Dynamo's bytecode replays such a change after the
    graph, a direct call does not)."""
    kwargs = {k: v for k, v in COMPILED_PEERS.get(name, {}).items() if k != "fused"}
    torch._dynamo.reset()  # (a graph Dynamo already holds, of another test, is not recorded)
    params, twin = make_params(torch.float32), make_params(torch.float32)
    optimizer = ours(name)(params, lr=0.01, compile=True, **kwargs)
    reference = _through_dynamo(ours(name)(twin, lr=0.01, compile=True, **kwargs))
    if "ScheduleFree" in name:
        optimizer.train()
        reference.train()
    direct_before = _paths.compiled_rule(type(optimizer)._rule).direct_calls
    for step in range(6):
        generator = torch.Generator().manual_seed(step)
        for p, q in zip(params, twin, strict=True):
            gradient = torch.randn(p.shape, generator=generator)
            p.grad, q.grad = gradient.clone(), gradient.clone()
        optimizer.step()
        reference.step()
    assert _paths.compiled_rule(type(optimizer)._rule).direct_calls - direct_before >= 4
    for mine, theirs_ in zip([*params, *_states(optimizer)], [*twin, *_states(reference)]):
        assert torch.equal(mine, theirs_)
    assert [p._version for p in params] == [q._version for q in twin]


@pytest.mark.slow
def test_compiled_rule_runs_through_dynamo_wherever_its_guards_could_differ(monkeypatch):
    """A repeated call skips Dynamo only while everything Dynamo's guards would check is as
    when its graph was compiled. Each change below sends that step through Dynamo (no direct
    call counted), which recompiles where it must: another thread count (inductor's CPU
    kernels are built for one), a new value of a number compiled in, ``force_eager``, a torch
    function mode (``with torch.device(...)``), ``torch._dynamo.reset()``. Every step gives
    torch's numbers."""
    monkeypatch.setattr(_paths, "_COMPILED_NUMBERS", {})
    torch._dynamo.reset()
    params, reference = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours("Adam")(params, lr=0.01, compile=True)
    torch_optimizer = theirs("Adam")(reference, lr=0.01)
    compiled = _paths.compiled_rule(optim.Adam._rule)

    def step_both():
        _train(optimizer.step, optimizer, params, 1, 1.0)
        _train(torch_optimizer.step, torch_optimizer, reference, 1, 1.0)
        assert relative_error(params, reference) <= TOLERANCE[torch.float64]

    def direct_calls_in(context=None) -> int:
        before = compiled.direct_calls
        if context is None:
            step_both()
        else:
            with context:
                step_both()
        return compiled.direct_calls - before

    step_both()
    assert direct_calls_in() == 1  # (the repeat of the first step's call)
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        assert direct_calls_in() == 0
    finally:
        torch.set_num_threads(threads)
    assert direct_calls_in() == 1
    for opt in (optimizer, torch_optimizer):
        opt.param_groups[0]["eps"] = 1e-3  # (compiled in as 1e-8 so far)
    assert direct_calls_in() == 0
    assert direct_calls_in() == 1  # (eps is now a tensor: its graph repeats)
    assert direct_calls_in(torch.compiler.set_stance("force_eager")) == 0
    assert direct_calls_in(torch.compiler.set_stance("force_eager")) == 0  # (nothing kept)
    assert direct_calls_in(torch.device("cpu")) == 0
    torch._dynamo.reset()
    assert direct_calls_in() == 0
    assert direct_calls_in() == 1


@pytest.mark.slow
def test_compiled_rule_direct_calls_keep_a_number_dynamo_made_an_input():
    """Adam and AdamW share one rule: AdamW's ``weight_decay`` after Adam's zero is a float
    that changed, which Dynamo passes to its graph as a 0-dim tensor it makes at each call.
    The direct call passes the one made at the capture (the key fixes its value): AdamW's
    numbers are the Dynamo-called rule's bit for bit, and a third weight decay, whose call
    Dynamo serves from the same graph without compiling, is called directly too, with a 0-dim
    tensor of its own value."""
    torch._dynamo.reset()
    adam_params = make_params(torch.float32)
    adam = ours("Adam")(adam_params, lr=0.01, compile=True)
    _train(adam.step, adam, adam_params, 3, 1.0)
    compiled = _paths.compiled_rule(optim.Adam._rule)
    for weight_decay in (0.01, 0.05):
        params, twin = make_params(torch.float32), make_params(torch.float32)
        optimizer = ours("AdamW")(params, lr=0.01, weight_decay=weight_decay, compile=True)
        reference = _through_dynamo(
            ours("AdamW")(twin, lr=0.01, weight_decay=weight_decay, compile=True)
        )
        direct = _direct_calls_beside_dynamo(
            compiled, optimizer, params, reference, twin, weight_decay
        )
        assert direct >= 3, weight_decay


@pytest.mark.slow
def test_compiled_rule_direct_calls_serve_a_dynamic_shape_graph_at_each_size():
    """A second buffer size recompiles the rule with dynamic shapes, whose graph takes the size
    as an input (a ``SymInt`` when recorded); Dynamo serves a third size from that graph
    without compiling, and the direct call then finds it by its cache entry's own guards and
    reads the size from the call. At each size the direct calls give the Dynamo-called rule's
    bits (before, such a graph was never kept, and Adam on 2000x1k after 4x4M in one process,
    as the bench runs, went through Dynamo)."""
    torch._dynamo.reset()
    first = make_params(torch.float32)
    warm = ours("Adam")(first, lr=0.01, compile=True)
    _train(warm.step, warm, first, 2, 1.0)
    compiled = _paths.compiled_rule(optim.Adam._rule)
    for shapes in [(7, (3, 5)), (11, (2, 9), 4)]:
        generator = torch.Generator().manual_seed(3)
        start = [torch.randn(shape, generator=generator) for shape in shapes]
        params = [t.clone().requires_grad_() for t in start]
        twin = [t.clone().requires_grad_() for t in start]
        optimizer = ours("Adam")(params, lr=0.01, compile=True)
        reference = _through_dynamo(ours("Adam")(twin, lr=0.01, compile=True))
        direct = _direct_calls_beside_dynamo(compiled, optimizer, params, reference, twin, shapes)
        assert direct >= 3, shapes


@pytest.mark.slow
def test_a_deleted_compiled_optimizer_leaves_none_of_its_tensors_alive():
    """The compiled rule's record of a graph lives as long as the process's Dynamo cache; it
    keeps what kind each input was, not the inputs, which are the first compiled optimizer's
    buffers (parameters, gradients, state). Before, every optimizer whose call compiled a graph
    stayed in memory after it was deleted with its parameters: a sweep over model sizes in
    one process kept each size's first model (256 MB for Adam on 4 tensors of 4M elements).
    Checked at a first size (a static graph) and a second (a dynamic-shape one), by looking
    for any tensor of those buffers' sizes among the live objects once both are gone."""
    from torch._subclasses.fake_tensor import FakeTensor  # (Dynamo's own: shapes, no data)

    torch._dynamo.reset()  # (a graph already compiled by another test is not recorded)
    sizes = (1237, 1391)  # (three tensors each: flat buffers of 3711 and 4173 elements)
    for size in sizes:
        params = [torch.randn(size, requires_grad=True) for _ in range(3)]
        optimizer = ours("Adam")(params, lr=0.01, compile=True)
        _train(optimizer.step, optimizer, params, 3, 1.0)
        del optimizer, params
    gc.collect()
    buffer_sizes = {3 * size for size in sizes}
    alive = [
        tuple(t.shape)
        for t in gc.get_objects()
        if isinstance(t, torch.Tensor)
        and not isinstance(t, FakeTensor)
        and t.numel() in buffer_sizes
    ]
    assert alive == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Adam", "Adagrad"])
def test_a_compiled_number_first_set_inside_inference_mode_changes_again_outside(name):
    """A compiled rule's numbers are 0-dim tensors the layout keeps and refills when a value
    changes. One first made in a step inside ``torch.inference_mode()`` (``eps`` set anew for
    that step) was an inference tensor, and refilling it for a later step outside raised
    ("Inplace update to inference tensor outside InferenceMode"), where torch trains on. Now
    every step gives torch's numbers."""
    params, reference = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours(name)(params, lr=0.01, compile=True)
    torch_optimizer = theirs(name)(reference, lr=0.01)
    for step, eps in enumerate([1e-8, 1e-3, 1e-2, 1e-2]):
        for p, q in zip(params, reference, strict=True):
            p.grad = torch.full_like(p, 0.1 * (step + 1)).sin_().add_(p.detach())
            q.grad = torch.full_like(q, 0.1 * (step + 1)).sin_().add_(q.detach())
        for opt in (optimizer, torch_optimizer):
            opt.param_groups[0]["eps"] = eps
            with torch.inference_mode(step == 1):
                opt.step()
        assert relative_error(params, reference) <= TOLERANCE[torch.float64], step


@pytest.mark.slow
def test_direct_calls_after_a_first_step_under_a_float64_default_dtype(fresh_process_caches):
    """A script that sets ``torch.set_default_dtype(torch.float64)`` before its first step
    (the convex problems of ``theory`` are float64) still gets the compiled rule's direct
    calls, with the Dynamo-called rule's bits; before, the tensor guard's probe failed under
    that default, and every compiled call of the process went through Dynamo."""
    torch._dynamo.reset()
    torch.set_default_dtype(torch.float64)  # (restored after each test: tests/conftest.py)
    params, twin = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours("Adam")(params, lr=0.01, compile=True)
    reference = _through_dynamo(ours("Adam")(twin, lr=0.01, compile=True))
    compiled = _paths.compiled_rule(optim.Adam._rule)
    direct = _direct_calls_beside_dynamo(compiled, optimizer, params, reference, twin, "f64")
    assert direct >= 3


def _through_dynamo_with_spans(optimizer):
    """:func:`_through_dynamo`, its call over spans too (``rule_over_spans``)."""
    optimizer._compiled_spans = _paths.limited(
        torch.compile(optim._base.rule_over_spans, fullgraph=True, dynamic=None)
    )
    return _through_dynamo(optimizer)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Adam", "SGD", "AdamWScheduleFree"])
def test_compiled_calls_over_spans_repeat_without_dynamo_bit_for_bit(name, monkeypatch):
    """Large tensors with new gradients at every step (torch's default ``zero_grad()``) run the
    compiled rule over spans: views of the layout's buffers, which share storages, and a
    dynamic-shape graph over them also takes their storage offsets. Such a call repeats its
    graph without Dynamo while the same tensors share the same storages at the same offsets
    (before, a call over shared storages always went through Dynamo, and a graph with an
    offset input was never kept). Parameters, state and version counters are those of the
    rule called through Dynamo, bit for bit, at a first layout (a static graph) and a second
    (a dynamic-shape one)."""
    monkeypatch.setattr(_paths, "BLOCK", 4096)
    torch._dynamo.reset()
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    spans = _paths.compiled_rule(optim._base.rule_over_spans)
    for shapes in ([(5000,), (33,), (3, 7), (4200,)], [(100, 50), (7,)]):
        generator = torch.Generator().manual_seed(0)
        start = [torch.randn(shape, generator=generator) for shape in shapes]
        params = [t.clone().requires_grad_() for t in start]
        twin = [t.clone().requires_grad_() for t in start]
        optimizer = ours(name)(params, lr=0.01, compile=True, **kwargs)
        reference = _through_dynamo_with_spans(ours(name)(twin, lr=0.01, compile=True, **kwargs))
        if "ScheduleFree" in name:
            optimizer.train()
            reference.train()
        before = spans.direct_calls
        for step in range(5):
            generator = torch.Generator().manual_seed(step)
            for p, q in zip(params, twin, strict=True):
                gradient = torch.randn(p.shape, generator=generator)
                p.grad, q.grad = gradient.clone(), gradient.clone()  # (new: spans)
            optimizer.step()
            reference.step()
        assert spans.direct_calls - before >= 3, shapes
        for mine, theirs_ in zip([*params, *_states(optimizer)], [*twin, *_states(reference)]):
            assert torch.equal(mine, theirs_), shapes
        assert [p._version for p in params] == [q._version for q in twin]
