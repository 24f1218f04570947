"""Fixes from the property-based audit of the Schedule type (audit 90, /tmp/aud90/algebra).

Each test names the finding it covers. Expected values come from closed forms derived here,
from ``open`` (the file tests) or from the rules the package documents, never from the code
under test.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import warnings

import numpy as np
import pytest
import scipy.special
import torch

import schedulers as S
from schedulers import plot
from schedulers.files import atomic_write, check_output_file, check_replaceable

# --- finding 2: restart cycles where t * (mult - 1) overflows ---------------------------------


def _cycle_one_cosine(t: float, first: float, mult: float, peak: float) -> float:
    """A cosine cycle's value at ``t`` in cycle 1 (``first <= t < first * (1 + mult)``), which
    starts at ``first`` and lasts ``first * mult`` steps, peaking at ``peak``."""
    return peak * (1.0 + math.cos(math.pi * (t - first) / (first * mult))) / 2.0


@pytest.mark.parametrize(
    ("mult", "t"),
    [(1e293, 2.0**53), (1e300, 1e9), (1e300, 2.0**53), (1.7e308, 11.0), (1.7e308, 1e6)],
)
def test_restart_schedules_evaluate_where_t_times_mult_minus_one_overflows(mult, t):
    """Before: ``OverflowError: cannot convert float infinity to integer`` (cosine.py, the cycle
    index from ``log1p(t * (mult - 1) / first)`` was inf). With ``first = 10`` cycle 1 starts at
    10 and lasts ``10 * mult`` steps: every t here lies in cycle 1, at a fraction below 1e-276
    of it, so the value is the cycle's peak: ``m_mul * lr`` and ``cycle_decay * base_lr``."""
    with np.errstate(over="ignore"):
        assert np.isinf(np.float64(t) * (mult - 1.0))  # (the case of the finding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no overflow warning either)
        restarts = S.cosine_decay_restarts(0.1, 10, t_mul=mult, m_mul=0.5)
        assert restarts(t) == pytest.approx(_cycle_one_cosine(t, 10, mult, 0.05), rel=1e-15)
        cycles = S.cosine_cycles(0.1, 10, cycle_mul=mult, cycle_decay=0.5, cycle_limit=5)
        assert cycles(t) == pytest.approx(_cycle_one_cosine(t, 10, mult, 0.05), rel=1e-15)
        # after cycle_limit = 1 cycles: lr_min
        assert S.cosine_cycles(0.1, 10, 0.01, cycle_mul=mult, cycle_limit=1)(t) == 0.01
        # tanh_decay at the very start of a cycle: lr_min + (peak - lr_min) (1 - tanh(-7)) / 2
        tanh = S.tanh_decay(0.1, 10, cycle_mul=mult, cycle_decay=0.5, cycle_limit=5)
        assert tanh(t) == pytest.approx(0.05 * (1.0 - math.tanh(-7.0)) / 2.0, rel=1e-12)


def test_restart_overflow_in_an_array_next_to_steps_that_do_not_overflow():
    """Before: the whole array raised OverflowError. First cycle [0, 10): half cosine times
    0.1; cycle 1 from 10 on, peak 0.1 * m_mul."""
    steps = np.array([0.0, 5.0, 10.0, 1e9, 2.0**53])
    values = S.cosine_decay_restarts(0.1, 10, t_mul=1e300, m_mul=0.5)(steps)
    expected = [0.1, 0.1 * (1 + math.cos(math.pi * 0.5)) / 2] + [
        _cycle_one_cosine(t, 10, 1e300, 0.05) for t in steps[2:]
    ]
    np.testing.assert_allclose(values, expected, rtol=1e-15)


# --- finding 3: step types refused as numpy refuses them --------------------------------------


@pytest.mark.parametrize(
    ("steps", "dtype"),
    [
        (torch.tensor([True, False]), "torch.bool"),
        (torch.tensor(True), "torch.bool"),
        (torch.tensor([1 + 5j]), "torch.complex64"),
        (torch.tensor([3.0], dtype=torch.complex128), "torch.complex128"),
        (np.timedelta64(5, "D"), "timedelta64[D]"),
        (np.array([5], dtype="m8[s]"), "timedelta64[s]"),
        (np.datetime64("2020-01-01"), "datetime64[D]"),
        (np.array([1, 2], dtype=object), "object"),
        (np.array(["5"]), "<U1"),
    ],
    ids=[
        "torch-bool",
        "torch-bool-0d",
        "torch-complex64",
        "torch-complex128",
        "np-timedelta-scalar",
        "np-timedelta-array",
        "np-datetime",
        "np-object",
        "np-str",
    ],
)
def test_non_real_steps_are_refused_with_a_type_error_naming_the_dtype(steps, dtype):
    """Before: a bool tensor was evaluated at t = 1, 0, a complex one lost its imaginary part
    and a timedelta64 of 5 days was the step 5 (numpy's bool and complex arrays were refused)."""
    with pytest.raises(TypeError) as info:
        S.cosine_decay(0.3, 20)(steps)
    message = str(info.value)
    assert "steps must be" in message
    assert dtype in message
    assert "integer or floating-point" in message  # (what is allowed)


_TENSOR_DTYPES = [
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
]


@pytest.mark.parametrize("dtype", _TENSOR_DTYPES, ids=str)
def test_real_tensors_still_give_the_float64_values_bit_for_bit(dtype):
    """Kept: every real tensor dtype is a step, with the values of the same float64 steps."""
    s = S.cosine_decay(0.3, 20) + S.noisy(S.constant(0.1), noise_pct=0.5)
    steps = [0, 3, 7, 25, 100]
    out = s(torch.tensor(steps, dtype=dtype))
    assert out.dtype == torch.float64
    assert out.tolist() == [s(t) for t in steps]


# --- finding 4: -0.0 arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("negative", "positive"),
    [
        (lambda: S.constant(-0.0), lambda: S.constant(0.0)),
        (
            lambda: S.from_dict(
                json.loads(
                    '{"name": "cosine_decay", "learning_rate": 0.1, "decay_steps": 10, '
                    '"alpha": -0.0}'
                )
            ),
            lambda: S.cosine_decay(0.1, 10, alpha=0.0),
        ),
        (
            lambda: S.constant(-0.0) + S.cosine_decay(0.1, 10),
            lambda: S.constant(0.0) + S.cosine_decay(0.1, 10),
        ),
        (lambda: S.clamp(S.constant(0.5), -0.0), lambda: S.clamp(S.constant(0.5), 0.0)),
        (
            lambda: S.cosine_annealing(0.1, 100, eta_min=-0.0),
            lambda: S.cosine_annealing(0.1, 100, eta_min=0.0),
        ),
    ],
    ids=["constant", "from-json", "composite", "clamp-floor", "eta-min"],
)
def test_equal_schedules_with_minus_zero_hash_equal(negative, positive):
    """Before: ``a == b`` but ``hash(a) != hash(b)`` (repr printed -0.0), so ``{a, b}`` held
    two. Python's rule: equal objects have equal hashes."""
    a, b = negative(), positive()
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert repr(a) == repr(b)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())  # (no "-0.0" written)


def test_minus_zero_keeps_the_value():
    """The value is the same number (0.0 == -0.0); a constant 0 is +0.0 either way."""
    value = S.constant(-0.0)(3)
    assert value == 0.0
    assert math.copysign(1.0, value) == 1.0
    steps = np.arange(12.0)
    np.testing.assert_array_equal(
        S.cosine_decay(0.1, 10, alpha=-0.0)(steps), S.cosine_decay(0.1, 10, alpha=0.0)(steps)
    )


# --- finding 5: from_function(bounds=...) -----------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "error"),
    [
        (1.0, TypeError),
        (0, TypeError),
        (True, TypeError),
        ({"low": 0.0, "high": 1.0}, TypeError),
        ("ab", TypeError),
        ([1.0], ValueError),
        ([0.0, 1.0, 2.0], ValueError),
    ],
    ids=["float", "int", "bool", "mapping", "str", "one", "three"],
)
@pytest.mark.parametrize("how", ["constructor", "from_dict"])
def test_bad_bounds_are_refused_naming_bounds(bounds, error, how):
    """Before: ``TypeError: object of type 'float' has no len()`` and ``KeyError: 0``."""
    spec = {"name": "function", "function": "math:sqrt", "bounds": bounds, "vectorized": False}
    build = (
        (lambda: S.from_function("math:sqrt", bounds=bounds, vectorized=False))
        if how == "constructor"
        else (lambda: S.from_dict(spec))
    )
    with pytest.raises(error, match=r"bounds must be .*\[lowest, highest\], got bounds="):
        build()


# --- finding 6: from_function of a scipy ufunc -----------------------------------------------


def test_a_scipy_ufunc_given_by_its_path_round_trips():
    """Before: ``to_dict()`` refused it as a lambda-like ("no import path") and repr showed the
    object: scipy's ufuncs have neither ``__module__`` nor ``__qualname__``."""
    s = S.from_function("scipy.special:expit", bounds=[0.0, 1.0])
    spec = s.to_dict()
    assert spec["function"] == "scipy.special:expit"
    again = S.from_dict(json.loads(json.dumps(spec)))
    assert again == s
    assert hash(again) == hash(s)
    assert repr(again) == repr(s)
    assert "'scipy.special:expit'" in repr(s)
    steps = np.array([0.0, 1.0, 3.5, 40.0])
    np.testing.assert_allclose(again(steps), 1.0 / (1.0 + np.exp(-steps)), rtol=1e-15)
    nested = S.from_dict(json.loads(json.dumps((0.1 * s).to_dict())))
    assert nested == 0.1 * s
    assert hash(nested) == hash(0.1 * s)


def test_a_scipy_ufunc_given_as_an_object_is_refused_saying_why():
    """The object alone names no path: the refusal says so and how to give it, not 'lambda'."""
    s = S.from_function(scipy.special.expit)
    with pytest.raises(ValueError, match=r"scipy\.special:expit") as info:
        s.to_dict()
    assert "lambda" not in str(info.value)
    given = S.from_function("scipy.special:expit")
    assert (s == given) == (hash(s) == hash(given))  # (the hash contract holds either way)
    # a function whose own path imports back is one schedule however it was given
    assert S.from_function(math.sqrt) == S.from_function("math:sqrt")
    assert hash(S.from_function(math.sqrt)) == hash(S.from_function("math:sqrt"))


# --- finding 8: steps past 2**53 --------------------------------------------------------------

_BIG = 2**53


@pytest.mark.parametrize(
    "steps",
    [
        _BIG + 1,
        2**70,
        10**400,
        float(_BIG + 2),
        1e300,
        np.int64(_BIG + 1),
        np.uint64(_BIG + 1),
        np.array([0, _BIG + 1], dtype=np.int64),
        np.array([_BIG + 1], dtype=np.uint64),
        np.array([2.0**60]),
        [_BIG + 1],
        [2**70],
        [3, 2**70],
        torch.tensor([_BIG + 1]),
        torch.tensor([1e300], dtype=torch.float64),
    ],
    ids=[
        "int-2**53+1",
        "int-2**70",
        "int-10**400",
        "float-2**53+2",
        "float-1e300",
        "np-int64",
        "np-uint64",
        "array-int64",
        "array-uint64",
        "array-float",
        "list-2**53+1",
        "list-2**70",
        "list-mixed",
        "torch-int64",
        "torch-float64",
    ],
)
def test_steps_past_2_53_are_refused_as_the_constructors_refuse_step_counts(steps):
    """Before: rounded silently (``s(2**53 + 1) == s(2**53)``, one noise draw for two steps;
    one draw for every t >= 2**64 with numpy's cast warning), and ``s([2**70])`` was refused
    as 'dtype object' while ``s(2**70)`` was evaluated."""
    s = S.noisy(S.constant(1.0), noise_pct=0.5, noise_seed=1)
    with pytest.raises(ValueError, match=r"at most 2\*\*53"):
        s(steps)


def test_the_step_2_53_itself_is_evaluated_alike_in_every_form():
    """Kept: 2**53 is the last step (the driver's and the constructors' limit too)."""
    s = S.noisy(S.constant(1.0), noise_pct=0.5)
    value = s(_BIG)
    forms = [
        float(_BIG),
        np.int64(_BIG),
        np.uint64(_BIG),
        np.array([_BIG]),
        [_BIG],
        torch.tensor([_BIG]),
        torch.tensor([float(_BIG)], dtype=torch.float64),
    ]
    for form in forms:
        assert float(np.asarray(s(form)).reshape(-1)[0]) == value, form
    assert s(_BIG - 1) != value  # (two steps, two draws)


def test_np_longdouble_step_past_2_53_is_refused():
    """A long double can hold 2**53 + 1, which float64 rounds to 2**53."""
    t = np.longdouble(_BIG) + 1
    if int(t) != _BIG + 1:
        pytest.skip("long double is float64 here")
    with pytest.raises(ValueError, match=r"at most 2\*\*53"):
        S.constant(1.0)(t)


# --- finding 9: polynomial_decay(cycle=True) at subnormal steps -------------------------------


@pytest.mark.parametrize("t", [5e-324, 1e-320, 2.2e-308, 1e-300])
def test_polynomial_cycle_at_tiny_steps_is_in_the_first_period(t):
    """Before: 0.0 (end_learning_rate) at 5e-324 with a divide-by-zero warning:
    ``ceil(t / decay_steps)`` underflowed to 0. Documented: ``D = decay_steps`` (the first
    multiple >= t), so the value is ``(lr - end) * (1 - t / 1000) ** 2 + end = lr`` here."""
    s = S.polynomial_decay(1.0, 1000, end_learning_rate=0.25, power=2.0, cycle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert s(t) == (1.0 - 0.25) * (1.0 - t / 1000) ** 2 + 0.25 == 1.0


def test_polynomial_cycle_keeps_its_periods():
    """Kept: ``D = decay_steps * ceil(t / decay_steps)``, 1 period at t = 0."""
    s = S.polynomial_decay(1.0, 10, end_learning_rate=0.0, power=1.0, cycle=True)
    for t, horizon in [(0, 10), (1, 10), (10, 10), (11, 20), (25, 30)]:
        assert s(t) == 1.0 - t / horizon


# --- finding 10: operator and nested-spec messages --------------------------------------------


@pytest.mark.parametrize(
    ("operation", "shown"),
    [
        (lambda s: s / 1e-320, "/"),
        (lambda s: s / 0, "/"),
        (lambda s: s + (-0.1), "+"),
        (lambda s: -0.1 + s, "+"),
        (lambda s: s * -2, "*"),
        (lambda s: -2 * s, "*"),
        (lambda s: s * math.nan, "*"),
    ],
    ids=["div-tiny", "div-zero", "add", "radd", "mul", "rmul", "mul-nan"],
)
def test_operator_refusals_name_the_operator_and_the_number(operation, shown):
    """Before: ``factor=inf`` for ``s / 1e-320`` and ``value=-0.1`` for ``s + (-0.1)``: the
    arguments of a scale or constant the user never built."""
    with pytest.raises(ValueError, match=rf"schedule \{shown} number: ") as info:
        operation(S.cosine_decay(0.1, 100))
    message = str(info.value)
    assert "factor=" not in message
    assert "value=" not in message


def test_dividing_by_the_smallest_number_with_a_finite_reciprocal_works():
    s = S.constant(1e-300)
    assert (s / 5.6e-309)(0) == 1e-300 * (1.0 / 5.6e-309)
    assert (S.constant(1.0) / 4)(3) == 0.25


@pytest.mark.parametrize(
    ("spec", "error", "where"),
    [
        (
            {"name": "join", "boundaries": [10, 20], "schedules": [
                {"name": "constant", "value": 0.1}, {"name": "constant", "value": 0.1},
                {"name": "linear_warmup", "warmup_steps": 5,
                 "schedule": {"name": "constant", "value": -1}}]},
            ValueError,
            "schedules[2].schedule: value must be",
        ),
        (
            {"name": "sum", "schedules": [
                {"name": "constant", "value": 0.1}, {"name": "constant", "value": "x"}]},
            TypeError,
            "schedules[1]: value must be",
        ),
        (
            {"name": "scale", "factor": 2.0, "schedule": {"name": "nope"}},
            ValueError,
            "schedule: unknown schedule name='nope'",
        ),
    ],
    ids=["deep", "type", "name"],
)  # fmt: skip
def test_a_nested_spec_error_says_where_the_spec_sits(spec, error, where):
    """Before: only the leaf parameter was named (``value must be ...``)."""
    with pytest.raises(error) as info:
        S.from_dict(spec)
    assert str(info.value).startswith(where)


# --- finding 11: stepsize plot default labels -------------------------------------------------


def _collect(*specs: str) -> dict:
    return plot.collect(argparse.Namespace(specs=list(specs), steps=None, title=None, log=None))


def test_unlabelled_specs_that_differ_late_get_distinct_labels():
    """Before: 'label ... is used twice' for two cosine_decay specs differing in exponent."""
    a = '{"name": "cosine_decay", "learning_rate": 0.1, "decay_steps": 100, "exponent": 1.0}'
    b = '{"name": "cosine_decay", "learning_rate": 0.1, "decay_steps": 100, "exponent": 2.0}'
    schedules = _collect(a, b)["schedules"]
    assert len(schedules) == 2
    (label_a, first), (label_b, second) = schedules.items()
    assert first == S.cosine_decay(0.1, 100, exponent=1.0)
    assert second == S.cosine_decay(0.1, 100, exponent=2.0)
    assert "exponent=1.0" in label_a
    assert "exponent=2.0" in label_b
    assert label_a != label_b


def test_unlabelled_specs_differing_deep_inside_get_distinct_labels():
    """A difference inside a nested schedule, or a list of them, is shown where it sits."""
    inner = '{"name": "cosine_decay", "learning_rate": 0.1, "decay_steps": 100, "alpha": %s}'
    warm = '{"name": "linear_warmup", "warmup_steps": 5, "schedule": %s}'
    schedules = _collect(warm % (inner % "0.0"), warm % (inner % "0.5"))["schedules"]
    assert list(schedules.values()) == [
        S.linear_warmup(S.cosine_decay(0.1, 100, alpha=a), 5) for a in (0.0, 0.5)
    ]
    first, second = schedules
    assert "alpha=0.0" in first
    assert "alpha=0.5" in second
    join = (
        '{"name": "join", "boundaries": [5], "schedules": [{"name": "constant", "value": 0.1}, %s]}'
    )
    schedules = _collect(join % (inner % "0.0"), join % (inner % "0.5"))["schedules"]
    assert len(schedules) == 2
    first, second = schedules
    assert "alpha=0.0" in first
    assert "alpha=0.5" in second


def test_labels_given_and_one_spec_twice_are_kept():
    a = '{"name": "constant", "value": 0.1}'
    assert list(_collect(f"x={a}", "y={name = 'constant', value = 0.2}")["schedules"]) == [
        "x",
        "y",
    ]
    with pytest.raises(ValueError, match="used twice"):
        _collect(a, a)
    with pytest.raises(ValueError, match="used twice"):
        _collect(f"x={a}", "x={name = 'constant', value = 0.2}")


# --- finding 12: atomic_write on a symbolic link loop -----------------------------------------


def test_atomic_write_on_a_link_loop_fails_as_open_does(tmp_path):
    """Before: the link was replaced by a regular file holding the data."""
    loop = tmp_path / "loop"
    os.symlink("loop", loop)
    with pytest.raises(OSError, match="symbolic links") as reference:
        open(loop, "wb")  # noqa: SIM115 (the reference: what open does)
    with pytest.raises(OSError, match="symbolic links") as info:
        atomic_write(loop, lambda handle: handle.write(b"data"))
    assert info.value.errno == reference.value.errno == errno.ELOOP
    assert str(loop) in str(info.value)
    assert loop.is_symlink()
    assert os.readlink(loop) == "loop"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop"]  # (no temporary file left)


def test_the_output_checks_refuse_a_link_loop_naming_the_option(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    os.symlink("b.png", a)
    os.symlink("a.png", b)
    with pytest.raises(ValueError, match="--out"):
        check_output_file(a, "--out")
    with pytest.raises(ValueError, match="--out"):
        check_replaceable(a, "--out")


def test_a_dangling_link_is_still_written_through(tmp_path):
    """Kept: ``open`` creates a dangling link's target, and so does atomic_write."""
    link = tmp_path / "link"
    os.symlink("target.txt", link)
    atomic_write(link, lambda handle: handle.write(b"x"))
    assert link.is_symlink()
    assert (tmp_path / "target.txt").read_bytes() == b"x"
