"""The assumptions a certificate checks (``maximize``, sampled problems, the same problem, the
dtype's rounding, overflow), ``assert_rate``'s refusals and the bounds' input checks: each
test failed on the code of 2026-12-06 before its fix, most against an independent numpy run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from theory import bounds
from theory.bounds import (
    gd_bound,
    gd_divergence_bound,
    gd_long_step_bound,
    gd_nonconvex_bound,
    gd_optimal_step_bound,
    gd_strongly_convex_bound,
    gd_tight_bound,
    heavy_ball_bound,
    nesterov_bound,
    nesterov_strongly_convex_bound,
    pl_bound,
    sgd_hyperparameters,
    sgd_noise_ball_bound,
)
from theory.certify import certify, run
from theory.problems import LeastAbsoluteDeviations, LeastSquares, Quadratic, ReddiCounterexample
from theory.testing import assert_rate, least_squares_problem


def _numpy_gd(A, x_star, x0, lr, steps, sign=1.0):
    """x_{k+1} = x_k - sign lr A (x_k - x*), in float64 numpy; returns every ||x_k - x*||."""
    x, distances = np.array(x0, dtype=np.float64), []
    for _ in range(steps + 1):
        distances.append(np.linalg.norm(x - x_star))
        x = x - sign * lr * A @ (x - x_star)
    return np.array(distances)


# F1 ----------------------------------------------------------------------------------------------
def test_gradient_ascent_is_not_certified_by_a_descent_bound():
    problem = Quadratic.from_condition_number(5, 10.0, seed=0)
    lr = 2.1 / problem.L
    bound = gd_divergence_bound(problem, lr)
    ascent = certify(problem, lambda ps: torch.optim.SGD(ps, lr=lr, maximize=True), 30, bound)
    # an independent numpy run: ascent is a different map (it grows by 1 + lr L = 3.1, not 1.1)
    A, xs, x0 = problem.A.numpy(), problem.x_star.numpy(), problem.x0.numpy()
    ascent_np = _numpy_gd(A, xs, x0, lr, 30, sign=-1.0)
    np.testing.assert_allclose(ascent.observed, ascent_np, rtol=1e-10)
    assert ascent_np[-1] / ascent_np[-2] == pytest.approx(1 + lr * problem.L, rel=1e-3)
    assert not ascent.applicable
    assert not ascent.held
    assert "maximize" in ascent.not_applicable
    assert bound.hyperparameters["maximize"] is False
    # descent still certified; a hand-written optimizer without a maximize setting still qualifies
    descent = certify(problem, lambda ps: torch.optim.SGD(ps, lr=lr), 30, bound)
    assert descent.held

    class MySGD(torch.optim.Optimizer):
        def __init__(self, params, lr):
            off = {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}
            super().__init__(params, {"lr": lr, **off})

        @torch.no_grad()
        def step(self, closure):
            with torch.enable_grad():
                loss = closure()
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=-group["lr"])
            return loss

    assert certify(problem, lambda ps: MySGD(ps, lr=lr), 30, bound).held


# F2 ----------------------------------------------------------------------------------------------
def _sampled_least_squares():
    base = least_squares_problem(kappa=10.0, seed=0, dim=4, n=20)
    return base, LeastSquares(base.X_data, base.y_data, batch_size=1)


@pytest.mark.parametrize(
    "build",
    [
        lambda p: gd_bound(p, 1 / p.L),
        lambda p: gd_tight_bound(p, 1 / p.L),
        lambda p: gd_long_step_bound(p, 1.5 / p.L),
        lambda p: gd_strongly_convex_bound(p, 1 / p.L),
        lambda p: bounds.gd_strongly_convex_tight_bound(p, 1 / p.L),
        gd_optimal_step_bound,
        pl_bound,
        lambda p: gd_nonconvex_bound(p, 1 / p.L),
        lambda p: nesterov_bound(p, 10),
        nesterov_strongly_convex_bound,
    ],
)
def test_deterministic_bounds_refuse_a_sampled_problem(build):
    base, sampled = _sampled_least_squares()
    build(base)  # the full-gradient problem is fine
    with pytest.raises(ValueError, match=r"batch_size=1.*sgd_noise_ball_bound"):
        build(sampled)
    sgd_noise_ball_bound(sampled, 1 / (2 * sampled.L_max))  # the stochastic bound still builds


def test_a_bound_for_full_gradients_is_not_applicable_to_a_sampled_run():
    base, sampled = _sampled_least_squares()
    bound = gd_strongly_convex_bound(base, 1 / base.L)
    certificate = certify(sampled, lambda ps: torch.optim.SGD(ps, lr=1 / base.L), 20, bound)
    # independent: the sampled run really differs from full-batch GD
    X = base.X_data
    A = X.T @ X / X.shape[0]
    gd = _numpy_gd(A, base.x_star.numpy(), base.x0.numpy(), 1 / base.L, 20)
    assert not np.allclose(certificate.trajectory.distance, gd)
    assert not certificate.applicable
    assert "batch_size" in certificate.not_applicable


# F3 ----------------------------------------------------------------------------------------------
def test_a_bound_is_not_applicable_to_another_quadratic_with_the_same_ends():
    A = Quadratic.from_spectrum([0.1, 0.11, 0.12, 1.0], seed=0)
    B = Quadratic.from_spectrum([0.1, 0.98, 0.99, 1.0], seed=0)
    # independent: same x0, x*, f*, L, mu; different f(x0) (numpy)
    assert torch.equal(A.x0, B.x0)
    assert torch.equal(A.x_star, B.x_star)
    assert (A.L, A.mu, A.f_star) == (B.L, B.mu, B.f_star)
    d = (A.x0 - A.x_star).numpy()
    assert d @ A.A.numpy() @ d / 2 < d @ B.A.numpy() @ d / 2
    bound = gd_long_step_bound(A, 1.5)
    sgd = lambda ps: torch.optim.SGD(ps, lr=1.5)  # noqa: E731
    assert certify(A, sgd, 50, bound).held
    other = certify(B, sgd, 50, bound)
    assert not other.applicable
    assert "built for" in other.not_applicable
    # a problem rebuilt with the same arguments is the same problem
    again = Quadratic.from_spectrum([0.1, 0.11, 0.12, 1.0], seed=0)
    assert certify(again, sgd, 50, bound).held
    # the same top eigenvalue on another eigenvector
    x0, xs = np.array([0.0, 1.0]), np.zeros(2)
    C = Quadratic(np.diag([1.0, 10.0]), x_star=xs, x0=x0)
    D = Quadratic(np.diag([10.0, 1.0]), x_star=xs, x0=x0)
    other = certify(D, lambda ps: torch.optim.SGD(ps, lr=0.25), 20, gd_divergence_bound(C, 0.25))
    assert not other.applicable


# F4 ----------------------------------------------------------------------------------------------
def test_float32_runs_of_the_exact_divergence_bound_hold():
    problem = Quadratic.from_spectrum([0.01, 1.0], seed=1)
    lr = 2.5 / problem.L
    bound = gd_divergence_bound(problem, lr)
    # independent: the exact run (numpy float64) attains the bound along the top eigenvector
    A, xs, x0 = problem.A.numpy(), problem.x_star.numpy(), problem.x0.numpy()
    exact = _numpy_gd(A, xs, x0, lr, 60)
    assert np.all(exact >= bound(np.arange(61)) * (1 - 1e-12))
    sgd = lambda ps: torch.optim.SGD(ps, lr=lr)  # noqa: E731
    single = certify(problem, sgd, 60, bound, dtype=torch.float32)
    assert single.held, single.violation_message()
    assert single.rtol <= 1e4 * float(torch.finfo(torch.float32).eps) * 1.01
    assert certify(problem, sgd, 60, bound).rtol == 1e-9  # float64 default unchanged
    # a lower bound too large by 1/0.9 still fails (from step 1: at step 0 the other
    # eigen-component adds to the distance)
    too_big = certify(problem, sgd, 60, bound.scaled(1 / 0.9), dtype=torch.float32)
    assert not too_big.held
    assert too_big.first_violation <= 1
    # an exactly attained upper bound (both modes contract by (kappa-1)/(kappa+1)) holds in
    # float32, and scaled by 0.9 fails at step 0
    optimal = gd_optimal_step_bound(problem)
    step = lambda ps: torch.optim.SGD(ps, lr=optimal.hyperparameters["lr"])  # noqa: E731
    exact = _numpy_gd(A, xs, x0, optimal.hyperparameters["lr"], 30)
    np.testing.assert_allclose(exact, optimal(np.arange(31)), rtol=1e-12)
    assert certify(problem, step, 30, optimal, dtype=torch.float32).held
    small = certify(problem, step, 30, optimal.scaled(0.9), dtype=torch.float32)
    assert not small.held
    assert small.first_violation == 0


# F5 ----------------------------------------------------------------------------------------------
def test_assert_rate_refuses_bad_certificates_and_slack():
    problem = Quadratic.from_condition_number(6, 100.0, seed=0)
    bound = gd_strongly_convex_bound(problem, 1 / problem.L)
    hp = heavy_ball_bound(problem).hyperparameters
    heavy = lambda ps: torch.optim.SGD(ps, lr=hp["lr"], momentum=hp["momentum"])  # noqa: E731
    foreign = certify(problem, heavy, 100, bound)
    assert not foreign.applicable
    with pytest.raises(AssertionError, match="not applicable"):
        assert_rate(foreign)
    own = certify(problem, lambda ps: torch.optim.SGD(ps, lr=1 / problem.L), 100, bound)
    assert_rate(own)
    for slack, error in ((-5.0, ValueError), (math.nan, ValueError), ("0.1", TypeError)):
        with pytest.raises(error, match="slack"):
            assert_rate(own, slack=slack)
    with pytest.raises(TypeError, match="certificate"):
        assert_rate("not a certificate")
    # kappa = 1: exact in one step, nothing left to fit
    q = Quadratic.from_condition_number(4, 1.0, seed=0)
    exact = certify(q, lambda ps: torch.optim.SGD(ps, lr=1 / q.L), 20, gd_optimal_step_bound(q))
    assert math.isnan(exact.fitted_rate)
    with pytest.raises(AssertionError, match="no rate could be fitted"):
        assert_rate(exact)


# F6 ----------------------------------------------------------------------------------------------
def test_a_distance_near_the_overflow_threshold_is_measured():
    problem = Quadratic.from_condition_number(4, 10.0, seed=0)
    lr = 3.0 / problem.L
    trajectory = run(problem, lambda ps: torch.optim.SGD(ps, lr=lr), 520)
    k = trajectory.first_nonfinite
    point = trajectory.points[k].numpy()
    assert np.isfinite(point).all()
    diff = point - problem.x_star.numpy()
    scale = np.abs(diff).max()
    expected = scale * np.linalg.norm(diff / scale)  # numpy, scaled: no overflow
    assert math.isfinite(expected)
    assert trajectory.distance[k] == pytest.approx(expected, rel=1e-12)
    certificate = certify(
        problem, lambda ps: torch.optim.SGD(ps, lr=lr), 520, gd_divergence_bound(problem, lr)
    )
    assert certificate.first_violation == k  # where the run stopped (the loss overflowed)
    message = certificate.violation_message()
    assert "np.float64" not in message
    assert "f(x_k) - f* = inf" in message


# F7 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build",
    [
        lambda p: gd_bound(p, 0.1),
        lambda p: gd_tight_bound(p, 0.1),
        lambda p: gd_long_step_bound(p, 0.1),
        lambda p: nesterov_bound(p, 10),
    ],
)
def test_bounds_refuse_problems_without_a_positive_finite_L(build):
    lad = LeastAbsoluteDeviations.synthetic(n=20, dim=3, seed=0, batch_size=None)
    for problem in (ReddiCounterexample(), lad):
        with pytest.raises(ValueError, match="L-smooth") as error:
            build(problem)
        assert type(problem).__name__ in str(error.value)


def test_validation_of_bound_arguments():
    quad = Quadratic.from_spectrum([1.0, 2.0])
    with pytest.raises(ValueError, match="pl=-1"):
        bounds.pl_gap(1, L=1.0, pl=-1.0, gap0=1.0)
    with pytest.raises(ValueError, match="pl must not exceed L"):
        bounds.pl_gap(1, L=1.0, pl=2.0, gap0=1.0)
    with pytest.raises(TypeError, match="problem"):
        gd_nonconvex_bound(None, 0.1)
    with pytest.raises(TypeError, match="f_low='x'"):
        gd_nonconvex_bound(quad, 0.1, f_low="x")
    with pytest.raises(ValueError, match="f_low=nan"):
        gd_nonconvex_bound(quad, 0.1, f_low=math.nan)
    with pytest.raises(ValueError, match="f_low"):
        gd_nonconvex_bound(quad, 0.1, f_low=quad.f_star + 1.0)  # not a lower bound
    for k in ("3", True, 0.1, [1, 2.5]):
        with pytest.raises((TypeError, ValueError), match="k"):
            bounds.gd_convex_gap(k, 0.5, 1.0)
    with pytest.raises(ValueError, match="k"):
        bounds.heavy_ball_distance(0.1, 1.0, 0.1, 1.0)
    # an integral float array is fine, and heavy ball's bound is a non-negative norm bound
    values = bounds.heavy_ball_distance(np.arange(20.0), 1.0, 0.1, 1.0)
    assert np.all(values >= 0)
    assert values[0] == 1.0
    for value, error in ((None, TypeError), (math.nan, ValueError), ("0.1", TypeError)):
        with pytest.raises(error, match="lr"):
            sgd_hyperparameters(value)
    for value, error in ((math.nan, ValueError), (None, TypeError), (-1.0, ValueError)):
        with pytest.raises(error, match="momentum"):
            sgd_hyperparameters(0.1, value)
    with pytest.raises(ValueError, match="lr"):
        sgd_hyperparameters(np.array([0.1, math.nan]))
    assert sgd_hyperparameters(np.array([0.1, 0.2]))["lr"].tolist() == [0.1, 0.2]
    with pytest.raises(ValueError, match="top_component=nan"):
        bounds.gd_divergence_distance(3, 3.0, 1.0, math.nan)


def test_validation_of_certify_arguments():
    problem = Quadratic.from_condition_number(3, 10.0, seed=0)
    bound = gd_bound(problem, 1 / problem.L)
    sgd = lambda ps: torch.optim.SGD(ps, lr=1 / problem.L)  # noqa: E731
    assert certify(problem, sgd, 5, bound, rtol=np.float32(1e-6)).held
    with pytest.raises(TypeError, match="rtol"):
        certify(problem, sgd, 5, bound, rtol="0.1")
    with pytest.raises(TypeError, match=r"dtype=torch\.int64"):
        certify(problem, sgd, 5, bound, dtype=torch.int64)


def test_nesterov_at_kappa_one_states_buildable_hyperparameters():
    q = Quadratic.from_condition_number(3, 1.0, seed=0)
    bound = nesterov_strongly_convex_bound(q)
    hp = bound.hyperparameters
    assert hp["momentum"] == 0.0
    assert hp["nesterov"] is False
    optimizer = lambda ps: torch.optim.SGD(ps, **hp)  # noqa: E731
    certificate = certify(q, optimizer, 10, bound)
    # independent: with momentum 0 the method is GD at 1/L, exact in one step on kappa = 1
    A, xs, x0 = q.A.numpy(), q.x_star.numpy(), q.x0.numpy()
    assert _numpy_gd(A, xs, x0, 1 / q.L, 1)[1] < 1e-12
    assert certificate.held, certificate.violation_message()


def test_dampening_is_irrelevant_without_momentum():
    problem = Quadratic.from_condition_number(4, 10.0, seed=0)
    lr = 1 / problem.L
    bound = gd_bound(problem, lr)
    damped = certify(problem, lambda ps: torch.optim.SGD(ps, lr=lr, dampening=0.5), 30, bound)
    A, xs, x0 = problem.A.numpy(), problem.x_star.numpy(), problem.x0.numpy()
    np.testing.assert_allclose(damped.trajectory.distance, _numpy_gd(A, xs, x0, lr, 30), rtol=1e-9)
    assert damped.held, damped.violation_message()
    # with momentum, dampening still matters
    hb = heavy_ball_bound(problem)
    hp = hb.hyperparameters
    moved = certify(
        problem,
        lambda ps: torch.optim.SGD(ps, lr=hp["lr"], momentum=hp["momentum"], dampening=0.5),
        10,
        hb,
    )
    assert not moved.applicable
    assert "dampening" in moved.not_applicable


# F8 ----------------------------------------------------------------------------------------------
def test_the_readme_states_gd_bounds_formula_beside_it():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    at = next(i for i, line in enumerate(lines) if "MySGD(params, lr=lr), 300, gd_bound(" in line)
    comment = lines[at + 1].split("#", 1)[1].strip()
    problem = Quadratic.from_condition_number(3, 10.0, seed=0)
    assert comment == gd_bound(problem, 1 / problem.L).formula
