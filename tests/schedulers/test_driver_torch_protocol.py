"""The driver is a torch LRScheduler: code written only against torch's scheduler API (step,
get_last_lr, last_epoch, base_lrs, state_dict, isinstance ReduceLROnPlateau) gives the same
numbers with our driver as with torch's own schedulers, through resumes.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

import schedulers as S


def _sgd(lr=0.5, groups=1):
    params = [{"params": [torch.nn.Parameter(torch.ones(2))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _train(scheduler: LRScheduler, metrics: list[float]) -> list[float]:
    """A loop that knows only torch's scheduler API: the rate of each update, and after it the
    rate get_last_lr() reports (as a logger reads it), in turn."""
    optimizer = scheduler.optimizer
    seen = []
    for metric in metrics:
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(torch.tensor(metric))  # a logged tensor, as Lightning passes it
        else:
            scheduler.step()
        seen.append(scheduler.get_last_lr()[0])
    return seen


CASES = [
    (
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
        lambda o: S.attach(o, lr=S.step_lr(0.5, 3, 0.5)),
    ),
    (
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5], gamma=0.1),
        lambda o: S.attach(o, lr=S.multistep(0.5, [2, 5], 0.1)),
    ),
    (
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8, eta_min=0.01),
        lambda o: S.attach(o, lr=S.cosine_annealing(0.5, 8, 0.01)),
    ),
]


@pytest.mark.parametrize(("make_torch", "make_ours"), CASES, ids=["step", "multistep", "cosine"])
def test_a_loop_written_for_torch_schedulers_sees_the_same_rates(make_torch, make_ours):
    theirs, ours = make_torch(_sgd()), make_ours(_sgd())
    assert isinstance(ours, LRScheduler)
    assert ours.base_lrs == theirs.base_lrs == [0.5]
    assert ours.last_epoch == theirs.last_epoch == 0
    metrics = [1.0] * 10
    expected = _train(theirs, metrics)
    assert _train(ours, metrics) == pytest.approx(expected, rel=1e-12, abs=0)
    assert ours.last_epoch == theirs.last_epoch == 10
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
    assert ours.get_lr() == ours.get_last_lr()


def test_plateau_driver_is_a_reduce_lr_on_plateau_and_decides_as_torch():
    settings = {"mode": "min", "patience": 1, "factor": 0.5, "threshold": 0.01, "cooldown": 1}
    theirs = ReduceLROnPlateau(_sgd(), **settings)
    ours = S.attach(_sgd(), lr=S.reduce_on_plateau(S.constant(0.5), **settings))
    assert isinstance(ours, ReduceLROnPlateau)
    assert isinstance(ours, S.PlateauScheduleDriver)
    metrics = [5.0, 4.0, 4.0, 4.0, 4.0, 3.9, 3.9, 3.9, 3.9, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert _train(ours, metrics) == _train(theirs, metrics)
    assert ours.get_last_lr() == theirs.get_last_lr()
    assert ours.get_last_lr() < [0.5]
    # a plain number works as well as a tensor; a non-number names the parameter
    ours.step(1.0)
    with pytest.raises(TypeError, match=r"metric must be a real number.*metric='low'"):
        ours.step("low")


def test_a_nested_plateau_is_recognised_too():
    plateau = S.reduce_on_plateau(S.cosine_decay(0.5, 100), patience=0)
    driver = S.attach(_sgd(), lr=S.linear_warmup(plateau, warmup_steps=2).clamp(0.0, 1.0))
    assert isinstance(driver, ReduceLROnPlateau)
    assert not isinstance(S.attach(_sgd(), lr=S.cosine_decay(0.5, 100)), ReduceLROnPlateau)


def test_resume_after_optimizer_load_state_dict_drives_the_new_param_groups():
    """torch's Optimizer.load_state_dict replaces the group dicts (Lightning restores this way):
    the values must land in the optimizer's current groups, as with torch's schedulers."""

    def run(make, resume_at=None):
        optimizer = _sgd()
        scheduler = make(optimizer)
        rates = []
        for k in range(8):
            if k == resume_at:
                optimizer_state = copy.deepcopy(optimizer.state_dict())
                scheduler_state = copy.deepcopy(scheduler.state_dict())
                optimizer = _sgd()
                scheduler = make(optimizer)
                optimizer.load_state_dict(optimizer_state)
                scheduler.load_state_dict(scheduler_state)
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return rates

    def torchs(o):
        return torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)

    def ours(o):
        return S.attach(o, lr=S.step_lr(0.5, 2, 0.5))

    expected = run(torchs)
    assert run(torchs, resume_at=3) == expected
    assert run(ours) == expected
    assert run(ours, resume_at=3) == expected


def test_last_epoch_moves_the_driver_and_is_checked():
    optimizer = _sgd()
    driver = S.attach(optimizer, lr=S.step_lr(0.5, 2, 0.5))
    driver.last_epoch = 4  # torch's way of resuming by hand
    assert driver.t == 4
    assert optimizer.param_groups[0]["lr"] == 0.125
    driver.step()
    assert driver.last_epoch == 5
    with pytest.raises(ValueError, match=r"last_epoch must be finite and >= 0, got last_epoch=-1"):
        driver.last_epoch = -1
    with pytest.raises(TypeError, match=r"last_epoch must be a number >= 0, got last_epoch='3'"):
        driver.last_epoch = "3"


def test_base_lrs_are_the_rates_before_attach_and_groups_added_later_are_an_error():
    optimizer = _sgd(lr=0.3, groups=2)
    driver = S.attach(optimizer, lr=S.constant(0.1))
    assert driver.base_lrs == [0.3, 0.3]
    assert "initial_lr" not in optimizer.param_groups[0]  # the optimizer's groups stay as they are
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))]})
    with pytest.raises(ValueError, match="now has 3 param group"):
        driver.step()


def _nan_after_two(t):
    return np.where(t < 2, 0.1, np.nan)


def _inf_after_two(t):
    return np.where(t < 2, 0.1, np.inf)


@pytest.mark.parametrize("function", [_nan_after_two, _inf_after_two])
def test_a_non_finite_value_is_refused_at_the_step_it_appears(function):
    optimizer = _sgd()
    driver = S.attach(optimizer, lr=S.from_function(function))
    driver.step()
    with pytest.raises(
        ValueError, match=r"'lr' .* at step t=2, but the optimizer requires lr >= 0"
    ):
        driver.step()
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert driver.t == 1
