"""Parameters of a tensor subclass: ``DTensor``, as FSDP2 (``fully_shard``) and tensor
parallelism make them, here on a one-process gloo group on the CPU.

torch.optim runs its multi-tensor lists on them, each op dispatched by the subclass. Ours must do
the same on the default and single paths: before, 16 or more such parameters were packed into
plain buffers (a RuntimeError from DTensor's dispatch), and ``impl="flat"`` moved them into a
plain buffer and trained on silently different numbers. Where a subclass cannot be honoured (the
flat path; the learning-rate-free classes, which reduce through plain buffers), a clear
TypeError names the parameter, and the optimizer is left as it was.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

import optim
from optim import _paths

CLASSIC = {
    "SGD": {"lr": 0.1, "momentum": 0.9},
    "Adam": {"lr": 0.01},
    "AdamW": {"lr": 0.01},
    "Adagrad": {"lr": 0.1},
    "RMSprop": {"lr": 0.01},
    "Adadelta": {},
}
TORCH_PATH = {None: {}, "single": {"foreach": False}, "foreach": {"foreach": True}}
SHAPE_SETS = {
    "few": [(8, 4), (5,), (2, 3)],  # plain lists, kept from step to step
    "many small": [(8, 4)] * 20,  # would be packed if plain
    "blocked": [(40, 20), (8, 4)],  # over BLOCK (256 here): would be blocked if plain
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    store = tmp_path_factory.mktemp("gloo") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield init_device_mesh("cpu", (1,))
    dist.destroy_process_group()


@pytest.fixture(autouse=True)
def small_block(monkeypatch):
    monkeypatch.setattr(_paths, "BLOCK", 256)


def sharded_params(mesh, shapes, dtype=torch.float32) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.nn.Parameter(
            distribute_tensor(torch.randn(s, generator=generator, dtype=dtype), mesh, [Shard(0)])
        )
        for s in shapes
    ]


def train(optimizer, params, steps: int = 4) -> list[torch.Tensor]:
    """``steps`` updates on a quadratic whose curvature changes each step; the parameters, at
    the point to evaluate (Schedule-Free's x: in eval mode)."""
    if hasattr(optimizer, "train"):
        optimizer.train()
    for t in range(steps):
        optimizer.zero_grad()
        loss = sum((i + 1 + t) * (p * p).sum() + p.sum() for i, p in enumerate(params))
        loss.backward()
        optimizer.step()
    if hasattr(optimizer, "eval"):
        optimizer.eval()
    return [p.detach().full_tensor() for p in params]


@pytest.mark.parametrize("shapes", SHAPE_SETS, ids=str)
@pytest.mark.parametrize("impl", TORCH_PATH, ids=str)
@pytest.mark.parametrize("name", CLASSIC)
def test_dtensor_parameters_train_as_torch_optim(mesh, name, impl, shapes):
    kwargs = CLASSIC[name]
    theirs = sharded_params(mesh, SHAPE_SETS[shapes])
    expected = train(getattr(torch.optim, name)(theirs, **kwargs, **TORCH_PATH[impl]), theirs)
    ours = sharded_params(mesh, SHAPE_SETS[shapes])
    optimizer = getattr(optim, name)(ours, impl=impl, **kwargs)
    got = train(optimizer, ours)
    assert all(type(p) is DTensor for p in ours)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shapes", SHAPE_SETS, ids=str)
@pytest.mark.parametrize("impl", TORCH_PATH, ids=str)
@pytest.mark.parametrize("name", ["SGDScheduleFree", "AdamWScheduleFree"])
def test_dtensor_parameters_train_as_the_schedulefree_package(mesh, name, impl, shapes):
    """Schedule-Free is elementwise, as the classic rules: the package's numbers (float64, in
    eval mode, within 1e-10 of the largest value)."""
    schedulefree = pytest.importorskip("schedulefree")
    kwargs = {"lr": 0.05, "warmup_steps": 2}
    theirs = sharded_params(mesh, SHAPE_SETS[shapes], torch.float64)
    expected = train(getattr(schedulefree, name)(theirs, **kwargs), theirs)
    ours = sharded_params(mesh, SHAPE_SETS[shapes], torch.float64)
    got = train(getattr(optim, name)(ours, impl=impl, **kwargs), ours)
    for a, b in zip(got, expected):
        assert float((a - b).abs().max()) <= 1e-10 * float(b.abs().max())


FLAT_WAYS = [
    ("Adam", {"impl": "flat"}),
    ("Adam", {"fused": True}),
    ("Adam", {"compile": True}),
    ("SGDScheduleFree", {"impl": "flat"}),
    ("SGDScheduleFree", {"compile": True}),
]


@pytest.mark.parametrize(("name", "how"), FLAT_WAYS, ids=str)
def test_the_flat_path_refuses_a_dtensor_naming_it(mesh, name, how):
    make = getattr(optim, name)
    plain = [torch.randn(3, requires_grad=True)]
    second = [torch.randn(2, requires_grad=True), *sharded_params(mesh, [(2,), (4,)])]
    with pytest.raises(TypeError, match="parameter 1 of param group 1 is a DTensor"):
        make([{"params": plain}, {"params": second}], lr=0.01, **how)
    optimizer = make(plain, lr=0.01, **how)
    with pytest.raises(TypeError, match="impl='flat'"):
        optimizer.add_param_group({"params": sharded_params(mesh, [(4,)])})
    assert len(optimizer.param_groups) == 1  # taken back: the optimizer is as it was


LR_FREE = ["Prodigy", "DAdaptSGD", "DAdaptAdam", "DAdaptAdaGrad", "DoG", "LDoG", "SPS", "SLS"]


@pytest.mark.parametrize("name", LR_FREE)
def test_reducing_classes_refuse_a_dtensor_naming_it(mesh, name):
    """The classes whose step reduces over the group (global norms, d estimates) sum through
    plain scratch buffers: a clear error rather than DTensor's own from deep inside a step."""
    with pytest.raises(TypeError, match="parameter 0 of param group 0 is a DTensor"):
        getattr(optim, name)(sharded_params(mesh, [(4,)]))
    optimizer = getattr(optim, name)([torch.randn(3, requires_grad=True)])
    with pytest.raises(TypeError, match="tensor subclass"):
        optimizer.add_param_group({"params": sharded_params(mesh, [(4,)])})
    assert len(optimizer.param_groups) == 1


class TaggedParameter(torch.nn.Parameter):
    """A ``Parameter`` subclass that computes as a plain tensor (as FSDP1's ``FlatParameter`` or
    a library's tagged weights): no ``__torch_dispatch__`` of its own."""


@pytest.mark.parametrize("impl", [None, "flat"], ids=str)
@pytest.mark.parametrize("name", ["Adam", "Prodigy", "DoG", "SPS"])
def test_a_parameter_subclass_computing_as_a_plain_tensor_is_accepted(name, impl):
    """Only classes that dispatch their own ops are refused: a ``Parameter`` subclass trains as
    plain parameters do, on every class and path that refuse a DTensor (a regression guard)."""
    generator = torch.Generator().manual_seed(0)
    values = [torch.randn(s, generator=generator) for s in SHAPE_SETS["many small"][:17]]
    results = []
    for kind in (torch.nn.Parameter, TaggedParameter):
        params = [kind(v.clone()) for v in values]
        optimizer = getattr(optim, name)(params, impl=impl)
        for t in range(3):

            def closure(params=params, optimizer=optimizer, t=t):
                optimizer.zero_grad()
                loss = sum((i + 1 + t) * (p * p).sum() + p.sum() for i, p in enumerate(params))
                loss.backward()
                return loss

            optimizer.step(closure)
        results.append([p.detach().clone() for p in params])
    assert all(type(p) is TaggedParameter for p in params)
    for a, b in zip(*results):
        assert torch.equal(a, b)
