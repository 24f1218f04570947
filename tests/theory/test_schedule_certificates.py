"""The schedule bounds certified on stochastic convex Lipschitz problems: the mean of
f(x_k) - f* over oracle seeds stays below Defazio et al.'s last-iterate bound for the schedules of
Schaipp et al. (constant, cosine, WSD with linear and 1-sqrt cooldown, linear decay to zero,
inverse square root) at their optimal base rates, and a deliberately too-small bound fails.
The problems' minimisers are checked independently of the LP that found them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch

import optim
import schedulers
import theory
from theory import HingeLoss, LeastAbsoluteDeviations

STEPS = 200
SEEDS = (0, 1, 2, 3)


def shapes(steps: int) -> dict:
    """Schaipp et al.'s schedules, peak 1, over ``steps`` updates (cooldown: the last 20 %)."""
    stable = int(0.8 * steps)
    return {
        "constant": schedulers.constant(1.0),
        "cosine": schedulers.cosine_decay(learning_rate=1.0, decay_steps=steps),
        "wsd-linear": schedulers.wsd(1.0, 0, stable, steps - stable, cooldown="linear"),
        "wsd-1-sqrt": schedulers.wsd(1.0, 0, stable, steps - stable, cooldown="1-sqrt"),
        "linear-to-zero": schedulers.polynomial_decay(
            learning_rate=1.0, decay_steps=steps, end_learning_rate=0.0
        ),
        "inverse-sqrt": schedulers.inverse_sqrt(1.0, 1),
    }


def tuned(problem, shape, steps):
    """γ* · shape over the updates 0..steps-1, trailing zero steps dropped from the bound."""
    eta = theory.step_sizes(shape, steps)
    last = int(np.nonzero(eta)[0][-1]) + 1
    D = float(torch.linalg.vector_norm(problem.x0 - problem.x_star))
    gamma, value = theory.optimal_base_lr(eta[:last], D, problem.G)
    return gamma * eta, last, value


@pytest.fixture(scope="module")
def lad():
    return LeastAbsoluteDeviations.synthetic(n=150, dim=8, seed=0)


def _sgd(params):
    return optim.SGD(params, lr=1.0)  # the lr is set before every update by lr_schedule


@pytest.mark.parametrize("name", list(shapes(STEPS)))
def test_last_iterate_bound_holds_in_mean_and_a_too_small_one_fails(lad, name):
    lrs, last, value = tuned(lad, shapes(STEPS)[name], STEPS)
    bound = theory.sgd_last_iterate_bound(lad, lrs)
    schedule = theory.lr_schedule(lrs)
    certificate = theory.certify(lad, _sgd, STEPS, bound, before_step=schedule, seeds=SEEDS)
    assert certificate.applicable
    assert certificate.held, certificate.summary()
    assert certificate.bound_values[last - 1] == pytest.approx(value, rel=1e-12)
    assert np.isinf(certificate.bound_values[last:]).all()  # no claim past the last step > 0
    assert certificate.band_lower is not None
    assert np.all(certificate.band_lower <= certificate.observed)
    # the mean is the mean of the runs, each an independent oracle
    finals = [t.gap[last - 1] for t in certificate.trajectories]
    assert certificate.observed[last - 1] == pytest.approx(np.mean(finals), rel=1e-12)
    assert len(set(finals)) == len(SEEDS)
    # a bound below the observed worst ratio must fail, with a band that says so
    too_small = bound.scaled(0.5 * certificate.worst_ratio)
    failed = theory.certify(lad, _sgd, STEPS, too_small, before_step=schedule, seeds=SEEDS)
    assert failed.applicable
    assert not failed.held
    assert failed.first_violation is not None
    assert "violated at step" in failed.violation_message()
    assert "band" in failed.violation_message()


def test_average_iterate_bound_holds_for_decreasing_steps_with_averaging(lad):
    lrs, _, _ = tuned(lad, shapes(STEPS)["inverse-sqrt"], STEPS)
    bound = theory.sgd_average_iterate_bound(lad, lrs)
    schedule = theory.lr_schedule(lrs)
    certificate = theory.certify(lad, _sgd, STEPS, bound, before_step=schedule, seeds=SEEDS)
    assert certificate.held, certificate.summary()
    # the measured point is the lr-weighted average, recomputed here from the raw iterates
    points = certificate.trajectories[0].points.numpy()
    k = 150
    average = (lrs[: k + 1, None] * points[: k + 1]).sum(0) / lrs[: k + 1].sum()
    gaps = []
    for trajectory in certificate.trajectories:
        pts = trajectory.points.numpy()
        xbar = (lrs[: k + 1, None] * pts[: k + 1]).sum(0) / lrs[: k + 1].sum()
        gaps.append(lad._numpy_loss(xbar) - lad.f_star)
    assert certificate.observed[k] == pytest.approx(np.mean(gaps), rel=1e-10)
    assert lad._numpy_loss(average) - lad.f_star == pytest.approx(gaps[0], rel=1e-10)
    failed = theory.certify(
        lad,
        _sgd,
        STEPS,
        bound.scaled(0.5 * certificate.worst_ratio),
        before_step=schedule,
        seeds=SEEDS,
    )
    assert not failed.held


def test_an_expectation_bound_needs_seeds_and_a_stochastic_problem(lad):
    lrs, _, _ = tuned(lad, shapes(50)["cosine"], 50)
    bound = theory.sgd_last_iterate_bound(lad, lrs)
    with pytest.raises(ValueError, match="give seeds="):
        theory.certify(lad, _sgd, 50, bound, before_step=theory.lr_schedule(lrs))
    with pytest.raises(ValueError, match="at least 2"):
        theory.certify(lad, _sgd, 50, bound, seeds=[0])
    with pytest.raises(ValueError, match="distinct"):
        theory.certify(lad, _sgd, 50, bound, seeds=[1, 1])
    quadratic = theory.Quadratic.from_spectrum([1.0, 2.0])
    with pytest.raises(ValueError, match="needs a stochastic problem"):
        theory.certify(quadratic, _sgd, 5, theory.gd_bound(quadratic, 0.5), seeds=[0, 1])
    with pytest.raises(ValueError, match="bounded"):
        theory.sgd_last_iterate_bound(quadratic, [0.1])


def test_a_schedule_bound_does_not_apply_to_another_schedule(lad):
    lrs, _, _ = tuned(lad, shapes(60)["cosine"], 60)
    bound = theory.sgd_last_iterate_bound(lad, lrs)
    constant = theory.certify(lad, lambda p: optim.SGD(p, lr=float(lrs[0])), 60, bound, seeds=SEEDS)
    assert not constant.applicable
    assert not constant.held
    assert "update t=1 ran with lr=" in constant.not_applicable
    assert constant.status == "not applicable"


@pytest.mark.parametrize("cls", [LeastAbsoluteDeviations, HingeLoss])
def test_lipschitz_problems_state_their_minimiser_and_gradient_bound(cls):
    problem = cls.synthetic(n=120, dim=6, seed=3)
    w_star = problem.x_star.numpy()
    # an independent local search from a perturbed start finds nothing lower
    rng = np.random.default_rng(0)
    for _ in range(3):
        start = w_star + 0.05 * rng.standard_normal(w_star.size)
        found = scipy.optimize.minimize(
            problem._numpy_loss, start, method="Powell", options={"xtol": 1e-10, "ftol": 1e-14}
        )
        assert found.fun >= problem.f_star - 1e-12
    directions = rng.standard_normal((200, w_star.size))
    values = [problem._numpy_loss(w_star + 1e-4 * d) for d in directions]
    assert min(values) >= problem.f_star - 1e-15
    # every sampled (sub)gradient is within G, and the oracle is a pure function of (seed, t)
    x = problem.x0.clone().requires_grad_(True)
    for t in range(30):
        (g,) = torch.autograd.grad(problem.loss_at(x, t), x)
        assert float(g.norm()) <= problem.G * (1 + 1e-12)
    assert float(problem.loss_at(problem.x0, 7)) == float(problem.loss_at(problem.x0, 7))
    twin = problem.reseeded(5)
    assert twin.oracle_seed == 5
    assert problem.oracle_seed == 0
    assert any(not np.array_equal(twin.batch(t), problem.batch(t)) for t in range(10))
    assert torch.equal(twin.x_star, problem.x_star)
    assert math.inf == problem.L
    assert problem.mu == 0.0
    assert problem.is_convex
    full = cls.synthetic(n=120, dim=6, seed=3, batch_size=None)
    assert float(full.loss_at(full.x0, 3)) == float(full.loss(full.x0))
    with pytest.raises(TypeError, match="deterministic"):
        full.reseeded(1)


def test_lipschitz_problems_reject_bad_input():
    with pytest.raises(ValueError, match="labels -1 and \\+1"):
        HingeLoss(np.eye(3), [1.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="batch_size"):
        LeastAbsoluteDeviations(np.eye(3), [1.0, 0.0, -1.0], batch_size=0)
    with pytest.raises(ValueError, match="t must be a non-negative integer"):
        LeastAbsoluteDeviations(np.eye(3), [1.0, 0.0, -1.0]).batch(-1)
