"""The driver: values written at t = 0 and after each step, keys, groups, tensors, resume."""

import copy
import re

import pytest
import torch

import schedulers as S


def _sgd(groups=1, lr=0.5, **kw):
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr, momentum=0.9, **kw)


def _adam(**kw):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.5, **kw)


def test_writes_s0_at_construction_and_s_t_after_t_steps():
    opt = _sgd()
    s = S.step_lr(0.1, step_size=2, gamma=0.5)
    driver = S.attach(opt, lr=s)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        driver.step()
    assert seen == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    assert driver.t == 6
    assert driver.get_last_lr() == [s(6)]


def test_one_schedule_per_group_and_every_key_is_logged():
    opt = _sgd(groups=2, weight_decay=0.0)
    driver = S.attach(
        opt,
        {"lr": [S.constant(0.1), S.constant(0.2)]},
        momentum=S.linear(0.9, 1.0, 0.5, 4),
        weight_decay=S.constant(1e-4),
    )
    driver.step()
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.2]
    assert [g["momentum"] for g in opt.param_groups] == [pytest.approx(0.9 * 0.875)] * 2
    assert driver.last_values() == {
        "lr": [0.1, 0.2],
        "momentum": [pytest.approx(0.7875)] * 2,
        "weight_decay": [1e-4, 1e-4],
    }


def test_beta_aliases_write_the_tuple_entries_of_adam():
    opt = _adam(betas=(0.9, 0.999))
    S.attach(opt, beta1=S.constant(0.8), beta2=S.constant(0.99))
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)
    opt2 = _adam(betas=(0.9, 0.999))
    S.attach(opt2, {"betas[0]": S.constant(0.7)})
    assert opt2.param_groups[0]["betas"] == (0.7, 0.999)


def test_momentum_on_adam_is_an_error_not_a_silent_beta1_overwrite():
    with pytest.raises(ValueError, match="betas\\[0\\]"):
        S.attach(_adam(), momentum=S.constant(0.9))


def test_bad_keys_and_group_counts_are_errors():
    with pytest.raises(ValueError, match="nesterov_lr"):
        S.attach(_sgd(), nesterov_lr=S.constant(0.1))
    with pytest.raises(ValueError, match="one per group"):
        S.attach(_sgd(groups=2), lr=[S.constant(0.1)] * 3)
    with pytest.raises(ValueError, match="twice"):
        S.attach(_adam(), {"betas[0]": S.constant(0.8)}, beta1=S.constant(0.8))
    with pytest.raises(TypeError):
        S.attach(_sgd(), lr=0.1)
    with pytest.raises(TypeError):
        S.attach(object(), lr=S.constant(0.1))
    with pytest.raises(ValueError, match="at least one"):
        S.attach(_sgd())


def test_tensor_hyperparameters_are_filled_in_place():
    lr = torch.tensor(0.5)
    beta1 = torch.tensor(0.9)
    opt = torch.optim.Adam(
        [torch.nn.Parameter(torch.zeros(2))], lr=lr, betas=(beta1, torch.tensor(0.999))
    )
    group_lr, group_beta1 = opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]
    driver = S.attach(opt, lr=S.cosine_decay(0.1, 10), beta1=S.constant(0.85))
    driver.step()
    assert opt.param_groups[0]["lr"] is group_lr
    assert opt.param_groups[0]["betas"][0] is group_beta1
    assert group_lr.item() == pytest.approx(S.cosine_decay(0.1, 10)(1))
    assert group_beta1.item() == pytest.approx(0.85)
    assert driver.get_last_lr() == [pytest.approx(S.cosine_decay(0.1, 10)(1))]


def test_drives_a_real_training_loop_with_dict_specs():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.0)
    driver = S.attach(
        opt,
        lr={"name": "exponential_decay", "learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5},
    )
    used = []
    for _ in range(3):
        used.append(opt.param_groups[0]["lr"])
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        opt.zero_grad()
        driver.step()
    assert used == [0.1, 0.05, 0.025]


def test_resume_from_state_dict_continues_exactly_including_plateau_state():
    def make():
        opt = _sgd()
        plateau = S.reduce_on_plateau(S.cosine_decay(0.1, 200), patience=2, factor=0.5)
        return opt, S.attach(opt, lr=plateau, momentum=S.cyclic(0.01, 0.1, 7).momentum())

    metrics = [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0] * 3
    opt, driver = make()
    for m in metrics[:20]:
        driver.step(m)
    state = copy.deepcopy(driver.state_dict())
    assert state["t"] == 20
    assert state["reactive"][0]["multiplier"] < 1.0

    opt2, resumed = make()
    resumed.load_state_dict(state)
    assert resumed.t == 20
    assert resumed.last_values() == driver.last_values()
    for m in metrics[20:]:
        driver.step(m)
        resumed.step(m)
        assert resumed.last_values() == driver.last_values()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_load_state_dict_rejects_mismatched_state():
    driver = S.attach(_sgd(), lr=S.constant(0.1))
    with pytest.raises(ValueError, match="'t'"):
        driver.load_state_dict({"t": -3})
    with pytest.raises(ValueError, match="reactive"):
        driver.load_state_dict({"t": 3, "reactive": [{"multiplier": 0.5}]})


@pytest.mark.parametrize(
    "bad",
    [
        [{"multiplier": 0.25, "best": 0.3, "num_bad_epochs": -1, "cooldown_counter": 0}],
        [{"multiplier": 0.5, "best": 1.0, "num_bad_epochs": 0, "cooldown_counter": 0},
         {"multiplier": 0.5}],
    ],
    ids=["bad-count", "second-incomplete"],
)  # fmt: skip
def test_a_refused_state_changes_no_schedule(bad):
    """A state the driver refuses left a reduce-on-plateau half loaded: its multiplier was set
    before its counters were checked, and the driver loaded its plateaus one after another, so
    the next step wrote the refused state's rates (0.025 for 0.1). Now nothing changes."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1)
    plateaus = [S.reduce_on_plateau(S.constant(0.1)), S.reduce_on_plateau(S.constant(0.01))]
    driver = S.attach(optimizer, lr=plateaus)
    if len(bad) == 1:
        bad = [bad[0], plateaus[1].state_dict()]
    before = [p.state_dict() for p in plateaus]
    with pytest.raises(ValueError, match="num_bad_epochs"):
        driver.load_state_dict({"t": 5, "reactive": bad})
    assert [p.state_dict() for p in plateaus] == before
    driver.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]


def test_different_schedules_for_groups_holding_one_lr_tensor_are_refused():
    """``optim.Adam(groups, lr=torch.tensor(0.1))`` gives every group the constructor's tensor:
    per-group schedules filled it once per group, so every group trained at the last group's
    rate while ``get_last_lr()`` reported each its own. Refused now; one schedule for all, or a
    tensor per group, is taken."""
    import optim

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    shared = optim.Adam([{"params": [a]}, {"params": [b]}], lr=torch.tensor(0.1))
    assert shared.param_groups[0]["lr"] is shared.param_groups[1]["lr"]
    with pytest.raises(ValueError, match="param groups 0 and 1 hold one tensor for 'lr'"):
        S.attach(shared, lr=[S.constant(0.1), S.constant(0.05)])
    S.attach(shared, lr=S.constant(0.05))  # (one schedule: the same value for both)
    S.attach(shared, lr=[S.constant(0.05), S.constant(0.05)])  # (equal schedules)
    own = optim.Adam(
        [{"params": [a], "lr": torch.tensor(0.1, dtype=torch.float64)},
         {"params": [b], "lr": torch.tensor(0.1, dtype=torch.float64)}]
    )  # fmt: skip
    driver = S.attach(own, lr=[S.constant(0.1), S.constant(0.05)])
    assert [float(g["lr"]) for g in own.param_groups] == driver.get_last_lr() == [0.1, 0.05]


@pytest.mark.parametrize("name", ["Adagrad", "Adadelta"])
def test_momentum_on_an_optimizer_without_one_gives_no_beta1_hint(name):
    """Cycling momentum on Adagrad or Adadelta: the error named the missing key but hinted at
    ``beta1=``, which they lack too; the hint is for optimizers with ``betas``."""
    optimizer = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="has no key 'momentum'") as error:
        S.attach(optimizer, momentum=S.constant(0.9))
    assert "beta1" not in str(error.value)
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="drive 'betas\\[0\\]', beta1="):
        S.attach(adam, momentum=S.constant(0.9))


def test_step_without_metric_makes_no_plateau_decision():
    driver = S.attach(_sgd(), lr=S.reduce_on_plateau(S.constant(1.0), patience=0))
    driver.step(1.0)
    for _ in range(5):
        driver.step()
    assert driver.get_last_lr() == [1.0]
    driver.step(2.0)
    assert driver.get_last_lr() == [pytest.approx(0.1)]


_TABLE = [0.1 * 0.99**i for i in range(30)]  # one rate per update of a 30-update run


def _from_table(t):
    return _TABLE[int(t)]


def test_a_function_defined_over_the_run_only_drives_every_step_of_it():
    """Before: the driver evaluated blocks of up to 1024 steps ahead, so a per-step function
    defined over the run's 30 steps failed at step 16 with an IndexError naming no step."""
    s = S.from_function(_from_table, vectorized=False, bounds=[0.0, 0.1])
    optimizer = _sgd()
    driver = S.attach(optimizer, lr=s)
    for t in range(1, 30):
        driver.step()
        assert optimizer.param_groups[0]["lr"] == _TABLE[t]
    with pytest.raises(ValueError, match=r"at step t=30.*IndexError"):
        driver.step()


def _one_sgd(**group):
    """SGD with default hyperparameters over one group (``group``: extra keys of its own)."""
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))], **group}], lr=0.1)


def _refused(optimizer, key, schedule=None):
    """The message of the ValueError attach raises for ``key``; no param group changed."""
    before = [dict(group) for group in optimizer.param_groups]
    with pytest.raises(ValueError, match=re.escape(repr(key.split("[")[0]))) as error:
        S.attach(optimizer, {key: schedule or S.constant(0.5)})
    for group, old in zip(optimizer.param_groups, before):
        assert group.keys() == old.keys()
        assert all(group[k] is old[k] for k in group)
    return str(error.value)


@pytest.mark.parametrize(
    ("make", "key", "shown"),
    [
        (_one_sgd, "maximize", "False"),
        (_sgd, "nesterov", "False"),
        (_one_sgd, "foreach", "None"),
        (_adam, "amsgrad", "False"),
        (_adam, "differentiable", "False"),
        (lambda: _one_sgd(name="head"), "name", "'head'"),
    ],
    ids=["maximize", "nesterov", "foreach", "amsgrad", "differentiable", "str"],
)
def test_keys_that_hold_no_number_are_refused_naming_key_and_value(make, key, shown):
    """Before: attach overwrote them with floats: maximize False -> 1.0 (SGD then ascended the
    gradient), nesterov switched on past SGD's own check, foreach None -> 1.0."""
    message = _refused(make(), key)
    assert f"key {key!r} = {shown}" in message
    assert "real number (not a bool)" in message
    assert "one-element floating-point tensor" in message


def test_betas_without_an_index_is_refused_with_a_hint():
    """Before: attach(adam, betas=s) replaced the betas tuple by a float; the next
    optimizer.step() raised "cannot unpack non-iterable float object", far from the cause."""
    message = _refused(_adam(betas=(0.9, 0.999)), "betas", S.constant(0.9))
    assert "key 'betas' = (0.9, 0.999)" in message
    assert "give an index such as 'betas[0]'" in message
    assert "beta1=" in message


def test_params_is_refused_by_name_with_or_without_an_index():
    """Before: attach(sgd, {"params": s}) replaced the parameter list by 1.0; with an index,
    a one-element parameter would have been filled with the schedule's values."""
    optimizer = _one_sgd()
    for key in ("params", "params[0]"):
        message = _refused(optimizer, key)
        assert "'params' is param group 0's list of parameters" in message


def test_numbers_and_one_element_float_tensors_are_still_driven():
    optimizer = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1, "weight_decay": 0}], lr=0.1
    )
    S.attach(optimizer, lr=S.constant(0.25), weight_decay=S.constant(0.01))
    assert optimizer.param_groups[0]["lr"] == 0.25
    assert optimizer.param_groups[0]["weight_decay"] == 0.01
    lr = torch.tensor([0.5])  # one element, one dimension
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    S.attach(adam, lr=S.constant(0.125))
    assert adam.param_groups[0]["lr"] is lr
    assert lr.tolist() == [0.125]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(torch.tensor([0.1, 0.2]), "tensor([0.1000, 0.2000])"), (torch.tensor(1), "tensor(1)")],
    ids=["two-elements", "integer"],
)
def test_tensors_a_float_cannot_fill_are_refused(value, shown):
    """A two-element tensor would get the schedule's value in both entries, an integer tensor
    would truncate it (0.5 -> 0)."""
    optimizer = _one_sgd()
    optimizer.param_groups[0]["lr"] = value
    assert f"key 'lr' = {shown}" in _refused(optimizer, "lr")
    assert optimizer.param_groups[0]["lr"].tolist() == value.tolist()
