"""Kills the surviving testing.py mutant T01 of audit 91: relative=False compares the final
value with tol itself, not tol times the start value."""

import pytest
import torch

from theory.problems import Quadratic
from theory.testing import assert_converges


def test_absolute_tolerance_is_not_scaled_by_the_start():
    # f(x) = x^2/2, x0 = 10, GD lr = 0.5: x_k = 10 / 2^k, gap_10 = 50 / 4^10 = 4.77e-5 (hand);
    # gap_0 = 50: relative 1e-5 allows 5e-4 (passes), absolute 1e-5 does not (fails)
    problem = Quadratic([[1.0]], x_star=[0.0], x0=[10.0])

    def make(p):
        return torch.optim.SGD(p, lr=0.5)

    trajectory = assert_converges(problem, make, 10, tol=1e-5)
    assert trajectory.gap[-1] == pytest.approx(50 / 4**10, rel=1e-12)
    with pytest.raises(AssertionError, match="not converged"):
        assert_converges(problem, make, 10, tol=1e-5, relative=False)
