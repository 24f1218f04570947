"""On a CPU, Prodigy's and D-Adaptation's Adam and AdaGrad estimates are Python floats, as in
their packages (``optim._global.host_scalars``): every global value of a param group has the
package's type and bits after each step, so a state dict or a script that formats ``d`` finds
what the package gives. (Before, they were 0-dim float64 tensors there too: the same values,
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
