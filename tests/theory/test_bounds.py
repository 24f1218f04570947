"""Bounds: closed forms against exact computations on quadratics, and certified runs of
independent reference implementations (FISTA, Nesterov's scheme III written in numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theory import bounds
from theory.bounds import sgd_nesterov_gradient_point
from theory.certify import certify, run
from theory.problems import LeastSquares, Problem, Quadratic, Rosenbrock
from theory.testing import assert_bound_holds


# ------------------------------------------------------------------------ step-size limits
def test_step_size_limits():
    limits = bounds.step_size_limits(L=4.0, mu=1.0)
    assert (limits.safe, limits.edge, limits.optimal) == (0.25, 0.5, 0.4)
    alpha, beta = limits.heavy_ball
    assert alpha == pytest.approx(4 / (2 + 1) ** 2)
    assert beta == pytest.approx((1 / 3) ** 2)
    assert limits.nesterov == (0.25, pytest.approx(1 / 3))
    assert set(limits.assumptions) == {"safe", "edge", "optimal", "heavy_ball", "nesterov"}
    convex = bounds.step_size_limits(L=2.0)
    assert convex.optimal is None
    assert convex.heavy_ball is None
    assert convex.safe == 0.5
    with pytest.raises(ValueError, match="L must be a positive"):
        bounds.step_size_limits(L=0.0)
    with pytest.raises(ValueError, match="mu must not exceed L"):
        bounds.step_size_limits(L=1.0, mu=2.0)


def test_stability_edge_separates_convergence_from_divergence_on_a_1d_quadratic():
    L = 3.0
    edge = bounds.stability_edge(L)
    for factor, grows in ((0.99, False), (1.01, True)):
        x = 1.0
        for _ in range(2000):
            x -= factor * edge * L * x  # gradient descent on f(x) = L x² / 2
        assert (abs(x) > 1.0) == grows


# ---------------------------------------------------------------------------- closed forms
def test_gd_rates_are_tight_on_a_diagonal_quadratic():
    # on f = 1/2 Σ λ_i x_i² gradient descent is x_k = (1 - lr λ_i)^k x_0 coordinate-wise
    eigenvalues = np.array([0.2, 1.0, 5.0])  # mu = 0.2, L = 5
    x0 = np.array([1.0, -2.0, 0.5])
    k = np.arange(0, 40)
    for lr in (0.05, 0.2):
        exact = ((1 - lr * eigenvalues)[None, :] ** k[:, None] * x0) ** 2
        bound = bounds.gd_strongly_convex_distance_sq(k, lr, 0.2, float(x0 @ x0))
        assert np.all(exact.sum(axis=1) <= bound * (1 + 1e-12))
        # the slowest mode alone attains the rate
        np.testing.assert_allclose(exact[:, 0] / exact[0, 0], (1 - lr * 0.2) ** (2 * k))
    lr = 2 / (5.0 + 0.2)
    exact = np.sqrt((((1 - lr * eigenvalues)[None, :] ** k[:, None] * x0) ** 2).sum(axis=1))
    bound = bounds.gd_optimal_step_distance(k, 5.0, 0.2, float(np.linalg.norm(x0)))
    assert np.all(exact <= bound * (1 + 1e-12))
    # both extreme modes contract by exactly (κ-1)/(κ+1) = 4.8/5.2
    assert abs(1 - lr * 5.0) == pytest.approx(4.8 / 5.2) == abs(1 - lr * 0.2)
    gap = bounds.gd_convex_gap(np.array([0, 1, 4]), 0.5, 2.0)
    assert gap[0] == math.inf
    assert list(gap[1:]) == [2.0, 0.5]


def test_heavy_ball_parameters_make_every_mode_contract_at_rate_q():
    L, mu = 9.0, 1.0
    alpha, beta = bounds.heavy_ball_parameters(L, mu)
    q = bounds.heavy_ball_rate(L, mu)
    assert q == pytest.approx(0.5)
    assert beta == pytest.approx(0.25)
    assert alpha == pytest.approx(0.25)
    for lam in np.linspace(mu, L, 41):
        M = np.array([[1 + beta - alpha * lam, -beta], [1.0, 0.0]])
        assert max(abs(np.linalg.eigvals(M))) == pytest.approx(q, rel=1e-6)


@pytest.mark.parametrize("kappa", [4.0, 100.0])
def test_heavy_ball_distance_bounds_the_exact_iteration_norm_and_is_tight(kappa):
    L, mu = kappa, 1.0
    alpha, beta = bounds.heavy_ball_parameters(L, mu)
    q = bounds.heavy_ball_rate(L, mu)
    k = np.arange(0, 120)
    bound = bounds.heavy_ball_distance(k, L, mu, 1.0)
    assert bound[0] == 1.0
    worst = np.zeros(k.size)
    for lam in np.linspace(mu, L, 201):  # the extremes included
        M = np.array([[1 + beta - alpha * lam, -beta], [1.0, 0.0]])
        power = np.eye(2)
        for index in range(k.size):
            # x_{-1} = x_0: the state starts at (1, 1) for a unit error in this mode
            worst[index] = max(worst[index], abs((power @ np.array([1.0, 1.0]))[0]))
            power = M @ power
    assert np.all(worst <= bound * (1 + 1e-9))
    # the factor k is real (Jordan block at mu and L) and the bound is within a constant of it
    assert worst[100] > 50 * q**100
    assert np.all(bound[10:] / worst[10:] < 6.0)


def test_nesterov_closed_forms():
    k = np.array([0, 1, 9])
    np.testing.assert_allclose(bounds.nesterov_convex_gap(k, 2.0, 3.0), [12.0, 3.0, 0.12])
    values = bounds.nesterov_strongly_convex_gap(k, 4.0, 1.0, 2.0, 6.0)
    np.testing.assert_allclose(values, 5.0 * 0.5 ** k.astype(float))


def test_divergence_lower_bound_is_exact_for_the_top_mode():
    values = bounds.gd_divergence_distance(np.arange(4), 2.5, 1.0, -2.0)
    np.testing.assert_allclose(values, 2.0 * 1.5 ** np.arange(4))


# ------------------------------------------------------------- references certified by bounds
class Fista(torch.optim.Optimizer):
    """FISTA with constant step 1/L (Beck & Teboulle, 2009, section 4), written independently of
    ``theory``: the parameter holds x_k. The paper's y_1 = x_0, t_1 = 1, x_k = y_k - ∇f(y_k)/L,
    t_{k+1} = (1 + √(1 + 4 t_k²))/2, y_{k+1} = x_k + ((t_k - 1)/t_{k+1}) (x_k - x_{k-1}); so
    ``step(closure)`` number u (0-based) evaluates the gradient at the paper's y_{u+1}. The
    coefficient of x_u - x_{u-1} it will use is kept in ``group["extrapolation"]``
    (0 for u = 0, 1), as ``theory.nesterov_bound`` expects."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr, "extrapolation": 0.0})

    @torch.no_grad()
    def step(self, closure):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if not state:  # t is the paper's t_u at step u >= 1 (t_1 = 1)
                    state["t"], state["previous"], state["u"] = 1.0, p.detach().clone(), 0
                x = p.detach().clone()
                p.add_(x - state["previous"], alpha=group["extrapolation"])  # p = y
                with torch.enable_grad():
                    loss = closure()
                p.sub_(p.grad, alpha=group["lr"])  # x_{u+1} = y - lr ∇f(y)
                state["previous"], state["u"] = x, state["u"] + 1
                if state["u"] >= 2:  # state["t"] becomes t_u of the next step u
                    state["t"] = (1 + math.sqrt(1 + 4 * state["t"] ** 2)) / 2
                t = state["t"]  # the next step's (t_u - 1)/t_{u+1} (0 for u = 1)
                group["extrapolation"] = (t - 1) / ((1 + math.sqrt(1 + 4 * t * t)) / 2)
        return loss


@pytest.mark.parametrize("family", ["quadratic", "underdetermined_least_squares"])
def test_nesterov_convex_bound_holds_for_fista(family):
    if family == "quadratic":
        problem = Quadratic.from_spectrum([0.0, 1e-4, 0.3, 1.0, 4.0], seed=2)  # mu = 0
    else:
        generator = np.random.default_rng(3)
        problem = LeastSquares(generator.standard_normal((6, 12)), generator.standard_normal(6))
    assert problem.mu == 0.0
    bound = bounds.nesterov_bound(problem)
    certificate = assert_bound_holds(problem, lambda p: Fista(p, lr=1 / problem.L), 300, bound)
    assert certificate.observed[-1] < 0.05 * certificate.observed[0]
    # gradient descent with the same step is slower: its gap at the end is larger
    gd = run(problem, lambda p: torch.optim.SGD(p, lr=1 / problem.L), 300)
    assert certificate.observed[-1] < gd.gap[-1]


def test_fista_keeps_the_papers_momentum():
    problem = Quadratic.from_spectrum([0.0, 1.0], seed=0)
    trajectory = run(problem, lambda p: Fista(p, lr=1 / problem.L), 6)
    t, expected = [1.0], [0.0]  # step 0: x_{-1} = x_0; then (t_u - 1)/t_{u+1}, t_1 = 1
    for _ in range(5):
        t.append((1 + math.sqrt(1 + 4 * t[-1] ** 2)) / 2)
        expected.append((t[-2] - 1) / t[-1])
    assert expected[1] == 0.0
    np.testing.assert_allclose(trajectory.hyperparameters["extrapolation"], expected[:6])
    np.testing.assert_allclose(bounds.nesterov_extrapolation(6), expected[:6])


class _Huber(Problem):
    """Drori and Teboulle's worst case for gradient descent: the Huber function with L = 1,
    ||x0 - x*|| = 1, flat beyond 1/(2N + 1) (the repro of the audit)."""

    def __init__(self, N):
        self.L, self.mu, self.f_star, self.N = 1.0, 0.0, 0.0, N
        self.x_star = torch.zeros(1, dtype=torch.float64)
        self.x0 = torch.ones(1, dtype=torch.float64)

    def loss(self, x):
        n = torch.linalg.vector_norm(x)
        t = 1 / (2 * self.N + 1)
        return torch.where(n >= t, t * n - t * t / 2, n * n / 2)


@pytest.mark.parametrize(
    "settings", [{}, {"momentum": 0.99, "nesterov": True}], ids=["gd", "constant_nesterov"]
)
def test_nesterov_bound_does_not_apply_to_other_methods(settings):
    # before: the bound pinned only lr = 1/L, and these runs were reported violated (GD at
    # step 13, constant-momentum Nesterov at step 18; neither has an O(1/k^2) guarantee)
    problem = _Huber(40)
    bound = bounds.nesterov_bound(problem)
    make = lambda p: torch.optim.SGD(p, lr=1.0, **settings)  # noqa: E731
    certificate = certify(problem, make, 40, bound)
    assert certificate.status == "not applicable", certificate.summary()
    assert "extrapolation" in certificate.not_applicable
    assert certify(problem, lambda p: Fista(p, lr=1.0), 40, bound).held


def _nesterov_scheme_iii(problem, steps):
    """Nesterov (2004) constant step scheme III in numpy: x_{k+1} = y_k - ∇f(y_k)/L,
    y_{k+1} = x_{k+1} + β (x_{k+1} - x_k), β = (√L - √mu)/(√L + √mu), y_0 = x_0."""
    L, mu = problem.L, problem.mu
    beta = (math.sqrt(L) - math.sqrt(mu)) / (math.sqrt(L) + math.sqrt(mu))
    A, x_star = problem.A.numpy(), problem.x_star.numpy()
    x = y = problem.x0.numpy().copy()
    points = [x.copy()]
    for _ in range(steps):
        x_next = y - A @ (y - x_star) / L
        y = x_next + beta * (x_next - x)
        x = x_next
        points.append(x.copy())
    return np.array(points)


def test_sgd_nesterov_gradient_point_recovers_schemes_iii_iterates():
    problem = Quadratic.from_condition_number(6, kappa=30.0, seed=4)
    bound = bounds.nesterov_strongly_convex_bound(problem)
    trajectory = run(
        problem,
        lambda p: torch.optim.SGD(p, **bound.hyperparameters),
        60,
        observe=sgd_nesterov_gradient_point,
    )
    np.testing.assert_allclose(
        trajectory.points.numpy(), _nesterov_scheme_iii(problem, 60), rtol=1e-10, atol=1e-12
    )
    certificate = certify(problem, lambda p: torch.optim.SGD(p, **bound.hyperparameters), 60, bound)
    assert certificate.held


# --------------------------------------------------------------------------------- bad input
def test_bounds_reject_bad_input():
    problem = Quadratic.from_condition_number(4, kappa=10.0, L=2.0)
    with pytest.raises(ValueError, match=r"lr must satisfy 0 < lr <= 1/L"):
        bounds.gd_bound(problem, 0.6)
    for bad in (0.0, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="lr must be a positive finite number"):
            bounds.gd_bound(problem, bad)
    with pytest.raises(TypeError, match="lr"):
        bounds.gd_bound(problem, "0.1")
    with pytest.raises(ValueError, match="stability edge"):
        bounds.gd_divergence_bound(problem, 0.9)
    with pytest.raises(ValueError, match="convex"):
        bounds.gd_bound(Rosenbrock(), 1e-4)
    convex_only = Quadratic.from_spectrum([0.0, 1.0])
    with pytest.raises(ValueError, match="strongly convex"):
        bounds.gd_strongly_convex_bound(convex_only, 0.5)
    generator = np.random.default_rng(0)
    least_squares = LeastSquares(generator.standard_normal((20, 3)), generator.standard_normal(20))
    bounds.heavy_ball_bound(least_squares)  # a quadratic too
    with pytest.raises(ValueError, match="k must be non-negative"):
        bounds.gd_bound(problem, 0.5)(-1)
    with pytest.raises(ValueError, match="quantity"):
        bounds.Bound(name="x", quantity="loss", values=lambda k: k, formula="")


# ----------------------------------------------------------------------------------------------
# GD between 1/L and 2/L: Nesterov (2004), Theorem 2.1.14
# ----------------------------------------------------------------------------------------------
def test_long_step_gap_bound_matches_the_theorem_and_holds_on_quadratics():
    from theory import certify, gd_long_step_bound
    from theory.problems import Quadratic

    problem = Quadratic.from_condition_number(20, 50.0, seed=3)
    L = problem.L
    for multiple in (0.5, 1.0, 1.5, 1.9, 1.99):
        lr = multiple / L
        bound = gd_long_step_bound(problem, lr)
        # Written here from the theorem: 2 D0 r0^2 / (2 r0^2 + k h (2 - L h) D0).
        r0_sq = float(((problem.x0 - problem.x_star) ** 2).sum())
        d0 = float(problem.loss(problem.x0)) - problem.f_star
        k = np.arange(0, 400)
        expected = 2 * d0 * r0_sq / (2 * r0_sq + k * lr * (2 - L * lr) * d0)
        np.testing.assert_allclose(bound(k), expected, rtol=1e-13)
        assert float(bound(0)) == pytest.approx(d0, rel=1e-13)
        certificate = certify(
            problem, lambda params, lr=lr: torch.optim.SGD(params, lr=lr), 400, bound
        )
        assert certificate.held, (multiple, certificate.first_violation)


def test_long_step_bound_is_tight_enough_to_fail_for_a_faster_claim():
    """A bound four times smaller than the theorem's is violated by GD at 1.9/L: the
    certificate can fail, so holding means something."""
    from theory import Bound, certify, gd_long_step_bound
    from theory.problems import Quadratic

    problem = Quadratic.from_condition_number(20, 1000.0, seed=1)
    bound = gd_long_step_bound(problem, 1.9 / problem.L)
    quarter = Bound(
        name="quarter",
        quantity="gap",
        values=lambda k: np.where(k > 0, bound(k) / 4, np.inf),  # no claim at the start
        formula="bound / 4",
    )
    certificate = certify(problem, lambda p: torch.optim.SGD(p, lr=1.9 / problem.L), 400, quarter)
    assert not certificate.held
    assert certificate.first_violation > 0


@pytest.mark.parametrize("multiple", [2.0, 2.5])
def test_long_step_bound_refuses_the_edge_and_beyond(multiple):
    from theory import gd_long_step_bound, gd_long_step_gap
    from theory.problems import Quadratic

    problem = Quadratic.from_condition_number(4, 10.0, seed=0)
    with pytest.raises(ValueError, match="2/L"):
        gd_long_step_bound(problem, multiple / problem.L)
    with pytest.raises(ValueError, match="2/L"):
        gd_long_step_gap(3, multiple, 1.0, 1.0, 1.0)
