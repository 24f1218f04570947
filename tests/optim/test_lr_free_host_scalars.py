"""On a CPU, Prodigy's and D-Adaptation's estimates are Python floats, as in their packages
(``optim._global.host_scalars``): every global value of a param group has the package's type
and bits after each step, so a state dict or a script that formats ``d`` finds what the
package gives. (Before, they were 0-dim float64 tensors there too: the same values,
and more kernels a step: Prodigy's 58 aten ops on one tensor, 27 now. On a GPU they stay
tensors, so that a step never reads one back.)"""

from __future__ import annotations

import pytest
import torch

import optim

prodigyopt = pytest.importorskip("prodigyopt")
dadaptation = pytest.importorskip("dadaptation")

PACKAGES = {
    "Prodigy": (prodigyopt.Prodigy, ("d", "d_max", "d_numerator", "d_denom", "d_hat")),
    "DAdaptAdam": (dadaptation.DAdaptAdam, ("d", "numerator_weighted")),
    "DAdaptAdaGrad": (dadaptation.DAdaptAdaGrad, ("d", "gsq_weighted", "skl1", "sksq_weighted")),
    "DAdaptSGD": (dadaptation.DAdaptSGD, ("d", "numerator_weighted", "g0_norm")),
}


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_global_values_on_a_cpu_are_the_packages_floats(name):
    package_class, keys = PACKAGES[name]
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, dtype=torch.float64, generator=generator) for shape in (6, (2, 3))]
    ours = [t.clone().requires_grad_() for t in start]
    theirs = [t.clone().requires_grad_() for t in start]
    optimizer = getattr(optim, name)([{"params": ours[:1]}, {"params": ours[1:]}])
    package = package_class([{"params": theirs[:1]}, {"params": theirs[1:]}])
    for step in range(4):
        for params, opt in ((ours, optimizer), (theirs, package)):
            for i, p in enumerate(params):
                p.grad = (p.detach() - 0.1 * i).sin() * (step + 1)
            opt.step()
        for mine, expected in zip(optimizer.param_groups, package.param_groups, strict=True):
            for key in keys:
                assert type(mine[key]) is type(expected[key]) is float, (step, key)
                assert mine[key] == expected[key], (step, key)


@pytest.mark.parametrize("impl", ["single", "foreach", "flat"])
def test_dadapt_sgd_at_lr_zero_after_its_first_step_moves_x_toward_z_only(impl):
    """DAdaptSGD's documented step at lr 0 after the first (the package raises
    ``UnboundLocalError`` there): s, the numerator and d stay, k is counted, and x moves toward
    z = x0 - s by the momentum average, ``x = m x + (1 - m) z``. Its estimate 2 num / ||s||
    divides by ||s|| = 0 when nothing was summed; as host floats that quotient is IEEE's
    (``optim._global.ieee_divide``), not Python's ``ZeroDivisionError``."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, dtype=torch.float64, generator=generator).requires_grad_()
              for shape in (5, (2, 3))]  # fmt: skip
    momentum = 0.5
    optimizer = optim.DAdaptSGD(params, momentum=momentum, impl=impl)
    for p in params:
        p.grad = (1.3 * p.detach()).sin()
    optimizer.step()
    group = optimizer.param_groups[0]
    before = {key: group[key] for key in ("d", "numerator_weighted", "g0_norm")}
    s_before = [optimizer.state[p]["s"].clone() for p in params]
    x_before = [p.detach().clone() for p in params]
    group["lr"] = 0.0
    for p in params:
        p.grad = (0.7 * p.detach()).cos()
    optimizer.step()
    assert group["k"] == 2
    assert {key: group[key] for key in before} == before
    for p, s, x in zip(params, s_before, x_before, strict=True):
        state = optimizer.state[p]
        assert torch.equal(state["s"], s)
        z = state["x0"] - s
        assert torch.equal(state["z"], z)
        torch.testing.assert_close(
            p.detach(), momentum * x + (1 - momentum) * z, rtol=0, atol=1e-15
        )


def test_dadapt_sgd_step_size_after_a_first_step_on_zero_gradients_is_inf():
    """A first step on zero gradients raises ``ZeroDivisionError``, as the package's, and leaves
    ``g0_norm`` 0 in the group, as the package's (its ``group['g0_norm'] = math.sqrt(g_sq)``
    comes before its division). ``step_sizes()`` then reads d * lr / 0: inf, as the 0-dim
    tensor gave it, not a Python ``ZeroDivisionError`` from the host float."""
    groups = []
    for make in (dadaptation.DAdaptSGD, optim.DAdaptSGD):
        param = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
        param.grad = torch.zeros(3, dtype=torch.float64)
        optimizer = make([param])
        with pytest.raises(ZeroDivisionError):
            optimizer.step()
        groups.append(optimizer.param_groups[0])
        if make is optim.DAdaptSGD:
            assert optimizer.step_sizes() == [float("inf")]
    assert groups[1]["g0_norm"] == groups[0]["g0_norm"] == 0.0
