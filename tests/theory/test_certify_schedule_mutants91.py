"""Tests that kill the surviving certify.py / schedule_bounds.py mutants of audit 91 (C07, C14,
B15). Expected values: hand derivations (a gradient of an L-smooth f at distance d from x* has
norm <= L d, so its square is (L d)^2; a lower bound's rate is met when fitted >= predicted /
tolerance; the bound on lrs[:k + 1] exists only for k < len(lrs))."""

import math

import numpy as np
import pytest
import torch

from theory.bounds import gd_divergence_bound
from theory.certify import certify, numerical_floor
from theory.problems import LeastAbsoluteDeviations, Quadratic
from theory.schedule_bounds import sgd_last_iterate_bound

EPS = float(torch.finfo(torch.float64).eps)


def test_grad_sq_floor_is_the_square_of_l_times_the_distance_floor():
    # C07: L = 4, x* = (1e6, 0), x0 = x* + (1e-3, 0): d = 1e4 eps (||x*|| + ||x0 - x*||),
    # floor = 1e4 eps ||grad f(x0)||^2 + (L d)^2 (the curvature term dominates here)
    problem = Quadratic([[4.0, 0.0], [0.0, 1.0]], x_star=[1e6, 0.0], x0=[1e6 + 1e-3, 0.0])
    d = 1e4 * EPS * (1e6 + 1e-3)
    expected = 1e4 * EPS * (4 * 1e-3) ** 2 + (4 * d) ** 2
    assert numerical_floor(problem, "grad_sq_min") == pytest.approx(expected, rel=1e-6)


def test_lower_bound_rate_with_slack_accepts_an_exactly_attained_rate():
    # C14: GD with lr = 3 on f = x^2/2 (L = 1) grows exactly by |1 - 3| = 2 per step; the
    # divergence bound predicts 2. A lower-bound rate passes when fitted >= predicted / tol,
    # tol = (1 + slack) rounding; at slack 0.5 a fitted 2 passes (2 >= 2 / 1.5) and must
    problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])
    bound = gd_divergence_bound(problem, lr=3.0)
    certificate = certify(problem, lambda p: torch.optim.SGD(p, lr=3.0), 30, bound)
    assert certificate.fitted_rate == pytest.approx(2.0, rel=1e-9)
    assert certificate.rate_consistent(0.5)


def test_schedule_bound_makes_no_claim_past_the_schedule():
    # B15: the bound at k uses lrs[:k + 1], so it exists for k < len(lrs) only: inf at k = 3
    problem = LeastAbsoluteDeviations.synthetic(n=20, dim=3, seed=0)
    bound = sgd_last_iterate_bound(problem, [0.1, 0.1, 0.1])
    values = bound(np.arange(5))
    assert np.all(np.isfinite(values[:3]))
    assert np.all(np.isinf(values[3:]))


def test_lower_bound_attained_exactly_holds_without_atol():
    # C15: x_k = (1 - 3)^k = (-2)^k exactly in float64 (powers of 2), so ||x_k - x*|| equals the
    # divergence bound |1 - lr L|^k ||x0 - x*|| exactly; observed >= bound (1 - rtol) - 0 holds
    problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])
    bound = gd_divergence_bound(problem, lr=3.0)
    certificate = certify(problem, lambda p: torch.optim.SGD(p, lr=3.0), 20, bound, atol=0.0)
    assert np.array_equal(certificate.observed, 2.0 ** np.arange(21))
    assert certificate.held


def test_seed_band_is_the_student_t_interval():
    # C19 (and ddof): half width = t_{0.975, n - 1} s / sqrt(n), s with ddof = 1 (scipy.stats)
    import scipy.stats

    problem = LeastAbsoluteDeviations.synthetic(n=20, dim=3, seed=0, batch_size=1)
    lrs = [0.05] * 10
    bound = sgd_last_iterate_bound(problem, lrs)
    seeds = (0, 1, 2)
    certificate = certify(problem, lambda p: torch.optim.SGD(p, lr=0.05), 9, bound, seeds=seeds)
    matrix = np.vstack([t.gap for t in certificate.trajectories])
    half = scipy.stats.t.ppf(0.975, 2) * matrix.std(axis=0, ddof=1) / math.sqrt(3)
    assert np.allclose(certificate.band_upper - certificate.observed, half, rtol=1e-12, atol=0)
