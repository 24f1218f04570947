"""Issue 14, section 2: each defect an audit found, as a test that failed before the fix.

Each test says what happened before (in its docstring) and checks what happens now.
"""

import decimal
import math
import tracemalloc
import warnings

import numpy as np
import pytest
import torch

import schedulers as S


def _sgd(lr=1.0, momentum=0.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=momentum)


def _adam(**kw):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.1, **kw)


# --- reduce_on_plateau nested anywhere -------------------------------------------------------


def _plateau():
    return S.reduce_on_plateau(S.constant(1.0), patience=0, factor=0.5)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda p: p.clamp(0.0, 1.0),
        lambda p: p * 1.0,
        lambda p: S.linear_warmup(p, 2),
        lambda p: S.product([S.constant(1.0), p]),
        lambda p: p + S.constant(0.0),
        lambda p: S.noisy(p, noise_pct=0.0),
    ],
    ids=["clamp", "scale", "warmup", "product", "sum", "noisy"],
)
def test_a_nested_plateau_is_fed_by_the_driver(wrap):
    """Before: only a plateau at the top of the tree observed metrics; nested, it never reduced."""
    plateau = _plateau()
    driver = S.attach(_sgd(), lr=wrap(plateau))
    for _ in range(4):
        driver.step(1.0)  # first observation sets best; each later one is bad -> halve
    assert plateau.multiplier == 0.125
    assert driver.get_last_lr() == [pytest.approx(wrap(plateau)(4))]
    assert driver.get_last_lr()[0] < 0.2


def test_a_plateau_in_a_join_piece_observes_only_while_its_piece_runs_at_its_own_step():
    observed = []

    class Recording(S.reduce_on_plateau):
        def observe(self, metric, t):
            observed.append(t)
            return super().observe(metric, t)

    plateau = Recording(S.cosine_decay(1.0, 100), patience=0, factor=0.5)
    s = S.join([S.constant(0.5), plateau, S.constant(0.01)], [3, 6])
    driver = S.attach(_sgd(), lr=s)
    for _ in range(8):
        driver.step(1.0)
    assert observed == [0, 1, 2]  # global steps 3, 4, 5: its own clock starts at its boundary
    assert plateau.multiplier == 0.25
    assert driver.get_last_lr() == [0.01]


def test_plateau_state_takes_part_in_equality_and_survives_to_dict():
    """Before: to_dict dropped the multiplier and counters, so from_dict gave a fresh plateau
    that compared equal to a reduced one."""
    reduced, fresh = _plateau(), _plateau()
    reduced.observe(1.0, 0)
    reduced.observe(1.0, 1)
    assert reduced.multiplier == 0.5
    assert reduced != fresh
    rebuilt = S.from_dict(reduced.to_dict())
    assert rebuilt == reduced
    assert rebuilt.state_dict() == reduced.state_dict()
    assert rebuilt(5) == reduced(5) == 0.5
    nested = S.linear_warmup(reduced, 3)
    assert S.from_dict(nested.to_dict())(10) == 0.5
    assert "state" not in fresh.to_dict()  # a fresh plateau writes no state
    assert reduced.to_dict()["state"] == {
        "multiplier": 0.5, "reductions": 1, "best": 1.0, "num_bad_epochs": 0,
        "cooldown_counter": 0,
    }  # fmt: skip


# --- 0-dim arrays and tensors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        S.cosine_decay(0.1, 100),
        S.cosine_annealing_warm_restarts(0.1, 10, 2),
        S.cyclic(0.01, 0.1, 10, window="hann"),
        S.one_cycle(0.1, 100),
        S.noisy_linear_cosine_decay(0.1, 100),
        S.step_lr(0.1, 3),
    ],
    ids=lambda s: s.name,
)
def test_zero_dim_arrays_and_tensors_are_steps(schedule):
    """Before: every schedule using cos/sin raised on a 0-dim numpy array or tensor."""
    value = schedule(37)
    out = schedule(np.array(37))
    assert isinstance(out, np.ndarray)
    assert out.shape == ()
    assert out == value
    tensor = schedule(torch.tensor(37))
    assert tensor.shape == ()
    assert tensor.dtype == torch.float64
    assert tensor.item() == value
    assert schedule(np.float64(37.0)) == value
    grid = schedule(np.arange(12).reshape(3, 4))
    assert grid.shape == (3, 4)
    assert grid[2, 1] == schedule(9)


# --- cosine_decay_restarts memory ------------------------------------------------------------


def test_restart_memory_does_not_grow_with_the_cycle_index():
    """Before: a table of m_mul**k for k up to the cycle index: 7 MB here (t_mul = 1 + 1e-5,
    t = 1e9), 1.4 GiB at t_mul = 1 + 1e-7, t = 1e12, and a MemoryError at 1 + 1e-9."""
    s = S.cosine_decay_restarts(1.0, 10, t_mul=1 + 1e-5, m_mul=0.999999)
    tracemalloc.start()
    try:
        s(np.array([0, 10**9]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000


@pytest.mark.parametrize("t_mul", [1 + 1e-7, 1 + 1e-9])
def test_restarts_at_a_huge_cycle_index_against_a_high_precision_reference(t_mul):
    first, m_mul, t = 10, 0.9999999, 10**12
    s = S.cosine_decay_restarts(1.0, first, t_mul=t_mul, m_mul=m_mul)
    # cycle i starts at S_i = first (m**i - 1) / (m - 1): find i with S_i <= t < S_(i+1) in
    # 60-digit decimal arithmetic
    decimal.getcontext().prec = 60
    m, D = decimal.Decimal(t_mul), decimal.Decimal

    def start(i):
        return D(first) * (m**i - 1) / (m - 1)

    i = int(math.log1p(t * (t_mul - 1) / first) / math.log(t_mul))
    while start(i) > t:
        i -= 1
    while start(i + 1) <= t:
        i += 1
    fraction = float((D(t) - start(i)) / (D(first) * m**i))
    expected = float(D(m_mul) ** i) * (1 + math.cos(math.pi * fraction)) / 2
    assert s(t) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert s(np.array([t]))[0] == s(t)


# --- integer powers --------------------------------------------------------------------------


def test_step_lr_is_torch_bitwise_where_its_factors_are_exact():
    """Before: 0.1 * exp(3 log 0.5) = 0.012500000000000004; torch gives 0.0125."""
    assert S.step_lr(0.1, 3, 0.5)(9) == 0.0125
    assert S.multistep(0.1, [2, 5, 7], 0.25)(8) == 0.1 * 0.25**3
    assert S.factor(1.0, 0.5, 0.0)(10) == 2.0**-10
    assert S.exponential_decay(0.3, 10, 0.5, staircase=True)(35) == 0.3 * 0.125


@pytest.mark.parametrize(
    ("make_torch", "ours"),
    [
        (
            lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5),
            S.step_lr(0.1, 3, 0.5),
        ),
        (
            lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 9, 9, 40, 300], 0.25),
            S.multistep(0.1, [5, 9, 9, 40, 300], 0.25),
        ),
        (
            lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.5),
            S.exponential_decay(0.1, 1, 0.5),
        ),
    ],
    ids=["StepLR", "MultiStepLR", "ExponentialLR"],
)
def test_torch_recursive_values_are_matched_bit_for_bit_for_powers_of_two(make_torch, ours):
    torch_opt, our_opt = _sgd(0.1), _sgd(0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = make_torch(torch_opt)
    driver = S.attach(our_opt, lr=ours)
    for _ in range(1000):  # values stay normal floats (no subnormal rounding)
        assert our_opt.param_groups[0]["lr"] == torch_opt.param_groups[0]["lr"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler.step()
        driver.step()


# --- attach checks the values against the optimizer's constraints ---------------------------


@pytest.mark.parametrize(
    ("make", "key", "schedule", "words"),
    [
        (_adam, "beta1", S.constant(1.0), ["betas[0]", "< 1"]),
        (_adam, "beta1", S.constant(1.5), ["betas[0]", "1.5"]),
        (_adam, "beta2", S.cyclic_momentum(0.9, 1.0, 10), ["betas[1]", "1"]),
        (lambda: _sgd(momentum=0.9), "momentum", S.constant(2.0), ["momentum", "2"]),
        (lambda: _sgd(momentum=0.9), "dampening", S.constant(1.2), ["dampening", "1.2"]),
    ],
)
def test_attach_refuses_a_schedule_whose_range_leaves_the_optimizers_domain(
    make, key, schedule, words
):
    """Before: beta1 = 1.0 raised ZeroDivisionError inside Adam.step; beta1 = 1.5 and SGD
    momentum = 2.0 were written silently."""
    optimizer = make()
    before = [dict(g) for g in optimizer.param_groups]
    with pytest.raises(ValueError, match="the optimizer requires") as info:
        S.attach(optimizer, {key: schedule})
    for word in words:
        assert word in str(info.value)
    assert [dict(g) for g in optimizer.param_groups] == before  # nothing written


def _bad_after_five(t):
    return np.where(t < 5, 0.9, 1.2)


def test_values_are_checked_at_each_step_where_the_range_is_unknown():
    optimizer = _adam()
    driver = S.attach(optimizer, beta1=S.from_function(_bad_after_five))
    for _ in range(4):
        driver.step()
    with pytest.raises(ValueError, match=r"betas\[0\].*1\.2.*t=5"):
        driver.step()
    assert optimizer.param_groups[0]["betas"][0] == 0.9  # nothing written
    assert driver.t == 4


def test_tensor_hyperparameters_are_checked_without_reading_them_back(monkeypatch):
    lr = torch.tensor(0.5)
    optimizer = torch.optim.Adam(
        [torch.nn.Parameter(torch.zeros(2))], lr=lr, betas=(torch.tensor(0.9), torch.tensor(0.99))
    )

    def no_host_read(*_args, **_kwargs):
        raise AssertionError("the driver read a tensor back to the host")

    monkeypatch.setattr(torch.Tensor, "item", no_host_read)
    monkeypatch.setattr(torch.Tensor, "__float__", no_host_read)
    monkeypatch.setattr(torch.Tensor, "tolist", no_host_read)
    driver = S.attach(optimizer, lr=S.cosine_decay(0.1, 10), beta1=S.from_function(_bad_after_five))
    for _ in range(4):
        driver.step()
    with pytest.raises(ValueError, match="betas"):
        driver.step()
    monkeypatch.undo()
    assert lr.item() == pytest.approx(S.cosine_decay(0.1, 10)(4))


# --- error messages --------------------------------------------------------------------------


def test_a_huge_integer_for_a_float_parameter_is_a_value_error_naming_it():
    """Before: a bare OverflowError ('int too large to convert to float')."""
    with pytest.raises(ValueError, match="learning_rate") as info:
        S.cosine_decay(10**400, 10)
    assert "too large" in str(info.value)
    assert len(str(info.value)) < 300  # the 401 digits are not printed


def test_a_step_count_beyond_float64_is_refused_at_construction():
    """Before: decay_steps = 10**400 was accepted and evaluation failed later."""
    with pytest.raises(ValueError, match=r"decay_steps.*2\*\*53"):
        S.cosine_decay(0.1, 10**400)
    with pytest.raises(ValueError, match="step_size"):
        S.step_lr(0.1, 2**53 + 1)
    assert S.cosine_decay(0.1, 2**53)(10) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("steps", "shown"),
    [
        (np.array([0, 5, -3, 7]), "steps[2] = -3"),
        (np.array([[0.0, 1.0], [np.inf, 2.0]]), "steps[1, 0] = inf"),
        (np.array([0.0, np.nan]), "steps[1] = nan"),
    ],
)
def test_a_bad_step_in_an_array_is_named_by_index_and_value(steps, shown):
    """Before: 'steps must be finite and >= 0' without saying which."""
    with pytest.raises(ValueError, match="finite and >= 0") as info:
        S.cosine_decay(0.1, 10)(steps)
    assert shown in str(info.value)
    with pytest.raises(ValueError, match="too large"):
        S.constant(1.0)(10**400)


# --- scalar and array evaluation -------------------------------------------------------------


def test_scalar_and_array_values_are_equal_bit_for_bit():
    """Before: 1214 ulps apart at this step (the audit's example: 206), as the scalar path used
    math's exp/log/cos and the array path numpy's and torch's."""
    s = S.cosine_decay_restarts(0.1, 10, 1.5, 0.9)
    assert s(np.array([19614]))[0] == s(19614)
    steps = np.arange(0, 200_000, 7)
    values = s(steps)
    assert all(values[i] == s(int(steps[i])) for i in range(0, len(steps), 97))
