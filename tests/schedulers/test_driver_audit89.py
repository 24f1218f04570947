"""Audit 89 of the schedule driver (findings F1..F7): shared betas lists, a failed step cached,
refused steps and states that changed the plateaus, plateau states matched by position, a
positional schedule, raw Python errors, and the add_param_group remedy."""

import numpy as np
import pytest
import torch

import schedulers as S

# --- F1: per-group betas[i] schedules on optimizers that share one betas list ---------------


def _list_betas_optimizers():
    """(name, factory(groups, betas)) for optimizers that keep ``betas`` as the list given, so
    that every param group holds the one list object (torch's ``add_param_group`` setdefault)."""

    def prodigy(groups, betas):
        return pytest.importorskip("prodigyopt").Prodigy(groups, lr=1.0, betas=betas)

    def dadapt_adam(groups, betas):
        return pytest.importorskip("dadaptation").DAdaptAdam(groups, lr=1.0, betas=betas)

    def schedule_free(groups, betas):
        sf = pytest.importorskip("schedulefree")
        optimizer = sf.AdamWScheduleFree(groups, lr=0.01, betas=betas, warmup_steps=2)
        optimizer.train()
        return optimizer

    return [
        ("torch.NAdam", lambda groups, betas: torch.optim.NAdam(groups, lr=0.01, betas=betas)),
        ("torch.RAdam", lambda groups, betas: torch.optim.RAdam(groups, lr=0.01, betas=betas)),
        ("torch.Adamax", lambda groups, betas: torch.optim.Adamax(groups, lr=0.01, betas=betas)),
        ("prodigyopt.Prodigy", prodigy),
        ("dadaptation.DAdaptAdam", dadapt_adam),
        ("schedulefree.AdamWScheduleFree", schedule_free),
    ]


def _params():
    return [torch.nn.Parameter(torch.tensor([1.0, -2.0])), torch.nn.Parameter(torch.tensor([3.0]))]


def _backward(params, k):
    """Different gradients per parameter and per step."""
    loss = (params[0] ** 2).sum() * (1.0 + 0.1 * k) + (params[1] ** 3).sum() * (0.5 - 0.05 * k)
    loss.backward()


@pytest.mark.parametrize(
    "factory",
    [f for _, f in _list_betas_optimizers()],
    ids=[n for n, _ in _list_betas_optimizers()],
)
def test_per_group_beta1_schedules_reach_each_group_of_a_shared_betas_list(factory):
    """Each group trains with its own beta1, as with the reference optimizer given one betas
    list per group and the same values set by hand; the caller's list and the optimizer's
    defaults keep the constructor's values, and a list stays a list."""
    betas = [0.9, 0.999]
    params = _params()
    optimizer = factory([{"params": [params[0]]}, {"params": [params[1]]}], betas)
    assert optimizer.param_groups[0]["betas"] is optimizer.param_groups[1]["betas"]  # (the case)
    beta1 = [S.step_lr(0.9, step_size=2, gamma=0.5), S.constant(0.5)]
    driver = S.attach(optimizer, beta1=beta1)

    ref_params = _params()
    reference = factory(
        [{"params": [ref_params[0]], "betas": [0.9, 0.999]}, {"params": [ref_params[1]]}],
        [0.5, 0.999],
    )
    assert reference.param_groups[0]["betas"] is not reference.param_groups[1]["betas"]
    for k in range(5):
        expected = [0.9 * 0.5 ** (k // 2), 0.5]  # step_lr's closed form; constant
        for g, group in enumerate(reference.param_groups):
            group["betas"] = [expected[g], 0.999]
        assert [group["betas"][0] for group in optimizer.param_groups] == expected
        assert [type(group["betas"]) for group in optimizer.param_groups] == [list, list]
        for opt, ps in ((optimizer, params), (reference, ref_params)):
            opt.zero_grad()
            _backward(ps, k)
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(params, ref_params)), k
        driver.step()
    assert betas == [0.9, 0.999]
    assert list(optimizer.defaults["betas"]) == [0.9, 0.999]


def test_driving_beta1_leaves_the_defaults_for_a_group_added_later():
    """One group, one schedule: a group added later starts from the constructor's beta1."""
    optimizer = torch.optim.NAdam([torch.nn.Parameter(torch.ones(1))], lr=0.1, betas=[0.9, 0.999])
    driver = S.attach(optimizer, beta1=S.constant(0.5))
    driver.step()
    assert optimizer.param_groups[0]["betas"] == [0.5, 0.999]
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))]})
    assert optimizer.param_groups[1]["betas"] == [0.9, 0.999]
    assert optimizer.defaults["betas"] == [0.9, 0.999]


def test_a_tuple_stays_a_tuple():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    S.attach(optimizer, beta2=S.constant(0.99))
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.99)


# --- F2: a step whose evaluation raised is not cached ---------------------------------------


def _until(n):
    """A user function defined over the run's ``n`` steps only."""

    def f(t):
        if t >= n:
            raise ValueError("past the run")
        return 0.1 * (1 - t / 100)

    return f


def test_a_step_whose_schedule_failed_fails_again_when_retried():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    driver = S.attach(optimizer, lr=S.from_function(_until(10), vectorized=False))
    for _ in range(9):
        driver.step()
    attempts = [
        driver.step,
        lambda: driver.step(t=10),
        driver.step,
        lambda: setattr(driver, "last_epoch", 10),
        lambda: driver.step(t=10),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError, match="failed at step t=10"):
            attempt()
        assert driver.t == 9
        assert optimizer.param_groups[0]["lr"] == 0.1 * (1 - 9 / 100)


def test_a_retried_step_after_a_reduction_fails_again():
    """The plateau reduced (a new multiplier), then the evaluation failed: the retry, which
    reduces again to the same multiplier, must not find the previous step's value."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    plateau = S.reduce_on_plateau(S.constant(1.0), patience=0, factor=0.5)
    driver = S.attach(optimizer, lr=S.from_function(_until(5), vectorized=False) * plateau)
    for metric in [4.0, 3.0, 2.0, 1.0]:  # improving: no reduction, t = 4
        driver.step(metric)
    for _ in range(3):
        with pytest.raises(ValueError, match="failed at step t=5"):
            driver.step(1.0)  # not an improvement: would reduce, but t = 5 is not defined
        assert driver.t == 4
        assert plateau.multiplier == 1.0
        assert optimizer.param_groups[0]["lr"] == 0.1 * (1 - 4 / 100)


# --- F3: a refused step or state leaves the plateaus as they were ---------------------------


def _nan_from_3(t):
    return np.where(t < 3, 0.1, np.nan)


def _nan_driver():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    plateau = S.reduce_on_plateau(S.constant(1.0), patience=0, factor=0.5)
    return optimizer, plateau, S.attach(optimizer, lr=S.from_function(_nan_from_3) * plateau)


def test_a_refused_load_leaves_the_plateaus_as_they_were():
    optimizer, plateau, driver = _nan_driver()
    before = plateau.state_dict()
    bad = {
        "t": 5,  # a NaN rate there: the step is refused after the plateau state was loaded
        "reactive": [
            {
                "multiplier": 0.25,
                "reductions": 2,
                "best": 0.3,
                "num_bad_epochs": 0,
                "cooldown_counter": 0,
            }
        ],
    }
    with pytest.raises(ValueError, match="nothing was written"):
        driver.load_state_dict(bad)
    assert driver.t == 0
    assert plateau.state_dict() == before
    driver.step()
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_a_refused_step_does_not_consume_the_metric():
    optimizer, plateau, driver = _nan_driver()
    driver.step(1.0)
    driver.step(1.0)  # one bad epoch: multiplier 0.5, t = 2
    saved = plateau.state_dict()
    assert saved["multiplier"] == 0.5
    for _ in range(3):
        with pytest.raises(ValueError, match="nothing was written"):
            driver.step(1.0)
        assert driver.t == 2
        assert plateau.state_dict() == saved
    assert optimizer.param_groups[0]["lr"] == 0.1 * 0.5
    resumed_optimizer, _, resumed = _nan_driver()
    resumed.load_state_dict(driver.state_dict())
    assert resumed_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_a_plateau_that_fails_to_observe_leaves_the_others_as_they_were():
    """The first plateau observed the metric (and reduced), the second raised while observing:
    the first is put back."""

    def g(t):
        if t >= 3:
            raise ValueError("past the run")
        return 1e-4

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, weight_decay=1e-4)
    lr = S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5)
    wd = S.reduce_on_plateau(S.from_function(g, vectorized=False), patience=0, factor=0.5)
    driver = S.attach(optimizer, lr=lr, weight_decay=wd)
    driver.step(2.0)
    driver.step(1.0)
    before = [lr.state_dict(), wd.state_dict()]
    with pytest.raises(ValueError, match="past the run"):
        driver.step(5.0)  # not an improvement: both reduce, the second calls g(3)
    assert [lr.state_dict(), wd.state_dict()] == before
    assert driver.t == 2
    assert optimizer.param_groups[0]["lr"] == 0.1


# --- F4: plateau states are matched by key --------------------------------------------------


def _two_plateaus():
    lr = S.reduce_on_plateau(S.constant(0.1), mode="min", patience=0, factor=0.5)
    wd = S.reduce_on_plateau(S.constant(1e-4), mode="max", patience=0, factor=0.5)
    return lr, wd


def _sgd_wd():
    return torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, weight_decay=1e-4)


def test_plateau_states_follow_their_keys_whatever_order_the_keys_are_given_in():
    lr, wd = _two_plateaus()
    driver = S.attach(_sgd_wd(), lr=lr, weight_decay=wd)
    for metric in [1.0, 2.0, 3.0, 4.0]:  # a worsening loss: lr cut 3 times, wd (max) never
        driver.step(metric)
    state = driver.state_dict()

    lr2, wd2 = _two_plateaus()
    optimizer2 = _sgd_wd()
    resumed = S.attach(optimizer2, weight_decay=wd2, lr=lr2)  # the keys in the other order
    resumed.load_state_dict(state)
    assert resumed.t == 4
    assert lr2.state_dict() == lr.state_dict()
    assert wd2.state_dict() == wd.state_dict()
    assert optimizer2.param_groups[0]["lr"] == ((0.1 * 0.5) * 0.5) * 0.5  # torch's rounding
    assert optimizer2.param_groups[0]["weight_decay"] == 1e-4
    for metric in [5.0, 0.5, 0.6, 0.7]:
        driver.step(metric)
        resumed.step(metric)
        assert resumed.last_values() == driver.last_values()


def test_a_plateau_state_saved_for_another_key_is_refused_by_name():
    optimizer = _sgd_wd()
    saved = S.attach(optimizer, lr=S.reduce_on_plateau(S.constant(0.1), patience=0))
    saved.step(1.0)
    saved.step(2.0)
    state = saved.state_dict()
    plateau = S.reduce_on_plateau(S.constant(1e-4), patience=0)
    other = S.attach(_sgd_wd(), lr=S.constant(0.1), weight_decay=plateau)
    before = plateau.state_dict()
    with pytest.raises(ValueError, match=r"lr/group0/0.*weight_decay/group0/0"):
        other.load_state_dict(state)
    assert plateau.state_dict() == before
    assert other.t == 0


@pytest.mark.parametrize("keys", ["lr/group0/0", ["lr/group0/0", "x"], [3]])
def test_malformed_reactive_keys_are_refused(keys):
    plateau = S.reduce_on_plateau(S.constant(0.1))
    driver = S.attach(_sgd_wd(), lr=plateau)
    state = {**driver.state_dict(), "reactive_keys": keys}
    with pytest.raises(ValueError, match=r"state\['reactive_keys'\]"):
        driver.load_state_dict(state)


def test_a_state_without_reactive_keys_still_loads_by_position():
    """States written before the keys were kept (one plateau here: unambiguous)."""
    plateau = S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5)
    driver = S.attach(_sgd_wd(), lr=plateau)
    for metric in [1.0, 2.0, 3.0]:
        driver.step(metric)
    old = {"t": driver.t, "reactive": driver.state_dict()["reactive"]}
    optimizer2 = _sgd_wd()
    resumed = S.attach(optimizer2, lr=S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5))
    resumed.load_state_dict(old)
    assert optimizer2.param_groups[0]["lr"] == (0.1 * 0.5) * 0.5


# --- F5: a schedule given positionally ------------------------------------------------------


@pytest.mark.parametrize(
    "schedules",
    [S.cosine_decay(0.1, 100), [S.constant(0.1)], "lr"],
    ids=["schedule", "list", "str"],
)
def test_attach_with_a_positional_schedule_is_a_type_error_naming_the_remedy(schedules):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.5)
    with pytest.raises(TypeError, match=r"schedules must be a mapping.*attach\(optimizer, lr="):
        S.attach(optimizer, schedules)
    assert optimizer.param_groups[0]["lr"] == 0.5


# --- F6: errors that name the parameter -----------------------------------------------------


def _constant_driver():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.5)
    return optimizer, S.attach(optimizer, lr=S.cosine_decay(0.1, 10))


@pytest.mark.parametrize(
    "move",
    [
        lambda d: d.step(t=10**400),
        lambda d: d.step(t=2**53 + 1),
        lambda d: d.step(t=1e300),
        lambda d: setattr(d, "last_epoch", 10**400),
        lambda d: d.load_state_dict({"t": 10**400}),
    ],
    ids=["step-huge-int", "step-2**53+1", "step-1e300", "last_epoch", "load_state_dict"],
)
def test_a_step_past_2_to_the_53_is_a_value_error(move):
    optimizer, driver = _constant_driver()
    with pytest.raises(ValueError, match=r"(t|last_epoch|state\['t'\]) must be <= 2\*\*53"):
        move(driver)
    assert driver.t == 0
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_the_last_exact_step_is_still_taken():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.5)
    driver = S.attach(optimizer, lr=S.constant(0.25))
    driver.step(t=2**53)
    assert driver.t == 2**53
    assert optimizer.param_groups[0]["lr"] == 0.25


def test_a_schedule_failing_at_a_fractional_step_is_a_value_error_naming_it():
    def f(t):
        if t >= 10:
            raise IndexError("index 10 is out of bounds for axis 0 with size 10")
        return 0.1

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.5)
    driver = S.attach(optimizer, lr=S.from_function(f, vectorized=False))
    with pytest.raises(ValueError, match=r"failed at step t=10\.5: IndexError"):
        driver.step(t=10.5)
    assert driver.t == 0
    driver.step(t=9.5)  # (defined there)
    assert optimizer.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("reactive", [None, 5, 2.5])
def test_a_malformed_reactive_entry_is_a_value_error_naming_it(reactive):
    _, driver = _constant_driver()
    with pytest.raises(ValueError, match=r"state\['reactive'\] must be a list"):
        driver.load_state_dict({"t": 3, "reactive": reactive})
    assert driver.t == 0


# --- F7: the add_param_group refusal says how to go on ---------------------------------------


def test_the_add_param_group_refusal_gives_a_remedy_that_keeps_the_step():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    schedules = [S.step_lr(0.1, 3, 0.5), S.step_lr(0.01, 3, 0.5)]
    driver = S.attach(optimizer, lr=schedules)
    for _ in range(7):
        driver.step()
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "lr": 0.5})
    with pytest.raises(ValueError, match="add_param_group") as refused:
        driver.step()
    message = str(refused.value)
    assert "new = attach(optimizer, {'lr': [...]}); new.last_epoch = 7" in message
    assert "one schedule per group (3 per key" in message
    # following it: the old groups keep their step (t = 7: step_lr's 2 decays), the new one
    # gets its schedule's value there
    new = S.attach(optimizer, lr=[*schedules, S.constant(0.5)])
    new.last_epoch = 7
    assert [g["lr"] for g in optimizer.param_groups] == [0.1 * 0.5**2, 0.01 * 0.5**2, 0.5]
