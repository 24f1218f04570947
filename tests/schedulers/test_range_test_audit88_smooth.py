"""Audit 88 (smoothness), F5: ``lr_range_test`` estimates the curvature of the network the sweep
trains, in train mode, whatever the mode the model arrives in, and gives that mode back.

The expected curvature is the top eigenvalue of the exact float64 Hessian in train mode
(``torch.autograd.functional.hessian`` over ``torch.func.functional_call``, BatchNorm with the
batch's statistics), never a number from the code under test.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from schedulers.range_test import lr_range_test


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double()


def _data():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(48, 6, generator=generator, dtype=torch.float64) * 5 + 2
    return x, torch.randint(0, 3, (48,), generator=generator)


def _exact_top_eigenvalue(x, y, train):
    """lambda_max of the exact float64 Hessian of the freshly initialised network, in train mode
    (BatchNorm normalises with the batch's statistics) or in eval mode (running statistics)."""
    model = _net().train(train)
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(vector):
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            params[name] = vector[offset : offset + size].view(shape)
            offset += size
        state = {**params, **{name: b.clone() for name, b in buffers.items()}}
        return F.cross_entropy(functional_call(model, state, (x,)), y)

    hessian = torch.autograd.functional.hessian(loss_of, flat, vectorize=True).numpy()
    return float(np.linalg.eigvalsh((hessian + hessian.T) / 2)[-1])


@pytest.mark.parametrize("mode", ["eval", "train", "mixed"])
def test_the_curvature_is_the_train_mode_networks_and_the_modes_come_back(mode):
    """Before: a model handed over in eval mode got the curvature of its eval-mode network
    (BatchNorm's running statistics: L = 21.25 against 2.553 in the audit's example)."""
    x, y = _data()
    expected = _exact_top_eigenvalue(x, y, train=True)
    assert abs(_exact_top_eigenvalue(x, y, train=False) / expected - 1) > 0.1  # it matters here
    model = _net()
    if mode == "eval":
        model.eval()
    elif mode == "mixed":
        model[1].eval()  # the BatchNorm alone in eval mode
    modes = [m.training for m in model.modules()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with torch.random.fork_rng(devices=[]):
        result = lr_range_test(
            model, optimizer, F.cross_entropy, [(x, y)], start_lr=1e-4, end_lr=1.0, num_iter=8
        )
    assert result.curvature.eigenvalue == pytest.approx(expected, rel=1e-6)
    assert result.edge_step == pytest.approx(2 / expected, rel=1e-6)
    assert [m.training for m in model.modules()] == modes
