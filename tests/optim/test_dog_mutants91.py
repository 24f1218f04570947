"""Test killing DoG/LDoG mutant D11 of audit 91: LDoG's late-gather packed path (many small
tensors, steps after the first) must keep the coupled weight decay g + wd x of dog.LDoG 1.0.3
(the reference package; the paper's DoG applied to the regularised objective)."""

import pytest
import torch

import optim
from optim._paths import PACK_AT_LEAST

dog = pytest.importorskip("dog")


def _run(make, n):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, dtype=torch.float64)) for _ in range(n)]
    optimizer = make(params)
    for _ in range(6):
        optimizer.zero_grad()
        sum(((p - 0.5 * i / n) ** 2).sum() for i, p in enumerate(params)).backward()
        optimizer.step()
    return torch.cat([p.detach() for p in params])


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_ldog_packed_path_keeps_the_weight_decay(impl):
    n = max(PACK_AT_LEAST, 8)  # packed on the default path
    kwargs = {"weight_decay": 0.1, "reps_rel": 0.1}
    expected = _run(lambda ps: dog.LDoG(ps, **kwargs), n)
    got = _run(lambda ps: optim.LDoG(ps, impl=impl, **kwargs), n)
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)
