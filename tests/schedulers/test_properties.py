"""Hypothesis properties of every schedule on steps in [0, 10**9].

For random valid arguments: finite, >= 0 and within the documented ``bounds()`` at every step;
vectorised (numpy and torch, any shape, any position in the array) equals scalar evaluation bit
for bit; ``from_dict(s.to_dict())`` is equal and evaluates identically; ``to_dict()`` holds only
TOML-friendly values.
"""

import json
import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

import schedulers as S

rate = st.floats(0.0, 10.0, allow_nan=False)
fraction = st.floats(0.0, 1.0)
positive_fraction = st.floats(1e-3, 1.0)
small_int = st.integers(1, 5000)
steps = st.lists(st.one_of(st.integers(0, 10**9), st.integers(0, 20_000)), min_size=1, max_size=8)


@st.composite
def increasing(draw, low=0):
    gaps = draw(st.lists(st.integers(1, 3000), min_size=draw(st.integers(0, 4)), max_size=4))
    out, at = [], low
    for gap in gaps:
        at += gap
        out.append(at)
    return out


@st.composite
def piecewise(draw):
    boundaries = draw(increasing())
    values = draw(st.lists(rate, min_size=len(boundaries) + 1, max_size=len(boundaries) + 1))
    return S.piecewise_constant(boundaries, values)


@st.composite
def cyclic_pair(draw):
    base = draw(rate)
    top = base + draw(rate)
    args = {
        "step_size_up": draw(small_int),
        "step_size_down": draw(small_int),
        "mode": draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
        "gamma": draw(st.floats(0.5, 1.0)),
        "window": draw(st.sampled_from(["triangular", "welch", "hann"])),
    }
    lr = S.cyclic(base, top, **args)
    return draw(st.sampled_from([lr, lr.momentum(0.8, 0.95)]))


@st.composite
def one_cycles(draw):
    total = draw(st.integers(20, 100_000))
    three = draw(st.booleans())
    lr = S.one_cycle(
        draw(rate),
        total,
        pct_start=draw(st.floats(0.1, 0.45)),
        anneal_strategy=draw(st.sampled_from(["cos", "linear"])),
        div_factor=draw(st.floats(1.0, 100.0)),
        final_div_factor=draw(st.floats(1.0, 1e4)),
        three_phase=three,
    )
    return draw(st.sampled_from([lr, lr.momentum()]))


base_schedules = st.one_of(
    st.builds(S.constant, rate),
    piecewise(),
    st.builds(S.exponential_decay, rate, small_int, positive_fraction, st.booleans()),
    st.builds(S.natural_exp_decay, rate, small_int, rate, st.booleans()),
    st.builds(S.inverse_time_decay, rate, small_int, rate, st.booleans()),
    st.builds(S.polynomial_decay, rate, small_int, rate, st.floats(0.1, 4.0), st.booleans()),
    st.builds(S.cosine_decay, rate, small_int, fraction),
    st.builds(
        S.cosine_decay_restarts, rate, small_int, st.floats(1.0, 3.0), positive_fraction, fraction
    ),
    st.builds(S.linear_cosine_decay, rate, small_int, st.floats(0.0, 5.0), fraction, fraction),
    st.builds(
        S.noisy_linear_cosine_decay,
        rate,
        small_int,
        st.floats(0.0, 2.0),
        st.floats(0.0, 1.0),
        st.floats(0.0, 5.0),
        fraction,
        fraction,
        st.integers(0, 2**40),
    ),
    st.builds(S.step_lr, rate, small_int, fraction),
    st.builds(S.multistep, rate, increasing(), fraction),
    st.builds(S.factor, rate, fraction, st.floats(0.0, 1e-3)),
    st.builds(S.cosine_annealing, rate, small_int, rate),
    st.builds(S.cosine_annealing_warm_restarts, rate, small_int, st.integers(1, 4), rate),
    st.builds(S.power_decay, rate, st.floats(0.01, 3.0)),
    st.builds(S.linear, rate, fraction, fraction, small_int),
    cyclic_pair(),
    one_cycles(),
    st.builds(
        lambda w, s_, d, c, f, peak: S.wsd(peak, w, s_, d, cooldown=c, final_lr=f * peak),
        st.integers(0, 3000),
        st.integers(0, 3000),
        small_int,
        st.sampled_from(["linear", "1-sqrt", "cosine"]),
        fraction,
        rate,
    ),
    st.builds(S.inverse_sqrt, rate, small_int),
    st.builds(lambda lr, d, f: S.rex(lr, d, f * lr), rate, small_int, fraction),
    st.builds(S.cosine_decay, rate, small_int, fraction, st.floats(0.1, 4.0)),
    st.builds(
        lambda lr, t0, f, mul, dec, lim, k: S.cosine_cycles(lr, t0, f * lr, mul, dec, lim, k),
        rate,
        small_int,
        fraction,
        st.floats(1.0, 3.0),
        positive_fraction,
        st.integers(0, 50),
        st.floats(0.2, 4.0),
    ),
    st.builds(
        lambda lr, t0, f, mul, dec, lim: S.tanh_decay(lr, t0, -7.0, 3.0, f * lr, mul, dec, lim),
        rate,
        small_int,
        fraction,
        st.floats(1.0, 3.0),
        positive_fraction,
        st.integers(0, 50),
    ),
)


def _wrapped(inner):
    return st.one_of(
        st.builds(
            S.constant_warmup,
            inner,
            small_int,
            fraction,
            st.sampled_from(["after_warmup", "from_start"]),
        ),
        st.builds(
            S.linear_warmup,
            inner,
            small_int,
            fraction,
            st.sampled_from(["after_warmup", "from_start"]),
        ),
        st.builds(
            S.exponential_warmup,
            inner,
            small_int,
            positive_fraction,
            st.sampled_from(["after_warmup", "from_start"]),
        ),
        st.builds(
            S.untuned_warmup,
            inner,
            st.floats(0.5, 0.9999),
            st.sampled_from(["linear", "exponential"]),
        ),
        st.builds(lambda a, b: S.join([a, b], [1000]), inner, inner),
        st.builds(lambda a, b: a * b, inner, inner),
        st.builds(lambda a, c: a * c, inner, st.floats(0.0, 3.0)),
        st.builds(lambda a, lo: S.clamp(a, lo, lo + 1.0), inner, st.floats(0.0, 1.0)),
        st.builds(S.reduce_on_plateau, inner, min_lr=st.floats(0.0, 1e-3)),
        st.builds(S.radam_warmup, inner, st.floats(0.61, 0.9999)),
        st.builds(lambda a, b: a + b, inner, inner),
        st.builds(lambda a, k: a.shift(k), inner, st.integers(-5000, 5000)),
        st.builds(
            S.noisy,
            inner,
            st.floats(0.0, 0.9),
            st.floats(0.1, 3.0),
            st.sampled_from(["normal", "uniform"]),
            st.one_of(st.integers(0, 100), st.just([10, 5000])),
            st.integers(0, 2**40),
        ),
    )


schedules = st.recursive(base_schedules, _wrapped, max_leaves=3)


@given(schedules, steps)
def test_finite_nonnegative_and_within_documented_bounds(s, ts):
    low, high = s.bounds()
    assert 0.0 <= low <= high
    assert math.isfinite(high)
    for t in ts:
        v = s(t)
        assert type(v) is float
        assert math.isfinite(v)
        assert v >= 0.0
        slack = 1e-12 * max(abs(high), 1.0)
        assert low - slack <= v <= high + slack, (t, v, low, high)


@given(schedules, steps)
def test_vectorised_equals_scalar_bit_for_bit_for_numpy_and_torch(s, ts):
    scalar = np.array([s(t) for t in ts])
    array = s(np.array(ts, dtype=np.int64))
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.float64
    assert array.shape == (len(ts),)
    np.testing.assert_array_equal(array, scalar)
    tensor = s(torch.tensor(ts, dtype=torch.int64))
    assert tensor.dtype == torch.float64
    np.testing.assert_array_equal(tensor.numpy(), array)
    # any position in a longer array, any shape, 0-dim inputs
    padded = np.concatenate([np.arange(37), ts, np.arange(5)])
    np.testing.assert_array_equal(s(padded)[37 : 37 + len(ts)], array)
    assert s(np.array(ts[0])) == array[0]
    assert s(np.array(ts[0])).shape == ()
    assert s(torch.tensor(ts[0])).shape == ()


def _toml_friendly(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and _toml_friendly(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_toml_friendly(v) for v in value)
    return isinstance(value, (str, int, float, bool)) and not (
        isinstance(value, float) and not math.isfinite(value)
    )


@given(schedules, steps)
def test_round_trip_through_a_plain_dict(s, ts):
    d = s.to_dict()
    assert _toml_friendly(d)
    rebuilt = S.from_dict(json.loads(json.dumps(d)))
    assert rebuilt == s
    assert repr(rebuilt) == repr(s)
    assert [rebuilt(t) for t in ts] == [s(t) for t in ts]


def test_the_elementwise_functions_give_an_element_the_same_bits_anywhere_in_an_array():
    """What makes scalar and array evaluation equal bit for bit: a single step is evaluated as a
    one-element array, so every function a formula uses must not depend on where an element
    sits (SIMD body vs tail, array length). Checked for each function of the namespace."""
    from schedulers.base import ARRAY

    x = np.random.default_rng(0).uniform(0.0, 50.0, 1031)
    functions = {
        "exp": lambda a: ARRAY.exp(-a),
        "log": ARRAY.log,
        "log1p": ARRAY.log1p,
        "tanh": lambda a: ARRAY.tanh(a - 25.0),
        "cos": ARRAY.cos,
        "sin": ARRAY.sin,
        "sqrt": ARRAY.sqrt,
        "power": lambda a: ARRAY.power(0.97, a),
        "power (array base)": lambda a: ARRAY.power(a / 50.0, 1.7),
    }
    for name, f in functions.items():
        full = f(x)
        for start, length in [(0, 1), (3, 1), (5, 2), (7, 3), (0, 8), (9, 17), (100, 33)]:
            part = f(x[start : start + length].copy())
            np.testing.assert_array_equal(part, full[start : start + length], err_msg=name)
