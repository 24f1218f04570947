"""torch.compile: a user-compiled step(fullgraph=True), and the flat path's own compiled rule."""

import pytest
import torch
import torch._dynamo

from tests.optim.conftest import (
    CASES,
    NAMES,
    TOLERANCE,
    loss_fn,
    make_params,
    ours,
    relative_error,
    theirs,
)

# The case with the most options switched on, per optimizer.
RICHEST = {name: max((k for n, k in CASES if n == name), key=len) for name in NAMES}


def _train(step_fn, optimizer, params, steps, sign):
    for _ in range(steps):
        for p in params:
            p.grad = None
        loss_fn(params, sign).backward()
        step_fn()
    return optimizer


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_user_compiled_step_fullgraph_matches_torch(name):
    kwargs = RICHEST[name]
    sign = -1.0 if kwargs.get("maximize") else 1.0
    torch._dynamo.reset()
    params, reference = make_params(torch.float64), make_params(torch.float64)
    optimizer = ours(name)(params, impl="foreach", **kwargs)
    _train(torch.compile(optimizer.step, fullgraph=True), optimizer, params, 8, sign)
    torch_optimizer = theirs(name)(reference, **kwargs)
    _train(torch_optimizer.step, torch_optimizer, reference, 8, sign)
    assert relative_error(params, reference) <= TOLERANCE[torch.float64]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_flat_compiled_rule_matches_torch_and_never_recompiles_for_a_new_lr(name):
    kwargs = dict(RICHEST[name])
    sign = -1.0 if kwargs.get("maximize") else 1.0
    torch._dynamo.reset()
    params, reference = make_params(torch.float32), make_params(torch.float32)
    optimizer = ours(name)(params, impl="flat", compile=True, **kwargs)
    torch_optimizer = theirs(name)(reference, **kwargs)
    schedule = [0.5, 1.0, 0.25]  # lr multipliers, as a schedule would write them
    graphs_after_first = None
    for i in range(30):
        for opt, ps in ((optimizer, params), (torch_optimizer, reference)):
            for group in opt.param_groups:
                group["lr"] = kwargs.get("lr", 1.0) * schedule[i % 3]
            _train(opt.step, opt, ps, 1, sign)
        if i == 1:  # SGD's first step has its own graph (the momentum buffer's first fill)
            graphs_after_first = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs_after_first
    assert relative_error(params, reference) <= TOLERANCE[torch.float32]
