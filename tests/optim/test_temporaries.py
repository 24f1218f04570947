"""A step's temporaries reuse the memory the previous round freed: no page faults and no growth
of the process, step after step (glibc's ``malloc``; see ``optim._paths.keep_freed_temporaries``
and ``optim._ops.KeptOperands``).

Each case runs in a new interpreter, whose ``malloc`` has seen nothing yet: the pytest process's
own history (a freed 32 MB tensor in an earlier test) would raise glibc's thresholds and hide a
regression. Counted, not timed: minor page faults (``getrusage``) and the resident set
(``/proc/self/statm``) over the steps after three warm-up steps. Faults are counted over two
windows of steps and the fewer kept: on a loaded machine a worker thread sometimes made its
first allocation, and glibc its arena, inside the one window counted, once (Adadelta on 40
tensors of 40k: 27-90 faults a step in 3 of 32 runs beside another pytest, none of 20 with
``MALLOC_ARENA_MAX=1``), where a regression faults at every round of every step.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import optim
from runs.bench.optim import _PeakTemporaries

STEPS = """
import json, resource, sys, torch
torch.set_num_threads(2)
import optim
name, count, numel, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
generator = torch.Generator().manual_seed(0)
params = [torch.randn(numel, generator=generator).requires_grad_() for _ in range(count)]
for p in params:
    p.grad = torch.randn(numel, generator=generator) * 1e-2
optimizer = getattr(optim, name)(params, lr=1e-3)
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
for _ in range(3):
    optimizer.step()
before, windows = resident(), []
for _ in range(2):
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        optimizer.step()
    windows.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
print(json.dumps({"faults_per_step": min(windows) / steps, "growth": resident() - before}))
"""

glibc_only = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
    reason="counts glibc malloc's page faults on Linux",
)


def _steps(name: str, count: int, numel: int, steps: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", STEPS, name, str(count), str(numel), str(steps)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


@glibc_only
@pytest.mark.parametrize(
    ("name", "count", "numel"),
    [
        ("Adagrad", 20, 100_000),  # blocked rounds of ten 100k tensors: 914 faults a step before
        ("RMSprop", 20, 100_000),  # the same: 914 before
        ("Adadelta", 40, 40_000),  # packed rounds: 372 before
        ("Adam", 8, 1_000_000),  # rounds of one 1M tensor: 2706 before
        ("DAdaptAdaGrad", 1, 4_000_000),  # a chunk of one 4M tensor: 11686 before
    ],
)
def test_a_step_faults_in_no_memory_for_its_temporaries(name, count, numel):
    """Before, a round's temporaries (several freed together, larger than any single chunk
    glibc had seen freed from an mmap) were returned to the system and faulted back in at every
    round: Adagrad on 160 tensors of 100k spent 30 ms of a 53 ms step on it (0.40x torch)."""
    got = _steps(name, count, numel, steps=10)
    assert got["faults_per_step"] < 50, got  # a step's temporaries span 1000 pages and more


@glibc_only
def test_the_process_does_not_grow_with_the_steps():
    """Before, a 0-dim tensor made for each new bias correction and kept for 64 steps was carved
    out of the hole the freed temporaries left, so the next step's no longer fitted there: Adam
    on 8 tensors of 1M elements grew by 4 MB a step for 60 steps (230 MiB)."""
    got = _steps("Adam", 8, 1_000_000, steps=70)
    assert got["growth"] < 8 * 2**20, got


def test_the_freed_block_is_made_on_the_cpu_under_another_default_device():
    """Under ``torch.set_default_device("cuda")`` the block must still be host memory: one made
    on the default device would do nothing for ``malloc`` and stay reserved in the device's
    caching allocator."""
    from optim import _paths

    made = []

    class RecordDevices(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            made.append((func.__name__, out.device))
            return out

    with torch.device("meta"), RecordDevices():
        _paths.keep_freed_temporaries.__wrapped__()
    assert made == [("empty.memory_format", torch.device("cpu"))]


@pytest.mark.parametrize("impl", ["foreach", "flat"])
@pytest.mark.parametrize(
    "numels",
    [[600_000, 300_000], [1_000] * 40],
    ids=["blocked rounds", "packed rounds"],
)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("Adam", {}),
        ("Adam", {"amsgrad": True}),
        ("AdamW", {}),
        ("Adagrad", {}),
        ("RMSprop", {}),
        ("RMSprop", {"centered": True}),
        ("Adadelta", {}),
        ("Adam", {"maximize": True, "weight_decay": 0.1}),
        ("Adagrad", {"maximize": True, "weight_decay": 0.1}),
        ("RMSprop", {"maximize": True, "weight_decay": 0.1, "centered": True}),
        ("Adadelta", {"maximize": True, "weight_decay": 0.1}),
        ("SGD", {"momentum": 0.9, "nesterov": True}),
        ("SGD", {"momentum": 0.9, "nesterov": True, "maximize": True, "weight_decay": 0.1}),
    ],
)
def test_a_cpu_step_writes_its_temporaries_into_kept_memory_with_torchs_bits(
    name, kwargs, numels, impl
):
    """From its third step on, a step on a CPU over rounds of 16k elements or more makes no new
    tensor (the first makes the state, the second may lay it out and make the kept blocks):
    each round's temporaries (the square roots of Adam, Adagrad and RMSprop, RMSprop's centered
    difference, Adadelta's two shifted averages, the negated gradient of ``maximize``, the
    gradient plus its L2 weight decay, and SGD's Nesterov direction) go into memory the
    optimizer keeps (``optim._paths.RoundTemporaries``).
    Allocated anew at every round, they were the op that slowed down after a run's history
    (Adagrad on 4x4M: 16.6 to 22.0 ms a step). The parameters stay bitwise torch's foreach
    path's (Adadelta's two temporaries, alive together, must be distinct blocks)."""
    generator = torch.Generator().manual_seed(4)
    data = [torch.randn(n, generator=generator) for n in numels]
    grads = [[torch.randn(n, generator=generator) for n in numels] for _ in range(5)]
    ours = [d.clone().requires_grad_() for d in data]
    theirs = [d.clone().requires_grad_() for d in data]
    optimizer = getattr(optim, name)(ours, lr=1e-2, impl=impl, **kwargs)
    reference = getattr(torch.optim, name)(theirs, lr=1e-2, foreach=True, **kwargs)
    made = []
    for step_grads in grads:
        for p, q, g in zip(ours, theirs, step_grads):
            p.grad, q.grad = g.clone(), g.clone()
        with _PeakTemporaries() as counter:  # (the bench's count of tensors ops make)
            optimizer.step()
        made.append(counter.peak)
        reference.step()
    assert made[0] > 0  # (the first step makes the state)
    assert max(made[2:]) < 1024, made  # a round's temporary alone is 64 kB to 1 MB
    for p, q in zip(ours, theirs):
        assert torch.equal(p, q)


@pytest.mark.parametrize("foreach", [None, False])
@pytest.mark.parametrize("numel", [40_000, 300_000])
def test_a_list_operand_of_a_wider_dtype_keeps_torchs_promotion(numel, foreach):
    """A momentum buffer a user replaced with a float64 one, beside a float32 parameter: torch's
    for-loop path (its default on a CPU) computes SGD's Nesterov direction ``g + mu * b`` in
    float64 and adds that into the parameter. A kept temporary has the parameter's dtype, so it
    rounded the direction to float32 first (f34e07c, found in review: 2,283 of 40k elements and
    17,247 of 300k apart after four steps); such an operand now keeps torch's allocating op
    (``optim._ops.temporary``)."""
    runs = []
    for cls in (torch.optim.SGD, optim.SGD):
        generator = torch.Generator().manual_seed(0)
        param = torch.randn(numel, generator=generator).requires_grad_()
        options = {} if foreach is None else {"foreach": foreach}
        optimizer = cls([param], lr=1e-2, momentum=0.9, nesterov=True, **options)
        for step in range(4):
            param.grad = torch.randn(numel, generator=generator)
            optimizer.step()
            if step == 0:
                state = optimizer.state[param]
                state["momentum_buffer"] = state["momentum_buffer"].double()
        runs.append(param.detach())
    assert torch.equal(runs[1], runs[0]), (runs[1] != runs[0]).sum()


@pytest.mark.parametrize("impl", ["foreach", "flat"])
@pytest.mark.parametrize(
    "name",
    ["Prodigy", "DAdaptAdam", "DAdaptAdaGrad", "DAdaptSGD", "DoG", "LDoG", "SGDScheduleFree"],
)
def test_a_learning_rate_free_step_over_large_tensors_makes_no_tensor_sized_temporary(name, impl):
    """From its third step on, a learning-rate-free step on a CPU over tensors of more than a
    round (each a chunk of its own, reduced whole as the packages reduce it) writes its
    elementwise temporaries into the buffers the optimizer keeps (``whole_scratch``), and the
    parameters stay the package's, bit for bit. Before, Prodigy's ``p0 - p`` and ``sqrt(v) +
    d eps`` were tensor-sized temporaries at every step (7.6 MiB on one tensor of 2M elements),
    where the D-Adaptations' and DoG's already went into the buffer."""
    from tests.optim.test_lr_free import reference_class  # (skips without the packages)

    dog = pytest.importorskip("dog")

    generator = torch.Generator().manual_seed(5)
    numels = [1_500_000, 1_200_000]
    data = [torch.randn(n, generator=generator) for n in numels]
    grads = [[torch.randn(n, generator=generator) * 1e-2 for n in numels] for _ in range(5)]
    ours = [d.clone().requires_grad_() for d in data]
    theirs = [d.clone().requires_grad_() for d in data]
    optimizer = getattr(optim, name)(ours, impl=impl)
    reference = (getattr(dog, name) if "DoG" in name else reference_class(name))(theirs)
    for o in (optimizer, reference):
        if hasattr(o, "train"):
            o.train()
    made = []
    for step_grads in grads:
        for p, q, g in zip(ours, theirs, step_grads):
            p.grad, q.grad = g.clone(), g.clone()
        with _PeakTemporaries() as counter:
            optimizer.step()
        made.append(counter.peak)
        reference.step()
    assert made[0] > 0  # (the first step makes the state)
    assert max(made[2:]) < 1024, made  # one tensor-sized temporary alone is 4.8 MB
    for p, q, start in zip(ours, theirs, data):
        assert not torch.equal(p, start)  # (it moved)
        assert torch.equal(p, q)
