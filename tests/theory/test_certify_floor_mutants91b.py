"""numerical_floor's documented formulas (theory.certify.numerical_floor docstring), evaluated by
hand on one-dimensional and diagonal quadratics (x_star given, so x_star_tol = 0):
d = x_star_tol + F ε (||x*|| + ||x0 - x*||), F = 1e4 for float64 and min(1e4, 100 κ) for
float32; the gap floor is 1e4 ε64 (|f*| + f(x0) - f*) + min(L d²/2, G d)."""

import pytest
import torch

from theory.certify import numerical_floor
from theory.problems import Quadratic

EPS64 = float(torch.finfo(torch.float64).eps)
EPS32 = float(torch.finfo(torch.float32).eps)


@pytest.mark.parametrize("kappa", [4.0, 50.0, 1e3])
def test_float32_distance_floor_is_100_kappa_epsilons(kappa):
    # f = (x1² + κ x2²)/2, x* = 0, x0 = (1, 0): ||x*|| + ||x0 - x*|| = 1, L/mu = κ
    problem = Quadratic([[1.0, 0.0], [0.0, kappa]], x_star=[0.0, 0.0], x0=[1.0, 0.0])
    assert problem.x_star_tol == 0
    assert problem.kappa == pytest.approx(kappa, rel=1e-12)
    expected = min(1e4, 100 * kappa) * EPS32 * 1.0
    assert numerical_floor(problem, "distance", torch.float32) == pytest.approx(expected, rel=1e-9)
    # float64 runs use F = 1e4 whatever κ
    assert numerical_floor(problem, "distance") == pytest.approx(1e4 * EPS64, rel=1e-9)


def test_gap_floor_counts_the_rounding_of_a_nonzero_f_star():
    # f = x²/2 + 5: f* = 5, f(x0) - f* = 0.5 at x0 = 1, so the measurement's rounding term is
    # 1e4 ε64 (5 + 0.5); plus L d²/2 with d = 1e4 ε64 (G is infinite for a quadratic)
    problem = Quadratic([[1.0]], x_star=[0.0], f_star=5.0, x0=[1.0])
    d = 1e4 * EPS64
    expected = 1e4 * EPS64 * (5.0 + 0.5) + d * d / 2
    assert numerical_floor(problem, "gap") == pytest.approx(expected, rel=1e-9)
