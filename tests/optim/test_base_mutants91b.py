"""Test killing optim/_base.py mutant B18 of audit 91b: new step counters are float64 while
float64 is the default dtype, as torch.optim makes them (``_get_scalar_dtype``: float32 only for
the fused kernels); the existing tests check the fused case and a loaded float64 counter, not a
counter this class makes itself."""

import pytest
import torch

import optim


@pytest.mark.parametrize("impl", ["default", "single", "foreach", "flat"])
@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_new_counters_follow_a_float64_default_dtype_as_torchs(name, impl):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        results = []
        kwargs = {} if impl == "default" else {"impl": impl}
        for make in (getattr(torch.optim, name), lambda ps: getattr(optim, name)(ps, **kwargs)):
            p = torch.nn.Parameter(torch.ones(3))
            optimizer = make([p])
            for _ in range(2):
                p.grad = torch.full_like(p, 0.5)
                optimizer.step()
            step = optimizer.state_dict()["state"][0]["step"]
            results.append((step.dtype, float(step), p.detach().clone()))
    finally:
        torch.set_default_dtype(previous)
    (dtype, count, expected), (our_dtype, our_count, got) = results
    assert dtype == torch.float64  # torch's _get_scalar_dtype() under a float64 default
    assert (our_dtype, our_count) == (dtype, count)
    assert torch.equal(got, expected)
