"""Audit 88 of the closed-form schedules: k-decay overflow in ``cosine_cycles``, the value
``one_cycle`` holds after its last step, ``bounds()`` as a true enclosure, and the refusal of
``tanh_decay``'s ``lb``.

Expected values come from closed forms evaluated independently here (exact rational powers,
interval products of the documented ranges worked out by hand, timm's formula written with
Python's ``math``) and from torch's ``OneCycleLR``; none is read from the code under test.
"""

import math
import random
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

import schedulers as S

# --- F1: cosine_cycles with a large k_decay ---------------------------------------------------


def _cosine_cycle_closed_form(t, base, t_initial, k, lr_min=0.0, cycle_mul=1, cycle_decay=1.0):
    """``lr_min + (peak_i - lr_min) (1 + cos(pi (t_curr / t_i)**k)) / 2`` for whole ``t``,
    an integer ``cycle_mul`` and an integer ``k``: the ratio's power is exact (a fraction),
    rounded once."""
    i, start, length = 0, 0, t_initial
    while t >= start + length:
        i, start, length = i + 1, start + length, length * cycle_mul
    ratio = float(Fraction(t - start, length) ** k)
    peak = base * cycle_decay**i
    return lr_min + (peak - lr_min) * (1.0 + math.cos(math.pi * ratio)) / 2.0


@pytest.mark.parametrize(
    "args",
    [
        # t_initial**k_decay above float64's range: 1e5**62 = 1e310, 1000**103 = 1e309
        {"base": 0.1, "t_initial": 100_000, "k": 62},
        {"base": 1.0, "t_initial": 1000, "k": 103},
        {"base": 0.5, "t_initial": 300, "k": 125, "lr_min": 0.01},
        # a later cycle overflows although the first does not: 320**130 = 1e325, 40**130 = 1e208
        {"base": 1.0, "t_initial": 40, "k": 130, "cycle_mul": 2, "cycle_decay": 0.5},
    ],
)
def test_cosine_cycles_with_a_large_k_decay_is_finite_and_its_closed_form(args):
    """Before: ``pi * t_curr**k / t_i**k`` overflowed: ``finite / inf = 0`` kept the peak (0.1
    instead of 0.0999994772 at t = 90000) and ``inf / inf`` gave NaN near a cycle's end."""
    kwargs = {
        "lr_min": args.get("lr_min", 0.0),
        "cycle_mul": float(args.get("cycle_mul", 1)),
        "cycle_decay": args.get("cycle_decay", 1.0),
        "cycle_limit": 4,
        "k_decay": float(args["k"]),
    }
    s = S.cosine_cycles(args["base"], args["t_initial"], **kwargs)
    length = args["t_initial"] * (1 + 2 + 4 + 8 if "cycle_mul" in args else 4)
    rng = np.random.default_rng(0)
    ts = np.unique(np.concatenate([np.arange(length - 2000, length), rng.integers(0, length, 500)]))
    ts = ts[ts >= 0]
    values = s(ts.astype(np.float64))
    assert np.isfinite(values).all()
    for t, value in zip(ts.tolist(), values.tolist()):
        expected = _cosine_cycle_closed_form(
            t,
            args["base"],
            args["t_initial"],
            args["k"],
            kwargs["lr_min"],
            args.get("cycle_mul", 1),
            kwargs["cycle_decay"],
        )
        # the angle's relative error is about k ulps; near a cycle's end 1 + cos cancels
        assert value == pytest.approx(expected, rel=1e-9, abs=1e-15 * args["base"]), t


def test_cosine_cycles_large_k_decay_example_of_the_audit():
    s = S.cosine_cycles(0.1, t_initial=100_000, k_decay=62.0)
    assert s(90_000) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.9**62)), rel=1e-12)
    assert s(99_999) == pytest.approx(
        0.05 * (1 + math.cos(math.pi * float(Fraction(99_999, 100_000) ** 62))), rel=1e-9
    )
    assert s(99_999) > 0


def _timm_cosine(t, base, t_initial, lr_min, cycle_mul, cycle_decay, k):
    """timm's ``CosineLRScheduler._get_lr`` (timm/scheduler/cosine_lr.py) for one group and an
    integer ``cycle_mul`` (cycle starts exact), in Python floats as timm computes it."""
    if cycle_mul == 1:
        i = t // t_initial
        t_i, t_curr = t_initial, t - t_initial * i
    else:
        i = 0
        while t_initial * (cycle_mul ** (i + 1) - 1) // (cycle_mul - 1) <= t:
            i += 1
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    lr_max = base * cycle_decay**i
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr**k / t_i**k))


def test_cosine_cycles_keeps_timms_bits_wherever_timms_formula_is_finite():
    """Randomized sweep, ordinary exponents and exponents at the edge of float64's range: at
    every step where timm's expression neither overflows nor raises, the value is timm's, bit
    for bit (the overflow fallback does not touch those steps)."""
    rng = random.Random(88)
    compared = 0
    for case in range(60):
        t_initial = rng.randint(1, 400)
        cycle_mul = rng.choice([1, 1, 2, 3])
        if case % 3 == 2 and t_initial > 1:  # k around log(1.8e308) / log(t_i)
            k = 709.78 / math.log(t_initial * cycle_mul**2) + rng.uniform(-2.0, 0.5)
        else:
            k = rng.choice([1.0, rng.uniform(0.2, 4.0), rng.uniform(4.0, 40.0)])
        base = rng.uniform(1e-3, 3.0)
        lr_min = base * rng.random() * 0.3
        decay = rng.uniform(0.2, 1.0)
        s = S.cosine_cycles(base, t_initial, lr_min, float(cycle_mul), decay, 3, k)
        steps = t_initial * (1 + cycle_mul + cycle_mul**2)
        ours = s(np.arange(steps, dtype=np.float64))
        for t in range(steps):
            try:
                expected = _timm_cosine(t, base, t_initial, lr_min, cycle_mul, decay, k)
            except (OverflowError, ValueError):  # timm raises here
                continue
            compared += 1
            assert ours[t] == expected, (t, t_initial, cycle_mul, k)
    assert compared > 10_000


# --- F2: what one_cycle holds after its last step ---------------------------------------------


def _torch_one_cycle(total_steps, **kwargs):
    """torch's OneCycleLR learning rates for t = 0 .. total_steps - 1 (stepped)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, total_steps=total_steps, cycle_momentum=False, **kwargs
    )
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(total_steps):
            values.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    return values


@pytest.mark.parametrize("final_div_factor", [1e4, 1e8, 1e12])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal_strategy", ["linear", "cos"])
def test_one_cycle_holds_torchs_last_value_inside_its_bounds(
    final_div_factor, three_phase, anneal_strategy
):
    """Every step up to ``total_steps - 1`` is torch's value, bit for bit; the value of that
    step is held from there on, and ``bounds()`` encloses it. Before: with ``linear`` the held
    value ``(c - start) * 1 + start`` lay below ``bounds()[0] = c`` (``3.9968e-14`` against
    ``4e-14`` at ``final_div_factor=1e12``)."""
    total = 100
    kwargs = {
        "max_lr": 1.0,
        "pct_start": 0.3,
        "anneal_strategy": anneal_strategy,
        "div_factor": 25.0,
        "final_div_factor": final_div_factor,
        "three_phase": three_phase,
    }
    reference = _torch_one_cycle(total, **kwargs)
    s = S.one_cycle(total_steps=total, **kwargs)
    assert s(np.arange(total, dtype=np.float64)).tolist() == reference
    last = reference[-1]
    later = [total - 0.5, total, total + 0.5, 10 * total, 2**40]
    assert [s(t) for t in later] == [last] * len(later)
    low, high = s.bounds()
    assert low <= min(reference)
    assert max(reference) <= high
    c = 1.0 / 25.0 / final_div_factor
    assert low == min(c, last)  # the knot c and the value reached, nothing lower
    if anneal_strategy == "cos":
        assert last == c


# --- F3: bounds() encloses every value --------------------------------------------------------


def _wave(t):
    return np.cos(np.asarray(t, dtype=np.float64) / 3.0)  # in [-1, 1]


def _below_zero(t):
    return -2.5 - 0.5 * np.cos(np.asarray(t, dtype=np.float64) / 3.0)  # in [-3, -2]


STEPS = np.arange(0.0, 400.0)


def _within(s, steps=STEPS):
    low, high = s.bounds()
    values = s(steps)
    return bool(low <= values.min() and values.max() <= high)


def test_warmups_noisy_and_plateau_bounds_with_a_schedule_that_can_be_negative():
    """Ranges worked out as interval products: ramp ``[f0, 1]`` times ``[-1, 1]`` is
    ``[-1, 1]``; times ``[-3, -2]`` is ``[-3, -2 f0]``. Before: ``(f0 * low, high)``, e.g.
    ``(-0.0, 1.0)`` for a linear warmup whose values reach -1."""
    wave = S.from_function(_wave, bounds=[-1.0, 1.0])
    below = S.from_function(_below_zero, bounds=[-3.0, -2.0])
    expected = {
        S.linear_warmup(wave, 20, clock="from_start"): (-1.0, 1.0),
        S.constant_warmup(wave, 20, 0.5, clock="from_start"): (-1.0, 1.0),
        S.exponential_warmup(wave, 20, 0.25, clock="from_start"): (-1.0, 1.0),
        S.linear_warmup(below, 20, start_factor=0.25, clock="from_start"): (-3.0, -0.5),
        S.constant_warmup(below, 20, 0.5): (-3.0, -1.0),
        S.exponential_warmup(below, 30, 0.125, clock="from_start"): (-3.0, -0.25),
        S.noisy(wave, 0.5, noise_type="uniform"): (-1.5, 1.5),
        S.noisy(below, 0.5, noise_type="uniform"): (-4.5, -1.0),
        S.noisy(below, 0.25, noise_std=0.5): (-3.75, -1.5),
        S.reduce_on_plateau(below, min_lr=0.0): (-3.0, 0.0),
    }
    for s, bounds in expected.items():
        assert s.bounds() == bounds, s
        assert _within(s), s
    radam = S.radam_warmup(below, 0.99)
    assert radam.bounds() == (-3.0, -2.0 * _radam_factor_at_0(0.99))
    assert _within(radam)
    untuned = S.untuned_warmup(below, 0.99, "exponential")
    first_ramp = 1.0 - float(np.exp(np.array([-(1.0 - 0.99)]))[0])  # 1 - exp(-(1 - beta2))
    assert untuned.bounds() == (-3.0, -2.0 * first_ramp)
    assert _within(untuned)


def _radam_factor_at_0(beta2):
    """pytorch_warmup's ``warmup_factor`` at its first dampened step (pytorch_warmup/radam.py)."""
    rho_inf = 2.0 / (1 - beta2) - 1

    def rho(t):
        return rho_inf - 2 * t * beta2**t / (1 - beta2**t)

    offset = 1
    while rho(offset) <= 4:
        offset += 1
    r = rho(offset)
    return math.sqrt((r - 4) * (r - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * r))


def test_reduce_on_plateau_bounds_hold_with_a_reduced_multiplier_on_a_negative_schedule():
    """A multiplier below 1 (restored from a state) moves a negative value towards 0, above the
    schedule's highest value. Before: ``bounds()`` kept that highest value, -2."""
    below = S.from_function(_below_zero, bounds=[-3.0, -2.0])
    state = {"multiplier": 0.25, "reductions": 2, "num_bad_epochs": 0, "cooldown_counter": 0}
    s = S.reduce_on_plateau(below, factor=0.5, state=state)
    values = s(STEPS)
    assert values.max() > -1.0  # -0.25 * (2 .. 3)
    assert s.bounds() == (-3.0, 0.0)
    assert _within(s)


def test_warmup_bounds_with_unknown_bounds_and_a_zero_start_are_not_nan():
    """Before: ``0 * -inf`` made the lower bound NaN."""
    unknown = S.from_function(_wave)
    for s in (
        S.linear_warmup(unknown, 20),
        S.constant_warmup(unknown, 20, 0.0),
        S.noisy(unknown, 0.5),
    ):
        assert s.bounds() == (-math.inf, math.inf)


_ETA = (0.98576815708225, 48, 0.17470343061292043)  # base_lr, T_max, eta_min
_CYCLIC = {"mode": "triangular2", "window": "hann"}
_ONE_CYCLE = (0.12372965735469481, "linear", 33.995741261596756, 8478.566440553977, True)


@pytest.mark.parametrize(
    ("schedule", "step"),
    [
        (S.cosine_annealing(*_ETA), 0),
        (S.cosine_annealing_warm_restarts(_ETA[0], _ETA[1], 1, _ETA[2]), 96),
        (S.cyclic(0.3053175407886791, 1.3603767484171347, 47, **_CYCLIC), 47),
        (S.one_cycle(0.1, 32, *_ONE_CYCLE), 31),
        (S.untuned_warmup(S.constant(1.0), 0.9285452852903443, "exponential"), 0),
        (S.polynomial_decay(0.13436424411240122, 10, 2.542301210811698), 0),
    ],
)
def test_base_schedules_one_ulp_past_their_documented_extremes_are_inside_bounds(schedule, step):
    """The audit's cases: the value at ``step`` is an ulp past the documented extreme (checked
    here against the plain arguments) and now inside ``bounds()``."""
    value = schedule(step)
    low, high = schedule.bounds()
    assert low <= value <= high


def test_audit_cases_really_are_past_the_documented_extremes():
    """The values of the cases above, from their formulas written out in Python floats."""
    base, eta_min = 0.98576815708225, 0.17470343061292043
    assert eta_min + (base - eta_min) * 2.0 / 2.0 > base
    low, top = 0.3053175407886791, 1.3603767484171347
    assert low + (top - low) > top
    assert 1.0 - math.exp(-(1.0 - 0.9285452852903443)) < -math.expm1(-(1.0 - 0.9285452852903443))
    lr, end = 0.13436424411240122, 2.542301210811698
    assert (lr - end) * 1.0 + end < lr  # polynomial_decay at t = 0, below its range [lr, end]
    a = 0.1 / 33.995741261596756
    c = a / 8478.566440553977
    assert (c - a) * 1.0 + a < c  # one_cycle linear, three phases: the last phase is a -> c


def _random_base(rng, name):
    """A random instance of the base schedule ``name`` (arguments drawn with full mantissas, so
    that differences like ``base_lr - eta_min`` round)."""
    lr = rng.uniform(1e-4, 3.0)
    n = rng.randint(1, 120)
    other = lr * rng.uniform(0.0, 2.0)
    frac = rng.random
    builders = {
        "constant": lambda: S.constant(lr),
        "piecewise_constant": lambda: S.piecewise_constant(
            sorted(rng.sample(range(200), 3)), [rng.uniform(0, 3) for _ in range(4)]
        ),
        "step_lr": lambda: S.step_lr(lr, n, frac()),
        "multistep": lambda: S.multistep(lr, [rng.randint(0, 200) for _ in range(3)], frac()),
        "factor": lambda: S.factor(lr, frac(), rng.choice([0.0, lr * frac()])),
        "exponential_decay": lambda: S.exponential_decay(
            lr, n, rng.uniform(0.01, 1.0), rng.random() < 0.5
        ),
        "natural_exp_decay": lambda: S.natural_exp_decay(
            lr, n, rng.uniform(0, 3), rng.random() < 0.5
        ),
        "inverse_time_decay": lambda: S.inverse_time_decay(
            lr, n, rng.uniform(0, 3), rng.random() < 0.5
        ),
        "polynomial_decay": lambda: S.polynomial_decay(
            lr, n, other, rng.uniform(0.2, 3), rng.random() < 0.5
        ),
        "power_decay": lambda: S.power_decay(lr, rng.uniform(0.1, 2)),
        "linear": lambda: S.linear(lr, frac(), frac(), n),
        "rex": lambda: S.rex(lr, n, lr * frac()),
        "cosine_annealing": lambda: S.cosine_annealing(lr, n, other),
        "cosine_annealing_warm_restarts": lambda: S.cosine_annealing_warm_restarts(
            lr, n, rng.randint(1, 3), other
        ),
        "cosine_decay": lambda: S.cosine_decay(lr, n, frac(), rng.uniform(0.2, 3)),
        "cosine_decay_restarts": lambda: S.cosine_decay_restarts(
            lr, n, rng.uniform(1, 3), rng.uniform(0.1, 1), frac()
        ),
        "linear_cosine_decay": lambda: S.linear_cosine_decay(
            lr, n, rng.uniform(0, 3), frac(), frac()
        ),
        "noisy_linear_cosine_decay": lambda: S.noisy_linear_cosine_decay(
            lr, n, rng.uniform(0, 2), frac(), rng.uniform(0, 3), frac(), frac(), rng.randint(0, 99)
        ),
        "cosine_cycles": lambda: S.cosine_cycles(
            lr,
            n,
            lr * frac(),
            rng.uniform(1, 2),
            rng.uniform(0.1, 1),
            rng.randint(0, 5),
            rng.uniform(0.2, 4),
        ),
        "tanh_decay": lambda: S.tanh_decay(
            lr,
            n,
            rng.uniform(-30, 0),
            rng.uniform(0.5, 30),
            lr * frac(),
            rng.uniform(1, 2),
            rng.uniform(0.1, 1),
            rng.randint(0, 5),
        ),
        "cyclic": lambda: S.cyclic(
            lr,
            lr * rng.uniform(1, 5),
            n,
            rng.choice([None, rng.randint(1, 60)]),
            rng.choice(["triangular", "triangular2", "exp_range"]),
            rng.uniform(0.9, 1),
            rng.choice(["triangular", "welch", "hann"]),
        ),
        "cyclic_momentum": lambda: S.cyclic_momentum(
            frac() * 0.9,
            rng.uniform(0.9, 1.0),
            n,
            rng.choice([None, rng.randint(1, 60)]),
            rng.choice(["triangular", "triangular2", "exp_range"]),
            rng.uniform(0.9, 1),
            rng.choice(["triangular", "welch", "hann"]),
        ),
        "one_cycle": lambda: S.one_cycle(
            lr,
            n + 20,
            rng.uniform(0.1, 0.45),
            rng.choice(["cos", "linear"]),
            rng.uniform(1, 50),
            10 ** rng.uniform(0, 12),
            rng.random() < 0.5,
        ),
        "one_cycle_momentum": lambda: S.one_cycle_momentum(
            n + 20,
            rng.uniform(0.1, 0.45),
            rng.choice(["cos", "linear"]),
            frac() * 0.9,
            rng.uniform(0.9, 1.0),
            rng.random() < 0.5,
        ),
        "wsd": lambda: S.wsd(
            lr,
            rng.randint(0, 40),
            rng.randint(0, 60),
            n,
            cooldown=rng.choice(["linear", "1-sqrt", "cosine"]),
            final_lr=lr * frac(),
        ),
        "inverse_sqrt": lambda: S.inverse_sqrt(lr, n),
        "function": lambda: S.from_function(_wave, bounds=[-1.0, 1.0]),
    }
    return builders[name]()


def _random_schedule(rng, name, base_names):
    """A random instance of ``name``: a base schedule, or a composite around random ones
    (sometimes around a function whose values can be negative, or of unknown bounds)."""

    def inner():
        return _random_base(rng, rng.choice(base_names))

    n = rng.randint(1, 80)
    clock = rng.choice(["after_warmup", "from_start"])
    composites = {
        "constant_warmup": lambda: S.constant_warmup(inner(), n, rng.random(), clock),
        "linear_warmup": lambda: S.linear_warmup(inner(), n, rng.random(), clock),
        "exponential_warmup": lambda: S.exponential_warmup(inner(), n, rng.uniform(0.01, 1), clock),
        "untuned_warmup": lambda: S.untuned_warmup(
            inner(), rng.uniform(0.5, 0.9999), rng.choice(["linear", "exponential"])
        ),
        "radam_warmup": lambda: S.radam_warmup(inner(), rng.uniform(0.61, 0.9999)),
        "noisy": lambda: S.noisy(
            inner(),
            rng.uniform(0, 0.99),
            rng.uniform(0.1, 3),
            rng.choice(["normal", "uniform"]),
            rng.choice([0, 5, [3, 40]]),
            rng.randint(0, 99),
        ),
        "reduce_on_plateau": lambda: S.reduce_on_plateau(
            inner(), rng.choice(["min", "max"]), rng.random() * 0.9, 0, min_lr=rng.uniform(0, 0.1)
        ),
        "join": lambda: S.join([inner(), inner()], [n]),
        "sum": lambda: S.sum_of([inner(), inner()]),
        "product": lambda: S.product([inner(), inner()]),
        "scale": lambda: S.scale(inner(), rng.uniform(0, 3)),
        "clamp": lambda: S.clamp(inner(), rng.uniform(0, 0.1), rng.choice([None, 2.0])),
        "shift": lambda: S.shift(inner(), rng.randint(-50, 50)),
    }
    if name in composites:
        s = composites[name]()
        if name == "reduce_on_plateau":  # reduce it a few times
            for t in range(rng.randint(0, 4)):
                s.observe(1.0, t=t)
        return s
    return _random_base(rng, name)


_INTS = np.arange(0.0, 600.0)
DENSE = np.unique(
    np.concatenate(
        [_INTS, _INTS + 1e-9, np.maximum(_INTS - 1e-9, 0.0), _INTS + 0.5, [1e4, 1e6, 1e9, 2.0**52]]
    )
)


@pytest.mark.parametrize("name", S.registered_names())
def test_every_schedule_stays_within_its_bounds_over_dense_steps(name):
    """Random arguments (60 instances per registered name), every whole step up to 600, its
    neighbours 1e-9 away, the half steps and far steps: every value lies in ``bounds()``, with
    no slack. Before: cosine_annealing, cyclic, one_cycle, polynomial_decay, rex, the warmups,
    noisy, ... landed an ulp (or, around a negative schedule, far) outside."""
    rng = random.Random(f"audit88-{name}")
    base_names = [n for n in S.registered_names() if _is_base(n)]
    for _ in range(60):
        s = _random_schedule(rng, name, base_names)
        low, high = s.bounds()
        assert not math.isnan(low)
        assert not math.isnan(high)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = s(DENSE)
        inside = (values >= low) & (values <= high)
        if not inside.all():
            k = int(np.flatnonzero(~inside)[0])
            pytest.fail(f"{s!r}: s({DENSE[k]!r}) = {values[k]!r} outside {(low, high)}")


def _is_base(name):
    try:
        _random_base(random.Random(0), name)
    except KeyError:
        return False
    return True


def test_every_registered_name_has_a_random_builder():
    rng = random.Random(0)
    bases = [n for n in S.registered_names() if _is_base(n)]
    for name in S.registered_names():
        assert _random_schedule(rng, name, bases).name == name


# --- F4: tanh_decay's lb ----------------------------------------------------------------------


@pytest.mark.parametrize("lb", [1500.0, 1000.0])
def test_tanh_decay_refuses_lb_above_its_range_naming_lb(lb):
    """Before: "ub must be a finite number in (1500, 1000], got ub=3.0" (an empty interval,
    the wrong parameter)."""
    expected = rf"^lb must be a finite number in \[-1000, 1000\), got lb={lb!r}$"
    with pytest.raises(ValueError, match=expected):
        S.tanh_decay(0.1, 100, lb=lb, ub=3.0)


def test_tanh_decay_takes_lb_just_below_its_upper_end():
    s = S.tanh_decay(0.1, 100, lb=999.0, ub=1000.0)
    assert s(0) == 0.1 * 0.5 * (1.0 - math.tanh(999.0))
    with pytest.raises(ValueError, match=r"^ub must be a finite number in \(999, 1000\], got ub=3"):
        S.tanh_decay(0.1, 100, lb=999.0, ub=3.0)
