"""Closed forms written independently from the original documentation, at hand-picked steps.

TensorFlow formulas follow the ``tf.compat.v1.train.*`` docstrings; the others their papers or
the d2l / MXNet documentation. Steps: 0, around every boundary and far past the end.
"""

import itertools
import math

import numpy as np
import pytest

import schedulers as S

FAR = 10**7


def _steps(*boundaries: int) -> list[int]:
    out = {0, 1, FAR}
    for b in boundaries:
        out.update({max(b - 1, 0), b, b + 1})
    return sorted(out)


def _check(schedule, reference, steps, rel=1e-12):
    for t in steps:
        assert schedule(t) == pytest.approx(reference(t), rel=rel, abs=1e-15), f"t={t}"


def test_piecewise_constant_uses_tf_inclusive_boundaries():
    s = S.piecewise_constant([100, 110], [1.0, 0.5, 0.1])
    expected = {0: 1.0, 99: 1.0, 100: 1.0, 101: 0.5, 109: 0.5, 110: 0.5, 111: 0.1, FAR: 0.1}
    assert {t: s(t) for t in expected} == expected


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    lr, steps, rate = 0.1, 100, 0.96

    def ref(t):
        p = math.floor(t / steps) if staircase else t / steps
        return lr * math.pow(rate, p)

    _check(S.exponential_decay(lr, steps, rate, staircase), ref, _steps(100, 200, 1000))
    if staircase:
        s = S.exponential_decay(lr, steps, rate, staircase=True)
        assert s(99) == lr
        assert s(100) == pytest.approx(lr * rate)


@pytest.mark.parametrize("staircase", [False, True])
def test_natural_exp_decay(staircase):
    lr, steps, rate = 0.1, 50, 0.5

    def ref(t):
        p = math.floor(t / steps) if staircase else t / steps
        return lr * math.exp(-rate * p)

    _check(S.natural_exp_decay(lr, steps, rate, staircase), ref, _steps(50, 100, 500))


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time_decay(staircase):
    lr, steps, rate = 0.1, 10, 0.5

    def ref(t):
        p = math.floor(t / steps) if staircase else t / steps
        return lr / (1 + rate * p)

    _check(S.inverse_time_decay(lr, steps, rate, staircase), ref, _steps(10, 20))


@pytest.mark.parametrize("cycle", [False, True])
@pytest.mark.parametrize("power", [1.0, 0.5, 2.0])
def test_polynomial_decay(cycle, power):
    lr, steps, end = 0.1, 100, 0.001

    def ref(t):
        if cycle:
            decay_steps = steps * (1 if t == 0 else math.ceil(t / steps))
            step = t
        else:
            decay_steps, step = steps, min(t, steps)
        return (lr - end) * (1 - step / decay_steps) ** power + end

    _check(S.polynomial_decay(lr, steps, end, power, cycle), ref, _steps(100, 200, 300))
    s = S.polynomial_decay(lr, steps, end, power, cycle)
    assert s(100) == pytest.approx(end)
    if cycle:  # the value jumps back up after each multiple of decay_steps
        assert s(101) > s(100)
        assert s(200) == pytest.approx(end)
    else:
        assert s(FAR) == pytest.approx(end)


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_cosine_decay(alpha):
    lr, steps = 0.1, 1000

    def ref(t):
        t = min(t, steps)
        return lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * t / steps)) + alpha)

    _check(S.cosine_decay(lr, steps, alpha), ref, _steps(500, 1000))
    assert S.cosine_decay(lr, steps, alpha)(FAR) == pytest.approx(alpha * lr, abs=1e-15)


@pytest.mark.parametrize(("t_mul", "m_mul"), [(2.0, 1.0), (2.0, 0.5), (1.0, 0.9), (1.5, 0.8)])
def test_cosine_decay_restarts(t_mul, m_mul):
    lr, first, alpha = 0.1, 100, 0.05

    def ref(t):
        # walk the cycles one by one (independent of the closed-form index in the code)
        start, length, i = 0.0, float(first), 0
        while t >= start + length:
            start, length, i = start + length, length * t_mul, i + 1
        fraction = (t - start) / length
        return lr * ((1 - alpha) * m_mul**i * 0.5 * (1 + math.cos(math.pi * fraction)) + alpha)

    ends = [100, 300, 700] if t_mul == 2.0 else [100, 200, 250, 475]
    steps = [t for t in _steps(*ends) if t < FAR]
    _check(S.cosine_decay_restarts(lr, first, t_mul, m_mul, alpha), ref, [*steps, 123_456])
    s = S.cosine_decay_restarts(lr, first, t_mul, m_mul, alpha)
    assert s(0) == pytest.approx(lr)  # restart values: m_mul**i peaks at every cycle start
    assert s(100) == pytest.approx(lr * ((1 - alpha) * m_mul + alpha))


@pytest.mark.parametrize(("num_periods", "alpha", "beta"), [(0.5, 0.0, 0.001), (2.0, 0.1, 0.01)])
def test_linear_cosine_decay(num_periods, alpha, beta):
    lr, steps = 0.1, 400

    def ref(t):
        t = min(t, steps)
        linear = (steps - t) / steps
        cosine = 0.5 * (1 + math.cos(math.pi * 2 * num_periods * t / steps))
        return lr * ((alpha + linear) * cosine + beta)

    _check(S.linear_cosine_decay(lr, steps, num_periods, alpha, beta), ref, _steps(100, 200, 400))


def test_noisy_linear_cosine_decay_noise_statistics_and_reproducibility():
    lr, steps = 1.0, 1_000_000
    s = S.noisy_linear_cosine_decay(
        lr,
        steps,
        initial_variance=1.0,
        variance_decay=0.0,
        num_periods=0.0,
        alpha=0.0,
        beta=10.0,
        seed=7,
    )
    # with num_periods=0 the cosine factor is 1 and beta keeps the value positive, so
    # s(t) - (linear + beta) is exactly the noise: N(0, 1) for variance_decay = 0
    t = np.arange(200_000)
    noise = s(t) - ((steps - t) / steps + 10.0)
    assert abs(noise.mean()) < 0.01
    assert abs(noise.std() - 1.0) < 0.01
    assert abs(np.corrcoef(noise[:-1], noise[1:])[0, 1]) < 0.01  # no step-to-step correlation
    assert s(12345) == S.noisy_linear_cosine_decay(lr, steps, 1.0, 0.0, 0.0, 0.0, 10.0, seed=7)(
        12345
    )
    assert s(12345) != S.noisy_linear_cosine_decay(lr, steps, 1.0, 0.0, 0.0, 0.0, 10.0, seed=8)(
        12345
    )


def test_noisy_linear_cosine_decay_variance_decays_like_tf():
    s = S.noisy_linear_cosine_decay(1.0, 10**6, initial_variance=2.0, variance_decay=0.55)
    from schedulers.base import ARRAY

    assert s.noise_std(np.array([99.0]), ARRAY)[0] == pytest.approx(math.sqrt(2.0 / 100**0.55))


def test_power_decay_is_d2l_square_root_schedule():
    s = S.power_decay(0.5, power=0.5)
    for t in [0, 1, 3, 99, FAR]:
        assert s(t) == pytest.approx(0.5 / math.sqrt(t + 1))


def test_factor_multiplies_every_step_down_to_the_floor():
    s = S.factor(1.0, factor=0.5, stop_factor_lr=0.01)
    assert [s(t) for t in range(9)] == pytest.approx(
        [1, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.01, 0.01]
    )
    assert s(FAR) == 0.01


def test_cosine_annealing_rises_again_after_t_max_like_torch():
    s = S.cosine_annealing(1.0, T_max=10, eta_min=0.0)
    assert s(10) == pytest.approx(0.0, abs=1e-15)
    assert s(15) == pytest.approx(0.5)
    assert s(20) == pytest.approx(1.0)


@pytest.mark.parametrize("window", ["triangular", "welch", "hann"])
def test_cyclic_windows_match_their_named_shapes_over_a_symmetric_cycle(window):
    up = 50
    s = S.cyclic(1.0, 3.0, step_size_up=up, window=window)
    for t in [0, 10, 25, 50, 60, 99, 100, 125]:
        x = (t % (2 * up)) / (2 * up)  # position in the cycle, in [0, 1)
        h = {
            "triangular": 1 - abs(2 * x - 1),
            "welch": 1 - (2 * x - 1) ** 2,  # Welch window over the whole cycle
            "hann": math.sin(math.pi * x) ** 2,  # Hann window over the whole cycle
        }[window]
        assert s(t) == pytest.approx(1.0 + 2.0 * h, abs=1e-12), t


def test_one_cycle_hits_its_knots():
    s = S.one_cycle(1.0, total_steps=101, pct_start=0.3, div_factor=10.0, final_div_factor=100.0)
    assert s(0) == pytest.approx(0.1)
    # torch's layout: phase 1 ends at pct_start * total_steps - 1 = 29.3, phase 2 at 100
    values = [s(t) for t in range(101)]
    assert all(a < b for a, b in itertools.pairwise(values[:30]))  # rising on t = 0..29
    assert all(a > b for a, b in itertools.pairwise(values[30:]))  # falling from t = 30 on
    peak_pct = (30 - 29.3) / (100 - 29.3)  # t = 30 is just past the end of phase 1
    assert values[30] == pytest.approx(
        0.001 + (1.0 - 0.001) / 2 * (math.cos(math.pi * peak_pct) + 1)
    )
    assert s(100) == pytest.approx(0.001)
    assert s(FAR) == pytest.approx(0.001)
