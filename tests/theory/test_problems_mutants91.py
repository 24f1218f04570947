"""Kills the surviving problems.py mutant P05 of audit 91: L_max = max_i ||x_i||^2 (the
smoothness of the worst f_i(w) = (x_i^T w - y_i)^2 / 2, whose Hessian is x_i x_i^T)."""

import numpy as np
import pytest

from theory.problems import LeastSquares


def test_least_squares_l_max_is_the_largest_row_norm_squared():
    X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # ||x_i||^2 = 1, 4, 2
    problem = LeastSquares(X, [1.0, 2.0, 3.0], x0=[0.0, 0.0], batch_size=1)
    assert problem.L_max == pytest.approx(4.0, rel=1e-15)
    # sigma*^2 = mean_i ||x_i (x_i^T w* - y_i)||^2 (numpy lstsq for w*)
    w = np.linalg.lstsq(X, [1.0, 2.0, 3.0], rcond=None)[0]
    r = X @ w - np.array([1.0, 2.0, 3.0])
    expected = np.mean([(r[i] ** 2) * (X[i] @ X[i]) for i in range(3)])
    assert problem.sigma_star_sq == pytest.approx(expected, rel=1e-9, abs=1e-20)
