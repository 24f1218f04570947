"""schedule_bounds' D is ||x0 - x*|| ([NJLS09]; sgd_average_iterate_bound's docstring,
"D = ||x0 - x*||"), checked by hand on f(x) = |x - 2| (x* = 2, G = 1)."""

import pytest

from theory.problems import LeastAbsoluteDeviations
from theory.schedule_bounds import sgd_average_iterate_bound


def test_average_iterate_bound_uses_the_distance_from_x0_to_x_star():
    # f = |x - 2|: x* = 2, x0 = 0.5, so D = 1.5 (||x0|| = 0.5 would be wrong), G = 1.
    # (D² + G² Σ η²) / (2 Σ η) with η = (1, 1): k = 0: (2.25 + 1)/2, k = 1: (2.25 + 2)/4
    problem = LeastAbsoluteDeviations([[1.0]], [2.0], x0=[0.5])
    assert float(problem.x_star[0]) == pytest.approx(2.0)
    assert pytest.approx(1.0) == problem.G
    bound = sgd_average_iterate_bound(problem, [1.0, 1.0])
    assert bound([0, 1]).tolist() == pytest.approx([1.625, 1.0625], rel=1e-12)
