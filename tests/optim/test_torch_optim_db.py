"""Every CPU configuration in torch's own optimizer test database, beside torch.optim.

``torch.testing._internal.common_optimizers.optim_db`` is the list of constructor arguments
PyTorch tests its optimizers with (tensor learning rates, tensor betas, maximize, weight decay,
...). Each one runs here for the six classes, float32 and float64, on every execution path, and
must give torch.optim's bits after 20 steps (its default path, so for tensor hyperparameters its
for-loop path's tensor arithmetic). Its error inputs (bad values, refused
combinations, duplicated parameters) must raise or warn as torch's own test expects: the same
exception type and a message its regular expression finds.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing._internal import common_optimizers  # needs expecttest (test extra)

from tests.optim.conftest import IMPLS, loss_fn, make_params, ours, relative_error

NAMES = ("SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta")
UNSUPPORTED = {"differentiable", "capturable", "fused"}  # refused with a clear error (tested)


def _infos():
    """torch's database entries for the six classes, with their names."""
    return [
        (info.optim_cls.__name__, info)
        for info in common_optimizers.optim_db
        if info.optim_cls.__name__ in NAMES
    ]


def _configurations():
    cases = []
    for name, info in _infos():
        for dtype in (torch.float32, torch.float64):
            for entry in info.optim_inputs_func(device="cpu", dtype=dtype):
                if UNSUPPORTED & {k for k, v in entry.kwargs.items() if v}:
                    continue
                ident = f"{name}-{entry.desc}-{str(dtype)[6:]}"
                cases.append(pytest.param(name, entry.kwargs, dtype, id=ident))
    return cases


def _train(optimizer, params, steps=20):
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(params).backward()
        optimizer.step()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("name", "kwargs", "dtype"), _configurations())
def test_optim_db_configuration_matches_torch(name, kwargs, dtype, impl):
    reference = make_params(dtype)
    _train(getattr(torch.optim, name)(reference, **kwargs), reference)
    params = make_params(dtype)
    _train(ours(name)(params, impl=impl, **kwargs), params)
    assert all(map(torch.equal, params, reference)), relative_error(params, reference)


def _error_inputs():
    cases = []
    for name, info in _infos():
        for index, error in enumerate(info.optim_error_inputs_func(device="cpu", dtype=None)):
            ident = f"{name}-{index}-{error.optimizer_error_input.desc}"
            cases.append(pytest.param(name, error, id=ident))
    return cases


@pytest.mark.parametrize(("name", "error"), _error_inputs())
def test_optim_db_error_input_raises_as_torch(name, error):
    """torch's ``test_errors``, run on ours: construction (and a step where torch errs there)."""
    entry = error.optimizer_error_input
    if issubclass(error.error_type, Warning):
        expectation = pytest.warns(error.error_type, match=error.error_regex)
    else:
        expectation = pytest.raises(error.error_type, match=error.error_regex)
    with expectation:
        optimizer = ours(name)(entry.params, **entry.kwargs)
        if error.error_on == common_optimizers.OptimizerErrorEnum.STEP_ERROR:
            optimizer.step()
