"""The classical results added with the schedule engine, each certified where it applies and shown
to fail against a deliberately too-small bound: GD on non-convex smooth f, the PL rate, the tight
worst case of GD at 1/L (attained on Drori & Teboulle's Huber function), Nesterov's Thm 2.1.15
rate, and constant-step SGD's noise ball."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optim
import theory
from theory import bounds
from theory.problems import DTYPE, LeastSquares, Problem, Quadratic, Rosenbrock


def _gd(lr):
    return lambda params: optim.SGD(params, lr=lr)


# ------------------------------------------------------------------------------- non-convex
def test_nonconvex_gradient_bound_on_rosenbrock():
    problem = Rosenbrock(x0=[1.2, 1.3])
    with pytest.raises(ValueError, match="local smoothness"):
        theory.gd_nonconvex_bound(problem, 1e-4)
    L = problem.sublevel_smoothness()
    assert L > problem.L  # the box is larger than a neighbourhood of x*
    bound = theory.gd_nonconvex_bound(problem, 1 / L, L=L)
    certificate = theory.certify(problem, _gd(1 / L), 300, bound)
    assert certificate.held, certificate.summary()
    # the quantity is min_{j<k} ||grad f(x_j)||², recomputed from the iterates
    points = certificate.trajectory.points
    norms = [float(problem.grad(points[j]).square().sum()) for j in range(300)]
    assert certificate.observed[300] == pytest.approx(min(norms), rel=1e-12)
    assert certificate.bound_values[10] == pytest.approx(
        2 * L * float(problem.loss(problem.x0)) / 10, rel=1e-12
    )
    assert not theory.certify(problem, _gd(1 / L), 300, bound.scaled(0.01)).held


def test_nonconvex_bound_at_the_long_step_and_the_pl_rate_on_least_squares():
    # rank 6 < d = 10 < n = 30: not strongly convex (mu = 0) but PL, and f* > 0 (noisy y)
    rng = np.random.default_rng(1)
    U, _ = np.linalg.qr(rng.standard_normal((30, 6)))
    V, _ = np.linalg.qr(rng.standard_normal((10, 6)))
    X = U @ np.diag(np.linspace(1.0, 0.2, 6) * math.sqrt(30)) @ V.T
    problem = LeastSquares(X, rng.standard_normal(30))
    assert problem.mu == 0.0
    assert problem.f_star > 0.1
    pl = problem.pl_constant
    assert pl == pytest.approx(0.04, rel=1e-9)  # smallest positive eigenvalue of X^T X / n
    lr = 1.5 / problem.L
    gradient = theory.certify(problem, _gd(lr), 100, theory.gd_nonconvex_bound(problem, lr))
    assert gradient.held
    pl_bound = theory.pl_bound(problem)
    assert pl_bound.rate == pytest.approx(1 - pl / problem.L)
    certificate = theory.certify(problem, _gd(1 / problem.L), 300, pl_bound)
    assert certificate.held, certificate.summary()
    theory.assert_rate(certificate)
    # on a quadratic the gap decays like (1 - pl/L)^(2k): a bound claiming (1 - pl/L)^(3k) fails
    faster = theory.Bound(
        name="too_fast",
        quantity="gap",
        values=lambda k: pl_bound(k) * (1 - pl / problem.L) ** (2 * np.asarray(k, dtype=float)),
        formula="(1 - pl/L)^(3k) gap0",
        hyperparameters=pl_bound.hyperparameters,
    )
    assert not theory.certify(problem, _gd(1 / problem.L), 300, faster).held
    with pytest.raises(ValueError, match="pl_constant"):
        theory.pl_bound(Rosenbrock())


# ------------------------------------------------------------------------- GD: tight bounds
class Huber(Problem):
    """Drori & Teboulle's (2014) worst case for GD at 1/L after N steps: f(x) = L x²/2 for
    |x| <= δ, L δ |x| - L δ²/2 beyond, δ = R/(2N + 1), x0 = R."""

    def __init__(self, L: float, R: float, N: int):
        self.L, self.mu, self.delta = L, 0.0, R / (2 * N + 1)
        self.x_star = torch.zeros(1, dtype=DTYPE)
        self.f_star = 0.0
        self.x0 = torch.tensor([R], dtype=DTYPE)

    def loss(self, x):
        a = x.abs().sum()
        quadratic = self.L * a**2 / 2
        linear = self.L * self.delta * a - self.L * self.delta**2 / 2
        return torch.where(a <= self.delta, quadratic, linear)


def test_drori_teboulle_bound_is_attained_by_its_worst_case_function():
    N, L, R = 25, 2.0, 3.0
    problem = Huber(L, R, N)
    bound = theory.gd_tight_bound(problem, 1 / L)
    certificate = theory.certify(problem, _gd(1 / L), N, bound)
    assert certificate.held
    assert certificate.observed[N] == pytest.approx(L * R**2 / (4 * N + 2), rel=1e-12)
    assert certificate.worst_ratio == pytest.approx(1.0, rel=1e-12)  # tight
    assert certificate.worst_step == N
    assert not theory.certify(problem, _gd(1 / L), N, bound.scaled(0.99)).held


@pytest.mark.parametrize("factor", [0.5, 1.0])
def test_drori_teboulle_bound_holds_on_quadratics_and_halves_the_textbook_one(factor):
    problem = Quadratic.from_spectrum([0.0, 1e-3, 0.1, 1.0], seed=4)
    lr = factor / problem.L
    tight = theory.gd_tight_bound(problem, lr)
    assert theory.certify(problem, _gd(lr), 200, tight).held
    k = np.arange(1, 201)
    textbook = theory.gd_bound(problem, lr)(k)
    assert np.all(tight(k) < textbook)
    far = tight(10**6) / theory.gd_bound(problem, lr)(10**6)
    assert float(far) == pytest.approx(0.5, rel=1e-5)  # L r²/(4k lr L) vs r²/(2 lr k)


def test_nesterov_2_1_15_rate_is_the_one_observed_at_kappa_100():
    problem = Quadratic.from_condition_number(30, kappa=100.0, seed=0)
    lr = 1 / problem.L
    tight = theory.gd_strongly_convex_tight_bound(problem, lr)
    assert tight.rate == pytest.approx(1 - 2 / 101, rel=1e-12)  # 0.980198
    certificate = theory.certify(problem, _gd(lr), 400, tight)
    assert certificate.held
    theory.assert_rate(certificate, at_least=0.98 * tight.rate)  # attained, not only bounded
    old = theory.certify(problem, _gd(lr), 400, theory.gd_strongly_convex_bound(problem, lr))
    assert old.predicted_rate == pytest.approx(0.99)
    assert certificate.fitted_rate < old.predicted_rate
    too_small = tight.scaled(0.5 * certificate.worst_ratio)
    assert not theory.certify(problem, _gd(lr), 400, too_small).held
    edge = 2 / (problem.mu + problem.L)
    assert theory.certify(
        problem, _gd(edge), 100, theory.gd_strongly_convex_tight_bound(problem, edge)
    ).held
    with pytest.raises(ValueError, match=r"2/\(mu \+ L\)"):
        theory.gd_strongly_convex_tight_bound(problem, 1.01 * edge)


# ------------------------------------------------------------------------------------- SGD
def test_constant_step_sgd_noise_ball_on_a_sampled_least_squares():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 5))
    problem = LeastSquares(
        X, X @ rng.standard_normal(5) + 0.5 * rng.standard_normal(40), batch_size=1
    )
    assert problem.stochastic
    assert problem.L_max == pytest.approx(np.max(np.sum(X**2, axis=1)))
    residual = X @ problem.x_star.numpy() - problem.y_data
    assert problem.sigma_star_sq == pytest.approx(
        np.mean(np.sum((X * residual[:, None]) ** 2, axis=1))
    )
    lr = 1 / (2 * problem.L_max)
    bound = theory.sgd_noise_ball_bound(problem, lr)
    seeds = range(6)
    certificate = theory.certify(problem, _gd(lr), 300, bound, seeds=seeds)
    assert certificate.held, certificate.summary()
    ball = 2 * lr * problem.sigma_star_sq / problem.mu
    assert bound(10**6) == pytest.approx(ball)
    assert certificate.observed[-1] > 0.01 * ball  # the noise keeps it off x*
    assert not theory.certify(problem, _gd(lr), 300, bound.scaled(0.05), seeds=seeds).held
    with pytest.raises(ValueError, match=r"1/\(2 L_max\)"):
        theory.sgd_noise_ball_bound(problem, 2 * lr)
    with pytest.raises(ValueError, match="batch_size=1"):
        theory.sgd_noise_ball_bound(LeastSquares(X, problem.y_data), lr)


def test_new_closed_forms_reject_bad_input():
    with pytest.raises(ValueError, match="lr must be below 2/L"):
        bounds.gd_nonconvex_grad_sq_min(1, 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="lr must satisfy"):
        bounds.gd_tight_convex_gap(1, 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="pl must not exceed L"):
        bounds.pl_gap(1, 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="sigma_sq"):
        bounds.sgd_noise_ball_distance_sq(1, 0.1, 1.0, 1.0, -1.0)
    assert math.isinf(float(bounds.gd_nonconvex_grad_sq_min(0, 0.5, 1.0, 1.0)))
