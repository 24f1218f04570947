"""Test killing Schedule-Free mutant S04 of audit 91: the averaging weight of step t is
(t+1)^r * (max_{i<=t} lr_i)^weight_lr_power (Defazio et al. 2024, sec. 4.1 / schedulefree 1.4.1's
``lr_max``), not the current lr^power: a learning rate lowered mid-run tells them apart."""

import math

import pytest
import torch

import optim

schedulefree = pytest.importorskip("schedulefree")


def _run(make, lrs):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    optimizer = make([w])
    optimizer.train()
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        ((w - 1) ** 2).sum().backward()
        optimizer.step()
    optimizer.eval()
    return w.detach().clone(), float(optimizer.param_groups[0]["weight_sum"])


@pytest.mark.parametrize("name", ["SGDScheduleFree", "AdamWScheduleFree"])
def test_averaging_weights_use_the_largest_lr_so_far(name):
    lrs = [0.1] * 5 + [0.02] * 5
    got, weight_sum = _run(lambda ps: getattr(optim, name)(ps, lr=0.1), lrs)
    # by hand: r = 0, weight_lr_power = 2, lr_max = 0.1 at every step: 10 * 0.1^2
    assert math.isclose(weight_sum, 10 * 0.1**2, rel_tol=1e-12)
    expected, _ = _run(lambda ps: getattr(schedulefree, name)(ps, lr=0.1), lrs)
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["SGDScheduleFree", "AdamWScheduleFree"])
def test_eval_and_train_twice_are_no_ops_the_second_time(name):
    """schedulefree 1.4.1's eval()/train() act only when the mode changes (``if
    group['train_mode']``): a second eval() leaves x = y + (1 - 1/beta)(z - y) as it is, a
    second train() leaves y = x + (1 - beta)(z - x)."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = getattr(optim, name)([w], lr=0.1)
    optimizer.train()
    for _ in range(3):
        optimizer.zero_grad()
        ((w - 3) ** 2).sum().backward()
        optimizer.step()
    y = w.detach().clone()
    z = optimizer.state[w]["z"].clone()
    beta = 0.9
    optimizer.eval()
    x = w.detach().clone()
    assert torch.allclose(x, y + (1 - 1 / beta) * (z - y), rtol=1e-12, atol=1e-15)
    optimizer.eval()
    assert torch.equal(w.detach(), x)
    optimizer.train()
    optimizer.train()
    assert torch.allclose(w.detach(), x + (1 - beta) * (z - x), rtol=1e-12, atol=1e-15)
