"""theory.testing's documented conventions, expected values by hand: assert_converges passes when
quantity(x_steps) <= tol * quantity(x_0) (equality included); quadratic_problem is seeded by
``seed``; least_squares_problem's targets carry 0.1 noise, so f* > 0."""

import pytest
import torch

from theory.problems import Quadratic
from theory.testing import assert_converges, least_squares_problem, quadratic_problem


def test_assert_converges_accepts_a_final_value_equal_to_tol_times_the_start():
    # f = x²/2, x0 = 1, lr 0.5: x_1 = 0.5, gap 0.125 = 0.25 * gap_0 exactly (powers of 2)
    problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])
    sgd = lambda p: torch.optim.SGD(p, lr=0.5)  # noqa: E731
    trajectory = assert_converges(problem, sgd, steps=1, tol=0.25)
    assert trajectory.gap.tolist() == [0.5, 0.125]
    with pytest.raises(AssertionError, match="not converged"):
        assert_converges(problem, sgd, steps=1, tol=0.25 * (1 - 1e-12))


def test_quadratic_problem_depends_on_its_seed():
    # Quadratic.from_condition_number(dim, kappa, seed=seed): a Haar rotation drawn from seed
    a, b = quadratic_problem(10.0, seed=0), quadratic_problem(10.0, seed=1)
    assert a.kappa == b.kappa == pytest.approx(10.0)
    assert not torch.equal(a.A, b.A)
    assert torch.equal(quadratic_problem(10.0, seed=1).A, b.A)


def test_least_squares_problem_has_noisy_targets():
    # y = X w + 0.1 noise with noise ~ N(0, I): the residual at x* is not 0, so f* > 0
    # (f* = ||X x* - y||² / (2 n) = 0.1² ||P⊥ noise||² / (2 n), about 0.005 (n - d)/n)
    problem = least_squares_problem(kappa=10.0, seed=0, dim=10, n=50)
    assert problem.f_star > 1e-4
