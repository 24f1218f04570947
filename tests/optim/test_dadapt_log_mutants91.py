"""Test killing mutant A07 of audit 91: log_every = n logs at the steps k with k % n == 0
(k counted from 0 before the update), as dadaptation 3.2's ``if log_every > 0 and k % log_every
== 0`` (DAdaptSGD, DAdaptAdam, DAdaptAdaGrad): with n = 2 over 5 steps, at k = 0, 2, 4."""

import logging

import pytest
import torch

import optim


@pytest.mark.parametrize("name", ["DAdaptSGD", "DAdaptAdam", "DAdaptAdaGrad"])
def test_log_every_logs_at_k_multiple_of_n_from_zero(name, caplog):
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = getattr(optim, name)([w], log_every=2)
    with caplog.at_level(logging.INFO, logger="optim.dadapt"):
        for _ in range(5):
            optimizer.zero_grad()
            ((w - 3) ** 2).sum().backward()
            optimizer.step()
    steps = [r.getMessage() for r in caplog.records if r.name == "optim.dadapt"]
    assert len(steps) == 3
    assert [s.split("(k=")[1].split(")")[0] for s in steps] == ["0", "2", "4"]
