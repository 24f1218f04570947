"""The schedules taken from timm, optax and pytorch_warmup, against those libraries' formulas.

The peers are not test dependencies, so their formulas are re-implemented here, line by line
from their sources (cited at each function), and compared over 10**4 to 10**5 steps. Torch's
fractional-epoch stepping is compared with torch itself.
"""

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

import schedulers as S

STEPS = 20_000


# --- timm: timm/scheduler/cosine_lr.py and tanh_lr.py (CosineLRScheduler._get_lr,
# TanhLRScheduler._get_lr, timm 1.0.x), written for one param group ----------------------------


def _timm_cycle(t, t_initial, cycle_mul):
    if cycle_mul != 1:
        i = math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
        if t_curr >= t_i:  # not timm: its logarithm rounded a cycle's first step into the
            i += 1  # previous cycle (t_curr = t_i); schedulers locates cycles exactly
            t_i = cycle_mul**i * t_initial
            t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    else:
        i = t // t_initial
        t_i = t_initial
        t_curr = t - (t_initial * i)
    return i, t_i, t_curr


def timm_cosine(t, base, t_initial, lr_min=0.0, cycle_mul=1.0, cycle_decay=1.0, cycle_limit=1,
                warmup_t=0, warmup_lr_init=0.0, warmup_prefix=False, k_decay=1.0):  # fmt: skip
    if t < warmup_t:
        return warmup_lr_init + t * (base - warmup_lr_init) / warmup_t
    if warmup_prefix:
        t = t - warmup_t
    i, t_i, t_curr = _timm_cycle(t, t_initial, cycle_mul)
    lr_max = base * cycle_decay**i
    k = k_decay
    if i < cycle_limit:
        return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr**k / t_i**k))
    return lr_min


def timm_tanh(t, base, t_initial, lb=-7.0, ub=3.0, lr_min=0.0, cycle_mul=1.0, cycle_decay=1.0,
              cycle_limit=1, warmup_t=0, warmup_lr_init=0.0, warmup_prefix=False):  # fmt: skip
    def main(t):
        if warmup_prefix:
            t = t - warmup_t
        i, t_i, t_curr = _timm_cycle(t, t_initial, cycle_mul)
        if i < cycle_limit:
            lr_max = base * cycle_decay**i
            tr = t_curr / t_i
            return lr_min + 0.5 * (lr_max - lr_min) * (1 - math.tanh(lb * (1.0 - tr) + ub * tr))
        return lr_min

    if t < warmup_t:  # the ramp's end: base (prefix) or the schedule at warmup_t (no prefix)
        end = base if warmup_prefix else main(warmup_t)
        return warmup_lr_init + t * (end - warmup_lr_init) / warmup_t
    return main(t)


def _worst(ours, reference, steps=STEPS):
    values = ours(np.arange(steps))
    return max(abs(values[t] - reference(t)) for t in range(steps))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t_initial": 5000},
        {"t_initial": 1000, "k_decay": 2.0, "lr_min": 1e-4},
        {"t_initial": 777, "k_decay": 0.5, "cycle_decay": 0.7, "cycle_limit": 10},
        {"t_initial": 500, "cycle_mul": 2.0, "cycle_decay": 0.5, "cycle_limit": 5},
        {"t_initial": 800, "cycle_mul": 1.5, "cycle_limit": 8, "k_decay": 1.5, "lr_min": 0.01},
    ],
)
def test_cosine_cycles_is_timms_cosine_scheduler(kwargs):
    ours = S.cosine_cycles(0.1, **kwargs)
    assert _worst(ours, lambda t: timm_cosine(t, 0.1, **kwargs)) <= 1e-12


def _cycle_starts(t_initial, cycle_mul, steps):
    """The steps next to a cycle start, exactly (``cycle_mul`` read as its decimal)."""
    m, starts, i = Fraction(repr(cycle_mul)), set(), 0
    while True:
        start = t_initial * i if m == 1 else t_initial * (m**i - 1) / (m - 1)
        if start >= steps:
            return starts
        starts |= {math.floor(start), math.ceil(start)}
        i += 1


def _steps_differing_away_from_cycle_starts(schedule, timm_reference, kwargs, steps=6000):
    """The steps, none next to a cycle start, where ``schedule(0.1, **kwargs)`` and timm's
    formula differ in any bit."""
    ours = schedule(0.1, **kwargs)(np.arange(steps))
    skip = _cycle_starts(kwargs["t_initial"], kwargs.get("cycle_mul", 1.0), steps)
    return [
        t for t in range(steps) if t not in skip and ours[t] != timm_reference(t, 0.1, **kwargs)
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t_initial": 1000, "k_decay": 2.0, "lr_min": 1e-4},
        {"t_initial": 228, "cycle_mul": 1.3, "cycle_decay": 0.71, "cycle_limit": 6},
        {"t_initial": 50, "cycle_mul": 1.2, "cycle_limit": 30, "k_decay": 0.5},
        {"t_initial": 800, "cycle_mul": 1.5, "cycle_limit": 8, "k_decay": 1.5, "lr_min": 0.01},
        {"t_initial": 37, "cycle_mul": 2.3, "cycle_decay": 0.5, "cycle_limit": 6},
    ],
)
def test_cosine_cycles_gives_timms_bits_away_from_cycle_starts(kwargs):
    """timm's bits at every step but those next to a cycle start (where timm's logarithm can
    put a step in the wrong cycle, see ``RestartCycles``): its angle ``pi * t_curr**k / t_i**k``
    and its cycle start ``(1 - m**i) / (1 - m) * t_initial`` rounded in timm's order (the
    other orders put values near a cycle's end, where ``1 + cos`` cancels, up to 1e-12
    apart), and the C library's ``cos`` that timm's ``math.cos`` calls (torch's SIMD ``cos``
    is an ulp off at about 0.15% of angles)."""
    assert _steps_differing_away_from_cycle_starts(S.cosine_cycles, timm_cosine, kwargs) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t_initial": 1000, "lb": -5.0, "ub": 5.0, "lr_min": 1e-3},
        {"t_initial": 600, "cycle_mul": 2.0, "cycle_decay": 0.8, "cycle_limit": 4},
        {"t_initial": 77, "cycle_mul": 1.3, "cycle_limit": 12, "lb": -2.08, "ub": 3.48},
    ],
)
def test_tanh_decay_gives_timms_bits_away_from_cycle_starts(kwargs):
    """timm's bits at every step but those next to a cycle start: the C library's ``tanh``
    that timm's ``math.tanh`` calls (numpy's own is an ulp off at about a quarter of the
    arguments on this project's CPU) and timm's cycle starts."""
    assert _steps_differing_away_from_cycle_starts(S.tanh_decay, timm_tanh, kwargs) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t_initial": 5000},
        {"t_initial": 1000, "lb": -5.0, "ub": 5.0, "lr_min": 1e-3},
        {"t_initial": 600, "cycle_mul": 2.0, "cycle_decay": 0.8, "cycle_limit": 4},
    ],
)
def test_tanh_decay_is_timms_tanh_scheduler(kwargs):
    ours = S.tanh_decay(0.1, **kwargs)
    assert _worst(ours, lambda t: timm_tanh(t, 0.1, **kwargs)) <= 1e-12


def _timm_ramp(warmup_lr_init, warmup_t, end):
    # schedulers.annealing's recipe for timm's linear warmup, up or down
    return S.polynomial_decay(warmup_lr_init, warmup_t, end_learning_rate=end, power=1.0)


@pytest.mark.parametrize("prefix", [True, False])
def test_timm_warmup_prefix_is_a_join_and_a_shift(prefix):
    W, w0, base = 300, 1e-4, 0.1
    cosine = S.cosine_cycles(base, 4000, lr_min=1e-3)
    ours = S.join([_timm_ramp(w0, W, base), cosine if prefix else cosine.shift(-W)], [W])
    reference = lambda t: timm_cosine(  # noqa: E731
        t, base, 4000, lr_min=1e-3, warmup_t=W, warmup_lr_init=w0, warmup_prefix=prefix
    )
    assert _worst(ours, reference, 6000) <= 1e-12
    tanh = S.tanh_decay(base, 4000)
    end = base if prefix else tanh(W)
    ours = S.join([_timm_ramp(w0, W, end), tanh if prefix else tanh.shift(-W)], [W])
    reference = lambda t: timm_tanh(  # noqa: E731
        t, base, 4000, warmup_t=W, warmup_lr_init=w0, warmup_prefix=prefix
    )
    assert _worst(ours, reference, 6000) <= 1e-12


@pytest.mark.parametrize("t_initial", [10, 30])
def test_timm_tanh_warmup_ramping_down_is_the_same_recipe(t_initial):
    # warmup_prefix=False with warmup_t past (10) or near (30) the end of the tanh's cycle: timm
    # ramps from warmup_lr_init down to s(warmup_t) = 0 or about 9e-4, below warmup_lr_init
    W, w0, base = 28, 0.05, 0.1
    tanh = S.tanh_decay(base, t_initial)
    assert tanh(W) < w0
    ours = S.join([_timm_ramp(w0, W, tanh(W)), tanh.shift(-W)], [W])
    reference = lambda t: timm_tanh(t, base, t_initial, warmup_t=W, warmup_lr_init=w0)  # noqa: E731
    assert ours(0) == w0
    assert ours(W - 1) < ours(1) < w0
    assert _worst(ours, reference, 200) <= 1e-12


@pytest.mark.parametrize("noise_type", ["normal", "uniform"])
def test_timm_noise_bounds_range_distribution_and_purity(noise_type):
    # timm/scheduler/scheduler.py, Scheduler._add_noise: lr + lr * noise at noise_range_t[0] <= t
    # < noise_range_t[1]; normal: randn resampled until |noise| < noise_pct (std 1, the default
    # noise_std; older timm releases ignored noise_std); uniform: 2 * (rand - 0.5) * noise_pct.
    # The numbers come from another generator, so the distribution is compared: the truncated
    # normal's and the uniform's moments.
    base = S.cosine_decay(0.1, 10**6)
    s = S.noisy(base, noise_pct=0.67, noise_type=noise_type, noise_range_t=[1000, 201_000])
    t = np.arange(0, 202_000)
    ratio = s(t) / base(t) - 1.0
    assert np.all(ratio[:1000] == 0)
    assert np.all(ratio[201_000:] == 0)
    noise = ratio[1000:201_000]
    assert np.abs(noise).max() < 0.67
    a = 0.67
    if noise_type == "uniform":
        expected_var = a**2 / 3
    else:  # variance of a standard normal truncated to (-a, a)
        phi = math.exp(-(a**2) / 2) / math.sqrt(2 * math.pi)
        expected_var = 1 - 2 * a * phi / math.erf(a / math.sqrt(2))
    assert abs(noise.mean()) < 4 * math.sqrt(expected_var / noise.size)
    assert noise.var() == pytest.approx(expected_var, rel=0.02)
    assert s(150_000) == s(150_000)  # a pure function of (seed, t): same on every resume
    assert S.noisy(base, noise_seed=1)(5000) != S.noisy(base, noise_seed=2)(5000)


# --- optax: optax/schedules/_schedule.py, cosine_decay_schedule -------------------------------


def optax_cosine(count, init_value, decay_steps, alpha=0.0, exponent=1.0):
    count = min(count, decay_steps)
    cosine_decay = 0.5 * (1 + math.cos(math.pi * count / decay_steps))
    decayed = (1 - alpha) * cosine_decay**exponent + alpha
    return init_value * decayed


@pytest.mark.parametrize(("alpha", "exponent"), [(0.0, 1.0), (0.1, 2.0), (0.0, 0.5), (0.3, 3.7)])
def test_cosine_decay_exponent_is_optax(alpha, exponent):
    ours = S.cosine_decay(0.1, 15_000, alpha=alpha, exponent=exponent)
    worst = _worst(ours, lambda t: optax_cosine(t, 0.1, 15_000, alpha, exponent))
    assert worst <= 1e-14


# --- pytorch_warmup: pytorch_warmup/radam.py (rho_inf_fn, rho_fn, get_offset, warmup_factor) ----


def radam_factor(step, beta2):
    rho_inf = 2.0 / (1 - beta2) - 1
    rho_fn = lambda t: rho_inf - 2 * t * beta2**t / (1 - beta2**t)  # noqa: E731
    offset = 1
    while rho_fn(offset) <= 4:
        offset += 1
    rho = rho_fn(step + offset)
    return math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))


@pytest.mark.parametrize("beta2", [0.999, 0.99, 0.9, 0.65])
def test_radam_warmup_is_pytorch_warmups(beta2):
    base = S.cosine_decay(0.1, STEPS)
    ours = S.radam_warmup(base, beta2)
    worst = _worst(ours, lambda t: base(t) * radam_factor(t, beta2))
    assert worst <= 1e-13
    assert ours.bounds() == (0.0, 0.1)
    assert S.radam_warmup(S.constant(1.0), beta2).bounds()[0] == radam_factor(0, beta2)


def test_radam_warmup_refuses_beta2_where_pytorch_warmup_does():
    with pytest.raises(ValueError, match=r"beta2.*0\.5"):
        S.radam_warmup(S.constant(1.0), 0.5)


# --- REX: Chen, Wolfe & Kyrillidis 2022, eq. (1) -------------------------------------------------


def test_rex_is_the_papers_profile():
    T = 10_000
    ours = S.rex(0.1, T, end_learning_rate=0.001)

    def reference(t):  # eta_t = eta_0 (1 - z) / (1/2 + (1 - z)/2), z = t / T, shifted to the end
        z = min(t, T) / T
        return 0.001 + (0.1 - 0.001) * (1 - z) / (0.5 + 0.5 * (1 - z))

    assert _worst(ours, reference, 2 * T) <= 1e-15
    assert ours(T) == 0.001
    assert all(ours(t) >= S.linear(0.1, 1.0, 0.01, T)(t) - 1e-15 for t in range(0, T, 97))


# --- torch: CosineAnnealingWarmRestarts.step(epoch) with fractional epochs ----------------------


@pytest.mark.parametrize("T_mult", [1, 2])
def test_fractional_steps_match_torch_stepping_by_epoch_fractions(T_mult):
    n = 7  # updates per epoch
    torch_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    our_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            torch_opt, T_0=3, T_mult=T_mult, eta_min=0.001
        )
    driver = S.attach(our_opt, lr=S.cosine_annealing_warm_restarts(0.1, 3, T_mult, 0.001))
    worst = 0.0
    for epoch in range(30):
        for i in range(n):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scheduler.step(epoch + i / n)
            driver.step(t=epoch + i / n)
            worst = max(worst, abs(torch_opt.param_groups[0]["lr"] - driver.get_last_lr()[0]))
    assert worst <= 1e-12
    assert driver.t == pytest.approx(29 + 6 / 7)
    state = driver.state_dict()
    resumed = S.attach(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                       lr=S.cosine_annealing_warm_restarts(0.1, 3, T_mult, 0.001))  # fmt: skip
    resumed.load_state_dict(state)
    assert resumed.get_last_lr() == driver.get_last_lr()


@pytest.mark.parametrize("name", ["cos", "sin", "tanh", "pow"])
@pytest.mark.parametrize("numpy_agrees", [None, False])
def test_cos_sin_and_pow_are_the_c_librarys_that_torch_and_timm_call(name, numpy_agrees):
    """The schedules' ``cos``, ``sin`` and ``pow`` give ``math``'s bits (the C library's, which
    torch's and timm's Python schedulers call, ``**`` included) at any input, on the numpy path
    where the first call finds numpy's agreeing (``None``: decided by the probe) and on the
    element-by-element path taken where it does not (AVX-512's SVML; forced here). An exponent
    of 0.5 for a whole array gives ``pow``'s bits, not numpy's square root (3 of these 20,000
    bases differ), and numpy's answers where ``math`` raises: nan for an infinite angle, inf
    for an overflow."""
    from schedulers.base import CLibrary

    function = CLibrary(name)
    function._numpy = numpy_agrees
    rng = np.random.default_rng(0)
    if name == "pow":
        bases = np.arange(1.0, 20_001.0)
        assert function(bases, 0.5).tolist() == [math.pow(b, 0.5) for b in bases.tolist()]
        assert function(bases.reshape(100, 200), 0.5).shape == (100, 200)
        assert function(np.float64(2921.0), 0.5) == math.pow(2921.0, 0.5) != math.sqrt(2921.0)
        exponents = rng.uniform(0, 3000, 20_000)
        assert function(0.999, exponents).tolist() == [0.999**e for e in exponents.tolist()]
        assert function(np.array([[2.0], [3.0]]), np.array([1.0, 0.5])).tolist() == [
            [2.0, 2.0**0.5], [3.0, 3.0**0.5]
        ]  # fmt: skip
        with np.errstate(over="ignore"):
            assert function(2.0, np.array([5000.0])).tolist() == [math.inf]
        return
    angles = rng.uniform(0, 5000 * math.pi, 20_000)
    assert function(angles).tolist() == [getattr(math, name)(a) for a in angles.tolist()]
    assert function(angles.reshape(100, 200)).shape == (100, 200)
    with np.errstate(invalid="ignore"):
        special = function(np.array([math.inf, math.nan, 0.0]))
    assert np.isnan(special[:2]).all()
    assert special[2] == getattr(math, name)(0.0)
