"""The guarantees of the learning-rate-free step sizes, certified with ``theory.certify`` on
problems with known answers, each with a run that breaks its assumption and fails."""

from __future__ import annotations

import math

import pytest
import torch

import optim
from theory import lr_free_bounds as B
from theory.certify import certify
from theory.problems import LeastAbsoluteDeviations, LogisticRegression, Quadratic

STRONGLY_CONVEX = Quadratic.from_spectrum([1.0, 3.0, 10.0, 30.0], seed=0)
CONVEX = Quadratic.from_spectrum([0.0, 1.0, 5.0, 20.0], seed=0)
DISTANCE = float((STRONGLY_CONVEX.x0 - STRONGLY_CONVEX.x_star).norm())


@pytest.mark.parametrize(
    ("name", "factor"),
    [("Prodigy", 1), ("DAdaptAdam", 1), ("DAdaptSGD", 2), ("DAdaptAdaGrad", 1)],
)
@pytest.mark.parametrize("problem", [STRONGLY_CONVEX, CONVEX], ids=["kappa30", "convex"])
def test_d_adaptation_never_overestimates_the_distance(name, factor, problem):
    bound = B.d_estimate_bound(problem, factor)
    certificate = certify(problem, lambda ps: getattr(optim, name)(ps), 300, bound)
    assert certificate.held, certificate.summary()
    assert certificate.worst_ratio > 0.05, "the estimate never grew"


def test_d0_above_the_distance_breaks_the_lemma():
    bound = B.d_estimate_bound(STRONGLY_CONVEX)
    make = lambda ps: optim.DAdaptAdam(ps, d0=3 * DISTANCE)  # noqa: E731
    certificate = certify(STRONGLY_CONVEX, make, 50, bound)
    assert not certificate.held
    assert certificate.first_violation == 0


def _logistic_problem() -> LogisticRegression:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(60, 5, generator=generator, dtype=torch.float64)
    w = torch.randn(5, generator=generator, dtype=torch.float64)
    y = torch.where(X @ w + 0.3 * torch.randn(60, generator=generator, dtype=torch.float64) > 0,
                    1.0, -1.0)  # fmt: skip
    return LogisticRegression(X, y, 1e-3, seed=0)


@pytest.mark.parametrize(
    "problem", [STRONGLY_CONVEX, CONVEX, _logistic_problem()], ids=["kappa30", "convex", "logreg"]
)
def test_dog_iterates_stay_within_three_initial_distances(problem):
    bound = B.dog_iterate_bound(problem)
    certificate = certify(problem, lambda ps: optim.DoG(ps), 400, bound)
    assert certificate.held, certificate.summary()
    # DoG written from the paper's formulas (eta_t = rbar_t / sqrt(G_t), rbar_0 = r_eps =
    # 1e-6 (1 + ||x0||), G_t = sum_{i<=t} ||g_i||^2 + 1e-8): its largest move from x0
    x = start = problem.x0.to(torch.float64)
    rbar, G, moved = 1e-6 * (1 + float(start.norm())), 1e-8, 0.0
    for _ in range(400):
        g = problem.grad(x)
        G += float(g @ g)
        x = x - rbar / math.sqrt(G) * g
        moved = max(moved, float((x - start).norm()))
        rbar = max(rbar, moved)
    distance = float((problem.x0 - problem.x_star).norm())
    assert certificate.worst_ratio == pytest.approx(moved / (3 * distance), rel=1e-6)
    assert 0.2 < certificate.worst_ratio <= 1  # DoG did travel a good part of the way


def test_dog_bound_fails_when_r_eps_is_too_large_or_the_bound_too_small():
    problem = STRONGLY_CONVEX
    bound = B.dog_iterate_bound(problem)
    # r_eps = reps_rel (1 + ||x0||) = 5 d0 > 3 d0: the first step alone moves 5 d0
    reps_rel = 5 * DISTANCE / (1 + float(problem.x0.norm()))
    certificate = certify(problem, lambda ps: optim.DoG(ps, reps_rel=reps_rel), 50, bound)
    assert not certificate.held
    assert certificate.first_violation == 1
    assert certificate.worst_ratio >= 5 / 3 * (1 - 1e-9)
    # the default run moves about d0, so a bound of 0.9 d0 (factor 0.3) is broken
    shrunk = certify(problem, lambda ps: optim.DoG(ps), 400, bound.scaled(0.3))
    assert not shrunk.held
    # the paper's c = lr = 1 is assumed: another lr is refused as not applicable
    assert not certify(problem, lambda ps: optim.DoG(ps, lr=2.0), 10, bound).applicable


def test_sps_step_is_at_least_its_lemma_1_floor_and_not_more():
    problem = STRONGLY_CONVEX
    make = lambda ps: optim.SPS(ps, c=0.5, gamma_b=1.0, f_star=problem.f_star)  # noqa: E731
    bound = B.sps_step_bound(problem, c=0.5, gamma_b=1.0)
    assert certify(problem, make, 200, bound).held
    assert not certify(problem, make, 200, bound.scaled(3)).held  # a floor 3x too high fails
    other = lambda ps: optim.SPS(ps, c=0.5, gamma_b=1.0, f_star=-1.0)  # noqa: E731
    assert not certify(problem, other, 20, bound).applicable  # f* must be the true one


@pytest.mark.parametrize("problem", [STRONGLY_CONVEX, CONVEX], ids=["kappa30", "convex"])
def test_deterministic_polyak_step_rates(problem):
    make = lambda ps: optim.SPS(ps, c=1.0, gamma_b=math.inf, f_star=problem.f_star)  # noqa: E731
    bound = B.polyak_bound(problem)
    assert bound.quantity == ("distance_sq" if problem.mu > 0 else "grad_sq_min")
    assert certify(problem, make, 300, bound).held
    assert not certify(problem, make, 300, bound.scaled(1e-3)).held


def test_armijo_backtracking_gap_bound():
    problem = CONVEX
    make = lambda ps: optim.SLS(ps, init_step_size=1.0, c=0.5, beta_b=0.5, reset_option=0)  # noqa: E731
    bound = B.armijo_bound(problem, 1.0, 0.5, 0.5)
    assert certify(problem, make, 200, bound).held
    assert not certify(problem, make, 200, bound.scaled(1e-3)).held
    with pytest.raises(ValueError, match="c in"):
        B.armijo_bound(problem, 1.0, 0.1, 0.5)  # the proof needs c >= 1/2


def test_schedule_free_sgd_last_iterate_bound():
    problem = LeastAbsoluteDeviations.synthetic(n=100, dim=5, seed=0)
    steps = 200
    lr = float((problem.x0 - problem.x_star).norm()) / (problem.G * math.sqrt(steps))

    def make(params):
        optimizer = optim.SGDScheduleFree(params, lr=lr)
        optimizer.train()
        return optimizer

    bound = B.schedulefree_sgd_bound(problem, lr)
    assert certify(problem, make, steps, bound, seeds=(0, 1, 2)).held
    assert not certify(problem, make, steps, bound.scaled(0.05), seeds=(0, 1, 2)).held


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="factor"):
        B.d_estimate_bound(STRONGLY_CONVEX, -1.0)
    with pytest.raises(ValueError, match="beta_b"):
        B.armijo_bound(CONVEX, 1.0, 0.5, 1.5)
    with pytest.raises(ValueError, match="G"):
        B.schedulefree_sgd_bound(STRONGLY_CONVEX, 0.1)
