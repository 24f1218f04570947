"""Tests killing optim/_global.py mutants G03 and G04 of audit 91b: ``step_sizes()`` is d * lr
(d * lr / ||g_0|| for DAdaptSGD) at an lr other than 1, and a first param group frozen at lr 0
takes the largest lr of the groups (the packages' ``lr = max(group['lr'] for group in ...)``)."""

import pytest
import torch

import optim

prodigyopt = pytest.importorskip("prodigyopt")
dadaptation = pytest.importorskip("dadaptation")

PACKAGES = {
    "Prodigy": prodigyopt.Prodigy,
    "DAdaptAdam": dadaptation.DAdaptAdam,
    "DAdaptSGD": dadaptation.DAdaptSGD,
    "DAdaptAdaGrad": dadaptation.DAdaptAdaGrad,
}


def _loss(a, b):
    return ((a - 1) ** 2).sum() + ((b + 2) ** 4).sum()


def _params():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    return a, b


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("name", list(PACKAGES))
def test_step_sizes_are_d_times_lr_at_an_lr_other_than_one(name, impl):
    """The packages' step size is d * lr (prodigyopt, dadaptation's Adam and AdaGrad: their
    ``d * lr`` in step) and d * lr / g0_norm for DAdaptSGD; the step-size test runs at the
    default lr 1, where d * lr = d."""
    runs = []
    for make in (PACKAGES[name], lambda ps, **kw: getattr(optim, name)(ps, impl=impl, **kw)):
        a, b = _params()
        optimizer = make([a, b], lr=0.25)
        for _ in range(6):
            optimizer.zero_grad()
            _loss(a, b).backward()
            optimizer.step()
        runs.append(optimizer)
    package, ours = runs
    group = package.param_groups[0]
    expected = group["d"] * group["lr"]
    if name == "DAdaptSGD":
        expected /= group["g0_norm"]
    assert group["lr"] == 0.25
    assert group["d"] != expected
    assert float(ours.step_sizes()[0]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("name", ["Prodigy", "DAdaptAdam", "DAdaptSGD"])
def test_a_frozen_first_group_takes_the_largest_lr_as_the_package(name, impl):
    """lr = max(group['lr'] for group in param_groups) (prodigyopt 1.1.2, dadaptation 3.2): a
    FIRST group at lr 0 (frozen) and a second at 0.5 train the second at 0.5, as the packages
    do; the frozen-group tests put the frozen group last, where the first group's lr is the
    largest."""
    runs = []
    for make in (PACKAGES[name], lambda gs: getattr(optim, name)(gs, impl=impl)):
        a, b = _params()
        optimizer = make([{"params": [a], "lr": 0.0}, {"params": [b], "lr": 0.5}])
        for _ in range(5):
            optimizer.zero_grad()
            _loss(a, b).backward()
            optimizer.step()
        runs.append(torch.cat([a.detach(), b.detach()]))
    package, ours = runs
    assert not torch.equal(package[5:], _params()[1].detach())  # the second group trained
    assert torch.allclose(ours, package, rtol=1e-12, atol=0)
