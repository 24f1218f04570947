"""Tests for two conventions of theory.certify that no test pinned (mutation audit 91b).

Expected values are derived by hand from the closed-form iterates of gradient descent on
f(x) = x²/2 (x_{k+1} = (1 - lr) x_k) and subgradient descent on f(x) = |x|.
"""

import numpy as np
import pytest
import torch

from theory.bounds import Bound
from theory.certify import certify, lr_schedule, run
from theory.problems import LeastAbsoluteDeviations, Quadratic
from theory.schedule_bounds import sgd_average_iterate_bound


def test_grad_sq_min_is_the_minimum_over_the_points_before_k():
    # f = x²/2 from x0 = 1 with lr 0.5: x_k = 0.5^k, ||∇f(x_k)||² = 0.25^k. Documented
    # (Trajectory.quantity): grad_sq_min[k] = min_{j<k} ||∇f(x_j)||², and ||∇f(x0)||² at k = 0.
    problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])
    trajectory = run(problem, lambda p: torch.optim.SGD(p, lr=0.5), steps=3, gradients=True)
    assert np.allclose(trajectory.grad_sq, [1.0, 0.25, 0.0625, 0.015625], rtol=1e-12, atol=0)
    # k=0: ||g_0||²; k=1: min(g_0) = 1; k=2: min(g_0, g_1) = 0.25; k=3: min(g_0..g_2) = 0.0625
    expected = [1.0, 1.0, 0.25, 0.0625]
    assert np.allclose(trajectory.quantity("grad_sq_min"), expected, rtol=1e-12, atol=0)


def test_grad_sq_min_takes_the_running_minimum_not_the_last_value():
    # lr = 1.5 on x²/2: x_k = (-0.5)^k; then lr = 3 makes it grow: x_{k+1} = -2 x_k.
    # With lrs [1.5, 3, 3]: x = 1, -0.5, 1, -2 and ||g||² = x²: 1, 0.25, 1, 4.
    problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])
    trajectory = run(
        problem,
        lambda p: torch.optim.SGD(p, lr=1.5),
        steps=3,
        before_step=lr_schedule([1.5, 3.0, 3.0]),
        gradients=True,
    )
    assert np.allclose(trajectory.grad_sq, [1.0, 0.25, 1.0, 4.0], rtol=1e-12, atol=0)
    # min_{j<k}: k=1 -> 1, k=2 -> min(1, 0.25), k=3 -> min(1, 0.25, 1)
    expected = [1.0, 1.0, 0.25, 0.25]
    assert np.allclose(trajectory.quantity("grad_sq_min"), expected, rtol=1e-12, atol=0)


def test_average_iterate_weights_the_start_point_by_the_first_weight():
    # Bound.average_weights: x̄_k = Σ_{j<=k} w_j x_j / Σ_{j<=k} w_j, w_j weighting x_j, the
    # point after j updates (x_0 gets w_0). f = x²/2, x0 = 1, lr 0.5: x = 1, 0.5, 0.25.
    # With w = (1, 2, 4): x̄_0 = 1, x̄_1 = (1 + 1)/3 = 2/3, x̄_2 = (1 + 1 + 1)/7 = 3/7.
    problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])
    bound = Bound(
        name="loose",
        quantity="distance",
        values=lambda k: np.full(np.shape(k), 10.0),
        formula="||xbar_k|| <= 10",
        average_weights=np.array([1.0, 2.0, 4.0]),
    )
    certificate = certify(problem, lambda p: torch.optim.SGD(p, lr=0.5), 2, bound)
    assert certificate.held
    assert np.allclose(certificate.observed, [1.0, 2 / 3, 3 / 7], rtol=1e-12, atol=0)


def test_sgd_average_iterate_bound_averages_with_eta_j_on_the_point_after_j_updates():
    # f = |x| (one row: every sampled subgradient is the exact one), x0 = 1,
    # steps lrs = (0.25, 0.5, 0.125):
    # x = 1, 0.75, 0.25, 0.125. [NJLS09] average x̄_k = Σ_{j<=k} η_j x_j / Σ_{j<=k} η_j:
    # x̄_0 = 1, x̄_1 = (0.25 + 0.375)/0.75 = 5/6, x̄_2 = (0.625 + 0.03125)/0.875 = 0.75
    # (the bound makes no claim at k = 3: x_3 has no step size of its own).
    lrs = [0.25, 0.5, 0.125]
    problem = LeastAbsoluteDeviations([[1.0]], [0.0], x0=[1.0])
    bound = sgd_average_iterate_bound(problem, lrs)
    certificate = certify(
        problem,
        lambda p: torch.optim.SGD(p, lr=lrs[0]),
        3,
        bound,
        before_step=lr_schedule(lrs),
        seeds=(0, 1),  # one row: every seed's sample is that row, so both runs are the same
    )
    assert np.allclose(certificate.trajectory.points[:, 0].tolist(), [1.0, 0.75, 0.25, 0.125])
    assert np.allclose(certificate.observed[:3], [1.0, 5 / 6, 0.75], rtol=1e-12, atol=0)


def _divergent_run_bound(values, direction):
    # GD with lr = 3 on f = x²/2 from x0 = 1: x_k = (-2)^k exactly (powers of 2), so the
    # observed distance ||x_k - x*|| is 2^k exactly
    problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])
    bound = Bound(
        name="test", quantity="distance", values=values, formula="test", direction=direction
    )
    return certify(problem, lambda p: torch.optim.SGD(p, lr=3.0), 10, bound, atol=0.0)


def test_upper_bound_within_rtol_of_the_observed_value_holds():
    # certify: "An upper bound holds at k when observed_k <= bound_k (1 + rtol) + atol", rtol =
    # 1e-9 for float64. A bound 5e-10 relative below the exact 2^k is within it:
    # 2^k <= 2^k (1 + 1e-9) / (1 + 5e-10)
    certificate = _divergent_run_bound(
        lambda k: 2.0 ** np.asarray(k, dtype=float) / (1 + 5e-10), "upper"
    )
    assert certificate.rtol == 1e-9
    assert np.array_equal(certificate.observed, 2.0 ** np.arange(11))
    assert certificate.held
    assert certificate.first_violation is None
    # 2e-9 below is outside it
    outside = _divergent_run_bound(
        lambda k: 2.0 ** np.asarray(k, dtype=float) / (1 + 2e-9), "upper"
    )
    assert not outside.held
    assert outside.first_violation == 0


def test_lower_bound_worst_ratio_is_bound_over_observed():
    # Certificate: worst_ratio is "the largest ... bound/observed (lower bounds)". With the
    # lower bound 2^k / (k + 2) under the observed 2^k, bound/observed = 1/(k + 2): largest
    # 1/2 at k = 0
    certificate = _divergent_run_bound(
        lambda k: 2.0 ** np.asarray(k, dtype=float) / (np.asarray(k, dtype=float) + 2), "lower"
    )
    assert certificate.held
    assert certificate.worst_ratio == pytest.approx(0.5, rel=1e-12)
    assert certificate.worst_step == 0
