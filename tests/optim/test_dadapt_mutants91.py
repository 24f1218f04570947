"""Test killing D-Adaptation mutant A04 of audit 91: after a param group is added (k > 0),
DAdaptSGD reads ||g_0|| from param_groups[0], as dadaptation 3.2's loop variable does (the last
group at k = 0, the first after)."""

import pytest
import torch

import optim

dadaptation = pytest.importorskip("dadaptation")


def _run(make):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    optimizer = make([a])
    for t in range(6):
        if t == 2:
            optimizer.add_param_group({"params": [b]})
        optimizer.zero_grad()
        loss = ((a - 1) ** 2).sum() + (((b + 2) ** 4).sum() if t >= 2 else 0)
        loss.backward()
        optimizer.step()
    return torch.cat([a.detach(), b.detach()])


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_dadapt_sgd_group_added_after_the_first_step_as_the_package(impl):
    expected = _run(dadaptation.DAdaptSGD)
    got = _run(lambda ps: optim.DAdaptSGD(ps, impl=impl))
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)


def _run_one(make, steps=8):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    optimizer = make([a])
    for _ in range(steps):
        optimizer.zero_grad()
        ((a - 1) ** 2).sum().backward()
        optimizer.step()
    return a.detach().clone()


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_dadapt_adagrad_momentum_other_than_one_half_as_the_package(impl):
    """x = momentum x + (1 - momentum) z (dadaptation 3.2's ck = 1 - momentum); the parity
    cases use momentum 0.5, where ck and 1 - ck coincide."""
    expected = _run_one(lambda ps: dadaptation.DAdaptAdaGrad(ps, momentum=0.9))
    got = _run_one(lambda ps: optim.DAdaptAdaGrad(ps, momentum=0.9, impl=impl))
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_dadapt_sgd_takes_the_first_groups_weight_decay_for_every_group(impl):
    """dadaptation 3.2's DAdaptSGD reads weight_decay from param_groups[0] and applies it to every
    group (documented in optim.DAdaptSGD): groups with decay 0 and 0.1 both take 0."""

    def run(make):
        torch.manual_seed(0)
        a = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
        b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
        optimizer = make(
            [{"params": [a], "weight_decay": 0.0}, {"params": [b], "weight_decay": 0.1}]
        )
        for _ in range(8):
            optimizer.zero_grad()
            (((a - 1) ** 2).sum() + ((b + 2) ** 2).sum()).backward()
            optimizer.step()
        return torch.cat([a.detach(), b.detach()])

    expected = run(dadaptation.DAdaptSGD)
    got = run(lambda groups: optim.DAdaptSGD(groups, impl=impl))
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)
