"""Learning-rate-free optimizers under a user's ``torch.compile(optimizer.step)`` (the way
torch's documentation compiles an optimizer's step; not the ``compile=True`` path): the package's
numbers, stepping eagerly, at every step (stop 91: DoG's ``G`` stayed at its first step's value
there, so ``eta`` left dog 1.0.3's from the third step on, 7e-6 apart after 5 steps; eager 0)."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import optim

dadaptation = pytest.importorskip("dadaptation")
dog = pytest.importorskip("dog")

# DoG and LDoG keep host-side state between traced regions (the bug was there); DAdaptSGD takes
# its roots on the traced path (``python_sqrt``). Prodigy's user-compiled step is tested in
# test_compile.py; D-Adaptation's Adam/AdaGrad and Schedule-Free matched to 2e-16 when measured
# (stop 91) and are left out for the suite's time (each compile costs 6-13 s on 2 cores).
REFERENCES = {
    "DoG": lambda: dog.DoG,
    "LDoG": lambda: dog.LDoG,
    "DAdaptSGD": lambda: dadaptation.DAdaptSGD,
}


def _loss(params: list[torch.Tensor]) -> torch.Tensor:
    return sum(((p - i / 10) ** 2 * (1 + i % 3)).sum() for i, p in enumerate(params))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_a_user_compiled_step_gives_the_packages_numbers(name):
    torch._dynamo.reset()
    torch.manual_seed(0)
    ours = [torch.randn(3, 2, dtype=torch.float64).requires_grad_() for _ in range(4)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    optimizer, package = getattr(optim, name)(ours), REFERENCES[name]()(theirs)
    for opt in (optimizer, package):
        if hasattr(opt, "train"):
            opt.train()
    step = torch.compile(optimizer.step)
    for _ in range(5):
        for params, opt_step in ((ours, step), (theirs, package.step)):
            for p in params:
                p.grad = None
            _loss(params).backward()
            opt_step()
        for key in ("G", "d"):  # DoG's sum of squared gradients, Prodigy's/D-Adaptation's d
            if key in package.param_groups[0]:
                expected = torch.as_tensor(package.param_groups[0][key], dtype=torch.float64)
                got = torch.as_tensor(optimizer.param_groups[0][key], dtype=torch.float64)
                torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-15)
