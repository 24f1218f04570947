"""Quadratic's documented conventions (theory.problems), with expected values by hand:
computed eigenvalues "at or below 100 d eps λ_max (LAPACK's error) count as 0" (Quadratic,
pl_constant docstring; _rounding_floor), and from_condition_number's "log" spacing
(geometric from mu = L/kappa to L)."""

import numpy as np
import pytest

from theory.problems import Quadratic

EPS = float(np.finfo(np.float64).eps)


def test_an_eigenvalue_exactly_at_the_rounding_floor_counts_as_zero():
    # d = 2, λ_max = 1: the floor is 100 * 2 * eps = 200 eps; a diagonal A's eigenvalues are
    # its diagonal exactly, so λ_min = 200 eps is *at* the floor: mu = 0, no positive PL constant
    # from it ("at or below ... count as 0")
    floor = 100 * 2 * EPS
    problem = Quadratic([[1.0, 0.0], [0.0, floor]])
    assert float(problem.eigenvalues[0]) == floor
    assert problem.mu == 0.0
    assert problem.pl_constant == 1.0


def test_an_eigenvalue_between_10_and_100_d_eps_counts_as_zero():
    # λ_min = 1e-14 lies between 10 d eps = 4.4e-15 and 100 d eps = 4.4e-14 (d = 2, λ_max = 1)
    problem = Quadratic([[1.0, 0.0], [0.0, 1e-14]])
    assert problem.mu == 0.0
    # just above the floor it is kept
    above = Quadratic([[1.0, 0.0], [0.0, 5e-14]])
    assert above.mu == 5e-14


def test_log_spacing_is_geometric():
    # kappa = 100, L = 1, dim = 3: mu = 0.01 and the geometric mean 0.1 between them
    problem = Quadratic.from_condition_number(3, 100.0, spacing="log")
    assert np.allclose(np.sort(problem.eigenvalues.numpy()), [0.01, 0.1, 1.0], rtol=1e-9)
    linear = Quadratic.from_condition_number(3, 100.0, spacing="linear")
    assert np.allclose(np.sort(linear.eigenvalues.numpy()), [0.01, 0.505, 1.0], rtol=1e-9)


def test_least_squares_minibatch_loss_is_the_mean_of_half_squared_residuals():
    # LeastSquares: f(w) = ||X w - y||² / (2n), f_i = (x_iᵀw - y_i)²/2, and update t with
    # batch_size b sees the mean of its b terms. X = [[1], [2]], y = 0, w = 1: f_0 = 1/2,
    # f_1 = 2, f = 5/4. A batch of one index is that term; the mean over both is f.
    import torch

    from theory.problems import LeastSquares

    problem = LeastSquares([[1.0], [2.0]], [0.0, 0.0], batch_size=1)
    w = torch.tensor([1.0], dtype=torch.float64)
    assert float(problem.loss(w)) == pytest.approx(1.25, rel=1e-12)
    assert float(problem.sample_loss(w, np.array([1]))) == pytest.approx(2.0, rel=1e-12)
    assert float(problem.sample_loss(w, np.array([0, 1]))) == pytest.approx(1.25, rel=1e-12)
    t = 0
    index = int(problem.batch(t)[0])
    assert float(problem.loss_at(w, t)) == pytest.approx([0.5, 2.0][index], rel=1e-12)


def test_least_squares_x_star_tol_bounds_the_distance_to_the_exact_minimiser():
    # The module docstring: x_star_tol is "a certified bound on the distance between x_star and
    # the exact minimiser". For a mu-strongly convex f, ||x - w*|| <= ||∇f(x)|| / mu. X rows
    # (2, 0), (0, 1), y = (2, 1): w* = (1, 1), Hessian X^T X / 2 = diag(2, 0.5), mu = 0.5,
    # L = 2. A solver that returns (1, 1 + 1e-3) is 1e-3 off along the mu direction, where
    # ||∇f|| = 0.5e-3: the certified bound is 0.5e-3 / 0.5 = 1e-3 (1e-3 / 4 with L instead).
    from theory.problems import LeastSquares

    class Inexact(LeastSquares):
        def _solve(self):
            return np.array([1.0, 1.0 + 1e-3])

    problem = Inexact([[2.0, 0.0], [0.0, 1.0]], [2.0, 1.0])
    assert problem.mu == pytest.approx(0.5)
    assert pytest.approx(2.0) == problem.L
    distance = float(np.linalg.norm(problem.x_star.numpy() - np.array([1.0, 1.0])))
    assert distance == pytest.approx(1e-3, rel=1e-9)
    assert problem.x_star_tol >= distance * (1 - 1e-9)
