"""Tests that kill the driver mutants a mutation audit (91) found surviving. Expected values are
hand derivations from the driver's documented contract (module and method docstrings) and
torch's LRScheduler semantics, not outputs of the code."""

import math

import torch

import schedulers as S
from schedulers.driver import differing_group_values


def _param():
    return torch.zeros(1, requires_grad=True)


def test_a_plateau_in_a_join_piece_observes_from_the_step_its_piece_starts():
    """D06. The metric passed with step() is fed at the step moved to: the piece after the
    boundary 2 runs from t = 2, so the metrics of the 2nd and 3rd step() reach the plateau
    (best 1.0, then one bad epoch > patience 0: halved at t = 3)."""
    plateau = S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5)
    opt = torch.optim.SGD([_param()], lr=0.1)
    driver = S.attach(opt, lr=S.join([S.constant(0.1), plateau], [2]))
    seen = []
    for _ in range(3):
        driver.step(1.0)
        seen.append(driver.get_last_lr()[0])
    assert seen == [0.1, 0.1, 0.05]


def _shared_plateau_driver(order):
    plateau = S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5)
    opt = torch.optim.SGD([_param()], lr=0.1, weight_decay=1e-3)
    specs = {"lr": plateau, "weight_decay": plateau * 0.01}
    return S.attach(opt, {key: specs[key] for key in order})


def test_a_shared_plateaus_address_does_not_depend_on_the_order_of_the_keys():
    """D07. The address is the first key in SORTED order ("lr" < "weight_decay"), so a state
    saved by a driver given (weight_decay, lr) loads into one given (lr, weight_decay)."""
    saved = _shared_plateau_driver(["weight_decay", "lr"])
    saved.step(1.0)
    saved.step(1.0)  # one bad epoch > patience 0: halved
    state = saved.state_dict()
    assert state["reactive_keys"] == ["lr/group0/0"]
    resumed = _shared_plateau_driver(["lr", "weight_decay"])
    resumed.load_state_dict(state)
    assert resumed.get_last_lr() == [0.05]


def test_a_plateau_shared_by_two_groups_is_addressed_by_the_first_group():
    """D08. lr=[p, p]: p sits at lr/group0/0 and lr/group1/0; its address is the first."""
    plateau = S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5)
    opt = torch.optim.SGD([{"params": [_param()]}, {"params": [_param()]}], lr=0.1)
    driver = S.attach(opt, lr=[plateau, plateau])
    assert driver.state_dict()["reactive_keys"] == ["lr/group0/0"]


def test_get_last_lr_reads_the_groups_when_lr_is_not_driven():
    """D11. Driving only momentum, get_last_lr() is the lr the groups hold now (torch's
    get_last_lr is the lr in the groups), not the lr they held at attach."""
    opt = torch.optim.SGD([_param()], lr=0.1, momentum=0.9)
    driver = S.attach(opt, momentum=S.constant(0.8))
    opt.param_groups[0]["lr"] = 0.05
    driver.step()
    assert driver.get_last_lr() == [0.05]


def test_nan_group_values_count_as_equal():
    """D12. Documented: NaNs count as equal. torch's SGD accepts lr=nan (it checks lr < 0), so
    two groups at nan hold the same value and one schedule may drive both."""
    assert differing_group_values([{"lr": math.nan}, {"lr": math.nan}], "lr") is None
    assert differing_group_values([{"lr": 0.1}, {"lr": 0.01}], "lr") == [0.1, 0.01]
    opt = torch.optim.SGD([{"params": [_param()]}, {"params": [_param()]}], lr=math.nan)
    assert S.attach(opt, lr=S.constant(0.1)).get_last_lr() == [0.1, 0.1]
