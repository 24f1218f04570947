"""On a CUDA device: the six classic classes beside torch.optim on the GPU (every path, with and
without ``capturable``, and ``compile=True``, Triton there, beside torch's fused kernels, its
repeated steps replayed as CUDA graphs), no step synchronising with the host, and the
learning-rate-free classes beside their packages.

The whole module needs a GPU and is skipped where torch sees none (CI has none). Run it where
one is: ``python -m pytest tests/optim/test_cuda.py``; ``python -m tests.optim.test_cuda``
prints the table of the largest differences instead.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import optim
from runs.bench.optim import torch_has_fused
from tests.optim.conftest import CASES, case_id, two_groups

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHAPES = [(5, 3), (7,), (2, 2, 2), (4,)] + [(33,)] * 20  # (the 20 take the packed path)
STEPS = 20
CAPTURABLE = {"Adam", "AdamW", "RMSprop", "Adadelta"}  # (torch's classes with the option)
FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}
CAPTURABLE_FLOAT64_TOLERANCE = 1e-5
"""torch's capturable Adam/AdamW compute the step size and bias corrections in their float32
counters' dtype (``torch._foreach_pow(beta1, steps)``) and rearrange the denominator around
them (``sqrt(v) / (bias_correction2_sqrt * step_size) + eps / step_size``); ours compute them
in float64, as torch's fused kernels and its host counters do. Float64 parameters then differ
at float32's rounding: 2.4e-6 after 20 steps on an H200 (torch 2.11, 2026-12-04), as float32
ones do (2.4e-6 to 2.5e-6, within their 1e-5)."""


def fused_on_cuda(name: str) -> bool:
    """Whether this torch has ``fused=True`` kernels for ``name`` on CUDA (none for RMSprop and
    Adadelta; torch 2.11's Adagrad has CPU ones only)."""
    return torch_has_fused(name, "cuda")


def cuda_params(dtype: torch.dtype, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(s, dtype=dtype, generator=generator).cuda().requires_grad_() for s in SHAPES
    ]


def cuda_loss(params: list[torch.Tensor], t: int, sign: float = 1.0) -> torch.Tensor:
    """A smooth non-convex loss whose targets are redrawn at every step (made on the host from
    a seeded generator, so both runs see the same numbers)."""
    generator = torch.Generator().manual_seed(1000 + t)
    total = 0
    for i, p in enumerate(params):
        target = 0.1 * torch.randn(p.shape, dtype=p.dtype, generator=generator).to(p.device)
        total = total + (i % 4 + 1) * ((p - target) ** 2).sum() + 0.1 * torch.cos(3 * p).sum()
    return sign * total


def trained(make, dtype: torch.dtype, sign: float, steps: int = STEPS) -> list[torch.Tensor]:
    params = cuda_params(dtype)
    optimizer = make(params)
    for t in range(steps):
        optimizer.zero_grad()
        cuda_loss(params, t, sign).backward()
        optimizer.step()
    return [p.detach() for p in params]


def relative_error(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    return max(
        ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()
        for a, b in zip(ours, reference)
    )


def classic_error(
    name: str, kwargs: dict, impl: str, dtype: torch.dtype, capturable: bool
) -> float:
    """Max relative difference between ours (``impl``: single, foreach, flat, or compiled) and
    torch.optim on the GPU: its for-loop path for ``single``, its foreach path for the default
    and flat paths, its fused kernels for ``compiled`` (its foreach path where it has none)."""
    sign = -1.0 if kwargs.get("maximize") else 1.0
    extra = {"capturable": True} if capturable else {}
    torch_path = {"single": {"foreach": False}}.get(impl, {"foreach": True})
    if impl == "compiled" and fused_on_cuda(name):
        torch_path = {"fused": True}
    ours_path = {"compiled": {"compile": True}}.get(impl, {"impl": impl})
    if impl == "compiled":
        extra = {}  # (torch's fused kernels keep their counters on the device anyway)

    def theirs(params):
        return getattr(torch.optim, name)(
            two_groups(params, kwargs), **kwargs, **extra, **torch_path
        )

    def ours(params):
        return getattr(optim, name)(two_groups(params, kwargs), **kwargs, **extra, **ours_path)

    return relative_error(trained(ours, dtype, sign), trained(theirs, dtype, sign))


FIRST_OF_EACH = list({c[0]: c for c in reversed(CASES)}.values())[::-1]  # (a case per class)
COUNTERS = [
    (case, capturable)
    for case in CASES
    for capturable in ([False, True] if case[0] in CAPTURABLE else [False])
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("impl", ["single", "foreach", "flat"])
@pytest.mark.parametrize(
    ("case", "capturable"),
    COUNTERS,
    ids=lambda v: case_id(v) if isinstance(v, tuple) else ("capturable" if v else "host"),
)
def test_classic_optimizers_on_cuda_match_torch(case, capturable, impl, dtype):
    name, kwargs = case
    tolerance = TOLERANCE[dtype]
    if capturable and dtype == torch.float64 and name in ("Adam", "AdamW"):
        tolerance = CAPTURABLE_FLOAT64_TOLERANCE
    assert classic_error(name, kwargs, impl, dtype, capturable) <= tolerance


@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_mid_size_tensors_are_packed_on_cuda_with_torchs_numbers(name):
    """White-box: on a GPU the default path packs 16 tensors of 32k-64k elements for every rule
    of several ops (a CPU leaves them to the blocked lists for Adam, AdamW, Adagrad and RMSprop:
    ``RuleOptimizer._pack_below_on_cpu``), within float32's tolerance of torch's foreach path."""
    from optim import _paths

    generator = torch.Generator().manual_seed(3)
    start = [torch.randn(_paths.TORCH_GRAIN + 5, generator=generator) for _ in range(16)]
    results = []
    for make in (
        lambda ps: getattr(torch.optim, name)(ps, lr=0.01, foreach=True),
        lambda ps: getattr(optim, name)(ps, lr=0.01),
    ):
        params = [t.cuda().requires_grad_() for t in start]
        optimizer = make(params)
        for t in range(5):
            optimizer.zero_grad()
            sum(((p - 0.1 * t) ** 2).sum() + torch.cos(3 * p).sum() for p in params).backward()
            optimizer.step()
        results.append([p.detach() for p in params])
    assert any(isinstance(layout, _paths.Packed) for layout in optimizer._layouts.get(0) or [])
    assert relative_error(results[1], results[0]) <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("case", [c for c in FIRST_OF_EACH if c[0] in FUSED], ids=case_id)
def test_compiled_triton_kernels_match_torchs_fused_kernels(case):
    name, kwargs = case
    assert classic_error(name, kwargs, "compiled", torch.float32, False) <= 1e-5


LAST_OF_EACH = list({c[0]: c for c in CASES}.values())  # (each class's richest case)


@pytest.mark.parametrize("large", [False, True], ids=["small", "large_new_grads"])
@pytest.mark.parametrize("case", [c for c in LAST_OF_EACH if c[0] in FUSED], ids=case_id)
def test_compiled_steps_replayed_as_cuda_graphs_keep_torchs_numbers(case, large):
    """From its third step on, a compiled step that repeats is a CUDA graph's replay
    (``Flat.replayed``): the numbers stay torch's fused kernels' through a learning rate that
    changes at every step (its 0-dim tensor refilled before the replay), an option switched
    halfway (``maximize``: another Dynamo graph, so another capture) and, with ``large``, a
    tensor of 2**20 + 3 elements whose new gradient autograd allocates at every step, read where
    it lies (the spans' call, keyed by the gradient's address)."""
    name, kwargs = case
    shapes = SHAPES + [((1 << 20) + 3,)] * large

    def run(make):
        generator = torch.Generator().manual_seed(3)
        params = [torch.randn(s, generator=generator).cuda().requires_grad_() for s in shapes]
        optimizer = make(two_groups(params, kwargs))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1 / (1 + 0.1 * t))
        for t in range(30):
            if t == 15:
                for group in optimizer.param_groups:
                    group["maximize"] = not group["maximize"]
            optimizer.zero_grad()
            cuda_loss(params, t).backward()
            optimizer.step()
            schedule.step()
        return optimizer, [p.detach() for p in params]

    torch_path = {"fused": True} if fused_on_cuda(name) else {"foreach": True}
    ours, ours_params = run(lambda groups: getattr(optim, name)(groups, **kwargs, compile=True))
    _, torch_params = run(lambda groups: getattr(torch.optim, name)(groups, **kwargs, **torch_path))
    assert relative_error(ours_params, torch_params) <= 1e-5
    layouts = [layout for held in ours._layouts.values() for layout in held]
    assert sum(layout.replayed.replays for layout in layouts) >= 20


def step_without_sync(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()`` under ``torch.cuda.set_sync_debug_mode("error")``, which raises on
    any synchronising call (the queue drained first, so none is pending)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("impl", ["single", "foreach", "flat", "compiled"])
@pytest.mark.parametrize("case", FIRST_OF_EACH, ids=case_id)
def test_steps_on_cuda_never_synchronise(case, impl):
    """``torch.cuda.set_sync_debug_mode("error")`` raises on any synchronising call inside the
    steps after the first (the first builds a flat layout and may read its counters once); the
    compiled path's third step captures a CUDA graph and its fourth replays it."""
    name, kwargs = case
    sign = -1.0 if kwargs.get("maximize") else 1.0
    params = cuda_params(torch.float32)
    path = {"compile": True} if impl == "compiled" else {"impl": impl}
    optimizer = getattr(optim, name)(two_groups(params, kwargs), **kwargs, **path)
    for t in range(4):
        optimizer.zero_grad()
        cuda_loss(params, t, sign).backward()
        if t == 0:
            optimizer.step()
            continue
        step_without_sync(optimizer)


LR_FREE = [
    ("Prodigy", "prodigyopt", {}),
    ("Prodigy", "prodigyopt", {"weight_decay": 0.01, "growth_rate": 1.05}),
    ("DAdaptSGD", "dadaptation", {"momentum": 0.9}),
    ("DAdaptAdam", "dadaptation", {"weight_decay": 0.01, "decouple": True}),
    ("DAdaptAdaGrad", "dadaptation", {}),
    ("DoG", "dog", {}),
    ("LDoG", "dog", {}),
    ("SGDScheduleFree", "schedulefree", {"lr": 0.05, "warmup_steps": 5}),
    ("AdamWScheduleFree", "schedulefree", {"lr": 0.01, "warmup_steps": 5}),
]


def lr_free_error(name: str, package: str, kwargs: dict, impl: str) -> float:
    """Max relative difference from the reference package on the GPU, float64 (train mode)."""
    reference = getattr(pytest.importorskip(package), name)

    def make(cls, extra):
        def build(params):
            optimizer = cls([{"params": params[:2]}, {"params": params[2:]}], **kwargs, **extra)
            if hasattr(optimizer, "train"):
                optimizer.train()
            return optimizer

        return build

    expected = trained(make(reference, {}), torch.float64, 1.0)
    got = trained(make(getattr(optim, name), {"impl": impl}), torch.float64, 1.0)
    return relative_error(got, expected)


@pytest.mark.parametrize("impl", ["single", "foreach", "flat"])
@pytest.mark.parametrize("case", LR_FREE, ids=lambda c: f"{c[0]}{c[2]}")
def test_learning_rate_free_on_cuda_match_their_packages(case, impl):
    assert lr_free_error(*case, impl) <= 1e-10


LARGE_SHAPES = [(5, 3), (1 << 20 | 3,), (7,), (1024, 1025)]
"""Two tensors larger than ``optim._paths.BLOCK`` among small ones: on a CPU the flat path gives
each large one a round of its own and reads its new gradient where autograd left it; on a GPU
one round spans the buffer and new gradients are copied in (``Flat.rounds``)."""


@pytest.mark.parametrize("impl", ["foreach", "flat"])
@pytest.mark.parametrize("case", list({c[0]: c for c in LR_FREE}.values()), ids=lambda c: c[0])
def test_learning_rate_free_with_large_tensors_on_cuda_match_their_packages(case, impl):
    """Large tensors with new gradients at every step (``zero_grad()``), float64, 12 steps: within
    1e-10 of the package, and ours never synchronising after its first step
    (``torch.cuda.set_sync_debug_mode("error")``; the packages read ``d`` on the host)."""
    name, package, kwargs = case
    reference = getattr(pytest.importorskip(package), name)
    results = []
    for cls, extra in ((reference, {}), (getattr(optim, name), {"impl": impl})):
        generator = torch.Generator().manual_seed(0)
        params = [
            torch.randn(s, dtype=torch.float64, generator=generator).cuda().requires_grad_()
            for s in LARGE_SHAPES
        ]
        optimizer = cls([{"params": params[:2]}, {"params": params[2:]}], **kwargs, **extra)
        if hasattr(optimizer, "train"):
            optimizer.train()
        for t in range(12):
            optimizer.zero_grad()
            cuda_loss(params, t).backward()
            if cls is reference or t == 0:
                optimizer.step()
                continue
            step_without_sync(optimizer)
        results.append([p.detach() for p in params])
    assert relative_error(results[1], results[0]) <= 1e-10


@pytest.mark.parametrize("path", [{"impl": "flat"}, {"fused": True}, {"compile": True}])
@pytest.mark.parametrize("name", ["AdamW", "Prodigy"])
def test_pinned_cpu_parameters_stay_pinned_on_the_flat_path(name, path):
    """CPU parameters in pinned memory (``p.data = p.data.pin_memory()``, as CPU offloading keeps
    them for fast copies to the GPU) stay pinned through the flat path's steps, as torch's steps
    leave them, with torch's numbers (Prodigy: its package's, within 1e-10). Before, the flat
    path moved them into an unpinned buffer: the same numbers, but a later
    ``p.to("cuda", non_blocking=True)`` became a synchronous copy."""
    if name == "Prodigy":
        reference = pytest.importorskip("prodigyopt").Prodigy
        if path != {"impl": "flat"}:
            pytest.skip("the learning-rate-free classes have no fused=True or compile=True")
    else:
        reference = getattr(torch.optim, name)
    results = []
    for cls, extra in ((reference, {}), (getattr(optim, name), path)):
        generator = torch.Generator().manual_seed(0)
        params = [
            torch.randn(s, dtype=torch.float64, generator=generator).pin_memory().requires_grad_()
            for s in SHAPES
        ]
        optimizer = cls(params, **extra)
        for t in range(5):
            optimizer.zero_grad()
            cuda_loss(params, t).backward()
            optimizer.step()
        assert all(p.is_pinned() for p in params)
        results.append([p.detach() for p in params])
    assert relative_error(results[1], results[0]) <= (1e-10 if name == "Prodigy" else 1e-12)


def _table() -> None:
    """Print the largest difference of every row above (``python -m tests.optim.test_cuda``)."""
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print("\n| optimizer | path | fp64 | fp32 | fp64 capturable | fp32 capturable |")
    print("|---|---|---|---|---|---|")
    for name in sorted({c[0] for c in CASES}):
        for impl in ("single", "foreach", "flat"):
            cells = []
            for capturable in (False, True):
                for dtype in (torch.float64, torch.float32):
                    if capturable and name not in CAPTURABLE:
                        cells.append("n/a")
                        continue
                    try:
                        worst = max(
                            classic_error(n, k, impl, dtype, capturable)
                            for n, k in CASES
                            if n == name
                        )
                        cells.append(f"{worst:.1e}")
                    except Exception as error:  # (a table of what holds, not a test)
                        cells.append(type(error).__name__)
            print(f"| {name} | {impl} | " + " | ".join(cells) + " |")
        if name in FUSED:
            worst = max(
                classic_error(n, k, "compiled", torch.float32, False)
                for n, k in FIRST_OF_EACH
                if n == name
            )
            against = "fused" if fused_on_cuda(name) else "foreach (no fused on CUDA)"
            print(f"| {name} | compiled vs {against} | n/a | {worst:.1e} | n/a | n/a |")
    print("\n| method | single | default | flat |  (float64, against the package)")
    print("|---|---|---|---|")
    for name, package, kwargs in LR_FREE:
        if importlib.util.find_spec(package) is None:
            print(f"| {name} | ({package} not installed) | | |")
            continue
        errors = [
            lr_free_error(name, package, kwargs, impl) for impl in ("single", "foreach", "flat")
        ]
        print(f"| {name} {kwargs} | " + " | ".join(f"{e:.1e}" for e in errors) + " |")


if __name__ == "__main__":
    _table()
