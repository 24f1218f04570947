"""Test killing optim/prodigy.py mutant B24 of audit 91b: a checkpoint holding Prodigy's ``s``
and ``p0`` in the parameter's shape (this class's layout before it took prodigyopt's flat one)
loads flattened for a parameter of two or more dimensions, and training goes on as prodigyopt's
from its own (flat) checkpoint."""

import copy

import pytest
import torch

import optim

prodigyopt = pytest.importorskip("prodigyopt")


def _loss(w):
    return ((w - 1) ** 2 * torch.arange(1, w.numel() + 1, dtype=w.dtype).reshape(w.shape)).sum()


def _train(optimizer, w, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(w).backward()
        optimizer.step()


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_a_checkpoint_with_s_and_p0_in_the_parameters_shape_loads_flattened(impl):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
    package = prodigyopt.Prodigy([w])
    _train(package, w, 3)
    saved = copy.deepcopy(package.state_dict())
    start = w.detach().clone()
    assert saved["state"][0]["s"].shape == (12,)  # prodigyopt's flat layout
    old = copy.deepcopy(saved)
    for key in ("s", "p0"):
        old["state"][0][key] = old["state"][0][key].reshape(3, 4)  # the older layout
    _train(package, w, 3)
    expected = w.detach().clone()

    ours_w = torch.nn.Parameter(start.clone())
    ours = optim.Prodigy([ours_w], impl=impl)
    ours.load_state_dict(old)
    assert ours.state[ours_w]["s"].shape == (12,)
    _train(ours, ours_w, 3)
    assert torch.allclose(ours_w.detach(), expected, rtol=1e-12, atol=0)
