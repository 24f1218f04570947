"""The project's optimizers (``optim``) certified on problems with known answers.

* every optimizer, on every execution path, converges on a well-conditioned quadratic and a
  least-squares problem;
* plain SGD (momentum 0) satisfies the 1/L bounds (convex gap and strongly convex distance) on
  24 random quadratic, least-squares and logistic problems at lr in {0.1, 0.5, 1}/L;
* it diverges at 2.1/L on quadratics (the exact lower bound |1 - lr L|^k |<v, x0 - x*>| holds);
* heavy ball and Nesterov (SGD momentum / nesterov) meet their rates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optim
from theory.bounds import (
    gd_bound,
    gd_divergence_bound,
    gd_optimal_step_bound,
    gd_strongly_convex_bound,
    heavy_ball_bound,
    heavy_ball_rate,
    nesterov_strongly_convex_bound,
)
from theory.certify import run
from theory.problems import DTYPE, LeastSquares, LogisticRegression, Quadratic
from theory.testing import assert_bound_holds, assert_converges, assert_rate

IMPLS = ("single", "foreach", "flat")

# (class, settings, tol): each rule reaches tol x the initial gap within 400 steps on the problems
# below. RMSprop with a constant lr does not converge exactly: once its average tracks g², its
# step is about lr sign(g), and it ends in a cycle of size ~lr around x*, hence 1e-5.
# Adadelta: near the optimum both of its accumulators fall to eps and its step becomes lr * grad,
# plain gradient descent, so lr must stay below the 2/L edge (lr = 1 bounces on the
# least-squares problem, L = 2.3); eps = 1e-4 lets its step grow within the budget.
OPTIMIZERS = {  # lr None: 1/L of the problem
    "SGD": (optim.SGD, {"lr": None}, 1e-8),
    "SGD-momentum": (optim.SGD, {"lr": None, "momentum": 0.5}, 1e-8),
    "Adagrad": (optim.Adagrad, {"lr": 0.5}, 1e-8),
    "RMSprop": (optim.RMSprop, {"lr": 0.01}, 1e-5),
    "Adam": (optim.Adam, {"lr": 0.05}, 1e-8),
    "AdamW": (optim.AdamW, {"lr": 0.05, "weight_decay": 0.0}, 1e-8),
    "Adadelta": (optim.Adadelta, {"lr": None, "eps": 1e-4}, 1e-8),
}


def _well_conditioned_problems():
    generator = torch.Generator().manual_seed(7)
    X = torch.randn(40, 8, generator=generator, dtype=DTYPE)
    y = torch.randn(40, generator=generator, dtype=DTYPE)
    return {
        "quadratic": Quadratic.from_condition_number(8, kappa=10.0, seed=0),
        "least_squares": LeastSquares(X, y, seed=1),
    }


WELL_CONDITIONED = _well_conditioned_problems()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("problem_name", sorted(WELL_CONDITIONED))
def test_every_optimizer_converges_on_well_conditioned_problems(impl, name, problem_name):
    problem = WELL_CONDITIONED[problem_name]
    cls, settings, tol = OPTIMIZERS[name]
    settings = {k: (1 / problem.L if v is None else v) for k, v in settings.items()}
    assert problem.kappa <= 10.0 + 1e-9
    assert_converges(problem, lambda p: cls(p, impl=impl, **settings), steps=400, tol=tol)


# ----------------------------------------------------------------------------------------------
# plain SGD and the 1/L bounds on 24 random problems
# ----------------------------------------------------------------------------------------------
SEEDS = range(8)  # 8 seeds x 3 families = 24 problems per step size


def _random_problem(family: str, seed: int):
    generator = torch.Generator().manual_seed(100 + seed)
    if family == "quadratic":
        kappa = float(torch.empty(1).uniform_(2.0, 50.0, generator=generator))
        dim = int(torch.randint(2, 12, (1,), generator=generator))
        return Quadratic.from_condition_number(dim, kappa, L=float(1 + 9 * seed), seed=seed)
    n = int(torch.randint(20, 60, (1,), generator=generator))
    d = int(torch.randint(2, 10, (1,), generator=generator))
    X = torch.randn(n, d, generator=generator, dtype=DTYPE) * (1 + seed)
    if family == "least_squares":
        y = torch.randn(n, generator=generator, dtype=DTYPE)
        return LeastSquares(X, y, seed=seed)
    w = torch.randn(d, generator=generator, dtype=DTYPE)
    noise = torch.randn(n, generator=generator, dtype=DTYPE)
    y = torch.where(X @ w + noise >= 0, 1.0, -1.0)
    return LogisticRegression(X, y, l2=0.05, seed=seed)


@pytest.mark.parametrize("lr_factor", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("family", ["quadratic", "least_squares", "logistic"])
def test_plain_sgd_satisfies_the_one_over_L_bounds(family, lr_factor):
    for seed in SEEDS:
        problem = _random_problem(family, seed)
        lr = lr_factor / problem.L

        def make(params, lr=lr):
            return optim.SGD(params, lr=lr)

        gap = assert_bound_holds(problem, make, 150, gd_bound(problem, lr))
        assert gap.observed[-1] < gap.observed[0]  # it made progress, not only stayed below
        if problem.mu > 0:
            certificate = assert_bound_holds(
                problem, make, 150, gd_strongly_convex_bound(problem, lr)
            )
            assert_rate(certificate)


@pytest.mark.parametrize("seed", range(4))
def test_plain_sgd_meets_the_optimal_step_rate(seed):
    problem = _random_problem("quadratic", seed)
    bound = gd_optimal_step_bound(problem)
    certificate = assert_bound_holds(
        problem, lambda p: optim.SGD(p, **bound.hyperparameters), 200, bound
    )
    # on a quadratic with both extreme eigenvalues present the rate is attained
    assert_rate(certificate, slack=1e-6, at_least=bound.rate * (1 - 0.02))


@pytest.mark.parametrize("seed", range(4))
def test_plain_sgd_diverges_above_two_over_L(seed):
    problem = _random_problem("quadratic", seed)
    lr = 2.1 / problem.L
    bound = gd_divergence_bound(problem, lr)
    certificate = assert_bound_holds(problem, lambda p: optim.SGD(p, lr=lr), 200, bound)
    distances = certificate.observed
    assert distances[-1] > 1e6 * distances[0]
    assert certificate.fitted_rate == pytest.approx(1.1, rel=1e-3)  # |1 - 2.1| per step


def test_plain_sgd_at_the_stability_edge_neither_grows_nor_decays():
    # the top mode is multiplied by 1 - lr L per step: -0.9 at 1.9/L, exactly -1 at 2/L
    problem = Quadratic.from_condition_number(6, kappa=5.0, seed=3)
    top = problem.eigenvectors[:, -1]
    start = float((problem.x0 - problem.x_star) @ top)
    for factor, expected in ((1.9, 0.9**300), (2.0, 1.0)):
        lr = factor / problem.L
        trajectory = run(problem, lambda p, lr=lr: optim.SGD(p, lr=lr), 300)
        component = float((trajectory.points[-1] - problem.x_star) @ top)
        assert abs(component) == pytest.approx(abs(start) * expected, rel=1e-6, abs=1e-12)
    lr = 2.0 / problem.L
    with pytest.raises(AssertionError, match="not converged after 300 steps"):
        assert_converges(problem, lambda p: optim.SGD(p, lr=lr), 300, tol=1e-6)


# ----------------------------------------------------------------------------------------------
# momentum methods
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kappa", [10.0, 100.0])
def test_heavy_ball_meets_its_rate(impl, kappa):
    """Polyak's rate q = (√κ-1)/(√κ+1) is asymptotic: at the extreme eigenvalues the iteration
    has a Jordan block and the error behaves like k q^k. The bound checked at every step carries
    that factor explicitly (``heavy_ball_distance``), and the fitted rate is compared with q
    times exp(1/a) (a the first step of the fitting window), the largest tilt a factor k can add
    to a least-squares slope of log(k q^k) over [a, b]."""
    problem = Quadratic.from_condition_number(10, kappa=kappa, seed=11)
    bound = heavy_ball_bound(problem)
    certificate = assert_bound_holds(
        problem, lambda p: optim.SGD(p, impl=impl, **bound.hyperparameters), 300, bound
    )
    q = heavy_ball_rate(problem.L, problem.mu)
    assert certificate.predicted_rate == pytest.approx(q)
    assert_rate(certificate, at_least=0.97 * q)  # attained, not only bounded
    # and it beats plain GD's best rate (κ-1)/(κ+1) by the expected margin
    assert certificate.fitted_rate < (kappa - 1) / (kappa + 1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", ["quadratic", "logistic"])
def test_nesterov_meets_its_rate(impl, family):
    problem = (
        Quadratic.from_condition_number(10, kappa=50.0, seed=5)
        if family == "quadratic"
        else _random_problem("logistic", 3)
    )
    bound = nesterov_strongly_convex_bound(problem)
    assert bound.hyperparameters["nesterov"] is True
    certificate = assert_bound_holds(
        problem, lambda p: optim.SGD(p, impl=impl, **bound.hyperparameters), 300, bound
    )
    assert_rate(certificate)
    assert math.isfinite(certificate.fitted_rate)
    assert np.all(np.isfinite(certificate.observed))
