"""FSDP (``torch.distributed.fsdp.FullyShardedDataParallel``, FSDP1) on a one-process gloo
group on the CPU: the optimizer sees FSDP's ``FlatParameter`` (``use_orig_params=False``, FSDP's
default) or the original parameters as views into it (``use_orig_params=True``).

A ``FlatParameter``'s memory is also its ``_local_shard``, which FSDP all-gathers from at the
next forward. The flat path had moved the parameter into a buffer of its own, so every update
after the first layout was lost at the next forward: the model trained on silently different
numbers (Adam's loss 0.075 at step 3 where torch's is 0.043). It now leaves memory that another
tensor holds where it lies (``optim._base._kept_where_they_lie``).
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel

import optim
from tests.optim.test_tensor_subclasses import CLASSIC


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    store = tmp_path_factory.mktemp("gloo") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def train(make_optimizer, use_orig_params: bool, steps: int = 4) -> list[torch.Tensor]:
    """A small model wrapped by FSDP, trained ``steps`` times; its parameters at the end."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    with warnings.catch_warnings():  # (one process: FSDP says it shards nothing)
        warnings.simplefilter("ignore", UserWarning)
        wrapped = FullyShardedDataParallel(
            model, use_orig_params=use_orig_params, device_id=torch.device("cpu")
        )
    optimizer = make_optimizer(wrapped.parameters())
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        wrapped(torch.randn(5, 6, generator=generator)).square().mean().backward()
        optimizer.step()
    with FullyShardedDataParallel.summon_full_params(wrapped):
        return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("use_orig_params", [False, True])
@pytest.mark.parametrize("name", CLASSIC)
def test_the_flat_path_under_fsdp_trains_as_torchs_foreach_path(group, name, use_orig_params):
    """Bit for bit torch's foreach path (before, with ``use_orig_params=False``, FSDP's
    default, the updates after the first step were lost)."""
    kwargs = CLASSIC[name]
    expected = train(
        functools.partial(getattr(torch.optim, name), foreach=True, **kwargs), use_orig_params
    )
    actual = train(functools.partial(getattr(optim, name), impl="flat", **kwargs), use_orig_params)
    for a, b in zip(actual, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["Prodigy", "DAdaptSGD", "DAdaptAdam", "DoG", "LDoG"])
def test_the_learning_rate_free_flat_path_under_fsdp_trains_as_the_default_path(group, name):
    """Within 1e-10 of the default path, which updates the parameters where they lie (before,
    the flat path's updates after the first step were lost). Not beside the packages: under
    FSDP, Prodigy's and D-Adaptation's sum their estimates on ``.cuda()`` tensors, which a CPU
    cannot run; DoG's and LDoG's, which can, give the same numbers as ours. (DAdaptAdaGrad
    refuses FSDP, as its package does; the Schedule-Free classes take the classic flat path.)"""
    make = getattr(optim, name)
    expected = train(make, use_orig_params=False)
    actual = train(functools.partial(make, impl="flat"), use_orig_params=False)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    if name in ("DoG", "LDoG"):
        package = train(getattr(pytest.importorskip("dog"), name), use_orig_params=False)
        for a, b in zip(actual, package):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
