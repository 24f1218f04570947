"""theory.testing: the assertions pass on correct runs and fail with step, value and bound."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from theory.bounds import Bound, gd_bound, gd_divergence_bound, gd_strongly_convex_bound
from theory.certify import certify
from theory.problems import Quadratic
from theory.testing import (
    assert_bound_holds,
    assert_converges,
    assert_rate,
    least_squares_problem,
)


@pytest.fixture
def problem():
    return Quadratic.from_condition_number(4, kappa=5.0, seed=2)


def test_assert_converges_passes_and_fails_with_the_numbers(problem):
    lr = 1 / problem.L
    trajectory = assert_converges(problem, lambda p: torch.optim.SGD(p, lr=lr), 200, tol=1e-10)
    assert trajectory.gap[-1] <= 1e-10 * trajectory.gap[0]
    with pytest.raises(AssertionError) as failure:
        assert_converges(problem, lambda p: torch.optim.SGD(p, lr=0.01 * lr), 20, tol=1e-10)
    message = str(failure.value)
    assert "not converged after 20 steps" in message
    assert "at step 20" in message
    assert "tol 1e-10" in message
    with pytest.raises(AssertionError, match="non-finite at step"):
        assert_converges(problem, lambda p: torch.optim.SGD(p, lr=1e300), 50)
    with pytest.raises(ValueError, match="tol must be a positive"):
        assert_converges(problem, lambda p: torch.optim.SGD(p, lr=lr), 5, tol=0.0)


def test_assert_converges_on_distance_and_absolute(problem):
    lr = 1 / problem.L
    assert_converges(
        problem,
        lambda p: torch.optim.SGD(p, lr=lr),
        200,
        tol=1e-6,
        quantity="distance",
        relative=False,
    )
    with pytest.raises(AssertionError, match=r"\|\|x_k - x\*\|\|"):
        assert_converges(
            problem,
            lambda p: torch.optim.SGD(p, lr=lr),
            2,
            tol=1e-6,
            quantity="distance",
            relative=False,
        )


def test_assert_bound_holds_names_step_observed_and_bound(problem):
    lr = 1 / problem.L
    assert_bound_holds(problem, lambda p: torch.optim.SGD(p, lr=lr), 100, gd_bound(problem, lr))
    # a bound 100 times too small, for the run it was built for, is violated
    too_small = gd_bound(problem, lr).scaled(0.01)
    with pytest.raises(AssertionError) as failure:
        assert_bound_holds(problem, lambda p: torch.optim.SGD(p, lr=lr), 100, too_small)
    message = str(failure.value)
    assert "bound 'gd_convex x 0.01'" in message
    assert "violated at step" in message
    found = re.search(
        r"violated at step (\d+): observed f\(x_k\) - f\* = (\S+) > bound (\S+)", message
    )
    assert found is not None, message
    step, observed, stated_bound = int(found[1]), float(found[2]), float(found[3])
    assert observed == pytest.approx(problem.gap(_sgd_point(problem, lr, step)), rel=1e-5)
    assert stated_bound == pytest.approx(0.01 * float(gd_bound(problem, lr)(step)), rel=1e-5)
    # a run at 2.1/L is not one the 1/L bound is about: not applicable, never "violated"
    with pytest.raises(AssertionError, match=r"not applicable: update t=0 ran with lr=2\.1"):
        assert_bound_holds(
            problem, lambda p: torch.optim.SGD(p, lr=2.1 * lr), 100, gd_bound(problem, lr)
        )


def _sgd_point(problem, lr, steps):
    x = problem.x0.clone()
    for _ in range(steps):
        x = x - lr * problem.A @ (x - problem.x_star)
    return x


def test_assert_rate(problem):
    lr = 1 / problem.L
    certificate = assert_bound_holds(
        problem, lambda p: torch.optim.SGD(p, lr=lr), 100, gd_strongly_convex_bound(problem, lr)
    )
    assert_rate(certificate)
    with pytest.raises(AssertionError, match="faster than expected"):
        assert_rate(certificate, at_least=0.999)
    # a bound that holds (huge constant) but claims a rate GD does not reach
    too_fast = Bound(
        name="too_fast",
        quantity="gap",
        formula="1e300 * 0.1^k",
        rate=0.1,
        values=lambda k: 1e300 * 0.1 ** np.asarray(k, dtype=float),
    )
    with pytest.raises(AssertionError, match=r"fitted rate .* exceeds the predicted 0\.1"):
        assert_rate(assert_bound_holds(problem, lambda p: torch.optim.SGD(p, lr=lr), 30, too_fast))
    divergence = assert_bound_holds(
        problem,
        lambda p: torch.optim.SGD(p, lr=2.1 * lr),
        60,
        gd_divergence_bound(problem, 2.1 * lr),
    )
    assert_rate(divergence, slack=1e-6)
    sublinear = assert_bound_holds(
        problem, lambda p: torch.optim.SGD(p, lr=lr), 10, gd_bound(problem, lr)
    )
    with pytest.raises(ValueError, match="no predicted rate"):
        assert_rate(sublinear)
    assert sublinear.predicted_order == -1.0


# ------------------------------------------------------------------ a wrong f* is not "converged"
@pytest.mark.parametrize("relative", [True, False])
def test_assert_converges_fails_a_run_whose_gap_goes_far_below_zero(relative):
    # f* stated 0.5 above the true minimum: GD reaches the true minimum, so f(x_k) - f* -> -0.5;
    # before, "final <= tol" passed it
    problem = least_squares_problem(10.0, seed=0)
    true_minimum = problem.f_star
    problem.f_star = true_minimum + 0.5
    make = lambda ps: torch.optim.SGD(ps, lr=1.0 / problem.L)  # noqa: E731
    with pytest.raises(AssertionError, match=r"f\* is above the true minimum") as failure:
        assert_converges(problem, make, 200, tol=1e-6, relative=relative)
    found = re.search(r"f\(x_k\) - f\* = (\S+) < 0 at step (\d+)", str(failure.value))
    assert found is not None, str(failure.value)
    assert 0 <= int(found[2]) <= 200
    # f(x_k) >= the true minimum, so the stated gap is at least -0.5
    assert -0.5 * (1 + 1e-12) <= float(found[1]) < -1e-6


def test_assert_converges_tolerates_a_negative_gap_within_the_noise_floor():
    # f* stated 1e-13 above the minimum (rounding of f*, far below the float64 noise floor of
    # this problem, 1e4 eps (|f*| + gap0) > 1e-12): the run converges and passes
    problem = least_squares_problem(10.0, seed=0)
    problem.f_star = problem.f_star + 1e-13
    trajectory = assert_converges(
        problem, lambda ps: torch.optim.SGD(ps, lr=1.0 / problem.L), 300, tol=1e-6
    )
    assert trajectory.gap[-1] < 0


# ---------------------------------------------------- a rate attained exactly passes at slack 0
def test_assert_rate_passes_a_run_whose_rate_equals_the_prediction(problem):
    # GD at lr = 2.5/L diverges along the top eigenvector at exactly |1 - 2.5| = 1.5 per step;
    # the fit gives 1.4999999999999998 and, before, slack=0 failed it
    lr = 2.5 / problem.L
    certificate = certify(
        problem, lambda p: torch.optim.SGD(p, lr=lr), 60, gd_divergence_bound(problem, lr)
    )
    assert certificate.held
    assert certificate.predicted_rate == pytest.approx(1.5, rel=1e-15)
    assert certificate.fitted_rate == pytest.approx(1.5, rel=1e-14)
    assert_rate(certificate)
    assert certificate.rate_consistent()
    # and the rounding tolerance is a hundred ulps, not a slack: a prediction 1e-9 above
    # the attained rate still fails
    claimed = Bound(
        name="too_steep",
        quantity="distance",
        formula="0 * 1.5000000015^k",
        rate=1.5 * (1 + 1e-9),
        direction="lower",
        values=lambda k: np.zeros(np.shape(k)),
    )
    steep = certify(problem, lambda p: torch.optim.SGD(p, lr=lr), 60, claimed)
    with pytest.raises(AssertionError, match=r"below the predicted growth 1\.5000000015"):
        assert_rate(steep)


def test_the_rate_rounding_tolerance_follows_the_run_dtype(problem):
    lr = 1 / problem.L
    bound = gd_strongly_convex_bound(problem, lr)
    make = lambda p: torch.optim.SGD(p, lr=lr)  # noqa: E731
    for dtype in (torch.float64, torch.float32):
        certificate = certify(problem, make, 40, bound, dtype=dtype)
        assert certificate.trajectory.dtype == dtype
        assert certificate.rate_rtol == pytest.approx(100 * torch.finfo(dtype).eps)
    assert 1e-14 < certify(problem, make, 40, bound).rate_rtol < 1e-13
