"""Composition (join, product, scale, clamp) and warmups against formulas written here."""

import copy
import io
import math
import pickle
import warnings

import numpy as np
import pytest
import torch

import schedulers as S


def test_join_gives_each_piece_its_own_clock_like_optax():
    a, b, c = S.constant(0.1), S.cosine_decay(1.0, 10), S.linear(1.0, 1.0, 0.0, 5)
    s = S.join([a, b, c], [3, 13])
    assert [s(t) for t in range(3)] == [0.1] * 3
    assert [s(t) for t in range(3, 13)] == [b(t - 3) for t in range(3, 13)]
    assert [s(t) for t in range(13, 30)] == [c(t - 13) for t in range(13, 30)]
    np.testing.assert_allclose(s(np.arange(30)), [s(t) for t in range(30)], rtol=1e-14)


def test_join_never_evaluates_a_piece_outside_its_segment():
    # power_decay at negative t would be complex/NaN; the array path must not warn or fail
    s = S.join([S.constant(1.0), S.power_decay(1.0, 0.5)], [10])
    with np.errstate(all="raise"):
        values = s(np.arange(20))
    assert values[10] == 1.0
    assert values[13] == pytest.approx(0.5)


def test_arithmetic_and_clamp():
    a, b = S.cosine_decay(1.0, 10), S.cyclic(0.5, 1.0, 2)
    for t in range(12):
        assert (a * b)(t) == pytest.approx(a(t) * b(t))
        assert (3 * a)(t) == pytest.approx(3 * a(t)) == (a * 3)(t)
        assert (a / 4)(t) == pytest.approx(a(t) / 4)
        assert a.clamp(0.2, 0.9)(t) == min(max(a(t), 0.2), 0.9)
    assert S.from_dict((a * b).to_dict()) == S.product([a, b])
    assert S.clamp(a, 0.1).to_dict() == {"name": "clamp", "schedule": a.to_dict(), "floor": 0.1}


@pytest.mark.parametrize("clock", ["after_warmup", "from_start"])
def test_linear_warmup_clock_conventions(clock):
    base = S.cosine_decay(1.0, 100)
    s = S.linear_warmup(base, warmup_steps=10, start_factor=0.1, clock=clock)
    for t in range(10):
        ramp = 0.1 + 0.9 * t / 10
        inner = base(0) if clock == "after_warmup" else base(t)
        assert s(t) == pytest.approx(ramp * inner)
    for t in [10, 11, 50, 200]:
        assert s(t) == pytest.approx(base(t - 10) if clock == "after_warmup" else base(t))


def test_constant_and_exponential_warmups():
    base = S.constant(0.1)
    s = S.constant_warmup(base, 5, factor=0.1)
    assert [s(t) for t in range(7)] == pytest.approx([0.01] * 5 + [0.1] * 2)
    e = S.exponential_warmup(base, 4, start_factor=0.01)
    assert [e(t) for t in range(6)] == pytest.approx(
        [0.001, 0.1 * 0.01**0.75, 0.01, 0.1 * 0.01**0.25, 0.1, 0.1]
    )


def test_untuned_warmup_of_ma_and_yarats():
    base = S.constant(1.0)
    linear = S.untuned_warmup(base, beta2=0.999, form="linear")
    # omega_t = min(1, (1 - beta2) / 2 * t) with the paper's t = ours + 1: 2000 warmup steps
    assert linear(0) == pytest.approx(0.0005)
    assert linear(999) == pytest.approx(0.5)
    assert linear(1998) < 1.0
    assert linear(1999) == 1.0
    assert linear(10**6) == 1.0
    expo = S.untuned_warmup(base, beta2=0.99, form="exponential")
    assert expo(0) == pytest.approx(1 - math.exp(-0.01))
    assert expo(99) == pytest.approx(1 - math.exp(-1))


@pytest.mark.parametrize(
    ("beta2", "linear_gap", "exponential_gap"), [(0.999, 5e-4, 3.7e-4), (0.99, 5e-3, 3.7e-3)]
)
def test_untuned_warmup_against_pytorch_warmups_integer_periods(beta2, linear_gap, exponential_gap):
    """pytorch_warmup 0.2, as its source writes it: ``UntunedLinearWarmup``'s period is
    ``int(2 / (1 - beta2))``, ``UntunedExponentialWarmup``'s ``int(1 / (1 - beta2))`` (1999
    and 999 for 0.999 in float64), ramps ``min(1, (t + 1) / P)`` and ``1 - exp(-(t + 1) / P)``.
    Ours keeps the paper's rates; the gaps are the docstring's (before, it gave the exponential
    period as 1999, a ramp 0.25 away from the package's)."""
    t = np.arange(5000, dtype=np.float64)
    base = S.constant(1.0)
    linear = S.untuned_warmup(base, beta2=beta2, form="linear")(t)
    exponential = S.untuned_warmup(base, beta2=beta2, form="exponential")(t)
    package_linear = np.minimum(1.0, (t + 1) / int(2.0 / (1.0 - beta2)))
    package_exponential = 1.0 - np.exp(-(t + 1) / int(1.0 / (1.0 - beta2)))
    assert linear_gap / 2 < np.abs(linear - package_linear).max() <= linear_gap
    assert exponential_gap / 2 < np.abs(exponential - package_exponential).max() <= exponential_gap


def test_sum_and_addition():
    a, b = S.cosine_decay(1.0, 10), S.cyclic(0.5, 1.0, 2)
    s = a + b
    assert s == S.sum_of([a, b])
    for t in range(15):
        assert s(t) == a(t) + b(t)
    assert (a + 0.25)(3) == a(3) + 0.25
    assert sum([a, b]) == s  # the builtin starts from 0
    assert s.bounds() == (0.5, 2.0)
    assert S.from_dict(s.to_dict()) == s


def test_shift_starts_a_schedule_later_or_earlier():
    base = S.linear(1.0, 1.0, 0.0, total_iters=10)
    later, earlier = base.shift(4), base.shift(-4)
    for t in range(20):
        assert later(t) == base(max(t - 4, 0))
        assert earlier(t) == base(t + 4)
    assert S.from_dict(later.to_dict()) == later
    # in a join, shift(-W) puts the piece back on the global clock (timm's warmup_prefix=False)
    joined = S.join([S.constant(0.01), base.shift(-3)], [3])
    assert [joined(t) for t in range(3, 12)] == [base(t) for t in range(3, 12)]


def module_level_schedule(t):
    """A user's schedule: 0.1 / (1 + t / 100) (vectorised)."""
    return 0.1 / (1.0 + t / 100.0)


def test_from_function_by_import_path_and_lambdas_refused_when_serialised():
    s = S.from_function(module_level_schedule, bounds=[0.0, 0.1])
    assert s(100) == 0.05
    assert s(np.arange(3)).tolist() == [module_level_schedule(t) for t in (0.0, 1.0, 2.0)]
    spec = s.to_dict()
    assert spec["function"] == f"{__name__}:module_level_schedule"
    assert S.from_dict(spec) == s
    scalar = S.from_function(math.sqrt, vectorized=False)
    assert S.from_dict(scalar.to_dict())(np.array([4.0, 9.0])).tolist() == [2.0, 3.0]
    lam = S.from_function(lambda t: 0.1 + 0.0 * t)
    assert lam(3) == 0.1  # works in memory
    assert "lambda" in repr(lam)
    with pytest.raises(ValueError, match=r"no import path.*lambda"):
        lam.to_dict()
    with pytest.raises(ValueError, match="no import path"):
        S.linear_warmup(lam, 5).to_dict()
    with pytest.raises(ValueError, match="cannot import"):
        S.from_function("no_such_module_xyz:f")
    with pytest.raises(TypeError, match="callable"):
        S.from_function(3.0)


def test_product_bounds_enclose_factors_that_can_be_negative():
    """Before: lows times lows and highs times highs: cos * sin in [-1, 1] each gave (1, 1), so
    attach took it and refused it at step 2."""
    f = S.from_function("numpy:cos", bounds=[-1.0, 1.0])
    g = S.from_function("numpy:sin", bounds=[-1.0, 1.0])
    assert S.product([f, g]).bounds() == (-1.0, 1.0)
    assert S.product([f, S.scale(g, 0.1)]).bounds() == (-0.1, 0.1)
    negative = S.from_function("numpy:cos", bounds=[-3.0, -2.0])  # (bounds as declared)
    assert S.product([S.constant(2.0), negative]).bounds() == (-6.0, -4.0)
    assert S.product([S.cosine_decay(1.0, 10), S.constant(0.5)]).bounds() == (0.0, 0.5)
    t = np.arange(200.0)
    low, high = S.product([f, g]).bounds()
    assert low <= S.product([f, g])(t).min()
    assert S.product([f, g])(t).max() <= high


def _join_with_plateau():
    """``join([constant, reduce_on_plateau])``, evaluated once (as plotting or attach does)."""
    plateau = S.reduce_on_plateau(S.constant(1.0), patience=0, factor=0.5)
    joined = S.join([S.constant(0.1), plateau], [2])
    joined(np.arange(10))
    return joined


def test_an_evaluated_join_pickles_and_round_trips_its_values():
    """Before: the first evaluation cached lambdas over the pieces on the join, so pickle and
    torch.save raised "Can't pickle local object" afterwards."""
    joined = _join_with_plateau()
    joined.schedules[1].observe(1.0, 0)
    joined.schedules[1].observe(1.0, 1)  # reduced: the state travels too
    steps = np.arange(12)
    restored = pickle.loads(pickle.dumps(joined))
    assert restored == joined
    assert restored(steps).tolist() == joined(steps).tolist()
    buffer = io.BytesIO()
    torch.save(joined, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded(steps).tolist() == joined(steps).tolist()


def test_a_deep_copy_of_an_evaluated_join_follows_its_own_plateau():
    """Before: deepcopy kept the cached lambdas, which still evaluated the original's pieces,
    so a copy whose plateau had halved still gave the original's (unreduced) values."""
    original = _join_with_plateau()
    twin = copy.deepcopy(original)
    plateau = twin.schedules[1]
    assert plateau is not original.schedules[1]
    plateau.observe(1.0, 0)
    plateau.observe(1.0, 1)
    reference = S.join([S.constant(0.1), S.constant(0.5)], [2])  # what the copy now is
    steps = np.arange(12)
    assert twin(steps).tolist() == reference(steps).tolist()
    assert [twin(t) for t in range(12)] == [reference(t) for t in range(12)]
    unreduced = S.join([S.constant(0.1), S.constant(1.0)], [2])
    assert original(steps).tolist() == unreduced(steps).tolist()  # (its plateau saw nothing)


def test_a_driver_on_a_deep_copied_join_writes_torchs_plateau_rates():
    """The driver feeds the copy's plateau; the rates must be torch's ReduceLROnPlateau's on
    the same metrics (before: 1.0 at every step, the original's unreduced piece)."""
    copied = copy.deepcopy(_join_with_plateau())
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    driver = S.attach(optimizer, lr=copied)
    driver.step(t=2)  # the plateau's piece starts
    reference_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(reference_opt, patience=0, factor=0.5)
    for metric in [1.0, 1.0, 1.0, 0.5, 0.5]:
        driver.step(metric)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference.step(metric)
        assert optimizer.param_groups[0]["lr"] == reference_opt.param_groups[0]["lr"]
    assert optimizer.param_groups[0]["lr"] < 1.0  # (the metrics did reduce it)
