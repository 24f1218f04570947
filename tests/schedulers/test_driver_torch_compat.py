"""Where the driver meets torch's scheduler conventions: ``step(epoch)``, several param groups,
torch's composite schedulers, and torch's own values at the edges (OneCycleLR's last step,
MultiStepLR's unsorted milestones, a plateau's infinite best through ``to_dict``)."""

import json
import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as L

import schedulers as S

# torch's reminders about the order of optimizer.step() and scheduler.step(): no updates here
pytestmark = pytest.mark.filterwarnings(
    "ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning",
    "ignore:Seems like `optimizer.step\\(\\)` has been overridden:UserWarning",
)


def _sgd(*lrs: float, **kw) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0], **kw)


def _lrs(optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


# --- step(epoch): torch's deprecated positional epoch ---------------------------------------


def test_step_epoch_moves_to_the_epoch_as_torchs_warm_restarts():
    """torch documents ``CosineAnnealingWarmRestarts.step(epoch + i / iters)``; before, the
    driver took the positional number for a metric and ignored it (step(3): t = 1)."""
    theirs_opt, ours_opt = _sgd(0.1), _sgd(0.1)
    theirs = L.CosineAnnealingWarmRestarts(theirs_opt, T_0=10, T_mult=2, eta_min=0.001)
    ours = S.attach(ours_opt, lr=S.cosine_annealing_warm_restarts(0.1, 10, 2, 0.001))
    for epoch in (3, 7.5, None, 26, None, 0.25, 12):
        if epoch is None:
            theirs.step()
            ours.step()
        else:
            theirs.step(epoch)
            with pytest.warns(UserWarning, match="epoch parameter"):
                ours.step(epoch)
            assert ours.t == epoch
        assert math.floor(ours.last_epoch) == theirs.last_epoch  # torch keeps the floor
        assert _lrs(ours_opt) == pytest.approx(_lrs(theirs_opt), rel=1e-15, abs=0)


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        (lambda o: L.StepLR(o, step_size=3, gamma=0.5), lambda o: S.step_lr(0.1, 3, 0.5)),
        (lambda o: L.MultiStepLR(o, [2, 5], gamma=0.5), lambda o: S.multistep(0.1, [2, 5], 0.5)),
        (lambda o: L.ExponentialLR(o, gamma=0.5), lambda o: S.exponential_decay(0.1, 1, 0.5)),
    ],
)
def test_step_epoch_is_torchs_closed_form_at_the_epoch(theirs, ours):
    theirs_opt, ours_opt = _sgd(0.1), _sgd(0.1)
    torch_scheduler, driver = theirs(theirs_opt), S.attach(ours_opt, lr=ours(ours_opt))
    for epoch in (4, 9, 1, 6):
        with pytest.warns(UserWarning, match="epoch parameter") as torch_warnings:
            torch_scheduler.step(epoch)
        with pytest.warns(UserWarning, match="epoch parameter") as our_warnings:
            driver.step(epoch)
        assert str(our_warnings[0].message) == str(torch_warnings[-1].message)
        assert driver.last_epoch == torch_scheduler.last_epoch == epoch
        assert _lrs(ours_opt) == _lrs(theirs_opt)
        assert driver.get_last_lr() == torch_scheduler.get_last_lr()
    torch_scheduler.step()
    driver.step()
    assert driver.last_epoch == torch_scheduler.last_epoch == 7
    assert _lrs(ours_opt) == pytest.approx(_lrs(theirs_opt), rel=1e-15, abs=0)


def test_plateau_driver_takes_the_metric_first_and_the_epoch_second_as_torch():
    theirs_opt, ours_opt = _sgd(0.1), _sgd(0.1)
    theirs = L.ReduceLROnPlateau(theirs_opt, patience=0, factor=0.5)
    ours = S.attach(ours_opt, lr=S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5))
    for metric, epoch in ((1.0, None), (1.0, 5), (2.0, None), (0.5, 9)):
        if epoch is None:
            theirs.step(metric)
            ours.step(metric)
        else:
            with pytest.warns(UserWarning, match="epoch parameter"):
                theirs.step(metric, epoch)
            with pytest.warns(UserWarning, match="epoch parameter"):
                ours.step(metric, epoch)
        assert ours.last_epoch == theirs.last_epoch
        assert _lrs(ours_opt) == _lrs(theirs_opt)


def test_step_keywords_and_bad_epochs():
    optimizer = _sgd(0.1)
    driver = S.attach(optimizer, lr=S.step_lr(0.1, 2, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither keyword warns
        driver.step(t=4)
        driver.step(metric=3.0)  # a metric: no plateau here, ignored; t advances by one
    assert driver.t == 5
    with pytest.raises(ValueError, match=r"step\(epoch\).*step\(t=\.\.\.\).*epoch=3 and t=4"):
        driver.step(3, t=4)
    with pytest.raises(ValueError, match=r"epoch must be finite and >= 0, got epoch=-1"):
        driver.step(-1)
    with pytest.raises(TypeError, match=r"epoch must be a number >= 0, got epoch='3'"):
        driver.step("3")
    assert driver.t == 5


# --- one schedule, several param groups ------------------------------------------------------


def test_one_schedule_for_groups_with_different_lrs_is_refused():
    """Before: both groups got 0.1, 0.1, 0.05, ...; torch's StepLR gives [0.1, 0.01], ..."""
    optimizer = _sgd(0.1, 0.01)
    with pytest.raises(ValueError, match=r"'lr'.*\[0\.1, 0\.01\].*one schedule per group"):
        S.attach(optimizer, lr=S.step_lr(0.1, 2, 0.5))
    assert _lrs(optimizer) == [0.1, 0.01]  # nothing written
    optimizer = _sgd(0.1, 0.1, weight_decay=0.0)
    optimizer.param_groups[1]["weight_decay"] = 0.01
    with pytest.raises(ValueError, match=r"'weight_decay'.*\[0\.0, 0\.01\]"):
        S.attach(optimizer, weight_decay=S.constant(0.05))


def test_one_schedule_per_group_gives_torchs_per_group_values():
    theirs_opt, ours_opt = _sgd(0.1, 0.01), _sgd(0.1, 0.01)
    theirs = L.StepLR(theirs_opt, step_size=2, gamma=0.5)
    ours = S.attach(ours_opt, lr=[S.step_lr(0.1, 2, 0.5), S.step_lr(0.01, 2, 0.5)])
    assert ours.base_lrs == theirs.base_lrs == [0.1, 0.01]
    for _ in range(8):
        assert _lrs(ours_opt) == _lrs(theirs_opt)
        theirs.step()
        ours.step()


def test_same_values_in_every_group_stay_allowed():
    optimizer = _sgd(0.1, 0.01)
    S.attach(optimizer, lr=[S.constant(0.3)] * 2)  # the explicit form: overwrite every group
    assert _lrs(optimizer) == [0.3, 0.3]
    optimizer = _sgd(0.1, 0.1)
    S.attach(optimizer, lr=S.constant(0.3))  # the groups agree: nothing is lost
    assert _lrs(optimizer) == [0.3, 0.3]


# --- torch's composite schedulers -------------------------------------------------------------


def test_sequential_lr_refuses_the_driver_and_join_is_its_equivalent():
    optimizer = _sgd(0.1)
    driver = S.attach(optimizer, lr=S.linear(0.1, 0.1, 1.0, 3))
    with pytest.raises(TypeError, match=r"cannot be a member of torch's SequentialLR.*join"):
        L.SequentialLR(optimizer, [driver, L.ExponentialLR(optimizer, 0.9)], milestones=[3])
    with pytest.raises(ValueError, match=r"last_epoch=-1.*SequentialLR.*join"):
        driver.last_epoch = -1  # what SequentialLR does to its members
    theirs_opt, ours_opt = _sgd(0.1), _sgd(0.1)
    theirs = L.SequentialLR(
        theirs_opt,
        [L.LinearLR(theirs_opt, 0.1, 1.0, 3), L.ExponentialLR(theirs_opt, 0.9)],
        milestones=[3],
    )
    ours = S.attach(
        ours_opt, lr=S.join([S.linear(0.1, 0.1, 1.0, 3), S.exponential_decay(0.1, 1, 0.9)], [3])
    )
    for _ in range(10):
        assert _lrs(ours_opt) == pytest.approx(_lrs(theirs_opt), rel=1e-14)
        theirs.step()
        ours.step()


def test_chained_scheduler_refuses_the_driver_and_a_product_is_its_equivalent():
    optimizer = _sgd(0.1)
    driver = S.attach(optimizer, lr=S.linear(0.1, 0.1, 1.0, 3))
    with pytest.raises(TypeError, match=r"cannot be a member of torch's ChainedScheduler.*product"):
        L.ChainedScheduler([driver, L.ExponentialLR(optimizer, 0.9)])
    theirs_opt, ours_opt = _sgd(0.1), _sgd(0.1)
    theirs = L.ChainedScheduler(
        [L.LinearLR(theirs_opt, 0.1, 1.0, 3), L.ExponentialLR(theirs_opt, 0.9)]
    )
    ours = S.attach(ours_opt, lr=S.linear(0.1, 0.1, 1.0, 3) * S.exponential_decay(1.0, 1, 0.9))
    for _ in range(10):
        assert _lrs(ours_opt) == pytest.approx(_lrs(theirs_opt), rel=1e-14)
        theirs.step()
        ours.step()
    assert driver.optimizer is optimizer  # read from anywhere else, it is the optimizer


# --- OneCycleLR at t = total_steps ----------------------------------------------------------


@pytest.mark.parametrize(("strategy", "three_phase"), [("cos", False), ("linear", True)])
def test_one_cycle_holds_its_final_value_where_torch_extrapolates_one_step(strategy, three_phase):
    total = 10
    optimizer = _sgd(0.1)
    theirs = L.OneCycleLR(
        optimizer, 0.4, total_steps=total, pct_start=0.3, anneal_strategy=strategy,
        three_phase=three_phase, cycle_momentum=False,
    )  # fmt: skip
    ours = S.one_cycle(0.4, total, 0.3, strategy, three_phase=three_phase)
    torch_values = [optimizer.param_groups[0]["lr"]]
    for _ in range(total):
        theirs.step()
        torch_values.append(optimizer.param_groups[0]["lr"])
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        theirs.step()
    final = 0.4 / 25.0 / 1e4
    assert [ours(t) for t in range(total)] == pytest.approx(torch_values[:total], rel=1e-14)
    assert ours(total - 1) == pytest.approx(final, rel=1e-12)
    assert ours(total) == ours(total + 5) == ours(total - 1)  # documented: held
    assert torch_values[total] != pytest.approx(final, rel=1e-3)  # torch: extrapolated


# --- MultiStepLR with unsorted milestones ---------------------------------------------------


def test_multistep_takes_milestones_in_any_order_as_torch():
    optimizer = _sgd(0.1)
    theirs = L.MultiStepLR(optimizer, [30, 10, 10, 20], gamma=0.5)
    ours = S.multistep(0.1, [30, 10, 10, 20], 0.5)
    assert ours.milestones == [10, 10, 20, 30]
    assert S.from_dict(ours.to_dict()) == ours
    for t in range(40):
        assert ours(t) == optimizer.param_groups[0]["lr"], t
        theirs.step()


# --- a plateau's infinite best through to_dict ----------------------------------------------


@pytest.mark.parametrize(("mode", "best"), [("min", -math.inf), ("max", math.inf)])
def test_an_observed_infinite_best_round_trips_through_to_dict(mode, best):
    """Before: to_dict left an infinite best out as "nothing seen yet", so the copy restarted
    from +inf (min mode) and took the next metric for an improvement."""
    plateau = S.reduce_on_plateau(S.constant(0.1), mode=mode, patience=2)
    plateau.observe(best, 0)
    plateau.observe(1.0, 1)
    plateau.observe(1.0, 2)
    spec = plateau.to_dict()
    copy = S.from_dict(json.loads(json.dumps(spec, allow_nan=False)))  # JSON without inf
    assert copy.state_dict() == plateau.state_dict()
    assert copy.state_dict()["best"] == best
    assert copy.observe(1.0, 3) is plateau.observe(1.0, 3) is True
    assert copy(4) == plateau(4) == pytest.approx(0.01)
    fresh = S.reduce_on_plateau(S.constant(0.1), mode=mode)
    assert fresh.to_dict().get("state") is None  # nothing observed: no best written
    with pytest.raises(ValueError, match=r"state\['best'\].*'inf'/'-inf'.*best='huge'"):
        S.reduce_on_plateau(S.constant(0.1), state={**plateau.state_dict(), "best": "huge"})
