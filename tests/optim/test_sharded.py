"""Parameters sharded across ranks (FSDP1, or the packages' ``fsdp_in_use=True``): the global
estimates of Prodigy, DAdaptSGD, DAdaptAdam, SPS and SLS are sums over every element of the
model, so each rank's partial sums are summed over the process group, as the packages do.

Two gloo ranks on the CPU each hold a shard of one flat parameter vector (uneven: 20 and 21
elements, each shard as two tensors, as ``use_orig_params=True`` gives views), marked as FSDP
marks its tensors (``_fsdp_flattened``) or flagged by ``fsdp_in_use=True``. The reference is
the same optimizer in one process on the whole vector: sums are additive, so the sharded run
must give its numbers to rounding. The same holds under real FSDP1 on the CPU (its flat
parameter, and its original parameters with ``use_orig_params=True``): a two-layer network
trained on two ranks ends where one process ends. The packages' own sharded path runs on CUDA
only (it reduces in ``torch.zeros(2).cuda()``), so it cannot be run beside ours here.

Before, ``fsdp_in_use=True`` was refused, and a marked shard trained silently on its own rank's
sums (asserted here too: such a run lands far from the reference; for SLS it cannot even run,
as each rank's line search takes its own number of trials).
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import optim
from tests.optim.conftest import IMPLS

SIZE, STEPS = 41, 25
SHARDS = [(0, 20), (20, SIZE)]
CASES = [
    ("Prodigy", {}),
    ("Prodigy", {"use_bias_correction": True, "weight_decay": 0.01, "decouple": False}),
    ("DAdaptSGD", {}),
    ("DAdaptSGD", {"momentum": 0.9, "weight_decay": 0.01}),
    ("DAdaptAdam", {}),
    ("DAdaptAdam", {"weight_decay": 0.01, "use_bias_correction": True}),
    ("SPS", {}),
    ("SLS", {"n_batches_per_epoch": 5}),
]
WITH_FLAG = {"Prodigy", "DAdaptSGD", "DAdaptAdam"}  # (the classes with fsdp_in_use)


def full_loss(x: torch.Tensor, t: int) -> torch.Tensor:
    """A non-convex loss of the whole vector whose targets are redrawn at every step."""
    target = 0.1 * torch.randn(
        x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(100 + t)
    )
    weights = torch.linspace(1.0, 4.0, x.numel(), dtype=x.dtype)
    return (weights * (x - target) ** 2).sum() + 0.1 * torch.cos(3 * x).sum()


def start() -> torch.Tensor:
    return torch.randn(SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(7))


def train(name, kwargs, impl, lo, hi, assemble, *, mark=False, flag=False) -> torch.Tensor:
    """``STEPS`` updates of the elements ``lo:hi`` (two tensors) of the vector; returns the
    whole vector (``assemble``: this rank's part -> the whole)."""
    mid = (lo + hi) // 2
    pieces = [torch.nn.Parameter(start()[a:b].clone()) for a, b in ((lo, mid), (mid, hi))]
    for p in pieces:
        if mark:
            p._fsdp_flattened = True
    options = {**kwargs, "fsdp_in_use": True} if flag else kwargs
    optimizer = getattr(optim, name)(pieces, impl=impl, **options)

    def evaluate(t: int) -> torch.Tensor:
        whole = assemble(torch.cat([p.detach() for p in pieces]), lo, hi).requires_grad_()
        loss = full_loss(whole, t)
        (grad,) = torch.autograd.grad(loss, whole)
        for p, (a, b) in zip(pieces, ((lo, mid), (mid, hi))):
            p.grad = grad[a:b].clone()
        return loss.detach()

    for t in range(STEPS):
        if name == "SLS":
            optimizer.step(lambda t=t: evaluate(t))
        elif name == "SPS":
            optimizer.step(loss=evaluate(t))
        else:
            evaluate(t)
            optimizer.step()
    return assemble(torch.cat([p.detach() for p in pieces]), lo, hi)


def _whole_over_ranks(local: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    whole = torch.zeros(SIZE, dtype=torch.float64)
    whole[lo:hi] = local
    dist.all_reduce(whole)
    return whole


def _rank(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    lo, hi = SHARDS[rank]
    results = {}
    for name, kwargs in CASES:
        for impl in IMPLS:
            key = (name, str(kwargs), impl)
            results[key, "marked"] = train(name, kwargs, impl, lo, hi, _whole_over_ranks, mark=True)
            if name in WITH_FLAG:
                results[key, "flag"] = train(
                    name, kwargs, impl, lo, hi, _whole_over_ranks, flag=True
                )
            if name != "SLS":  # (on its own sums each rank's line search takes its own
                # number of trials, and the ranks' collectives stop matching: gloo aborts)
                results[key, "own sums"] = train(name, kwargs, impl, lo, hi, _whole_over_ranks)
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # (gloo's threads, torn down at interpreter exit, abort a rank now and then)


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded")
    mp.spawn(_rank, args=(str(folder / "store"), str(folder / "out.pt")), nprocs=2)
    return torch.load(folder / "out.pt")


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    layers = (torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    return torch.nn.Sequential(*layers).double()


def _train_mlp(model, optimizer, rank: int = 0, world: int = 1) -> None:
    """``STEPS`` updates on batches of 32 examples; each rank takes its half of each batch."""
    for t in range(STEPS):
        generator = torch.Generator().manual_seed(t)
        x = torch.randn(32, 10, generator=generator, dtype=torch.float64)
        y = torch.randint(0, 3, (32,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[rank::world]), y[rank::world]).backward()
        optimizer.step()


def _fsdp1_rank(rank: int, store: str, out: str) -> None:
    """Real FSDP1 on the CPU: its flat parameter, and its original parameters as views
    (``use_orig_params=True``), both marked ``_fsdp_flattened`` by FSDP itself."""
    import warnings

    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    warnings.filterwarnings("ignore")  # (FSDP1's deprecation notice)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    results = {}
    for name in sorted(WITH_FLAG):
        for use_orig_params in (False, True):
            model = FSDP(_mlp(), device_id=torch.device("cpu"), use_orig_params=use_orig_params)
            _train_mlp(model, getattr(optim, name)(model.parameters()), rank, 2)
            with FSDP.summon_full_params(model):
                whole = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            results[name, use_orig_params] = whole.clone()
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


@pytest.fixture(scope="module")
def fsdp1_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsdp1")
    mp.spawn(_fsdp1_rank, args=(str(folder / "store"), str(folder / "out.pt")), nprocs=2)
    return torch.load(folder / "out.pt")


@pytest.mark.parametrize("use_orig_params", [False, True])
@pytest.mark.parametrize("name", sorted(WITH_FLAG))
def test_fsdp1_training_gives_the_numbers_of_one_process(fsdp1_runs, name, use_orig_params):
    """Before, each rank's d came from its own shard: the weights ended 0.04 (Prodigy) and 0.22
    (DAdaptAdam) away from one process's; now they agree to rounding."""
    model = _mlp()
    initial = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    _train_mlp(model, getattr(optim, name)(model.parameters()))
    whole = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert (whole - initial).abs().max() > 1e-4, "the parameters did not move"
    sharded = fsdp1_runs[name, use_orig_params][: whole.numel()]  # (a flat parameter is padded)
    assert ((sharded - whole).abs().max() / whole.abs().max()).item() <= 1e-12


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1]}")
def test_sharded_parameters_give_the_numbers_of_the_whole_vector(sharded_runs, case, impl):
    name, kwargs = case
    whole = train(name, kwargs, impl, 0, SIZE, lambda local, lo, hi: local)
    moved = (whole - start()).abs().max()
    assert moved > 1e-3, "the parameters did not move"
    modes = ("marked", "flag") if name in WITH_FLAG else ("marked",)
    for mode in modes:
        sharded = sharded_runs[(name, str(kwargs), impl), mode]
        assert ((sharded - whole).abs().max() / whole.abs().max()).item() <= 1e-10, mode
    if name != "SLS":
        own_sums = sharded_runs[(name, str(kwargs), impl), "own sums"]
        assert ((own_sums - whole).abs().max() / whole.abs().max()).item() > 1e-6


def test_dadapt_adagrad_refuses_sharded_parameters_as_its_package():
    plain, shard = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    shard._fsdp_flattened = True
    with pytest.raises(RuntimeError, match="D-Adapt AdaGrad doesn't currently support fully"):
        optim.DAdaptAdaGrad([shard])
    with pytest.raises(RuntimeError, match="parameter 1 of param group 0 is an FSDP shard"):
        optim.DAdaptAdaGrad([plain, shard])
    optimizer = optim.DAdaptAdaGrad([plain])
    with pytest.raises(RuntimeError, match="Use D-Adapt Adam instead"):
        optimizer.add_param_group({"params": [shard]})
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize("name", sorted(WITH_FLAG))
def test_a_sharded_step_without_a_process_group_is_a_clear_error_changing_nothing(name):
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    optimizer = getattr(optim, name)([p], fsdp_in_use=True)
    with pytest.raises(ValueError, match=r"fsdp_in_use=True .*init_process_group first"):
        optimizer.step()
    assert torch.equal(p.detach(), torch.ones(3))
    assert not optimizer.state[p]
    assert optimizer.param_groups[0]["k"] == 0
